"""Thin adapters between the benchmark and the project's trainer / index.

Everything the benchmark needs from `spidx.trainer` and `spidx.index` goes through these few
functions, so an API change there is fixed in one place.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


# ---- trainer ---------------------------------------------------------------------------------------

def train_dense(X: sp.csr_matrix, dim: int, epochs: int, batch_size: int, lr: float, seed: int,
                max_output: int | None = None, progress: bool = True) -> np.ndarray:
    """Dense ELSA: Â (items x dim, float32, unit rows)."""
    from spidx.trainer.elsa import train_elsa

    A = train_elsa(X, dim, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, max_output=max_output,
                   progress=progress)
    return np.ascontiguousarray(A, dtype=np.float32)


def train_compressed(X: sp.csr_matrix, dim: int, targets: tuple, schedule: str, rewind: bool, epochs: int,
                     batch_size: int, lr: float, seed: int, max_output: int | None = None,
                     progress: bool = True, final_epochs: int | None = None) -> dict:
    """Compressed ELSA, one gradual-pruning trajectory: {k: CSR Â with exactly k nnz per row}."""
    from spidx.trainer.compressed import train_compressed_elsa

    out = train_compressed_elsa(X, dim=dim, targets=tuple(int(t) for t in targets), schedule_name=schedule,
                                rewind=rewind, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                                max_output=max_output, progress=progress, final_epochs=final_epochs)
    return {int(k): sp.csr_matrix(v, dtype=np.float32) for k, v in out.items()}


def fit_ease(X: sp.csr_matrix, lam: float) -> np.ndarray:
    from spidx.trainer.ease import fit_ease as _fit

    return _fit(X, lam)


def prune_rows(B: np.ndarray, k: int) -> sp.csr_matrix:
    from spidx.trainer.ease import prune_rows as _prune

    return sp.csr_matrix(_prune(B, k), dtype=np.float32)


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


def topk_sparsify(A: np.ndarray, k: int) -> sp.csr_matrix:
    """Row-wise top-k by magnitude, rows renormalised to unit L2 norm (post-hoc sparsification)."""
    try:
        from spidx.index import topk_sparsify as _tk

        m = sp.csr_matrix(_tk(A, k), dtype=np.float32)
    except ImportError:  # pragma: no cover - fallback if the index module moves it
        n, d = A.shape
        idx = np.argpartition(-np.abs(A), k - 1, axis=1)[:, :k]
        idx.sort(axis=1)
        vals = np.take_along_axis(A, idx, axis=1)
        m = sp.csr_matrix((vals.ravel(), idx.ravel(), np.arange(n + 1) * k), shape=(n, d), dtype=np.float32)
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=np.float32)
