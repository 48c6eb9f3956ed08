"""Gradual pruning schedules: the number of non-zeros per item row in each training phase.

A schedule is a list of `Phase(nnz, epochs)` from the dense start (nnz = d) down to the target k,
ending with `epochs` epochs at k. Following the authors' code (notes §2.2), with E epochs per
halving and n = ceil(log2(d / (2k))) halvings (the length of their `--vals` list minus one):
- exponential: phase 0 dense, phase i >= 1 keeps floor(d * 2^-(i/E + 1)) non-zeros, one epoch a
  phase, E*n phases, then E epochs at k;
- linear: k falls by step = (d - k) // (E*n) each one-epoch phase, then E epochs at k;
- step-wise: d, d/4, d/8, ..., k, E epochs each;
- constant: E epochs at k from the start.
`final_epochs` (default E) sets the epochs at k: on small data sets the final phase overfits within a
few epochs (MovieLens-1M: best validation nDCG after 2-3 epochs, see docs/results/ml1m-trainer.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from spidx.errors import InputError

SCHEDULES = ("exponential", "linear", "step", "constant")


@dataclass(frozen=True)
class Phase:
    nnz: int
    epochs: int


def _halvings(dim: int, nnz: int) -> int:
    return max(1, math.ceil(math.log2(dim / (2 * nnz)))) if dim > 2 * nnz else 1


def exponential_nnz(dim: int, phase: int, epochs: int) -> int:
    """Non-zeros of one-epoch phase `phase` of the exponential schedule (phase 0 is dense)."""
    return dim if phase == 0 else int(math.floor(dim * 2.0 ** (-(phase / epochs + 1))))


def schedule(name: str, dim: int, nnz: int, epochs: int = 10, final_epochs: int | None = None) -> list[Phase]:
    """The phases that prune rows from `dim` to `nnz` non-zeros."""
    if name not in SCHEDULES:
        raise InputError(f"unknown schedule '{name}' (choose from {', '.join(SCHEDULES)})")
    if not 0 < nnz <= dim:
        raise InputError(f"nnz must be in 1..{dim} (the dimension), got {nnz}")
    if epochs <= 0 or (final_epochs is not None and final_epochs <= 0):
        raise InputError("epochs must be positive")
    final = Phase(nnz, epochs if final_epochs is None else final_epochs)
    n = _halvings(dim, nnz)
    if name == "constant" or nnz == dim:
        return [final]
    if name == "exponential":
        phases = [Phase(max(nnz, exponential_nnz(dim, i, epochs)), 1) for i in range(epochs * n)]
    elif name == "linear":
        step = max(1, (dim - nnz) // (epochs * n))
        phases = [Phase(k, 1) for k in range(dim, nnz, -step)]
    else:  # step-wise
        stages, k = [dim], dim // 4
        while k > nnz:
            stages.append(k)
            k //= 2
        return [Phase(s, epochs) for s in stages] + [final]
    return phases + [final]
