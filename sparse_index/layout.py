"""Block layout of an index: items reordered into blocks of similar rows, each with a bound summary.

Items are clustered (two levels of spherical k-means on the rows' magnitudes |a_ij|; the fine
clusters, cut to at most `block_size` rows, are the blocks) so that a block's members share dimensions and signs,
which keeps the per-block upper bounds of `kernels._block_bounds` tight. The forward rows are
stored in this internal order; `order[i]` is the label (user-visible position) of internal row i.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import layout_kernels

DEFAULT_BLOCK_SIZE = 128
_COARSE_BLOCKS = 4           # blocks per coarse cluster (first k-means level)
_MAX_COARSE = 1024
_KMEANS_ROUNDS = 4
_SAMPLE_PER_CENTROID = 64


def default_summary_dims(block_size: int, k: int) -> int:
    """Listed dimensions per block summary: 1/16 of a block's non-zeros (4 B each), i.e. ~0.25 B per
    stored non-zero; unlisted dimensions share one block-wide bound."""
    return max(16, block_size * max(k, 1) // 16)


def _kmeans_plus_plus(S: sp.csr_matrix, n_clusters: int, rng) -> np.ndarray:
    """k-means++ seeding by cosine distance: each next seed is a row drawn with probability
    proportional to its squared distance (1 - cosine) to the nearest seed so far."""
    norms = np.sqrt(np.asarray(S.multiply(S).sum(axis=1)).ravel())
    S = sp.diags(1.0 / np.where(norms > 0, norms, 1.0)).astype(np.float32) @ S
    St = S.T.tocsr()
    nearest = np.full(S.shape[0], -np.inf, np.float32)
    seeds = [int(rng.integers(S.shape[0]))]
    for _ in range(n_clusters - 1):
        nearest = np.maximum(nearest, (S @ St[:, seeds[-1]]).toarray().ravel())
        weight = np.maximum(1.0 - nearest, 0.0).astype(np.float64) ** 2
        total = weight.sum()
        seeds.append(int(rng.choice(S.shape[0], p=weight / total)) if total > 0 else int(rng.integers(S.shape[0])))
    return np.array(seeds)


def _spherical_kmeans(A: sp.csr_matrix, rows: np.ndarray, n_clusters: int, rng, rounds: int) -> np.ndarray:
    """Cluster the rows `rows` of A by cosine (centroids: normalised sums); returns a cluster per row."""
    if n_clusters <= 1 or len(rows) <= n_clusters:
        return np.arange(len(rows)) if n_clusters > 1 else np.zeros(len(rows), np.int64)
    n_sample = min(len(rows), n_clusters * _SAMPLE_PER_CENTROID)
    sample = np.sort(rng.choice(rows, n_sample, replace=False)) if n_sample < len(rows) else rows
    centroids = A[sample[_kmeans_plus_plus(A[sample], n_clusters, rng)]].toarray()
    for r in range(rounds + 1):
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        ct = np.ascontiguousarray((centroids / np.where(norms > 0, norms, 1.0)).T, dtype=np.float32)
        last = r == rounds
        members = rows if last else sample
        assign = layout_kernels.nearest_centroid(A.indptr, A.indices, A.data, members.astype(np.int64), ct)
        if last:
            return assign
        ind = sp.csr_matrix((np.ones(len(members), np.float32), (assign, members)), shape=(n_clusters, A.shape[0]))
        sums = (ind @ A).toarray()
        empty = ~sums.any(axis=1)
        sums[empty] = centroids[empty]  # an emptied cluster keeps its centroid
        centroids = sums
    raise AssertionError("unreachable")


def block_order(A: sp.csr_matrix, block_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Internal item order and block pointers for the (dequantised, float32) item matrix A.

    Coarse clusters of ~4 blocks are split into ceil(size / block_size) fine clusters; a fine
    cluster is a block, or several when it has more than block_size items (blocks vary in size).
    Returns (order, block_ptr): order[i] is the label of internal row i; block b holds internal rows
    block_ptr[b]:block_ptr[b + 1] (at most block_size, at least one).
    """
    n = A.shape[0]
    rng = np.random.default_rng(seed)
    # cluster the supports, not the signed rows: items that share dimensions with opposite signs
    # cancel in a signed centroid, yet a block bound only needs them to share dimensions
    A = sp.csr_matrix(A, dtype=np.float32, copy=True)
    np.abs(A.data, out=A.data)
    n_coarse = int(min(_MAX_COARSE, max(1, n // (block_size * _COARSE_BLOCKS))))
    coarse = _spherical_kmeans(A, np.arange(n), n_coarse, rng, _KMEANS_ROUNDS)
    order_parts, sizes = [], []
    for c in range(n_coarse):
        members = np.flatnonzero(coarse == c)
        if len(members) == 0:
            continue
        n_fine = -(-len(members) // block_size)
        fine = _spherical_kmeans(A, members, n_fine, rng, _KMEANS_ROUNDS)
        order_parts.append(members[np.argsort(fine, kind="stable")])
        counts = np.bincount(fine, minlength=n_fine)
        for size in counts[counts > 0]:  # a fine cluster larger than a block is cut into blocks
            full, last = divmod(int(size), block_size)
            sizes.extend([block_size] * full + ([last] if last else []))
    order = np.concatenate(order_parts).astype(np.int64)
    block_ptr = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=block_ptr[1:])
    return order, block_ptr


def permute_rows(row_ptr, row_dims, row_values, order):
    """Forward rows (CSR pieces) reordered so that new row i is old row order[i]."""
    lengths = np.diff(row_ptr)[order]
    new_ptr = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lengths, out=new_ptr[1:])
    if len(lengths) and np.all(lengths == lengths[0]):
        k = int(lengths[0])
        src = (np.asarray(row_ptr[:-1])[order][:, None] + np.arange(k)).ravel()
    else:
        src = np.repeat(np.asarray(row_ptr[:-1])[order] - new_ptr[:-1], lengths) + np.arange(new_ptr[-1])
    return new_ptr, np.asarray(row_dims)[src], np.asarray(row_values)[src]


def summarise(block_ptr, row_ptr, row_dims, row_values, dim_scale, summary_dims: int, dim_type) -> dict:
    """The per-block bound summaries as a dict of SparseIndex fields."""
    (sum_ptr, sum_dims, sum_pos, sum_neg, block_unit, row_norm, rest_max, rest_count,
     rest_norm) = layout_kernels.block_summaries(np.asarray(block_ptr, np.int64), np.asarray(row_ptr),
                                                 np.asarray(row_dims), np.asarray(row_values),
                                                 np.asarray(dim_scale, np.float64), len(dim_scale),
                                                 int(summary_dims))
    return {"summary_ptr": sum_ptr, "summary_dims": sum_dims.astype(dim_type), "summary_pos": sum_pos,
            "summary_neg": sum_neg, "block_unit": block_unit, "block_row_norm": row_norm,
            "block_rest_max": rest_max, "block_rest_count": rest_count.astype(np.int32),
            "block_rest_norm": rest_norm}
