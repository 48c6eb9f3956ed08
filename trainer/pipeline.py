"""Train a model on an interactions file and evaluate it with the strong-generalisation protocol."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from spidx.embeddings import Embeddings
from spidx.errors import InputError
from spidx.interactions import Interactions
from spidx.protocol import evaluate_ranker, evaluate_scorer, make_split

from .compressed import train_compressed_elsa
from .ease import ease_scores, fit_ease, prune_rows
from .elsa import elsa_scores, train_elsa
from .schedules import SCHEDULES

MODELS = ("elsa", "compressed-elsa", "ease")


@dataclass
class TrainConfig:
    model: str = "compressed-elsa"
    dim: int = 4096
    nnz: int | None = 32  # Compressed ELSA target k; for EASE, optional row pruning
    targets: tuple = ()  # Compressed ELSA: several k from one pruning trajectory (overrides nnz)
    schedule: str = "exponential"
    rewind: bool = True
    epochs: int = 10
    final_epochs: int | None = None  # Compressed ELSA: epochs at the final k (default: epochs)
    batch_size: int = 256
    lr: float = 0.1
    seed: int = 42
    max_output: int | None = None  # sampled training: outputs per batch (None = all items)
    lam: list = field(default_factory=lambda: [500.0])  # EASE; several = choose on validation users
    test_users: int = 0  # held out (never trained on) for `evaluate`
    val_users: int = 0  # held out for model selection (best epoch / best lambda)

    def validate(self):
        if self.model not in MODELS:
            raise InputError(f"unknown model '{self.model}' (choose from {', '.join(MODELS)})")
        if self.schedule not in SCHEDULES:
            raise InputError(f"unknown schedule '{self.schedule}' (choose from {', '.join(SCHEDULES)})")
        for name in ("dim", "epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name.replace('_', '-')} must be positive")
        if self.nnz is not None and not 0 < self.nnz <= (self.dim if self.model != "ease" else 10**9):
            raise InputError(f"nnz must be in 1..{self.dim}, got {self.nnz}")
        if self.targets and (self.model != "compressed-elsa" or any(not 0 < k <= self.dim for k in self.targets)):
            raise InputError(f"several --nnz values need --model compressed-elsa and each in 1..{self.dim}")
        if self.model == "compressed-elsa" and self.nnz is None:
            raise InputError("compressed-elsa needs --nnz")
        if not self.lr > 0 or any(not lam > 0 for lam in self.lam):
            raise InputError("learning rate and lambda must be positive")
        if self.test_users < 0 or self.val_users < 0:
            raise InputError("held-out user counts cannot be negative")
        if len(self.lam) > 1 and self.val_users == 0:
            raise InputError("several EASE lambdas need --val-users to choose between them")


def scorer(emb: Embeddings):
    """The dense scoring function of a trained model: ELSA x Â Âᵀ, or EASE x B."""
    if emb.meta.get("model") == "ease":
        return lambda h: ease_scores(emb.matrix, h)
    return lambda h: elsa_scores(emb.matrix, h)


def train_model(data: Interactions, cfg: TrainConfig, progress: bool = True, **runtime) -> Embeddings:
    """Train `cfg.model` on every user except the held-out test/validation users."""
    models = train_models(data, cfg, progress, **runtime)
    return next(iter(models.values()))


def train_models(data: Interactions, cfg: TrainConfig, progress: bool = True, *, device: str = "cpu",
                 distributed: bool = False, checkpoint: str | None = None, resume: bool = False) -> dict:
    """Like `train_model`; Compressed ELSA with several `cfg.targets` returns {k: Embeddings}.

    Runtime options of the ELSA models (they do not change the model): `device` (cpu, cuda, auto),
    `distributed` (data-parallel under torchrun, `trainer/distributed.py`), `checkpoint` (a file
    rewritten atomically after every epoch / phase) and `resume` (continue from it).
    """
    cfg.validate()
    if cfg.model == "ease" and (distributed or checkpoint):
        raise InputError("EASE is solved in closed form: --distributed and --checkpoint apply to the ELSA models")
    if cfg.model == "elsa" and resume and cfg.val_users:
        raise InputError("--resume of dense ELSA with --val-users is not supported: the best-epoch choice "
                         "would forget the epochs before the checkpoint")
    runtime = {"device": device, "distributed": distributed, "checkpoint": checkpoint, "resume": resume}
    t0 = time.perf_counter()
    split = make_split(data.matrix, cfg.test_users, cfg.val_users, cfg.seed) if cfg.test_users or cfg.val_users \
        else None
    train = split.train if split else data.matrix
    val = split.validation if split else []
    meta = {"model": cfg.model, "config": asdict(cfg), "data": {"source": data.source,
            "fingerprint": data.fingerprint(), "users": data.n_users, "items": data.n_items,
            "interactions": int(data.matrix.nnz), "train_users": int(train.shape[0])}}
    history = []
    if cfg.model == "ease":
        best = None
        for lam in cfg.lam:
            B = fit_ease(train, lam)
            entry = {"lambda": lam}
            if val:
                entry.update(evaluate_scorer(lambda h: ease_scores(B, h), val))
            history.append(entry)
            if best is None or entry.get("ndcg@100", 0) > best[0].get("ndcg@100", 0):
                best = (entry, B)
        matrix = best[1] if cfg.nnz is None else prune_rows(best[1], cfg.nnz)
        meta.update(d=int(matrix.shape[1]), k=cfg.nnz, lam=best[0]["lambda"], selected=best[0] if val else {})
    elif cfg.model == "elsa":
        best = {"ndcg@100": -1.0, "epoch": cfg.epochs}

        def on_epoch(engine, log):
            if not val:
                return {}
            a = engine.embeddings()
            m = evaluate_scorer(lambda h: elsa_scores(a, h), val)
            history.append({"epoch": log.epoch, "loss": log.loss, **m})
            if m["ndcg@100"] > best["ndcg@100"]:
                best.update(m, epoch=log.epoch, embeddings=a.copy())
            return m

        logs = []
        matrix = train_elsa(train, cfg.dim, cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed, cfg.max_output,
                            progress, on_epoch=on_epoch, logs=logs, **runtime)
        if val:
            matrix = best.pop("embeddings")
        meta.update(d=cfg.dim, k=None, best_epoch=best["epoch"], selected=history[best["epoch"] - 1] if val else {},
                    epoch_seconds=[round(log.seconds, 3) for log in logs])
    else:
        phases = []
        targets = tuple(cfg.targets) or (cfg.nnz,)
        select = (lambda a: evaluate_scorer(lambda h: elsa_scores(a, h), val)["ndcg@100"]) if val else None
        result = train_compressed_elsa(train, cfg.dim, targets, cfg.schedule, cfg.rewind, cfg.epochs,
                                       cfg.batch_size, cfg.lr, cfg.seed, cfg.max_output, progress, phases, select,
                                       cfg.final_epochs, **runtime)
        meta.update(d=cfg.dim, schedule=cfg.schedule, rewind=cfg.rewind, train_seconds=round(time.perf_counter() - t0, 2),
                    phases=[{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in p.items()} for p in phases])
        out = {}
        for k, matrix in result.items():
            val_metrics = [evaluate_scorer(lambda h: elsa_scores(matrix, h), val)] if val else []
            out[k] = Embeddings(matrix, data.item_ids, {**meta, "k": k, "validation": val_metrics,
                                                        "selected": val_metrics[0] if val else {}})
        return out
    meta["train_seconds"] = round(time.perf_counter() - t0, 2)
    meta["validation"] = history
    return {meta["k"]: Embeddings(matrix, data.item_ids, meta)}


def evaluate_embeddings(emb: Embeddings, data: Interactions, test_users: int | None = None,
                        seed: int | None = None, folds: int = 1, served_values: str | None = None) -> dict:
    """Held-out metrics of a trained model on the test users it was trained without.

    With `served_values` (f32/f16/i8) a sparse model is ranked by the inverted index built with those
    values, i.e. the accuracy actually served.
    """
    cfg = emb.meta.get("config", {})
    test_users = cfg.get("test_users", 0) if test_users is None else test_users
    seed = cfg.get("seed", 42) if seed is None else seed
    if test_users <= 0:
        raise InputError("the model was trained on every user; retrain with --test-users N to evaluate it")
    if len(emb.item_ids) != data.n_items or not np.array_equal(emb.item_ids.astype(str), data.item_ids.astype(str)):
        raise InputError("the embeddings were trained on other items than this interactions file holds")
    fp = emb.meta.get("data", {}).get("fingerprint")
    if fp and fp != data.fingerprint():
        raise InputError("this interactions file differs from the one the model was trained on "
                         "(its held-out users would not be held out)")
    trained_val = cfg.get("val_users", 0)
    split = make_split(data.matrix, test_users, trained_val, seed, folds=folds)
    if served_values is None:
        return evaluate_scorer(scorer(emb), split.test)
    if emb.meta.get("model") == "ease" or not emb.is_sparse:
        raise InputError("--values evaluates the inverted index: it needs sparse ELSA embeddings")
    from spidx.index import SparseIndex

    index = SparseIndex.from_embeddings(emb.matrix, emb.item_ids, values=served_values)
    return evaluate_ranker(lambda h: index.recommend(h, k=100).positions, split.test)
