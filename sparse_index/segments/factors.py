"""Dominant factors of items and the fingerprint that ties segments to an item matrix."""
from __future__ import annotations

import hashlib

import numpy as np
import scipy.sparse as sp

from ..ids import normalize_ids


def as_csr(A) -> sp.csr_matrix:
    """Items x d matrix as float32 CSR with sorted indices and explicit zeros removed."""
    m = sp.csr_matrix(A, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    m.sort_indices()
    return m


def matrix_fingerprint(A, item_ids) -> str:
    """Short hash of the item matrix and its ids (ties a segments file to the index it was built on)."""
    m = as_csr(A)
    h = hashlib.sha256()
    h.update(np.asarray(m.shape, np.int64).tobytes())
    h.update(m.indptr.astype(np.int64).tobytes())
    h.update(m.indices.astype(np.int64).tobytes())
    h.update(m.data.astype(np.float32).tobytes())
    ids = normalize_ids(item_ids)
    h.update(ids.tobytes() if ids.dtype.kind in "iu" else "\x00".join(ids.astype(str)).encode())
    return h.hexdigest()[:16]


def dominant_factors(A) -> tuple:
    """(dims, signs) per item: dims[i] = argmax_j |A_ij| (lowest j on ties), signs[i] in {+1, -1}.

    Items whose row is all zero get dims = -1, signs = 0.
    """
    m = as_csr(A)
    n = m.shape[0]
    dims = np.full(n, -1, np.int64)
    signs = np.zeros(n, np.int8)
    lengths = np.diff(m.indptr)
    rows = np.flatnonzero(lengths > 0)
    if len(rows) == 0:
        return dims, signs
    absval = np.abs(m.data)
    # per-row argmax of |value| with the lowest column on ties: sort by (row, -|v|, col)
    row_of = np.repeat(np.arange(n), lengths)
    order = np.lexsort((m.indices, -absval, row_of))
    first = m.indptr[rows]  # positions in `order` where each non-empty row starts
    pick = order[first]
    dims[rows] = m.indices[pick]
    signs[rows] = np.where(m.data[pick] < 0, -1, 1)
    return dims, signs


def factor_label(dim: int, sign: int) -> str:
    return f"{'+' if sign >= 0 else '-'}{int(dim)}"
