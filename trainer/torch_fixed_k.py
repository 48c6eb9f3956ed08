"""Fixed-k ELSA products in plain torch: the fixed-k engine on any device (CUDA included).

Same layout and maths as the numba kernels (`kernels.py`, wrapped in `fixed_k.py`): Â (items x d) with
exactly k non-zeros per row is held as `cols` (items x k, int64 dimension ids) and `vals` (items x k).
  U = X_in Â_in    : every (user, history item, slot) entry is added at U[user, cols[item, slot]]
                     (`index_add`, O(batch nnz * k) memory, no dense items x d matrix);
  Y = U Â_outᵀ     : Y[:, o] = sum_t vals[o, t] * U[:, cols[o, t]] is one "bag" per output item, i.e.
                     `embedding_bag(cols_out, Uᵀ, per_sample_weights=vals_out, mode="sum")`.
Both are ordinary differentiable torch ops, so autograd gives the gradient to `vals` (and to nothing
else: the support is fixed within a phase). On CPU the numba engine is faster (bench/gpu_check.py
measures both in one process); this one exists for GPUs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def user_vectors(vals: torch.Tensor, cols: torch.Tensor, indptr: torch.Tensor, items: torch.Tensor,
                 d: int) -> torch.Tensor:
    """U = X Â (batch x d) for a binary CSR batch given as (`indptr`, `items`) tensors on `vals`' device."""
    n_rows = indptr.numel() - 1
    row_of_entry = torch.repeat_interleave(torch.arange(n_rows, device=vals.device), indptr.diff())
    flat = (row_of_entry[:, None] * d + cols[items]).reshape(-1)
    u = torch.zeros(n_rows * d, dtype=vals.dtype, device=vals.device)
    return u.index_add(0, flat, vals[items].reshape(-1)).view(n_rows, d)


def scores(vals: torch.Tensor, cols: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Y = U Â_outᵀ (batch x n_out) for Â_out given by `vals`, `cols` (n_out x k)."""
    return F.embedding_bag(cols, u.t().contiguous(), per_sample_weights=vals, mode="sum").t()


def elsa_raw_scores(vals: torch.Tensor, cols: torch.Tensor, indptr: torch.Tensor, items: torch.Tensor, d: int,
                    out_rows: torch.Tensor | None = None) -> torch.Tensor:
    """x Â Â_outᵀ for the batch (batch x n_out); the torch twin of `fixed_k.elsa_raw_scores`.

    `items` (history item ids, CSR order) index the rows of (`cols`, `vals`); `out_rows` selects the
    output items (all items when None). Differentiable in `vals`.
    """
    u = user_vectors(vals, cols, indptr, items, d)
    if out_rows is None:
        return scores(vals, cols, u)
    return scores(vals[out_rows], cols[out_rows], u)
