"""Numba kernels for exact sparse retrieval (unchecked: callers validate shapes, dtypes and ranges).

Scores are s = Â w, where Â is the index's (dequantised) item matrix and w = u * dim_scale is the
query u with the per-dimension dequantisation scale folded in. Two exact engines:

* term-at-a-time (TAAT): walk the posting lists of the query's non-zero dimensions, scatter
  w_j * Â_ij into a per-thread accumulator, then one pass over the accumulator selects the top-k;
* forward scan: for every item, the dot product of its forward row with the dense w.

Each query takes the engine with the lower estimated cost (postings walked vs. non-zeros scanned).
Top-k selection is a k-sized min-heap inside the kernel; ties are broken towards the smaller item
position, so results are deterministic. Values are float32, int8 (scaled by dim_scale), or float16
stored as its uint16 bit pattern (numba has no CPU float16) and decoded in registers.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.extending import intrinsic, overload

ENGINE_AUTO, ENGINE_TAAT, ENGINE_FORWARD = 0, 1, 2
BLOCK = 16  # queries sharing one forward scan (the accumulators in _forward_scan are unrolled to it)
_NEG_INF = np.float32(-np.inf)


@intrinsic
def _u32_bits_as_f32(typingctx, bits):
    """Reinterpret a uint32 bit pattern as float32 (no conversion)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def value_at(values, p):
    """values[p] as float32 (float16 arrays are passed as their uint16 bits)."""


@overload(value_at, inline="always")
def _value_at_impl(values, p):
    if values.dtype == types.uint16:
        def impl(values, p):
            h = np.uint32(values[p])
            # sign to bit 31, exponent+mantissa shifted into place; 2**112 rebiases the exponent
            # (15 -> 127), which also handles zeros and subnormals exactly.
            bits = ((h & np.uint32(0x8000)) << np.uint32(16)) | ((h & np.uint32(0x7FFF)) << np.uint32(13))
            return _u32_bits_as_f32(bits) * np.float32(5.192296858534828e33)
        return impl

    def impl(values, p):
        return np.float32(values[p])
    return impl


@njit(inline="always")
def _worse(s1, i1, s2, i2):
    return s1 < s2 or (s1 == s2 and i1 > i2)


@njit(cache=True)
def _sift_down(hs, hi, pos, n):
    s = hs[pos]
    it = hi[pos]
    while True:
        c = 2 * pos + 1
        if c >= n:
            break
        if c + 1 < n and _worse(hs[c + 1], hi[c + 1], hs[c], hi[c]):
            c += 1
        if _worse(hs[c], hi[c], s, it):
            hs[pos] = hs[c]
            hi[pos] = hi[c]
            pos = c
        else:
            break
    hs[pos] = s
    hi[pos] = it


@njit(cache=True)
def _heap_push(hs, hi, size, s, item):
    """Add (s, item) to a heap that has room; return the new size."""
    pos = size
    while pos > 0:
        parent = (pos - 1) // 2
        if _worse(s, item, hs[parent], hi[parent]):
            hs[pos] = hs[parent]
            hi[pos] = hi[parent]
            pos = parent
        else:
            break
    hs[pos] = s
    hi[pos] = item
    return size + 1


@njit(cache=True)
def _heap_drain(hs, hi, size, out_s, out_i):
    """Empty the heap into out_* best first."""
    for n in range(size, 0, -1):
        out_s[n - 1] = hs[0]
        out_i[n - 1] = hi[0]
        hs[0] = hs[n - 1]
        hi[0] = hi[n - 1]
        _sift_down(hs, hi, 0, n - 1)


@njit(cache=True)
def _select_from_accumulator(acc, hs, hi, kk):
    """Top-kk of acc (excluded items hold -inf), resetting acc to zero on the way; returns heap size."""
    size = 0
    for i in range(acc.shape[0]):
        s = acc[i]
        acc[i] = 0.0
        if size == kk:
            if s <= hs[0]:  # items arrive in increasing order, so a tie with the root loses
                continue
            hs[0] = s
            hi[0] = i
            _sift_down(hs, hi, 0, kk)
        elif s != _NEG_INF:
            size = _heap_push(hs, hi, size, s, i)
    return size


