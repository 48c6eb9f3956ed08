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


@nb.njit(cache=True)
def transpose_cols(cols, d):
    """Counting sort of the (row, slot) entries by dimension: (ptr (d+1), flat entry ids o*k + t)."""
    flat = cols.ravel()
    ptr = np.zeros(d + 1, dtype=np.int64)
    for c in flat:
        ptr[c + 1] += 1
    for j in range(d):
        ptr[j + 1] += ptr[j]
    fill = ptr[:-1].copy()
    order = np.empty(len(flat), dtype=np.int64)
    for f in range(len(flat)):
        c = flat[f]
        order[fill[c]] = f
        fill[c] += 1
    return ptr, order


@nb.njit(parallel=True, cache=True, fastmath=True)
def scores_t_grad_u(ptr, order, vals, grad_y_t):
    """dL/dUᵀ[j] = sum over entries (o, t) with cols[o, t] == j of vals[o, t] * dYᵀ[o].

    Dimension-parallel over the transposed entries (`transpose_cols`): each output row is written once.
    """
    d = len(ptr) - 1
    k = vals.shape[1]
    b = grad_y_t.shape[1]
    flat_vals = vals.ravel()
    out = np.zeros((d, b), dtype=np.float32)
    for j in nb.prange(d):
        dst = out[j]
        for p in range(ptr[j], ptr[j + 1]):
            f = order[p]
            v = flat_vals[f]
            g = grad_y_t[f // k]
            for c in range(b):
                dst[c] += v * g[c]
    return out
