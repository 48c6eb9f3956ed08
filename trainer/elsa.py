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

from . import torch_fixed_k
from .fixed_k import elsa_raw_scores


def nmse_loss(pred: torch.Tensor, target_normalized: torch.Tensor) -> torch.Tensor:
    """Normalised MSE: rows L2-normalised, squared error averaged over users and outputs."""
    return F.mse_loss(F.normalize(pred, dim=1), target_normalized, reduction="mean")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` = CUDA when torch sees a GPU, else CPU; `cuda` without a GPU is an InputError."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device '{name}' (use auto, cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but torch sees no GPU (torch.cuda.is_available() is False)")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device '{name}' (use auto, cpu or cuda)")
    return dev


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
    followed by the negatives; `target` is the histories restricted to `out_items`. Under data-parallel
    training `rows` are this process's share of the global batch and `weight` = its share of the
    global batch's users, so that the shares' losses (and gradients) add up to the global batch's.
    """

    rows: sp.csr_matrix
    out_items: np.ndarray | None
    n_positive: int
    target: torch.Tensor
    weight: float = 1.0


class BatchSampler:
    """Shuffles users each epoch; in sampled mode adds uniform negatives up to `max_output` outputs.

    `shard=(rank, world)`: every process draws the same global batches (same seed, same negatives) and
    keeps its contiguous share of each batch's users (data-parallel training).
    """

    def __init__(self, X: sp.csr_matrix, batch_size: int, max_output: int | None, rng: np.random.Generator,
                 shard: tuple[int, int] = (0, 1)):
        if batch_size <= 0:
            raise InputError("batch size must be positive")
        self.X, self.batch_size, self.rng = X, batch_size, rng
        self.rank, self.world = shard
        self.max_output = None if max_output is None or max_output >= X.shape[1] else int(max_output)
        self.users = np.flatnonzero(np.diff(X.indptr) > 0)  # users without items carry no signal

    def __len__(self) -> int:
        return math.ceil(len(self.users) / self.batch_size)

    def epoch(self):
        order = self.rng.permutation(self.users)
        for s in range(0, len(order), self.batch_size):
            users = np.sort(order[s:s + self.batch_size])
            mine = np.array_split(users, self.world)[self.rank]
            rows, weight = self.X[mine], len(mine) / len(users)
            if self.max_output is None:
                yield Batch(rows, None, rows.shape[1], torch.from_numpy(rows.toarray()), weight)
                continue
            positives = np.unique(self.X[users].indices if self.world > 1 else rows.indices)
            pool = np.setdiff1d(np.arange(self.X.shape[1]), positives, assume_unique=True)
            n_neg = min(max(1, self.max_output - len(positives)), len(pool))
            negatives = np.sort(self.rng.choice(pool, size=n_neg, replace=False))
            out_items = np.concatenate([positives, negatives])
            target = np.zeros((rows.shape[0], len(out_items)), np.float32)
            target[:, : len(positives)] = rows[:, positives].toarray()
            yield Batch(rows, out_items, len(positives), torch.from_numpy(target), weight)


def _torch_csr_as_coo(m: sp.csr_matrix) -> torch.Tensor:
    coo = m.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), m.shape, check_invariants=False,
                                   is_coalesced=True)


class DenseEngine(torch.nn.Module):
    """Item matrix held dense (items x d); an optional fixed 0/1 mask keeps each row k-sparse.

    Cost per batch is O(batch * n_out * d) whatever k is: used for dense ELSA and early phases.
    """

    def __init__(self, weights: torch.Tensor, mask: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.weight = torch.nn.Parameter(weights.to(device, copy=True))
        self.mask = None if mask is None else mask.to(device)

    @property
    def device(self) -> torch.device:
        return self.weight.device

    def _masked(self, rows=None) -> torch.Tensor:
        w = self.weight if rows is None else self.weight[rows]
        if self.mask is not None:
            w = w * (self.mask if rows is None else self.mask[rows])
        return w

    def raw_scores(self, batch: Batch) -> torch.Tensor:
        """x Â Â_outᵀ for the batch."""
        if batch.out_items is None:
            a = F.normalize(self._masked(), dim=1)
            return torch.sparse.mm(_torch_csr_as_coo(batch.rows).to(self.device), a) @ a.T
        a_out = F.normalize(self._masked(torch.from_numpy(batch.out_items).to(self.device)), dim=1)
        x_in = batch.target[:, : batch.n_positive]
        return (x_in @ a_out[: batch.n_positive]) @ a_out.T

    def embeddings(self) -> np.ndarray:
        with torch.no_grad():
            return F.normalize(self._masked(), dim=1).cpu().numpy()


FIXED_K_BACKENDS = ("numba", "torch")


class SparseEngine(torch.nn.Module):
    """Item matrix in fixed-k layout (`cols`, `vals`: items x k); cost per batch O(batch * n_out * k).

    Two implementations of the same products: `numba` kernels (CPU only; the CPU default, faster
    there, see bench/gpu_check.py) and `torch` gathers / embedding_bag (any device; the CUDA one).
    """

    def __init__(self, cols: np.ndarray, vals: torch.Tensor, dim: int, device: torch.device | str = "cpu",
                 backend: str | None = None):
        super().__init__()
        device = torch.device(device)
        backend = backend or ("numba" if device.type == "cpu" else "torch")
        if backend not in FIXED_K_BACKENDS or (backend == "numba" and device.type != "cpu"):
            raise InputError(f"fixed-k backend '{backend}' is not available on {device.type} "
                             f"(numba runs on cpu; torch on cpu and cuda)")
        self.cols = np.ascontiguousarray(cols, dtype=np.int32)
        self.vals = torch.nn.Parameter(vals.to(device, copy=True).contiguous())
        self.dim, self.backend = dim, backend
        self._cols_t = torch.from_numpy(self.cols).to(device, torch.int64) if backend == "torch" else None

    @property
    def device(self) -> torch.device:
        return self.vals.device

    def raw_scores(self, batch: Batch) -> torch.Tensor:
        a_vals = F.normalize(self.vals, dim=1)
        if self.backend == "numba":
            return elsa_raw_scores(a_vals, self.cols, batch.rows, self.dim, batch.out_items)
        as_index = lambda a: torch.from_numpy(a).to(self.device, torch.int64)  # noqa: E731
        out_rows = None if batch.out_items is None else as_index(batch.out_items)
        return torch_fixed_k.elsa_raw_scores(a_vals, self._cols_t, as_index(batch.rows.indptr),
                                             as_index(batch.rows.indices), self.dim, out_rows)

    def embeddings(self) -> sp.csr_matrix:
        with torch.no_grad():
            vals = F.normalize(self.vals, dim=1).cpu().numpy()
        n, k = self.cols.shape
        m = sp.csr_matrix((vals.ravel(), self.cols.ravel(), np.arange(0, n * k + 1, k)), shape=(n, self.dim))
        m.sort_indices()
        return m


def batch_loss(engine, batch: Batch) -> torch.Tensor:
    """NMSE of ReLU(x Â Â_outᵀ − x_out) against x_out, times the batch's share of the global batch."""
    batch.target = batch.target.to(engine.device)  # the engines read the batch's inputs from it
    pred = torch.relu(engine.raw_scores(batch) - batch.target)
    loss = nmse_loss(pred, F.normalize(batch.target, dim=1))
    return loss if batch.weight == 1.0 else loss * batch.weight


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


def patience_exhausted(scores: list, patience: int) -> bool:
    """True once the last `patience` scores brought no new best (early stopping on validation scores).

    The best is the first maximum: an epoch that only ties it does not count as an improvement.
    """
    return len(scores) - 1 - int(np.argmax(scores)) >= patience if scores else False


def fit(engine, sampler: BatchSampler, epochs: int, lr: float, desc: str = "train", progress: bool = True,
        on_epoch: Callable | None = None, *, distributed: bool = False, first_epoch: int = 0,
        optimizer_state: dict | None = None, after_epoch: Callable | None = None,
        stop: Callable | None = None) -> list[EpochLog]:
    """Train `engine` with a fresh NAdam for at most `epochs` epochs; returns per-epoch loss and time.

    `distributed`: the sampler yields this process's share of each global batch; the shares' gradients
    (and losses) are summed over the processes (torch.distributed all_reduce) before every step, so each
    process takes the same step as one process on the global batch. `first_epoch` and
    `optimizer_state` resume a checkpointed run; `after_epoch(engine, optimizer, epoch, logs)` is called
    after every epoch (checkpointing). `stop(logs) -> bool`, asked after every epoch (after `on_epoch`, whose
    metrics the logs hold), ends training early (validation patience).
    """
    opt = torch.optim.NAdam(engine.parameters(), lr=lr)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    params = list(engine.parameters())
    logs = []
    bar = tqdm(total=(epochs - first_epoch) * len(sampler), desc=desc, disable=not progress, leave=False,
               unit="batch")
    for ep in range(first_epoch, epochs):
        t0, total, n = time.perf_counter(), 0.0, 0
        for batch in sampler.epoch():
            opt.zero_grad(set_to_none=True)
            loss = batch_loss(engine, batch) if batch.rows.shape[0] else torch.zeros((), device=engine.device)
            if loss.requires_grad:
                loss.backward()
            if distributed:
                loss = all_reduce_gradients(params, loss)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{desc}: training diverged, the loss became {loss.item()} in epoch "
                                       f"{ep + 1} (try a lower --lr); nothing was written")
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
        if after_epoch is not None:
            after_epoch(engine, opt, ep + 1, logs)
        if stop is not None and stop(logs):
            break
    bar.close()
    return logs


def all_reduce_gradients(params: list, loss: torch.Tensor) -> torch.Tensor:
    """Sum every parameter's gradient and the loss over the processes (one flat all_reduce)."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads] + [loss.detach().reshape(1)])
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g)
        offset += g.numel()
    return flat[-1]


def train_elsa(X, dim: int, epochs: int = 10, batch_size: int = 128, lr: float = 0.1, seed: int = 42,
               max_output: int | None = None, progress: bool = True, on_epoch: Callable | None = None,
               logs: list | None = None, *, device: str | torch.device = "cpu", distributed: bool = False,
               checkpoint: str | None = None, resume: bool = False, stop: Callable | None = None) -> np.ndarray:
    """Train dense ELSA; returns Â (items x dim, float32, unit rows).

    `on_epoch(engine, log) -> dict` is called after every epoch (e.g. validation metrics);
    per-epoch logs are appended to `logs` when given. `device`: cpu, cuda or auto. `distributed`:
    data-parallel over an initialised torch.distributed process group (see `trainer/distributed.py`).
    `checkpoint`: a file written atomically after every epoch (rank 0 only); `resume` continues from it.
    `stop(logs) -> bool` ends training early (see `fit`).
    """
    from .checkpoint import Checkpointer

    if dim <= 0 or epochs <= 0:
        raise InputError("dim and epochs must be positive")
    X = check_interactions(X)
    device = resolve_device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    engine = DenseEngine(xavier_uniform(X.shape[1], dim, gen), device=device)
    rng = np.random.default_rng(seed)
    sampler = BatchSampler(X, batch_size, max_output, rng, shard=process_shard(distributed))
    ckpt = Checkpointer(checkpoint, {"model": "elsa", "items": X.shape[1], "users": X.shape[0], "nnz": int(X.nnz),
                                     "dim": dim, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                                     "max_output": max_output}, rng)
    start, opt_state = 0, None
    if resume and ckpt.exists():
        state = ckpt.load()
        with torch.no_grad():
            engine.weight.copy_(torch.from_numpy(state.arrays["weight"]))
        start, opt_state = state.meta["epoch"], state.optimizer_state(list(engine.parameters()))
        epoch_logs = [EpochLog(**e) for e in state.meta["logs"]]
    else:
        epoch_logs = []

    def save(eng, opt, epoch, new_logs):
        ckpt.save({"epoch": epoch, "logs": [vars(e) for e in epoch_logs + new_logs]},
                  {"weight": eng.weight.detach().cpu().numpy()}, opt)

    epoch_logs += fit(engine, sampler, epochs, lr, desc=f"ELSA d={dim}", progress=progress, on_epoch=on_epoch,
                      distributed=distributed, first_epoch=start, optimizer_state=opt_state,
                      after_epoch=save if checkpoint else None, stop=stop)
    if logs is not None:
        logs.extend(epoch_logs)
    return engine.embeddings().astype(np.float32)


def process_shard(distributed: bool) -> tuple[int, int]:
    """(rank, world size) of this process in the torch.distributed group; (0, 1) when not distributed."""
    if not distributed:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise InputError("distributed training needs an initialised process group: launch with torchrun "
                         "(see spidx.trainer.distributed)")
    return dist.get_rank(), dist.get_world_size()


def elsa_scores(embeddings, history: sp.csr_matrix) -> np.ndarray:
    """Raw ELSA scores x Â Âᵀ (users x items) for dense or CSR Â; rank with seen items masked."""
    u = history @ embeddings
    s = u @ embeddings.T
    return np.asarray(s.todense() if sp.issparse(s) else s, dtype=np.float32)
