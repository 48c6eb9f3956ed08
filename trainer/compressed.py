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

from .checkpoint import Checkpointer
from .distributed import agree_on_support
from .elsa import (BatchSampler, DenseEngine, SparseEngine, check_interactions, fit, patience_exhausted, process_shard,
                   resolve_device, xavier_uniform)
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
        pick = torch.topk(vals, k, dim=1).indices.cpu().numpy()
        cols = np.take_along_axis(engine.cols, pick, axis=1)
    else:
        w = engine.weight.detach()
        if engine.mask is not None:
            w = w * engine.mask
        cols = torch.topk(w.abs(), k, dim=1).indices.cpu().numpy()
    return np.sort(cols, axis=1).astype(np.int32)


def current_values(engine, cols: np.ndarray) -> torch.Tensor:
    """The current normalised Â at the support `cols` (a subset of the engine's support)."""
    if isinstance(engine, SparseEngine):
        a = F.normalize(engine.vals.detach(), dim=1)
        return torch.gather(a, 1, torch.from_numpy(_positions_in_rows(engine.cols, cols)).to(engine.device))
    with torch.no_grad():
        a = F.normalize(engine._masked(), dim=1)
    return torch.gather(a, 1, torch.from_numpy(cols).to(engine.device, torch.int64))


def _positions_in_rows(row_cols: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions of `wanted[i]` inside `row_cols[i]` (both sorted per row, wanted a subset)."""
    n, width = row_cols.shape
    offset = (np.arange(n, dtype=np.int64) * (int(row_cols.max()) + 1))[:, None]
    flat = np.searchsorted((row_cols + offset).ravel(), (wanted + offset).ravel())
    return flat.reshape(wanted.shape) - np.arange(n, dtype=np.int64)[:, None] * width


def make_engine(cols: np.ndarray, values: torch.Tensor, dim: int, device: torch.device | str = "cpu",
                backend: str | None = None):
    """Dense masked engine for large k, fixed-k engine (`backend`: numba / torch) once rows are sparse enough."""
    n, k = cols.shape
    if k * SPARSE_ENGINE_RATIO <= dim:
        return SparseEngine(cols, values, dim, device=device, backend=backend)
    values = values.to(device)
    rows = torch.arange(n, device=device)[:, None].expand(n, k)
    idx = (rows, torch.from_numpy(cols).to(device, torch.int64))
    weights = torch.zeros(n, dim, device=device).index_put(idx, values)
    mask = torch.zeros(n, dim, device=device).index_put(idx, torch.ones(n, k, device=device))
    return DenseEngine(weights, mask, device=device)


def restart_phase(engine, init: torch.Tensor, k: int, rewind: bool, dim: int, backend: str | None = None):
    """Next phase's engine (on the same device): top-k support of the current Â, rewound to `init` or kept.

    Under torch.distributed the support is rank 0's, checked equal on every process.
    """
    cols = agree_on_support(topk_support(engine, k), engine.device)
    if rewind:
        values = torch.gather(init, 1, torch.from_numpy(cols).long())
    else:
        values = current_values(engine, cols)
    return make_engine(cols, values, dim, engine.device, backend)


def engine_state(engine) -> dict:
    """The arrays that rebuild `engine` exactly (checkpoints)."""
    if isinstance(engine, SparseEngine):
        return {"engine.cols": engine.cols, "engine.vals": engine.vals.detach().cpu().numpy()}
    state = {"engine.weight": engine.weight.detach().cpu().numpy()}
    if engine.mask is not None:
        n = engine.mask.shape[0]
        state["engine.mask_cols"] = engine.mask.nonzero()[:, 1].reshape(n, -1).cpu().numpy().astype(np.int32)
    return state


def engine_from_state(arrays: dict, dim: int, device, backend: str | None):
    """Inverse of `engine_state`."""
    if "engine.cols" in arrays:
        return SparseEngine(arrays["engine.cols"], torch.from_numpy(arrays["engine.vals"]), dim, device, backend)
    weight = torch.from_numpy(arrays["engine.weight"])
    if "engine.mask_cols" not in arrays:
        return DenseEngine(weight, device=device)
    cols = torch.from_numpy(arrays["engine.mask_cols"]).long()
    mask = torch.zeros_like(weight).scatter_(1, cols, 1.0)
    return DenseEngine(weight, mask, device=device)


def train_compressed_elsa(X, dim: int = 4096, targets=(32,), schedule_name: str = "exponential",
                          rewind: bool = True, epochs: int = 10, batch_size: int = 256, lr: float = 0.1,
                          seed: int = 42, max_output: int | None = None, progress: bool = True,
                          phase_log: list | None = None, select=None, patience: int | None = None,
                          final_epochs: int | dict | None = None, callback=None, *,
                          device: str | torch.device = "cpu",
                          fixed_k_backend: str | None = None, distributed: bool = False,
                          checkpoint: str | None = None, resume: bool = False) -> dict[int, sp.csr_matrix]:
    """Train Compressed ELSA; returns Â (CSR, exactly k non-zeros per row, unit rows) per target k.

    With the exponential schedule one pruning trajectory serves every target: its first phases do
    not depend on the target, so each target branches off where its own schedule would end
    (identical to a separate run for that target, at a fraction of the cost). Other schedules
    train each target separately. `phase_log` (a list) receives one dict per phase.
    `select(embeddings) -> dict` (validation metrics, at least "ndcg@100") keeps, per target, the final-phase
    epoch with the best nDCG@100 instead of the last one; with `patience` a final phase also stops once that
    many epochs in a row brought no new best (its `final_epochs` are then a maximum). The final phase's log
    entry records `best_epoch`, `scores` (nDCG@100 per epoch) and `validation` (every metric per epoch).
    `callback(epoch, seconds, loss)` is called after every epoch (epochs counted over all phases).
    `final_epochs`: epochs at each final k (default `epochs`), or {k: epochs} per target.
    `device`: cpu, cuda or auto; `fixed_k_backend`: numba (CPU default) or torch (any device).
    `distributed`: data-parallel over an initialised torch.distributed group (`trainer/distributed.py`).
    `checkpoint`: a file rewritten atomically after every phase (rank 0 only); with `resume` a run
    continues after the last finished phase (the same result as an uninterrupted run).
    """
    X = check_interactions(X)
    targets = sorted({int(k) for k in targets}, reverse=True)
    if not targets:
        raise InputError("give at least one target nnz")
    per_k = {int(k): int(v) for k, v in final_epochs.items()} if isinstance(final_epochs, dict) else None
    if per_k is not None and set(per_k) != set(targets):
        raise InputError(f"per-k final epochs must name exactly the targets {targets}")

    def plan(k):
        return schedule(schedule_name, dim, k, epochs, per_k[k] if per_k is not None else final_epochs)

    for k in targets:
        plan(k)  # validates
    device = resolve_device(device)
    log = phase_log if phase_log is not None else []
    gen = torch.Generator().manual_seed(seed)
    init = xavier_uniform(X.shape[1], dim, gen)
    rng = np.random.default_rng(seed)
    sampler = BatchSampler(X, batch_size, max_output, rng, shard=process_shard(distributed))
    torch.manual_seed(seed)
    ckpt = Checkpointer(checkpoint, {
        "model": "compressed-elsa", "items": X.shape[1], "users": X.shape[0], "nnz": int(X.nnz), "dim": dim,
        "targets": targets, "schedule": schedule_name, "rewind": rewind, "epochs": epochs,
        "final_epochs": {str(k): v for k, v in per_k.items()} if per_k is not None else final_epochs,
        "batch_size": batch_size, "lr": lr, "seed": seed, "max_output": max_output,
        "selects": select is not None, "patience": patience if select is not None else None}, rng)
    restored = ckpt.load() if resume and ckpt.exists() else None
    results = {}
    if restored is not None:
        log.extend(restored.meta["log"])
        for k in restored.meta["finished"]:
            a = restored.arrays
            results[k] = sp.csr_matrix((a[f"result.{k}.data"], a[f"result.{k}.indices"], a[f"result.{k}.indptr"]),
                                       shape=(X.shape[1], dim))
    steps_done = restored.meta["steps"] if restored is not None else 0

    if schedule_name == "exponential":
        plans = {k: plan(k) for k in targets}
        trajectory = plans[targets[-1]][:-1]
        branch_at = {}  # trajectory position -> the targets whose final phase branches off there
        for k in targets:  # (several when the schedule is short, e.g. one epoch per phase)
            branch_at.setdefault(len(plans[k]) - 1, []).append(k)
    total = sum(p.epochs for k in targets for p in plan(k)) \
        if schedule_name != "exponential" else len(trajectory) + sum(plans[k][-1].epochs for k in targets)
    bar = tqdm(total=total, desc=f"Compressed ELSA d={dim}", unit="epoch", disable=not progress)

    def run_phase(engine, phase: Phase, label: str):
        """Train one phase; returns the embeddings (of the best epoch when selecting a final phase)."""
        t0 = time.perf_counter()
        best = {"score": -np.inf, "epoch": phase.epochs, "embeddings": None}
        validated = label.startswith("final") and select is not None

        def keep_best(eng, epoch_log):
            emb = eng.embeddings()
            metrics = {m: float(v) for m, v in select(emb).items()}
            if metrics["ndcg@100"] > best["score"]:
                best.update(score=metrics["ndcg@100"], epoch=epoch_log.epoch, embeddings=emb)
            return metrics

        def on_epoch(eng, epoch_log):
            epochs_done[0] += 1
            if callback is not None:
                callback(epochs_done[0], epoch_log.seconds, epoch_log.loss)
            return keep_best(eng, epoch_log) if validated else {}

        def stalled(logs):
            return patience_exhausted([e.metrics["ndcg@100"] for e in logs], patience)

        logs = fit(engine, sampler, phase.epochs, lr, desc=f"{label} k={phase.nnz}", progress=progress,
                   on_epoch=on_epoch, distributed=distributed, stop=stalled if validated and patience else None)
        entry = {"phase": label, "nnz": phase.nnz, "epochs": len(logs),
                 "engine": "sparse" if isinstance(engine, SparseEngine) else "dense",
                 "seconds": time.perf_counter() - t0, "loss": logs[-1].loss}
        if validated:
            entry.update(best_epoch=best["epoch"], max_epochs=phase.epochs,
                         scores=[round(e.metrics["ndcg@100"], 5) for e in logs],
                         validation=[{"epoch": e.epoch, **e.metrics} for e in logs])
        log.append(entry)
        bar.update(phase.epochs)
        bar.set_postfix(k=phase.nnz, loss=f"{entry['loss']:.3e}", engine=entry["engine"])
        return best["embeddings"] if best["embeddings"] is not None else engine.embeddings()

    epochs_done = [0]  # epochs trained in this run, over all phases (for `callback`)
    step = 0  # phases started so far; phases before `steps_done` were finished by the checkpointed run

    def pending(phase: Phase) -> bool:
        nonlocal step
        step += 1
        if step <= steps_done:
            bar.update(phase.epochs)
        return step > steps_done

    def resumed(engine):
        """The checkpoint's engine at the first phase after it, `engine` otherwise."""
        nonlocal restored
        if restored is None:
            return engine
        state, restored = restored, None
        return engine_from_state(state.arrays, dim, device, fixed_k_backend)

    def save(engine):
        arrays = engine_state(engine)
        for k, m in results.items():
            arrays.update({f"result.{k}.data": m.data, f"result.{k}.indices": m.indices,
                           f"result.{k}.indptr": m.indptr})
        ckpt.save({"steps": step, "finished": sorted(results), "log": log}, arrays)

    def restart(engine, k):
        return restart_phase(engine, init, k, rewind, dim, fixed_k_backend)

    if schedule_name == "exponential":
        engine = DenseEngine(init, device=device)
        for i, phase in enumerate(trajectory + [None]):
            for k in branch_at.get(i, ()):
                if pending(plans[k][-1]):
                    engine = resumed(engine)
                    results[k] = _as_csr(run_phase(restart(engine, k), plans[k][-1], f"final k={k}"))
                    save(engine)  # the trajectory goes on from `engine`, not from the branch
            if phase is None or i >= max(branch_at):
                break
            if pending(phase):
                engine = resumed(engine)
                if i > 0:
                    engine = restart(engine, phase.nnz)
                run_phase(engine, phase, f"phase {i}")
                save(engine)
    else:
        engine = None
        for k in targets:
            phases = plan(k)
            for i, phase in enumerate(phases):
                if not pending(phase):
                    continue
                if i == 0:  # each target's run starts from the dense init
                    engine, restored = DenseEngine(init, device=device), None
                else:
                    engine = resumed(engine)
                if i > 0 or phase.nnz < dim:
                    engine = restart(engine, phase.nnz)
                emb = run_phase(engine, phase, f"final k={k}" if i == len(phases) - 1 else f"phase {i}")
                if i == len(phases) - 1:
                    results[k] = _as_csr(emb)
                save(engine)
    bar.close()
    return {k: results[k] for k in targets}


def _as_csr(emb) -> sp.csr_matrix:
    """CSR float32 with sorted indices (a dense engine's masked rows hold exact zeros off the support)."""
    m = sp.csr_matrix(emb, dtype=np.float32)
    m.eliminate_zeros()
    m.sort_indices()
    return m
