"""Engine benchmark: scipy `A @ u`, the plain exact scan, the pruned exact engine and the approximate
knob, one query at a time and batched, in one process (medians; results checked against the scan).

    python -m spidx.bench.engines --items 1000000 --d 4096 --k 32 --values i8 --queries 200 --threads 1
    python -m spidx.bench.engines --quality ../shared/data/gowalla/gowalla.npz   # nDCG@100 f32 / f16 / i8

Catalogues (synthetic, signed values, rows L2-normalised):
* ``clusters``: taste clusters of ~1,000 items; an item draws 80 % of its k dimensions from its
  cluster's pool of 2k dimensions and the rest uniformly; histories of 30 items from 1-3 clusters;
* ``zipf``: no structure; dimensions drawn from a Zipf(0.8) popularity, histories of 30 uniform items.
Queries are u = xÂ of the histories; the top-100 is asked with the history items excluded.
"""
from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
import scipy.sparse as sp

from spidx.index import SparseIndex

TOP = 100
HISTORY = 30


def _rows(dims: np.ndarray, d: int, rng) -> sp.csr_matrix:
    n, k = dims.shape
    vals = rng.standard_normal((n, k)).astype(np.float32)
    vals /= np.linalg.norm(vals, axis=1, keepdims=True)
    m = sp.csr_matrix((vals.ravel(), dims.ravel(), np.arange(n + 1) * k), shape=(n, d))
    m.sum_duplicates()
    m.sort_indices()
    return m


def clusters_catalogue(n, d, k, n_queries, seed=0):
    rng = np.random.default_rng(seed)
    n_clusters = max(2, n // 1000)
    pool, in_pool = min(2 * k, d), int(round(0.8 * k))
    pools = np.stack([rng.choice(d, pool, replace=False) for _ in range(n_clusters)])
    cluster = rng.integers(n_clusters, size=n)
    parts = []
    for s in range(0, n, 65536):
        c = cluster[s:s + 65536]
        pick = np.argsort(rng.random((len(c), pool)), axis=1)[:, :in_pool]
        dims = np.concatenate([np.take_along_axis(pools[c], pick, 1),
                               rng.integers(d, size=(len(c), k - in_pool))], axis=1)
        for _ in range(50):  # redraw the uniform part of rows that repeat a dimension
            srt = np.sort(dims, axis=1)
            bad = np.flatnonzero((np.diff(srt, axis=1) == 0).any(axis=1))
            if not len(bad):
                break
            dims[bad, in_pool:] = rng.integers(d, size=(len(bad), k - in_pool))
        parts.append(_rows(dims, d, rng))
    A = sp.vstack(parts).tocsr()
    members = np.split(np.argsort(cluster, kind="stable"), np.cumsum(np.bincount(cluster, minlength=n_clusters))[:-1])
    rows = []
    for _ in range(n_queries):
        chosen = rng.choice(n_clusters, size=rng.integers(1, 4), replace=False)
        cand = np.concatenate([members[c] for c in chosen])
        rows.append(np.unique(rng.choice(cand, size=min(HISTORY, len(cand)), replace=False)))
    return A, _history_matrix(rows, n)


def zipf_catalogue(n, d, k, n_queries, seed=0):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, d + 1) ** 0.8
    cdf = np.cumsum(p / p.sum())
    perm = rng.permutation(d)
    parts = []
    for s in range(0, n, 65536):
        rows = min(65536, n - s)
        dims = perm[np.minimum(np.searchsorted(cdf, rng.random((rows, 3 * k))), d - 1)]
        out = np.empty((rows, k), np.int64)
        for r in range(rows):  # first k distinct draws
            u = dict.fromkeys(dims[r].tolist())
            lst = list(u)[:k]
            while len(lst) < k:
                x = int(rng.integers(d))
                if x not in lst:
                    lst.append(x)
            out[r] = lst
        parts.append(_rows(out, d, rng))
    A = sp.vstack(parts).tocsr()
    rows = [np.unique(rng.choice(n, HISTORY, replace=False)) for _ in range(n_queries)]
    return A, _history_matrix(rows, n)


def _history_matrix(rows, n):
    return sp.csr_matrix((np.ones(sum(map(len, rows)), np.float32),
                          (np.repeat(np.arange(len(rows)), [len(r) for r in rows]), np.concatenate(rows))),
                         shape=(len(rows), n))


def _per_query(fn, n, repeats=3):
    """Median seconds per query over `repeats` passes of n single queries (the first call warms up)."""
    fn(0)
    passes = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(n):
            fn(i)
        passes.append((time.perf_counter() - t) / n)
    return float(np.median(passes))


def _recall(ids, exact):
    hits = [len(np.intersect1d(a[a >= 0], b[b >= 0])) / max((b >= 0).sum(), 1) for a, b in zip(ids, exact)]
    return float(np.mean(hits))


