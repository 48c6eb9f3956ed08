"""Compressed ELSA: ELSA whose item rows keep only their top-k entries, pruned gradually.

Each phase starts from a row-wise top-k support of the current Â and either rewinds the surviving
weights to their initial values (lottery-ticket "restarting", the paper's best) or keeps the
current normalised values; every phase gets a fresh NAdam. Within a phase the support is fixed.
Phases with large k train on a dense masked matrix (fast BLAS); once rows are sparse enough the
fixed-k engine does O(batch * items * k) work, so training gets cheaper as k falls.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from spidx.errors import InputError

from .elsa import BatchSampler, DenseEngine, SparseEngine, check_interactions, fit, xavier_uniform
from .schedules import Phase, schedule

# Use the fixed-k engine once k <= dim / SPARSE_ENGINE_RATIO: on ML-1M (d=4096, batch 256, 2 cores) a batch
# takes 0.53 s dense at any k, and 0.43 / 0.22 / 0.11 / 0.035 s sparse at k = 1910 / 1024 / 512 / 128.
SPARSE_ENGINE_RATIO = 2


def topk_support(engine, k: int) -> np.ndarray:
    """Column ids (items x k, sorted per row) of each row's k largest |Â| entries."""
    if isinstance(engine, SparseEngine):
        vals = engine.vals.detach().abs()
        if k >= vals.shape[1]:
            return engine.cols.copy()
        pick = torch.topk(vals, k, dim=1).indices.numpy()
        cols = np.take_along_axis(engine.cols, pick, axis=1)
    else:
        w = engine.weight.detach()
        if engine.mask is not None:
            w = w * engine.mask
        cols = torch.topk(w.abs(), k, dim=1).indices.numpy()
    return np.sort(cols, axis=1).astype(np.int32)


def current_values(engine, cols: np.ndarray) -> torch.Tensor:
    """The current normalised Â at the support `cols` (a subset of the engine's support)."""
    if isinstance(engine, SparseEngine):
        a = F.normalize(engine.vals.detach(), dim=1)
        return torch.gather(a, 1, torch.from_numpy(_positions_in_rows(engine.cols, cols)))
    a = torch.from_numpy(engine.embeddings())
    return torch.gather(a, 1, torch.from_numpy(cols).long())


