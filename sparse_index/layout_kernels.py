"""Numba kernels that lay an index out in blocks: cluster assignment and per-block bound summaries.

Unchecked like `kernels`: callers pass consistent CSR arrays (see `layout`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import value_at

SUMMARY_LEVELS = 255  # summaries store max⁺ and |min⁻| per listed dimension as u8 in units of block_unit


@njit(parallel=True, cache=True)
def nearest_centroid(indptr, indices, data, rows, centroids_t):
    """For each row r in `rows` of the CSR (indptr, indices, data), the column c maximising the dot
    product with centroids_t[:, c] (centroids_t is (d, C) float32)."""
    n_c = centroids_t.shape[1]
    out = np.empty(rows.shape[0], np.int64)
    for t in prange(rows.shape[0]):
        r = rows[t]
        acc = np.zeros(n_c, np.float32)
        for p in range(indptr[r], indptr[r + 1]):
            v = data[p]
            c_row = centroids_t[indices[p]]
            for c in range(n_c):
                acc[c] += v * c_row[c]
        out[t] = np.argmax(acc)
    return out


@njit(cache=True)
def block_summaries(block_ptr, row_ptr, row_dims, row_values, dim_scale, d, max_listed):
    """Rank-safe bound summaries of each block of consecutive rows.

    Per block: its `max_listed` dimensions of largest max |a_ij| with max⁺ and |min⁻| quantised UP
    to u8 units of block_unit; row_norm = the largest row L2 norm; rest_max = the largest |a_ij| in
    an unlisted dimension, rest_count = the most unlisted entries of one row, rest_norm = the largest
    L2 norm of a row's unlisted entries. Returns (sum_ptr, sum_dims, sum_pos, sum_neg, block_unit,
    row_norm, rest_max, rest_count, rest_norm).
    """
    nb = block_ptr.shape[0] - 1
    mx = np.zeros(d, np.float64)
    mn = np.zeros(d, np.float64)
    seen = np.zeros(d, np.bool_)
    listed = np.zeros(d, np.bool_)
    touched = np.empty(d, np.int64)
    sum_ptr = np.zeros(nb + 1, np.int64)
    cap = 0
    for b in range(nb):
        cap += min(max_listed, row_ptr[block_ptr[b + 1]] - row_ptr[block_ptr[b]])
    sum_dims = np.empty(cap, np.int64)
    sum_pos = np.empty(cap, np.uint8)
    sum_neg = np.empty(cap, np.uint8)
    block_unit = np.ones(nb, np.float32)
    row_norm = np.zeros(nb, np.float32)
    rest_max = np.zeros(nb, np.float32)
    rest_count = np.zeros(nb, np.int64)
    rest_norm = np.zeros(nb, np.float32)
    for b in range(nb):
        nt = 0
        norm = 0.0
        for i in range(block_ptr[b], block_ptr[b + 1]):
            sq = 0.0
            for p in range(row_ptr[i], row_ptr[i + 1]):
                j = np.int64(row_dims[p])
                a = np.float64(value_at(row_values, p)) * dim_scale[j]
                if not seen[j]:
                    seen[j] = True
                    touched[nt] = j
                    nt += 1
                    mx[j] = 0.0
                    mn[j] = 0.0
                mx[j] = max(mx[j], a)
                mn[j] = min(mn[j], a)
                sq += a * a
            norm = max(norm, np.sqrt(sq))
        row_norm[b] = np.float32(norm * (1.0 + 1e-6))
        mag = np.empty(nt, np.float64)
        for t in range(nt):
            mag[t] = max(mx[touched[t]], -mn[touched[t]])
        by_mag = np.argsort(-mag)
        n_listed = min(nt, max_listed)
        chosen = np.sort(touched[by_mag[:n_listed]])
        top = mag[by_mag[0]] if nt > 0 else 0.0
        unit = np.float32(top / SUMMARY_LEVELS) if top > 0.0 else np.float32(1.0)
        while np.float64(unit) * SUMMARY_LEVELS < top:
            unit = np.nextafter(unit, np.float32(np.inf))
        block_unit[b] = unit
        s0 = sum_ptr[b]
        for t in range(n_listed):
            j = chosen[t]
            listed[j] = True
            sum_dims[s0 + t] = j
            sum_pos[s0 + t] = _quantise_up(mx[j], unit)
            sum_neg[s0 + t] = _quantise_up(-mn[j], unit)
        sum_ptr[b + 1] = s0 + n_listed
        if nt > n_listed:
            rest_max[b] = np.float32(mag[by_mag[n_listed]] * (1.0 + 1e-6))
            worst_count = 0
            worst_norm = 0.0
            for i in range(block_ptr[b], block_ptr[b + 1]):
                count = 0
                sq = 0.0
                for p in range(row_ptr[i], row_ptr[i + 1]):
                    j = np.int64(row_dims[p])
                    if not listed[j]:
                        a = np.float64(value_at(row_values, p)) * dim_scale[j]
                        count += 1
                        sq += a * a
                worst_count = max(worst_count, count)
                worst_norm = max(worst_norm, np.sqrt(sq))
            rest_count[b] = worst_count
            rest_norm[b] = np.float32(worst_norm * (1.0 + 1e-6))
        for t in range(nt):
            seen[touched[t]] = False
        for t in range(n_listed):
            listed[chosen[t]] = False
    return (sum_ptr, sum_dims[:sum_ptr[nb]], sum_pos[:sum_ptr[nb]], sum_neg[:sum_ptr[nb]], block_unit, row_norm,
            rest_max, rest_count, rest_norm)


@njit(inline="always")
def _quantise_up(x, unit):
    """The smallest u8 q with q * unit >= x (x >= 0, x <= 255 * unit)."""
    if x <= 0.0:
        return np.uint8(0)
    q = min(np.ceil(x / np.float64(unit)), SUMMARY_LEVELS)
    while q < SUMMARY_LEVELS and q * np.float64(unit) < x:
        q += 1
    return np.uint8(q)


@njit(cache=True)
def chunk_postings(row_ptr, row_dims, row_values, d, chunk, post_items, post_values):
    """The forward rows cut into chunks of `chunk` consecutive internal rows, each chunk transposed
    into one posting list per dimension (a small inverted index per chunk), written to post_items
    (the item's position within its chunk) and post_values. Within a chunk, lists are ordered by
    dimension and postings by item. Returns starts (n_chunks, d + 1) int64: chunk c's list of
    dimension j is postings starts[c, j]:starts[c, j + 1].
    """
    n = row_ptr.shape[0] - 1
    n_chunks = (n + chunk - 1) // chunk
    starts = np.empty((n_chunks, d + 1), np.int64)
    count = np.zeros(d, np.int64)
    fill = np.empty(d, np.int64)
    for c in range(n_chunks):
        i0 = c * chunk
        i1 = min(n, i0 + chunk)
        for p in range(row_ptr[i0], row_ptr[i1]):
            count[row_dims[p]] += 1
        pos = row_ptr[i0]
        for j in range(d):
            starts[c, j] = pos
            fill[j] = pos
            pos += count[j]
            count[j] = 0
        starts[c, d] = pos
        for i in range(i0, i1):
            for p in range(row_ptr[i], row_ptr[i + 1]):
                j = row_dims[p]
                q = fill[j]
                fill[j] = q + 1
                post_items[q] = i - i0
                post_values[q] = row_values[p]
    return starts