def run(kind, n, d, k, values, n_queries, approx_values, block_size, repeats=3, seed=0):
    t = time.perf_counter()
    A, H = (clusters_catalogue if kind == "clusters" else zipf_catalogue)(n, d, k, n_queries, seed)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    index = SparseIndex.from_embeddings(A, values=values, block_size=block_size)
    t_build = time.perf_counter() - t
    Aq = index.to_csr()  # the dequantised matrix the index scores with, rows by label
    Q = index.query_vectors(H)
    ex = [H.indices[H.indptr[r]:H.indptr[r + 1]] for r in range(H.shape[0])]
    ep, ei = H.indptr.astype(np.int64), H.indices.astype(np.int64)

    def one(i, pruned=True, approx=1.0):
        return index.search_fast(Q[i:i + 1], TOP, ep[i:i + 2] - ep[i], ei[ep[i]:ep[i + 1]], pruned, approx)

    def scipy_one(i):
        s = Aq @ Q[i]
        s[ex[i]] = -np.inf
        top = np.argpartition(-s, TOP)[:TOP]
        return top[np.argsort(-s[top])]

    exact_s, exact_i, _, _ = index.search_fast(Q, TOP, ep, ei, False, 1.0)
    out = {"kind": kind, "n_items": n, "d": d, "k": k, "values": values, "queries": n_queries,
           "block_size": block_size, "threads": numba.get_num_threads(), "seconds_generate": t_gen,
           "seconds_build": t_build, "memory": index.memory_report(), "blocks": index.block_stats()}
    base = _per_query(scipy_one, n_queries, repeats)
    rows = {"scipy A@u + argpartition": {"qps": 1 / base}}
    t_scan = _per_query(lambda i: one(i, False), n_queries, repeats)
    rows["scan (plain exact)"] = {"qps": 1 / t_scan, "recall": 1.0}
    t = time.perf_counter()
    index.search_fast(Q, TOP, ep, ei, False, 1.0)
    rows["scan (plain exact)"]["qps_batched"] = n_queries / (time.perf_counter() - t)
    for approx in [None] + list(approx_values):
        a = 1.0 if approx is None else approx
        name = "pruned exact" if approx is None else f"approx {approx}"
        tq = _per_query(lambda i: one(i, True, a), n_queries, repeats)
        s, ids, blocks, items = index.search_fast(Q, TOP, ep, ei, True, a)
        t = time.perf_counter()
        index.search_fast(Q, TOP, ep, ei, True, a)
        tb = time.perf_counter() - t
        if approx is None:
            np.testing.assert_array_equal(ids, exact_i)
        rows[name] = {"qps": 1 / tq, "qps_batched": n_queries / tb, "recall": _recall(ids, exact_i),
                      "blocks_scored_share": float(blocks.mean() / index.n_blocks),
                      "items_scored_share": float(items.mean() / index.n_items)}
    for r in rows.values():
        r["x_scipy"] = r["qps"] * base
    out["results"] = rows
    return out


def quality(data_path, d=512, k=32, rank=256, n_test=1000, seed=42):
    """nDCG@100 of f32 / f16 / i8 indexes (exact search) and of the approximate knob, on held-out users.

    Embeddings: post-hoc top-k (d, k) of a quick dense model (randomized SVD of rank `rank`, lifted
    by a fixed Gaussian map) fitted on the non-test users; one fold, 20 % of each test history held out.
    """
    from spidx.bench.quick_embeddings import lifted_embeddings, svd_item_factors
    from spidx.interactions import read_interactions
    from spidx.evaluation import make_split, ranking_metrics

    data = read_interactions(data_path)
    split = make_split(data.matrix, n_test=n_test, seed=seed, folds=1)
    dense = lifted_embeddings(svd_item_factors(split.train, rank, power_iters=2), d)
    fold = split.test[0]
    out = {"data": data_path, "d": d, "k": k, "rank": rank, "test_users": n_test}
    for values in ("f32", "f16", "i8"):
        idx = SparseIndex.from_embeddings(dense, data.item_ids, nnz=k, values=values)
        out[values] = {"ndcg@100": ranking_metrics(idx.recommend(fold.history, k=100).positions,
                                                   fold.targets)["ndcg@100"],
                       "search_bytes_per_nnz": idx.memory_report()["search_bytes_per_nnz"]}
        if values == "i8":
            for approx in (0.5, 0.3, 0.2):
                rec = idx.recommend(fold.history, k=100, approx=approx)
                out[f"i8 approx {approx}"] = {"ndcg@100": ranking_metrics(rec.positions, fold.targets)["ndcg@100"]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("clusters", "zipf"), default="clusters")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--values", default="i8")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--approx", default="0.9,0.7,0.5,0.3")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--quality", default=None, metavar="INTERACTIONS",
                    help="Instead: nDCG@100 of f32 / f16 / i8 indexes on held-out users of this data set.")
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    rep = quality(args.quality) if args.quality else run(args.kind, args.items, args.d, args.k, args.values,
                                                         args.queries,
              [float(x) for x in args.approx.split(",") if x], args.block_size, args.repeats)
    text = json.dumps(rep, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
