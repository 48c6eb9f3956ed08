"""Data-parallel training over torch.distributed (launched by torchrun).

    torchrun --nproc_per_node=N $(which spidx) train DATA --out OUT --distributed [--device cuda]

Every process holds the whole item matrix (replicated weights: no memory saving per process, only
throughput). Each global batch of users is drawn identically on every process (same seed) and split
into contiguous shares; each process computes its share's loss, weighted by its share of the batch,
and the gradients are summed with one flat `all_reduce` per step (`elsa.all_reduce_gradients`), so
every process takes the step one process would take on the global batch. Explicit all_reduce instead
of DDP: the fixed-k engine's autograd functions call numba kernels that DDP's bucketing hooks gain
nothing from, and one flat reduction is simple. Pruning masks are computed on every process from its
(identical) weights; rank 0's mask is broadcast and any difference is an error (`agree_on_support`).
Backend: nccl on CUDA, gloo on CPU. Only rank 0 writes files (embeddings, checkpoints).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from spidx.errors import InputError


def init_from_env(device: str = "auto") -> tuple[int, int, str]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Returns (rank, world size, device for this process: cuda:LOCAL_RANK or cpu).
    """
    import torch.distributed as dist

    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise InputError(f"--distributed needs torchrun's environment ({', '.join(missing)} unset): "
                         "launch with `torchrun --nproc_per_node=N $(which spidx) train ... --distributed`")
    from .elsa import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), str(dev)


def is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def agree_on_support(cols: np.ndarray, device: torch.device) -> np.ndarray:
    """Rank 0's pruning support, broadcast; raises if this process decided a different one.

    The weights are identical on every process (same init, same summed gradients), so the row-wise
    top-k must be too: a difference means the processes have diverged.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return cols
    # gloo broadcasts CPU tensors, nccl CUDA tensors
    mine = torch.from_numpy(np.ascontiguousarray(cols)).to(device)
    chosen = mine.clone()
    dist.broadcast(chosen, src=0)
    differs = torch.tensor([int(not torch.equal(mine, chosen))], device=device)
    dist.all_reduce(differs)
    if differs.item():
        raise RuntimeError("data-parallel processes chose different pruning supports: their weights diverged")
    return chosen.cpu().numpy()
