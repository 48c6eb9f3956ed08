"""Autograd wrappers around the fixed-k kernels: ELSA scores from row-sparse item embeddings."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from . import kernels


class _UserVectors(torch.autograd.Function):
    """U = X Â for a binary CSR batch X and Â in fixed-k layout; gradient flows to the values."""

    @staticmethod
    def forward(ctx, vals, cols, batch: sp.csr_matrix, d: int):
        u = kernels.user_vectors(batch.indptr, batch.indices, cols, vals.detach().numpy(), d)
        ctx.batch, ctx.cols = batch, cols
        return torch.from_numpy(u)

    @staticmethod
    def backward(ctx, grad_u):
        csc = ctx.batch.tocsc()
        g = kernels.user_vectors_grad(csc.indptr, csc.indices, ctx.cols, np.ascontiguousarray(grad_u.numpy()))
        return torch.from_numpy(g), None, None, None


class _ScoresT(torch.autograd.Function):
    """Yᵀ = Â_out Uᵀ (n_out x batch); gradients to both the values and Uᵀ."""

    @staticmethod
    def forward(ctx, vals, cols, u_t):
        u_np = np.ascontiguousarray(u_t.detach().numpy())
        v_np = vals.detach().numpy()
        ctx.save_for_backward(vals, u_t)
        ctx.cols = cols
        return torch.from_numpy(kernels.scores_t(cols, v_np, u_np))

    @staticmethod
    def backward(ctx, grad_y_t):
        vals, u_t = ctx.saved_tensors
        g = np.ascontiguousarray(grad_y_t.numpy())
        u_np = np.ascontiguousarray(u_t.numpy())
        grad_vals = torch.from_numpy(kernels.scores_t_grad_vals(ctx.cols, u_np, g))
        ptr, order = kernels.transpose_cols(ctx.cols, u_np.shape[0])
        grad_u = torch.from_numpy(kernels.scores_t_grad_u(ptr, order, np.ascontiguousarray(vals.numpy()), g))
        return grad_vals, None, grad_u


def elsa_raw_scores(vals: torch.Tensor, cols: np.ndarray, batch_in: sp.csr_matrix, d: int,
                    out_rows: np.ndarray | None = None) -> torch.Tensor:
    """x Â Â_outᵀ for the batch (batch x n_out), with Â given by (`cols`, `vals`) rows.

    `batch_in` columns index the rows of (`cols`, `vals`); `out_rows` selects the output items
    (all items when None). Differentiable in `vals`.
    """
    u = _UserVectors.apply(vals, cols, batch_in, d)
    if out_rows is None:
        out_vals, out_cols = vals, cols
    else:
        out_vals, out_cols = vals[torch.from_numpy(out_rows)], cols[out_rows]
    return _ScoresT.apply(out_vals, np.ascontiguousarray(out_cols), u.t().contiguous()).t().contiguous()
