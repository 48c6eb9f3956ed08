"""The one row-wise top-k: keep the k largest-magnitude entries of every row of a matrix.

Used for post-hoc sparsification of dense embeddings, pruned EASE and cutting sparse embeddings to
fewer non-zeros. Ties break towards the smaller column, as in `ranking.topk`.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .ranking import topk


def row_topk(matrix, k: int, renormalise: bool = False, chunk_rows: int = 4096) -> sp.csr_matrix:
    """Keep the `k` largest |values| of each row.

    Parameters
    ----------
    matrix : ndarray or scipy.sparse matrix, shape (n, d)
        Dense or sparse rows.
    k : int
        Entries kept per row (rows with fewer non-zeros keep all of them).
    renormalise : bool
        Scale every kept row to unit L2 norm (embeddings); False keeps the values (pruned EASE).
    chunk_rows : int
        Dense rows handled at once (bounds temporary memory).

    Returns
    -------
    scipy.sparse.csr_matrix
        float32, sorted column indices, no explicit zeros.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InputError(f"nnz must be a positive integer, got {k!r}")
    k = int(k)
    if sp.issparse(matrix):
        out = _sparse_row_topk(sp.csr_matrix(matrix, dtype=np.float32), k)
    else:
        dense = np.asarray(matrix)
        if dense.ndim != 2:
            raise InputError(f"matrix must be 2-D, got shape {dense.shape}")
        n, d = dense.shape
        keep = min(k, d)
        blocks = []
        for s in range(0, n, chunk_rows):
            block = np.asarray(dense[s:s + chunk_rows], dtype=np.float32)
            cols, _ = topk(np.abs(block), keep)
            vals = np.take_along_axis(block, cols, axis=1)
            blocks.append((cols, vals))
        cols = np.vstack([c for c, _ in blocks]) if blocks else np.empty((0, keep), np.int64)
        vals = np.vstack([v for _, v in blocks]) if blocks else np.empty((0, keep), np.float32)
        out = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(n + 1, dtype=np.int64) * keep),
                            shape=(n, d), dtype=np.float32)
    if not np.all(np.isfinite(out.data)):
        raise InputError("matrix contains NaN or infinite values")
    if renormalise:
        norms = np.sqrt(np.bincount(np.repeat(np.arange(out.shape[0]), np.diff(out.indptr)),
                                    weights=out.data.astype(np.float64) ** 2, minlength=out.shape[0]))
        norms[norms == 0] = 1.0
        out.data /= np.repeat(norms, np.diff(out.indptr)).astype(np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _sparse_row_topk(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    m = m.copy()
    m.sum_duplicates()
    lengths = np.diff(m.indptr)
    if lengths.max(initial=0) <= k:
        return m
    row_of = np.repeat(np.arange(m.shape[0]), lengths)
    order = np.lexsort((m.indices, -np.abs(m.data), row_of))
    rank = np.arange(m.nnz) - np.repeat(m.indptr[:-1], lengths)
    keep = order[rank < k]
    return sp.csr_matrix((m.data[keep], (row_of[keep], m.indices[keep])), shape=m.shape, dtype=np.float32)
