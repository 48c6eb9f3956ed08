"""Ray batch-scoring throughput: users per second with 1 and 2 local workers (the `[ray]` extra).

    python -m spidx.bench.ray_scoring [--users 1000000 --items 2000 --dim 1024 --nnz 16 --workers 1 2]

Builds a synthetic index (items x d, k non-zeros per row) and `--users` synthetic histories
(`--per-user` items each, ~1% of them unknown ids) as Parquet files, then times `spidx score`'s
pipeline (`score_on_ray`: read, shuffle by user, score, write Parquet) on a fresh local Ray with each
worker count, next to the in-process baseline (one `HistoryScorer` call over all pairs: the same
scoring code without Ray). Times include the shuffle and the writes, not Ray's start-up.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import scipy.sparse as sp


def build_fixture(folder, users, items, dim, nnz, per_user, files, seed=0):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spidx.index import SparseIndex

    rng = np.random.default_rng(seed)
    cols = np.sort(np.argsort(rng.random((min(items, 2000), dim)), axis=1)[:, :nnz], axis=1)
    cols = np.resize(cols, (items, nnz))
    emb = sp.csr_matrix((rng.random(items * nnz).astype(np.float32) + 0.05, cols.ravel(),
                         np.arange(0, items * nnz + 1, nnz)), shape=(items, dim))
    index_path = os.path.join(folder, "items.idx")
    SparseIndex.from_embeddings(emb, np.arange(items)).save(index_path)
    hist = os.path.join(folder, "histories")
    os.makedirs(hist)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    popularity /= popularity.sum()
    for f, chunk in enumerate(np.array_split(np.arange(users), files)):
        u = np.repeat(chunk, per_user)
        i = rng.choice(items, size=len(u), p=popularity)
        i[rng.random(len(u)) < 0.01] = items + 7  # unknown id
        order = rng.permutation(len(u))
        pq.write_table(pa.table({"user": u[order], "item": i[order]}), os.path.join(hist, f"part-{f:03d}.parquet"))
    return index_path, hist


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=2_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--nnz", type=int, default=16)
    p.add_argument("--per-user", type=int, default=10)
    p.add_argument("--files", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("-k", type=int, default=20)
    args = p.parse_args(argv)
    import pyarrow.parquet as pq
    import ray

    from spidx.batch_scoring import HistoryScorer, score_on_ray

    tmp = tempfile.mkdtemp(prefix="spidx-ray-bench-")
    try:
        index_path, hist = build_fixture(tmp, args.users, args.items, args.dim, args.nnz, args.per_user, args.files)
        print(f"{args.users:,} users x {args.per_user} items ({args.users * args.per_user:,} pairs, {args.files} "
              f"Parquet files); index {args.items:,} items, d={args.dim}, k={args.nnz}; top-{args.k}; "
              f"{os.cpu_count()} CPUs")
        print("| run | seconds | users/s | vs in-process |")
        print("|---|---|---|---|")
        table = pq.read_table(hist)
        t0 = time.perf_counter()
        baseline_rows = HistoryScorer(index_path, k=args.k)(table).num_rows
        base = time.perf_counter() - t0
        assert baseline_rows == args.users
        print(f"| in-process HistoryScorer (no Ray) | {base:.1f} | {args.users / base:,.0f} | 1.00 |", flush=True)
        for workers in args.workers:
            ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False, object_store_memory=2 * 2**30)
            ray.data.DataContext.get_current().enable_progress_bars = False
            out = os.path.join(tmp, f"out-{workers}")
            t0 = time.perf_counter()
            score_on_ray(index_path, hist, out, workers=workers, k=args.k)
            secs = time.perf_counter() - t0
            ray.shutdown()
            rows = pq.read_table(out).num_rows
            assert rows == args.users, (rows, args.users)
            print(f"| Ray, {workers} worker(s) | {secs:.1f} | {args.users / secs:,.0f} | {base / secs:.2f} |",
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
