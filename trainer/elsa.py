"""ELSA (Vančura et al., RecSys'22): a linear autoencoder with one item matrix, trained with NMSE.

Â = rownorm(W); prediction ŷ = ReLU(x Â Âᵀ − x); loss = mean over users of
(1/n_out) ‖x/‖x‖ − ŷ/‖ŷ‖‖²; NAdam with lr 0.1; users shuffled every epoch.
Two output modes: full (every item) and sampled (the batch's items plus uniform negatives up to
`max_output`, the paper's mode for large catalogues).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spidx.errors import InputError, TrainingDiverged

from .fixed_k import elsa_raw_scores


def nmse_loss(pred: torch.Tensor, target_normalized: torch.Tensor) -> torch.Tensor:
    """Normalised MSE: rows L2-normalised, squared error averaged over users and outputs."""
    return F.mse_loss(F.normalize(pred, dim=1), target_normalized, reduction="mean")


def xavier_uniform(n_items: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    bound = math.sqrt(6.0 / (n_items + dim))
    return (torch.rand(n_items, dim, generator=generator) * 2 - 1) * bound


def check_interactions(X) -> sp.csr_matrix:
    """Validate a user x item training matrix and return it as binary float32 CSR."""
    if not sp.issparse(X):
        raise InputError("interactions must be a scipy sparse user x item matrix")
    X = sp.csr_matrix(X, dtype=np.float32)
    if X.nnz == 0:
        raise InputError("interactions matrix is empty")
    if not np.all(np.isfinite(X.data)):
        raise InputError("interactions contain NaN or infinite values")
    X = X.copy()
    X.data[:] = 1.0
    X.eliminate_zeros()
    X.sort_indices()
    return X


@dataclass
class Batch:
    """One training batch: binary histories, output item columns (None = all) and the dense target.

    In sampled mode `out_items` starts with the batch's `n_positive` items (the input columns)
    followed by the negatives; `target` is the histories restricted to `out_items`.
    """

    rows: sp.csr_matrix
    out_items: np.ndarray | None
    n_positive: int
    target: torch.Tensor


class BatchSampler:
    """Shuffles users each epoch; in sampled mode adds uniform negatives up to `max_output` outputs."""

    def __init__(self, X: sp.csr_matrix, batch_size: int, max_output: int | None, rng: np.random.Generator):
        if batch_size <= 0:
            raise InputError("batch size must be positive")
        self.X, self.batch_size, self.rng = X, batch_size, rng
        self.max_output = None if max_output is None or max_output >= X.shape[1] else int(max_output)
        self.users = np.flatnonzero(np.diff(X.indptr) > 0)  # users without items carry no signal

    def __len__(self) -> int:
        return math.ceil(len(self.users) / self.batch_size)

    def epoch(self):
        order = self.rng.permutation(self.users)
        for s in range(0, len(order), self.batch_size):
            rows = self.X[np.sort(order[s:s + self.batch_size])]
            if self.max_output is None:
                yield Batch(rows, None, rows.shape[1], torch.from_numpy(rows.toarray()))
                continue
            positives = np.unique(rows.indices)
            pool = np.setdiff1d(np.arange(self.X.shape[1]), positives, assume_unique=True)
            n_neg = min(max(1, self.max_output - len(positives)), len(pool))
            negatives = np.sort(self.rng.choice(pool, size=n_neg, replace=False))
            out_items = np.concatenate([positives, negatives])
            target = np.zeros((rows.shape[0], len(out_items)), np.float32)
            target[:, : len(positives)] = rows[:, positives].toarray()
            yield Batch(rows, out_items, len(positives), torch.from_numpy(target))


def _torch_csr_as_coo(m: sp.csr_matrix) -> torch.Tensor:
    coo = m.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), m.shape, check_invariants=False,
                                   is_coalesced=True)


class DenseEngine(torch.nn.Module):
    """Item matrix held dense (items x d); an optional fixed 0/1 mask keeps each row k-sparse.

    Cost per batch is O(batch * n_out * d) whatever k is: used for dense ELSA and early phases.
    """

    def __init__(self, weights: torch.Tensor, mask: torch.Tensor | None = None):
        super().__init__()
        self.weight = torch.nn.Parameter(weights.clone())
        self.mask = mask

    def _masked(self, rows=None) -> torch.Tensor:
        w = self.weight if rows is None else self.weight[rows]
        if self.mask is not None:
            w = w * (self.mask if rows is None else self.mask[rows])
        return w

    def raw_scores(self, batch: Batch) -> torch.Tensor:
        """x Â Â_outᵀ for the batch."""
        if batch.out_items is None:
            a = F.normalize(self._masked(), dim=1)
            return torch.sparse.mm(_torch_csr_as_coo(batch.rows), a) @ a.T
        a_out = F.normalize(self._masked(torch.from_numpy(batch.out_items)), dim=1)
        x_in = batch.target[:, : batch.n_positive]
        return (x_in @ a_out[: batch.n_positive]) @ a_out.T

    def embeddings(self) -> np.ndarray:
        with torch.no_grad():
            return F.normalize(self._masked(), dim=1).numpy()


class SparseEngine(torch.nn.Module):
    """Item matrix in fixed-k layout (`cols`, `vals`: items x k); cost per batch O(batch * n_out * k)."""

    def __init__(self, cols: np.ndarray, vals: torch.Tensor, dim: int):
        super().__init__()
        self.cols = np.ascontiguousarray(cols, dtype=np.int32)
        self.vals = torch.nn.Parameter(vals.clone().contiguous())
        self.dim = dim

    def raw_scores(self, batch: Batch) -> torch.Tensor:
        a_vals = F.normalize(self.vals, dim=1)
        return elsa_raw_scores(a_vals, self.cols, batch.rows, self.dim, batch.out_items)

    def embeddings(self) -> sp.csr_matrix:
        with torch.no_grad():
            vals = F.normalize(self.vals, dim=1).numpy()
        n, k = self.cols.shape
        m = sp.csr_matrix((vals.ravel(), self.cols.ravel(), np.arange(0, n * k + 1, k)), shape=(n, self.dim))
        m.sort_indices()
        return m


def batch_loss(engine, batch: Batch) -> torch.Tensor:
    """NMSE of ReLU(x Â Â_outᵀ − x_out) against x_out."""
    pred = torch.relu(engine.raw_scores(batch) - batch.target)
    return nmse_loss(pred, F.normalize(batch.target, dim=1))


@dataclass
class EpochLog:
    epoch: int
    loss: float
    seconds: float
    metrics: dict = field(default_factory=dict)


def check_parameters(engine, where: str) -> None:
    """Raise TrainingDiverged when a parameter row is non-finite or has no usable non-zero.

    Rows are normalised to unit length; a row whose norm is 0, or overflows float32 (huge steps of
    a far too high learning rate), normalises to all zeros or NaN: that item would be lost silently.
    Every training path runs `fit`, which calls this after each epoch (one pass over the parameters).
    """
    with torch.no_grad():
        for p in engine.parameters():
            norms = torch.linalg.vector_norm(p.reshape(p.shape[0], -1) if p.dim() > 1 else p[None], dim=1)
            bad = ~torch.isfinite(norms) | (norms == 0)
            if bool(bad.any()):
                what = "non-finite or overflowing" if not bool(torch.isfinite(norms).all()) else "all-zero"
                raise TrainingDiverged(f"{where}: training diverged, {int(bad.sum())} item row(s) became {what} "
                                       f"(try a lower --lr); nothing was written")


def fit(engine, sampler: BatchSampler, epochs: int, lr: float, desc: str = "train", progress: bool = True,
        on_epoch: Callable | None = None) -> list[EpochLog]:
    """Train `engine` with a fresh NAdam for `epochs` epochs; returns per-epoch loss and time."""
    opt = torch.optim.NAdam(engine.parameters(), lr=lr)
    logs = []
    bar = tqdm(total=epochs * len(sampler), desc=desc, disable=not progress, leave=False, unit="batch")
    for ep in range(epochs):
        t0, total, n = time.perf_counter(), 0.0, 0
        for batch in sampler.epoch():
            opt.zero_grad(set_to_none=True)
            loss = batch_loss(engine, batch)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{desc}: training diverged, the loss became {loss.item()} in epoch "
                                       f"{ep + 1} (try a lower --lr); nothing was written")
            loss.backward()
            opt.step()
            total += loss.item()
            n += 1
            bar.update(1)
            bar.set_postfix(epoch=ep + 1, loss=f"{total / n:.3e}")
        check_parameters(engine, f"{desc}, epoch {ep + 1}")
        log = EpochLog(ep + 1, total / max(n, 1), time.perf_counter() - t0)
        if on_epoch is not None:
            log.metrics = on_epoch(engine, log) or {}
        logs.append(log)
    bar.close()
    return logs


def train_elsa(X, dim: int, epochs: int = 10, batch_size: int = 128, lr: float = 0.1, seed: int = 42,
               max_output: int | None = None, progress: bool = True, on_epoch: Callable | None = None,
               logs: list | None = None) -> np.ndarray:
    """Train dense ELSA; returns Â (items x dim, float32, unit rows).

    `on_epoch(engine, log) -> dict` is called after every epoch (e.g. validation metrics);
    per-epoch logs are appended to `logs` when given.
    """
    if dim <= 0 or epochs <= 0:
        raise InputError("dim and epochs must be positive")
    X = check_interactions(X)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    engine = DenseEngine(xavier_uniform(X.shape[1], dim, gen))
    sampler = BatchSampler(X, batch_size, max_output, np.random.default_rng(seed))
    epoch_logs = fit(engine, sampler, epochs, lr, desc=f"ELSA d={dim}", progress=progress, on_epoch=on_epoch)
    if logs is not None:
        logs.extend(epoch_logs)
    return engine.embeddings().astype(np.float32)


def elsa_scores(embeddings, history: sp.csr_matrix) -> np.ndarray:
    """Raw ELSA scores x Â Âᵀ (users x items) for dense or CSR Â; rank with seen items masked."""
    u = history @ embeddings
    s = u @ embeddings.T
    return np.asarray(s.todense() if sp.issparse(s) else s, dtype=np.float32)