@njit(cache=True)
def _forward_scan(W, n_lanes, row_ptr, row_dims, row_values, excl, e_pos, e_end, hs, hi, sizes, kk):
    """Top-kk of Â W[:, b] for lanes b < n_lanes in one pass over the forward rows.

    W is (d, BLOCK): reading each row once serves BLOCK queries (a sparse x dense product with the
    lanes contiguous, so the inner loop vectorises). excl[e_pos[b]:e_end[b]] are lane b's sorted
    excluded items; e_pos is advanced in place.
    """
    s = np.empty(BLOCK, np.float32)
    Wf = W.ravel()
    for i in range(row_ptr.shape[0] - 1):
        # sixteen scalar accumulators stay in registers and vectorise; an array here runs ~3x slower
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0.0)
        s8 = s9 = s10 = s11 = s12 = s13 = s14 = s15 = np.float32(0.0)
        for p in range(row_ptr[i], row_ptr[i + 1]):
            v = value_at(row_values, p)
            o = np.int64(row_dims[p]) * BLOCK
            s0 += v * Wf[o]
            s1 += v * Wf[o + 1]
            s2 += v * Wf[o + 2]
            s3 += v * Wf[o + 3]
            s4 += v * Wf[o + 4]
            s5 += v * Wf[o + 5]
            s6 += v * Wf[o + 6]
            s7 += v * Wf[o + 7]
            s8 += v * Wf[o + 8]
            s9 += v * Wf[o + 9]
            s10 += v * Wf[o + 10]
            s11 += v * Wf[o + 11]
            s12 += v * Wf[o + 12]
            s13 += v * Wf[o + 13]
            s14 += v * Wf[o + 14]
            s15 += v * Wf[o + 15]
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7] = s0, s1, s2, s3, s4, s5, s6, s7
        s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15] = s8, s9, s10, s11, s12, s13, s14, s15
        for b in range(n_lanes):
            if e_pos[b] < e_end[b] and excl[e_pos[b]] == i:
                e_pos[b] += 1
            elif sizes[b] < kk:
                sizes[b] = _heap_push(hs[b], hi[b], sizes[b], s[b], i)
            elif s[b] > hs[b, 0]:  # items arrive in increasing order, so a tie with the root loses
                hs[b, 0] = s[b]
                hi[b, 0] = i
                _sift_down(hs[b], hi[b], 0, kk)


