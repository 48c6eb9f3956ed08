"""Engine benchmark: scipy `A @ u`, the plain exact scan, the pruned exact engine and the approximate
knob, one query at a time and batched, in one process (medians; results checked against the scan).

    python -m spidx.bench.engines --items 1000000 --d 4096 --k 32 --values i8 --queries 200 --threads 1
    python -m spidx.bench.engines --quality ../shared/data/gowalla/gowalla.npz   # nDCG@100 f32 / f16 / i8

Catalogues: the scale benchmark's synthetic ``clusters`` and ``zipf`` kinds (`bench.scale`; signed values,
rows L2-normalised). The committed docs/results/engines-*.json were measured with this module's earlier
copy of those generators (same parameters, other random draws).
Queries are u = xÂ of the histories; the top-100 is asked with the history items excluded.
"""
from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np

from spidx.index import SparseIndex

from . import scale

TOP = 100


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
    make = scale.clusters_catalogue if kind == "clusters" else scale.zipf_catalogue  # the scale benchmark's
    cat = make(n, d, k, n_queries, seed)
    A, H = cat.A, cat.H
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
