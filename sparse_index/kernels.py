"""Numba kernels for sparse top-k retrieval (unchecked: callers validate shapes, dtypes and ranges).

Scores are s = Â w, where Â is the index's (dequantised) item matrix and w = u * dim_scale is the
query u with the per-dimension dequantisation scale folded in. Items are stored as forward rows in
blocks (see `layout`); the scan engine reads them transposed, as posting lists per chunk of items:

* scan: exact; per chunk, accumulate the postings of the query's dimensions into one score per item
  (`_scan_chunks`), so the work is the postings of the dimensions the query uses, read in sequential
  runs, plus one comparison per item; or (same results up to float rounding) by the
  forward rows (`_score_block`: the dot product of each row with the dense w, gathered from a
  cache-resident w) when the query's dimensions hold most postings; approximate search (approx < 1)
  keeps the query's heaviest dimensions, then rescores the best candidates exactly;
* pruned: exact; compute an upper bound of every block's scores from its summary (`_block_bounds`),
  score blocks by their forward rows in decreasing bound and stop once the next bound is below the
  current k-th best score θ.

Top-k selection is one k-sized min-heap per query; ties are broken towards the smaller label (the
user-visible item position), so results do not depend on the internal order. Values are float32,
int8 (scaled by dim_scale), or float16 stored as its uint16 bit pattern (numba has no CPU float16)
and decoded in registers.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core.extending import intrinsic, overload

PARALLEL_MIN_QUERIES = 16  # smaller batches run serially: waking the thread pool costs more than the work
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


def bound_slack(k: int) -> float:
    """Relative slack added to block bounds: a float32 dot product of k terms may exceed the exact
    value by about k units in the last place of its magnitude sum; this covers it twice over."""
    return float((2 * int(k) + 8) * 2.0 ** -24)


@njit(inline="always")
def _offer(hs, hi, size, kk, s, label):
    """Offer (s, label) to a heap of capacity kk holding `size` entries; return the new size."""
    if size < kk:
        return _heap_push(hs, hi, size, s, label)
    if _worse(hs[0], hi[0], s, label):
        hs[0] = s
        hi[0] = label
        _sift_down(hs, hi, 0, kk)
    return size


@njit(inline="always")
def _dot(s, w, p, end, row_dims, row_values):
    """s plus the forward row entries p..end-1 times w, summed one after another."""
    for q in range(p, end):
        s += value_at(row_values, q) * w[row_dims[q]]
    return s


@njit(cache=True)
def _score_block(w, i0, i1, row_ptr, row_dims, row_values, order, ex, hs, hi, size, kk):
    """Score items i0..i1-1 (internal positions) exactly and offer them to the heap under their
    labels order[i]; ex holds the query's sorted excluded internal positions. Returns the heap size.

    Each score is one sequential sum in the row's (increasing) dimension order, the same float32
    result as the posting lists' accumulation, so every engine returns identical scores. A score
    below the heap's root (kept in a register) is dropped before the exclusion and heap checks;
    equal scores go on to the heap, where the smaller label wins the tie."""
    e = np.searchsorted(ex, i0)
    n_ex = ex.shape[0]
    theta = _NEG_INF if size < kk else hs[0]
    for i in range(i0, i1):
        s = _dot(np.float32(0.0), w, row_ptr[i], row_ptr[i + 1], row_dims, row_values)
        if s < theta:
            continue
        while e < n_ex and ex[e] < i:
            e += 1
        if e < n_ex and ex[e] == i:
            continue
        size = _offer(hs, hi, size, kk, s, order[i])
        if size == kk:
            theta = hs[0]
    return size


@njit(cache=True)
def _block_bounds(u, sum_ptr, sum_dims, sum_pos, sum_neg, block_unit, row_norm, rest_max, rest_count,
                  rest_norm, slack_rel, ub):
    """Upper bound of u·a_i over the items i of each block, written to ub (float64, one per block).

    Listed dimensions j of block b carry max⁺_bj = sum_pos * unit and |min⁻_bj| = sum_neg * unit
    (rounded up when quantised), so u_j·a_ij ≤ u_j·max⁺ for u_j > 0 and ≤ |u_j|·|min⁻| for u_j < 0.
    Two bounds, the smaller wins:
    A = Σ_listed of those terms + the unlisted part, where the unlisted part is at most
        rest_max · min(‖u_unlisted‖₁, the sum of the rest_count largest |u_j|) and at most
        rest_norm · ‖u_unlisted‖₂ (Cauchy-Schwarz on the unlisted entries);
    B = row_norm · sqrt(Σ u_j² over listed dims where the block has entries of u_j's sign
        + ‖u_unlisted‖₂²) (Cauchy-Schwarz on the whole row, only sign-agreeing terms can add).
    A slack of slack_rel · row_norm · ‖u‖₂ (≥ slack_rel · Σ_j |u_j a_ij|) covers float32 rounding
    in the exact scores.
    """
    d = u.shape[0]
    # per dimension: u⁺, u⁻ (= max(-u, 0)), |u|, u², interleaved so one cache line serves a lookup
    table = np.zeros((d, 4), np.float32)
    l1 = 0.0
    l2sq = 0.0
    for j in range(d):
        x = u[j]
        table[j, 0] = max(x, np.float32(0.0))
        table[j, 1] = max(-x, np.float32(0.0))
        table[j, 2] = abs(x)
        table[j, 3] = x * x
        l1 += abs(np.float64(x))
        l2sq += np.float64(x) * np.float64(x)
    u_norm = np.sqrt(l2sq)
    max_r = 0
    for b in range(rest_count.shape[0]):
        max_r = max(max_r, rest_count[b])
    top = np.zeros(max_r + 1, np.float64)
    if max_r > 0:
        largest = -np.sort(-np.abs(u))[:max_r]
        for r in range(largest.shape[0]):
            top[r + 1] = top[r] + largest[r]
        for r in range(largest.shape[0] + 1, max_r + 1):
            top[r] = top[r - 1]
    zero = np.float32(0.0)
    for b in range(ub.shape[0]):
        pos = zero
        listed_l1 = zero
        listed_l2 = zero
        disagree_l2 = zero  # u_j² where the block has no entry of u_j's sign
        for p in range(sum_ptr[b], sum_ptr[b + 1]):
            j = sum_dims[p]
            hi_ = np.float32(sum_pos[p])
            lo_ = np.float32(sum_neg[p])
            up = table[j, 0]
            un = table[j, 1]
            sq = table[j, 3]
            pos += up * hi_ + un * lo_
            listed_l1 += table[j, 2]
            listed_l2 += sq
            if (up > zero and hi_ == zero) or (un > zero and lo_ == zero):
                disagree_l2 += sq
        # float32 sums of n non-negative terms are within a factor 1 ± (n + 2)·2⁻²³ of the exact sums:
        # widen each the safe way, so every bound stays an upper bound
        err = (sum_ptr[b + 1] - sum_ptr[b] + 2) * 1.1920928955078125e-07
        low, high = 1.0 - err, 1.0 + err
        rest_l1 = max(l1 - listed_l1 * low, 0.0)
        rest_l2sq = max(l2sq - listed_l2 * low, 0.0)
        rest = min(rest_max[b] * min(rest_l1, top[rest_count[b]]), rest_norm[b] * np.sqrt(rest_l2sq))
        bound_a = pos * high * np.float64(block_unit[b]) + rest
        agree_l2 = max(listed_l2 * high - disagree_l2 * low, 0.0)
        bound_b = row_norm[b] * np.sqrt(agree_l2 + rest_l2sq)
        ub[b] = min(bound_a, bound_b) + slack_rel * row_norm[b] * u_norm


@njit(cache=True)
def _scan_chunks(w, kk, ex, n_items, order, starts, post_items, post_values, chunk, hs, hi):
    """Exact top-kk of every item by the chunked posting lists; returns the heap size.

    Per chunk of `chunk` consecutive internal rows: the postings of the dimensions the query uses
    (contiguous runs) are accumulated into one float32 score per chunk item, each item's terms summed
    in increasing dimension order; then every item of the chunk (zero scores included) is offered to
    the heap, a score below its root being dropped before the exclusion and heap checks."""
    d = w.shape[0]
    active = np.empty(d, np.int64)
    n_act = 0
    for j in range(d):
        active[n_act] = j
        n_act += np.int64(w[j] != np.float32(0.0))
    acc = np.empty(chunk, np.float32)
    size = 0
    theta = _NEG_INF
    e = 0
    n_ex = ex.shape[0]
    for c in range(starts.shape[0]):
        i0 = c * chunk
        n_c = min(chunk, n_items - i0)
        acc[:n_c] = np.float32(0.0)
        for a in range(n_act):
            j = active[a]
            x = w[j]
            for p in range(starts[c, j], starts[c, j + 1]):
                acc[post_items[p]] += value_at(post_values, p) * x
        for t in range(n_c):
            s = acc[t]
            if s < theta:
                continue
            i = i0 + t
            while e < n_ex and ex[e] < i:
                e += 1
            if e < n_ex and ex[e] == i:
                continue
            size = _offer(hs, hi, size, kk, s, order[i])
            if size == kk:
                theta = hs[0]
    return size


POOL_FACTOR = 2       # approximate search: candidates kept from the partial scores, per result, for exact rescoring
POSTING_COST = 3.0    # a touched posting costs about this many forward-row non-zeros (measured, bench/README.md)


@njit(cache=True)
def _query_cut(u, w, approx):
    """w restricted to the query's dimensions of largest |u_j| that together hold at least a
    fraction `approx` of ‖u‖₁ (the shortest such prefix; all of them when approx = 1). A larger
    approx keeps a superset of dimensions."""
    if approx >= 1.0:
        return w
    mag = np.abs(u)
    by_mag = np.argsort(-mag)
    target = approx * np.sum(mag.astype(np.float64))
    cut = np.zeros_like(w)
    mass = 0.0
    for t in range(by_mag.shape[0]):
        j = by_mag[t]
        if mass >= target or mag[j] == 0.0:
            break
        cut[j] = w[j]
        mass += mag[j]
    return cut


@njit(cache=True)
def _rescore(w, hs, hi, size, kk, position_of_label, row_ptr, row_dims, row_values, out_s, out_i):
    """Exact scores of the `size` candidates in the heap (labels hi); their top-kk into out_*."""
    fs = np.empty(kk, np.float32)
    fi = np.empty(kk, np.int64)
    n = 0
    for c in range(size):
        i = position_of_label[hi[c]]
        n = _offer(fs, fi, n, kk, _dot(np.float32(0.0), w, row_ptr[i], row_ptr[i + 1], row_dims, row_values), hi[c])
    _heap_drain(fs, fi, n, out_s, out_i)


@njit(cache=True)
def _search_one(u, w, kk, approx, pruned, ex, row_ptr, row_dims, row_values, order, position_of_label, block_ptr,
                starts, post_items, post_values, chunk, dim_count, posting_cost, sum_ptr, sum_dims, sum_pos, sum_neg,
                block_unit, row_norm, rest_max, rest_count, rest_norm, slack_rel, out_s, out_i):
    """Top-kk of one query into out_*; returns (blocks scored, items scored, postings read: stored
    non-zeros read from the posting lists or the forward rows).

    pruned=False (the scan engine) scores every item: by the chunked posting lists of the query's
    dimensions (`_scan_chunks`), or by the forward rows (`_score_block` over all rows) when the query
    touches so many postings (each costing posting_cost non-zeros) that reading every row is cheaper.
    With approx < 1 it scores with the query cut to its heaviest dimensions (`_query_cut`), keeps the
    POOL_FACTOR·kk best candidates and returns their top-kk by exact scores.

    pruned=True (exact) visits blocks in decreasing upper bound ub and, once the heap is full, stops
    at the first block with ub < θ (θ = the current k-th best score): no item of a skipped block can
    score above its bound. After a few blocks it checks whether most unscored items still have
    ub ≥ θ (loose bounds); then it sweeps the remaining blocks in storage order, scoring each whose
    ub ≥ θ (θ only grows, so this is exact too).
    """
    nb = block_ptr.shape[0] - 1
    n_items = row_ptr.shape[0] - 1
    blocks = 0
    items = 0
    postings = 0
    if pruned:
        # blocks scored in bound order before the search may switch to a sweep (see above)
        first_check = min(nb, 4)
        hs = np.empty(kk, np.float32)
        hi = np.empty(kk, np.int64)
        size = 0
        ub = np.empty(nb, np.float64)
        _block_bounds(u, sum_ptr, sum_dims, sum_pos, sum_neg, block_unit, row_norm, rest_max, rest_count,
                      rest_norm, slack_rel, ub)
        visit = np.argsort(-ub)
        sweep = False
        t = 0
        while t < nb:
            b = visit[t]
            if size == kk and ub[b] < hs[0]:
                break
            size = _score_block(w, block_ptr[b], block_ptr[b + 1], row_ptr, row_dims, row_values, order, ex,
                                hs, hi, size, kk)
            blocks += 1
            items += block_ptr[b + 1] - block_ptr[b]
            postings += row_ptr[block_ptr[b + 1]] - row_ptr[block_ptr[b]]
            ub[b] = -np.inf  # scored
            t += 1
            if size == kk and t == first_check:
                # loose bounds: when most unscored items have a bound at or above θ already, scoring
                # them in storage order (sequential reads, no further ordering) is cheaper
                left = 0
                for c in range(nb):
                    if ub[c] >= hs[0]:
                        left += block_ptr[c + 1] - block_ptr[c]
                sweep = 2 * left > n_items - items
                if sweep:
                    break
        if sweep:
            for b in range(nb):
                if ub[b] >= hs[0]:
                    size = _score_block(w, block_ptr[b], block_ptr[b + 1], row_ptr, row_dims, row_values, order,
                                        ex, hs, hi, size, kk)
                    blocks += 1
                    items += block_ptr[b + 1] - block_ptr[b]
                    postings += row_ptr[block_ptr[b + 1]] - row_ptr[block_ptr[b]]
        _heap_drain(hs, hi, size, out_s, out_i)
        return blocks, items, postings
    wq = _query_cut(u, w, approx)
    pool = kk if approx >= 1.0 else min(POOL_FACTOR * kk, n_items)
    hs = np.empty(pool, np.float32)
    hi = np.empty(pool, np.int64)
    touched = 0
    for j in range(wq.shape[0]):
        if wq[j] != np.float32(0.0):
            touched += dim_count[j]
    if posting_cost * touched > row_ptr[n_items]:
        size = _score_block(wq, 0, n_items, row_ptr, row_dims, row_values, order, ex, hs, hi, 0, pool)
        touched = row_ptr[n_items]
    else:
        size = _scan_chunks(wq, pool, ex, n_items, order, starts, post_items, post_values, chunk, hs, hi)
    if approx >= 1.0:
        _heap_drain(hs, hi, size, out_s, out_i)
    else:
        _rescore(w, hs, hi, size, kk, position_of_label, row_ptr, row_dims, row_values, out_s, out_i)
        for c in range(size):
            i = position_of_label[hi[c]]
            touched += row_ptr[i + 1] - row_ptr[i]
    return nb, n_items, touched


@njit(parallel=True, cache=True)
def search_batch(U, dim_scale, k, approx, pruned, ex_ptr, ex_items, row_ptr, row_dims, row_values, order,
                 position_of_label, block_ptr, starts, post_items, post_values, chunk, dim_count, posting_cost,
                 sum_ptr, sum_dims,
                 sum_pos, sum_neg, block_unit, row_norm, rest_max, rest_count, rest_norm, slack_rel):
    """Top-k of Â (U[q] * dim_scale) for every query row q, in parallel over queries.

    starts/post_items/post_values: the chunked posting lists of the scan engine (`chunk` items per
    chunk; dim_count: postings per dimension; posting_cost: see `_search_one`). ex_ptr/ex_items: CSR
    of each query's sorted excluded *internal* item positions. Returns scores (n, k) float32 (-inf
    padding), labels (n, k) int64 (-1 padding), and per query the blocks and items scored and the
    postings read (see `_search_one`).
    """
    n_q = U.shape[0]
    n_items = row_ptr.shape[0] - 1
    out_s = np.full((n_q, k), _NEG_INF, np.float32)
    out_i = np.full((n_q, k), -1, np.int64)
    blocks = np.zeros(n_q, np.int64)
    items = np.zeros(n_q, np.int64)
    postings = np.zeros(n_q, np.int64)
    kk = min(k, n_items)
    for q in prange(n_q):
        w = U[q] * dim_scale
        blocks[q], items[q], postings[q] = _search_one(
            U[q], w, kk, approx, pruned, ex_items[ex_ptr[q]:ex_ptr[q + 1]], row_ptr, row_dims, row_values, order,
            position_of_label, block_ptr, starts, post_items, post_values, chunk, dim_count, posting_cost, sum_ptr,
            sum_dims, sum_pos, sum_neg, block_unit, row_norm, rest_max, rest_count, rest_norm, slack_rel, out_s[q],
            out_i[q])
    return out_s, out_i, blocks, items, postings


@njit(cache=True)
def internal_exclusions(ex_ptr, ex_labels, position_of_label):
    """Map each query's excluded labels to internal positions, sorted per query."""
    out = np.empty(ex_labels.shape[0], np.int64)
    for r in range(ex_ptr.shape[0] - 1):
        for e in range(ex_ptr[r], ex_ptr[r + 1]):
            out[e] = position_of_label[ex_labels[e]]
        out[ex_ptr[r]:ex_ptr[r + 1]].sort()
    return out


@njit(parallel=True, cache=True)
def histories_to_queries(h_ptr, h_labels, position_of_label, row_ptr, row_dims, row_values, dim_scale, d):
    """Dense u = x Â (dequantised) for each binary history row given as CSR of item labels."""
    n = h_ptr.shape[0] - 1
    out = np.zeros((n, d), np.float32)
    for u in prange(n):
        row = out[u]
        for h in range(h_ptr[u], h_ptr[u + 1]):
            i = position_of_label[h_labels[h]]
            for p in range(row_ptr[i], row_ptr[i + 1]):
                row[row_dims[p]] += value_at(row_values, p)
        for j in range(d):
            row[j] *= dim_scale[j]
    return out


# Serial twins for small batches: waking the thread pool costs more than the work.
search_batch_serial = njit(cache=True)(search_batch.py_func)
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
