"""Thin adapters between the benchmark and the project's trainer / index.

Everything the benchmark needs from `spidx.trainer` and `spidx.index` goes through these few
functions, so an API change there is fixed in one place.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


# ---- trainer: every model is trained through the model classes -------------------------------------

def validation_curve(curve: list, best_epoch: int, max_epochs: int) -> dict:
    """What the report shows of one model's training: validation nDCG@100 and training loss per epoch, the
    kept (best) epoch and the most epochs allowed (a curve shorter than that stopped on `patience`)."""
    return {"ndcg@100": [round(float(e["ndcg@100"]), 5) for e in curve],
            "loss": [float(f"{e['loss']:.5g}") for e in curve if e.get("loss") is not None],
            "best_epoch": int(best_epoch), "epochs_trained": len(curve), "max_epochs": int(max_epochs)}


def train_dense(X: sp.csr_matrix, cfg, validation: list, progress: bool = True) -> tuple:
    """Dense ELSA for a `TrainConfig(model="elsa")`: (Â, curve). Â (items x dim, float32, unit rows) is the epoch
    with the best nDCG@100 on the `validation` folds (the benchmark's validation users, never its test users);
    curve is its `validation_curve`."""
    from spidx.trainer.models import model_from_config

    model = model_from_config(cfg).fit(X, show_progress=progress, validation=validation)
    curve = validation_curve(model.meta["validation"], model.meta["best_epoch"], cfg.epochs)
    return np.ascontiguousarray(model.embeddings, dtype=np.float32), curve


def train_compressed(X: sp.csr_matrix, cfg, validation: list, progress: bool = True) -> tuple:
    """Compressed ELSA for a `TrainConfig` with `targets`, one pruning trajectory: ({k: CSR Â, k nnz per row},
    {k: final-phase `validation_curve`}); each k's final-phase epoch is chosen on the `validation` folds (as
    `spidx train --val-users` does)."""
    from spidx.trainer.models import model_from_config

    model = model_from_config(cfg).fit(X, show_progress=progress, validation=validation)
    out, curves = {}, {}
    for k in cfg.targets:
        m = model.at(k)
        max_final = m.config.final_epochs if m.config.final_epochs is not None else cfg.epochs
        out[int(k)] = sp.csr_matrix(m.embeddings, dtype=np.float32)
        curves[int(k)] = validation_curve(m.meta["validation"], m.meta["best_epoch"], max_final)
    return out, curves


def fit_ease(X: sp.csr_matrix, lam: float) -> np.ndarray:
    """Full EASE: the dense item-item B."""
    from spidx.trainer.models import EASE

    return EASE(lam=lam).fit(X, show_progress=False).embeddings


def fit_pruned_ease(X: sp.csr_matrix, lam: float, ks) -> dict:
    """Pruned EASE for several k from one inverse, never holding B (large catalogues): {k: CSR rows}."""
    from spidx.trainer.models import EASE

    model = EASE(lam=lam, nnz=list(ks)).fit(X, show_progress=False)
    return {int(k): model.at(k).embeddings for k in ks}


def prune_rows(B: np.ndarray, k: int) -> sp.csr_matrix:
    from spidx.sparsify import row_topk

    return row_topk(B, k)


# ---- index -----------------------------------------------------------------------------------------

def build_index(A: sp.csr_matrix, values: str = "f32"):
    """Our exact inverted index over a CSR item matrix (values 'f32', 'f16' or 'i8')."""
    from spidx.index import SparseIndex

    return SparseIndex.from_embeddings(sp.csr_matrix(A, dtype=np.float32), np.arange(A.shape[0]), values=values)


def index_recommend(index, H: sp.csr_matrix, k: int) -> np.ndarray:
    """Top-k item positions (seen items excluded), -1 padded."""
    return np.asarray(index.recommend(H, k, exclude_seen=True).positions)


def index_nbytes(index) -> int:
    return int(index.nbytes)


def index_breakdown(index) -> dict:
    return {k: int(v) for k, v in index.memory_breakdown().items()}


def fit_compressae(A: np.ndarray, dim: int, k: int, epochs: int, batch_size: int, lr: float, seed: int,
                   progress: bool) -> sp.csr_matrix:
    """CompresSAE codes of a dense model's item rows: k non-zeros per row of dimension `dim`, unit rows."""
    from spidx.trainer.compressae import fit_compressae as fit

    return fit(A, dim=dim, k=k, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