def _positions_in_rows(row_cols: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of `wanted[i]` inside `row_cols[i]` (both sorted per row, wanted a subset)."""
    n, width = row_cols.shape
    offset = (np.arange(n, dtype=np.int64) * (int(row_cols.max()) + 1))[:, None]
    flat = np.searchsorted((row_cols + offset).ravel(), (wanted + offset).ravel())
    return flat.reshape(wanted.shape) - np.arange(n, dtype=np.int64)[:, None] * width


def make_engine(cols: np.ndarray, values: torch.Tensor, dim: int):
    """Dense masked engine for large k, fixed-k engine once rows are sparse enough."""
    n, k = cols.shape
    if k * SPARSE_ENGINE_RATIO <= dim:
        return SparseEngine(cols, values, dim)
    rows = torch.arange(n)[:, None].expand(n, k)
    idx = (rows, torch.from_numpy(cols).long())
    weights = torch.zeros(n, dim).index_put(idx, values)
    mask = torch.zeros(n, dim).index_put(idx, torch.ones(n, k))
    return DenseEngine(weights, mask)


def restart_phase(engine, init: torch.Tensor, k: int, rewind: bool, dim: int):
    """Next phase's engine: top-k support of the current Â, rewound to `init` or kept as is."""
    cols = topk_support(engine, k)
    if rewind:
        values = torch.gather(init, 1, torch.from_numpy(cols).long())
    else:
        values = current_values(engine, cols)
    return make_engine(cols, values, dim)


def train_compressed_elsa(X, dim: int = 4096, targets=(32,), schedule_name: str = "exponential",
                          rewind: bool = True, epochs: int = 10, batch_size: int = 256, lr: float = 0.1,
                          seed: int = 42, max_output: int | None = None, progress: bool = True,
                          phase_log: list | None = None, select=None,
                          final_epochs: int | None = None, callback=None) -> dict[int, sp.csr_matrix]:
    """Train Compressed ELSA; returns Â (CSR, exactly k non-zeros per row, unit rows) per target k.

    With the exponential schedule one pruning trajectory serves every target: its first phases do
    not depend on the target, so each target branches off where its own schedule would end
    (identical to a separate run for that target, at a fraction of the cost). Other schedules
    train each target separately. `phase_log` (a list) receives one dict per phase.
    `select(embeddings) -> float` (e.g. validation nDCG) keeps, per target, the final-phase epoch that
    scores best instead of the last one. `callback(epoch, seconds, loss)` is called after every epoch
    (epochs counted over all phases).
    """
    X = check_interactions(X)
    targets = sorted({int(k) for k in targets}, reverse=True)
    if not targets:
        raise InputError("give at least one target nnz")
    for k in targets:
        schedule(schedule_name, dim, k, epochs, final_epochs)  # validates
    log = phase_log if phase_log is not None else []
    gen = torch.Generator().manual_seed(seed)
    init = xavier_uniform(X.shape[1], dim, gen)
    rng = np.random.default_rng(seed)
    sampler = BatchSampler(X, batch_size, max_output, rng)
    torch.manual_seed(seed)

    if schedule_name == "exponential":
        plans = {k: schedule(schedule_name, dim, k, epochs, final_epochs) for k in targets}
        trajectory = plans[targets[-1]][:-1]
        branch_at = {len(plans[k]) - 1: k for k in targets}
    total = sum(p.epochs for k in targets for p in schedule(schedule_name, dim, k, epochs, final_epochs)) \
        if schedule_name != "exponential" else len(trajectory) + sum(plans[k][-1].epochs for k in targets)
    bar = tqdm(total=total, desc=f"Compressed ELSA d={dim}", unit="epoch", disable=not progress)

    def run_phase(engine, phase: Phase, label: str):
        """Train one phase; returns the embeddings (of the best epoch when selecting a final phase)."""
        t0 = time.perf_counter()
        best = {"score": -np.inf, "epoch": phase.epochs, "embeddings": None}

        def keep_best(eng, epoch_log):
            emb = eng.embeddings()
            score = select(emb)
            if score > best["score"]:
                best.update(score=score, epoch=epoch_log.epoch, embeddings=emb)
            return {"score": score}

        final = label.startswith("final")

        def on_epoch(eng, epoch_log):
            epochs_done[0] += 1
            if callback is not None:
                callback(epochs_done[0], epoch_log.seconds, epoch_log.loss)
            return keep_best(eng, epoch_log) if final and select is not None else {}

        logs = fit(engine, sampler, phase.epochs, lr, desc=f"{label} k={phase.nnz}", progress=progress,
                   on_epoch=on_epoch)
        entry = {"phase": label, "nnz": phase.nnz, "epochs": phase.epochs,
                 "engine": "sparse" if isinstance(engine, SparseEngine) else "dense",
                 "seconds": time.perf_counter() - t0, "loss": logs[-1].loss}
        if best["embeddings"] is not None:
            entry.update(best_epoch=best["epoch"], scores=[round(e.metrics["score"], 5) for e in logs])
        log.append(entry)
        bar.update(phase.epochs)
        bar.set_postfix(k=phase.nnz, loss=f"{entry['loss']:.3e}", engine=entry["engine"])
        return best["embeddings"] if best["embeddings"] is not None else engine.embeddings()

    results, epochs_done = {}, [0]
    if schedule_name == "exponential":
        engine = DenseEngine(init)
        for i, phase in enumerate(trajectory + [None]):
            if i in branch_at:
                k = branch_at[i]
                final = restart_phase(engine, init, k, rewind, dim)
                results[k] = run_phase(final, plans[k][-1], f"final k={k}")
            if phase is None or i >= max(branch_at):
                break
            if i > 0:
                engine = restart_phase(engine, init, phase.nnz, rewind, dim)
            run_phase(engine, phase, f"phase {i}")
    else:
        for k in targets:
            engine = DenseEngine(init)
            phases = schedule(schedule_name, dim, k, epochs, final_epochs)
            for i, phase in enumerate(phases):
                if i > 0 or phase.nnz < dim:
                    engine = restart_phase(engine, init, phase.nnz, rewind, dim)
                results[k] = run_phase(engine, phase, f"final k={k}" if i == len(phases) - 1 else f"phase {i}")
    bar.close()
    return {k: _as_csr(results[k]) for k in targets}


def _as_csr(emb) -> sp.csr_matrix:
    """CSR float32 with sorted indices (a dense engine's masked rows hold exact zeros off the support)."""
    m = sp.csr_matrix(emb, dtype=np.float32)
    m.eliminate_zeros()
    m.sort_indices()
    return m