@njit(parallel=True, cache=True)
def search_dense(Q, dim_scale, k, engine, taat_cost_ratio, excl_ptr, excl_items,
                 col_ptr, col_items, col_values, row_ptr, row_dims, row_values):
    """Exact top-k of Â (Q * dim_scale)ᵀ per query row, excluded items skipped.

    Q: (n, d) float32 C-contiguous. excl_ptr/excl_items: CSR of sorted excluded item positions per
    query (excl_ptr of length n + 1). Queries go in blocks of BLOCK, in parallel; inside a block a
    query runs TAAT when taat_cost_ratio * its postings * (queries in the block) < the non-zeros
    of Â, else it shares the block's forward scan. Returns scores (n, k) float32 (-inf padding),
    ids (n, k) int64 (-1 padding), the engine used per query (1 = TAAT, 2 = forward) and the
    postings (TAAT) or non-zeros (forward) each query walked.
    """
    n_q, d = Q.shape
    n_items = row_ptr.shape[0] - 1
    out_s = np.full((n_q, k), _NEG_INF, np.float32)
    out_i = np.full((n_q, k), -1, np.int64)
    used = np.zeros(n_q, np.int8)
    work = np.zeros(n_q, np.int64)
    kk = min(k, n_items)
    nnz = row_ptr[n_items] - row_ptr[0]
    n_blocks = (n_q + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        q0 = blk * BLOCK
        q1 = min(q0 + BLOCK, n_q)
        postings = np.zeros(BLOCK, np.int64)
        for q in range(q0, q1):
            for j in range(d):
                if Q[q, j] != 0.0 and dim_scale[j] != 0.0:
                    postings[q - q0] += col_ptr[j + 1] - col_ptr[j]
        lane_query = np.empty(BLOCK, np.int64)
        n_lanes = 0
        n_taat = 0
        for q in range(q0, q1):
            taat = engine == ENGINE_TAAT or (
                engine == ENGINE_AUTO and taat_cost_ratio * postings[q - q0] * (q1 - q0) < nnz)
            if taat:
                used[q] = ENGINE_TAAT
                work[q] = postings[q - q0]
                n_taat += 1
            else:
                used[q] = ENGINE_FORWARD
                work[q] = nnz
                lane_query[n_lanes] = q
                n_lanes += 1
        if kk == 0:
            continue
        hs = np.empty((BLOCK, kk), np.float32)
        hi = np.empty((BLOCK, kk), np.int64)
        sizes = np.zeros(BLOCK, np.int64)
        acc = np.zeros(n_items if n_taat > 0 else 0, np.float32)
        for q in range(q0, q1):
            if used[q] != ENGINE_TAAT:
                continue
            for j in range(d):
                wj = Q[q, j] * dim_scale[j]
                if wj != 0.0:
                    for p in range(col_ptr[j], col_ptr[j + 1]):
                        acc[col_items[p]] += wj * value_at(col_values, p)
            for e in range(excl_ptr[q], excl_ptr[q + 1]):
                acc[excl_items[e]] = _NEG_INF
            size = _select_from_accumulator(acc, hs[0], hi[0], kk)
            _heap_drain(hs[0], hi[0], size, out_s[q], out_i[q])
        if n_lanes > 0:
            W = np.zeros((d, BLOCK), np.float32)
            e_pos = np.empty(BLOCK, np.int64)
            e_end = np.empty(BLOCK, np.int64)
            for b in range(n_lanes):
                q = lane_query[b]
                for j in range(d):
                    W[j, b] = Q[q, j] * dim_scale[j]
                e_pos[b] = excl_ptr[q]
                e_end[b] = excl_ptr[q + 1]
            _forward_scan(W, n_lanes, row_ptr, row_dims, row_values, excl_items, e_pos, e_end, hs, hi, sizes, kk)
            for b in range(n_lanes):
                _heap_drain(hs[b], hi[b], sizes[b], out_s[lane_query[b]], out_i[lane_query[b]])
    return out_s, out_i, used, work


@njit(parallel=True, cache=True)
def histories_to_queries(h_ptr, h_items, row_ptr, row_dims, row_values, dim_scale, d):
    """Dense u = x Â (dequantised) for each binary history row given as CSR of item positions."""
    n = h_ptr.shape[0] - 1
    out = np.zeros((n, d), np.float32)
    for u in prange(n):
        row = out[u]
        for h in range(h_ptr[u], h_ptr[u + 1]):
            i = h_items[h]
            for p in range(row_ptr[i], row_ptr[i + 1]):
                row[row_dims[p]] += value_at(row_values, p)
        for j in range(d):
            row[j] *= dim_scale[j]
    return out


# Serial twins for small batches: waking the thread pool costs more than one block of work.
search_dense_serial = njit(cache=True)(search_dense.py_func)
histories_to_queries_serial = njit(cache=True)(histories_to_queries.py_func)


@njit(parallel=True, cache=True)
def read_bandwidth(a, repeats, n_threads):
    """Sum a large uint64 array `repeats` times across n_threads threads (a streaming-read probe)."""
    partial = np.zeros(n_threads, np.uint64)
    n = a.shape[0]
    for t in prange(n_threads):
        s = np.uint64(0)
        for _ in range(repeats):
            for i in range(t * n // n_threads, (t + 1) * n // n_threads):
                s += a[i]
        partial[t] = s
    return partial.sum()
