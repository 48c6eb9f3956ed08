"""Numba kernels for ELSA products with row-sparse item embeddings in fixed-k layout.

An item matrix Â (items x d) with exactly k non-zeros per row is stored as two (items x k) arrays:
`cols` (dimension ids) and `vals`. The kernels compute, for a batch of users,
  U = X_in Â_in        (batch x d)        -- `user_vectors`
  Yᵀ = Â_out Uᵀ        (n_out x batch)    -- `scores_t`
and their gradients, in O(nnz) work: cost falls linearly with k, unlike a dense I x d product.
"""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(parallel=True, cache=True, fastmath=True)
def user_vectors(indptr, indices, cols, vals, d):
    """U[r] = sum of the rows of Â listed in row r of a binary CSR batch (row-parallel)."""
    n = len(indptr) - 1
    k = cols.shape[1]
    out = np.zeros((n, d), dtype=np.float32)
    for r in nb.prange(n):
        for p in range(indptr[r], indptr[r + 1]):
            i = indices[p]
            for t in range(k):
                out[r, cols[i, t]] += vals[i, t]
    return out


@nb.njit(parallel=True, cache=True, fastmath=True)
def user_vectors_grad(t_indptr, t_indices, cols, grad_u):
    """dL/dvals for `user_vectors`, given the batch in CSC form (item -> rows), item-parallel."""
    n_items, k = cols.shape
    out = np.zeros((n_items, k), dtype=np.float32)
    for i in nb.prange(n_items):
        for p in range(t_indptr[i], t_indptr[i + 1]):
            r = t_indices[p]
            for t in range(k):
                out[i, t] += grad_u[r, cols[i, t]]
    return out


@nb.njit(parallel=True, cache=True, fastmath=True)
def scores_t(cols, vals, u_t):
    """Yᵀ[o] = sum_t vals[o, t] * Uᵀ[cols[o, t]]  (n_out x batch), output-row-parallel."""
    n_out, k = cols.shape
    b = u_t.shape[1]
    out = np.zeros((n_out, b), dtype=np.float32)
    for o in nb.prange(n_out):
        for t in range(k):
            v = vals[o, t]
            src = u_t[cols[o, t]]
            for c in range(b):
                out[o, c] += v * src[c]
    return out


@nb.njit(parallel=True, cache=True, fastmath=True)
def scores_t_grad_vals(cols, u_t, grad_y_t):
    """dL/dvals[o, t] = <dYᵀ[o], Uᵀ[cols[o, t]]>."""
    n_out, k = cols.shape
    b = u_t.shape[1]
    out = np.zeros((n_out, k), dtype=np.float32)
    for o in nb.prange(n_out):
        g = grad_y_t[o]
        for t in range(k):
            src = u_t[cols[o, t]]
            acc = np.float32(0.0)
            for c in range(b):
                acc += g[c] * src[c]
            out[o, t] = acc
    return out


@nb.njit(parallel=True, cache=True, fastmath=True)
def scores_t_grad_u(cols, vals, grad_y_t, d, n_chunks):
    """dL/dUᵀ[j] = sum over (o, t) with cols[o, t] == j of vals[o, t] * dYᵀ[o].

    Parallel over chunks of batch columns, so threads never write the same memory.
    """
    n_out, k = cols.shape
    b = grad_y_t.shape[1]
    out = np.zeros((d, b), dtype=np.float32)
    step = (b + n_chunks - 1) // n_chunks
    for ch in nb.prange(n_chunks):
        c0 = ch * step
        c1 = min(b, c0 + step)
        for o in range(n_out):
            g = grad_y_t[o]
            for t in range(k):
                v = vals[o, t]
                dst = out[cols[o, t]]
                for c in range(c0, c1):
                    dst[c] += v * g[c]
    return out
