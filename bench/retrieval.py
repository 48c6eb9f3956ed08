"""Retrieval benchmark: SparseIndex vs. scipy CSR products vs. faiss IndexFlatIP, in one process.

    python -m spidx.bench.retrieval --data ../shared/data/gowalla/gowalla.npz --out runs/retrieval

Embeddings: post-hoc top-k (d, nnz) of a quick dense model (bench.quick_embeddings) until Compressed
ELSA embeddings are passed with --embeddings. Queries are real user histories (seen items excluded,
top-100). Reports queries/s single and batched, p50/p99 single-query latency, index bytes read per
query and how close that runs to this machine's read bandwidth (measured in the same run), then
a scaling run over a tiled catalogue (each tile permutes the dimensions, so items stay distinct).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numba
import numpy as np
import scipy.sparse as sp

from spidx import kernels
from spidx.embeddings import load_embeddings
from spidx.index import SUMMARY_FIELDS, SparseIndex
from spidx.interactions import read_interactions
from spidx.ranking import topk

TOP = 100


def measure_bandwidth(mib: int = 1024, repeats: int = 3) -> float:
    """Streaming-read bandwidth (bytes/s) of all threads over a buffer far larger than the caches."""
    a = np.ones(mib * 2**20 // 8, np.uint64)
    kernels.read_bandwidth(a[:1024], 1, numba.get_num_threads())
    best = 0.0
    for _ in range(repeats):  # the best of a threaded numba sum and numpy's single-threaded sum
        for read in (lambda: kernels.read_bandwidth(a, 1, numba.get_num_threads()), a.sum):
            t = time.perf_counter()
            read()
            best = max(best, a.nbytes / (time.perf_counter() - t))
    return best


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _single(fn, n):
    lat = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)
    lat = np.array(lat)
    return {"qps_single": float(1.0 / lat.mean()), "p50_ms": float(np.median(lat) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3)}


def index_bytes_per_query(index: SparseIndex, H: sp.csr_matrix, stats, engine: str = "pruned") -> float:
    """Index bytes read per query: the history rows (u = xÂ), the non-zeros the search read (posting
    lists or forward rows: a u16 position or dimension + the value each), and for the pruned engine
    the block summaries (every query bounds every block)."""
    per_nnz = 2 + index.row_values.itemsize
    summaries = sum(getattr(index, f).nbytes for f in SUMMARY_FIELDS) if engine == "pruned" else 0
    hist = np.diff(H.indptr).sum() * index.k * per_nnz
    return float((hist + stats.postings_read.sum() * per_nnz) / H.shape[0] + summaries)


def bench_index(index, H, repeats, n_single):
    excl = [H.indices[H.indptr[r]:H.indptr[r + 1]] for r in range(H.shape[0])]
    index.recommend(H[:32], k=TOP)  # compile / warm
    batched = _median_time(lambda: index.recommend(H, k=TOP), repeats)
    Q = index.query_vectors(H)
    _, _, stats = index.search(Q, TOP, exclude=excl, return_stats=True)
    single_stats = index.search(Q[:n_single], TOP, exclude=excl[:n_single], return_stats=True, batch_size=1)[2]
    out = {"qps_batched": H.shape[0] / batched, **_single(lambda i: index.recommend(H[i:i + 1], k=TOP), n_single)}
    out["bytes_single"] = index_bytes_per_query(index, H[:n_single], single_stats)
    out["bytes_batched"] = index_bytes_per_query(index, H, stats)
    out["items_scored_share"] = float(stats.items_scored.mean() / index.n_items)
    return out


def _topk_excluding(S, H):
    return topk(S, TOP, exclude=H)[0]


def bench_scipy(A: sp.csr_matrix, H, repeats, n_single, batch=1000):
    def batched():
        for s in range(0, H.shape[0], batch):
            h = H[s:s + batch]
            U = (h @ A).toarray()
            _topk_excluding(np.ascontiguousarray((A @ U.T).T), h)

    def single(i):
        h = H[i:i + 1]
        u = h @ A
        _topk_excluding((A @ u.T).T.toarray(), h)

    out = {"qps_batched": H.shape[0] / _median_time(batched, repeats), **_single(single, n_single)}
    csr_bytes = A.nnz * (A.data.itemsize + A.indices.itemsize) + A.indptr.nbytes
    out["bytes_single"] = out["bytes_batched"] = float(csr_bytes + np.diff(H.indptr).mean() * 32 * 8)
    return out


def bench_faiss(dense: np.ndarray, H, repeats, n_single):
    import faiss

    faiss.omp_set_num_threads(numba.get_num_threads())
    flat = faiss.IndexFlatIP(dense.shape[1])
    flat.add(np.ascontiguousarray(dense, dtype=np.float32))
    Xq = np.asarray((H @ dense), dtype=np.float32)  # u = x E, scores E u
    extra = int(np.diff(H.indptr).max())

    def run(rows):
        _, ids = flat.search(Xq[rows], TOP + extra)
        for r, row in zip(range(len(ids)), rows):
            seen = H.indices[H.indptr[row]:H.indptr[row + 1]]
            keep = ids[r][~np.isin(ids[r], seen)][:TOP]
            assert len(keep) == TOP

    rows = np.arange(H.shape[0])
    out = {"qps_batched": H.shape[0] / _median_time(lambda: run(rows), repeats),
           **_single(lambda i: run(np.array([i])), n_single)}
    out["bytes_single"] = float(dense.shape[0] * dense.shape[1] * 4)
    out["bytes_batched"] = out["bytes_single"] / H.shape[0]  # BLAS reads the base once per batch (lower bound)
    return out


def tiled(A: sp.csr_matrix, tiles: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    blocks = [A] + [sp.csr_matrix((A.data, rng.permutation(A.shape[1])[A.indices], A.indptr), shape=A.shape)
                    for _ in range(tiles - 1)]
    return sp.vstack(blocks, format="csr")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/gowalla/gowalla.npz")
    p.add_argument("--embeddings", help="Use these item embeddings (spidx embeddings file) instead of the quick model.")
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--nnz", type=int, default=32)
    p.add_argument("--rank", type=int, default=256, help="Rank of the quick dense model.")
    p.add_argument("--values", default="f32", choices=("f32", "f16", "i8"))
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--single", type=int, default=200, help="Users timed one at a time (faiss: a quarter).")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scale-tiles", default="1,4,12,24")
    p.add_argument("--out", default="runs/retrieval")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    data = read_interactions(args.data)
    rng = np.random.default_rng(args.seed)
    users = np.sort(rng.choice(data.n_users, size=min(args.users, data.n_users), replace=False))
    H = data.matrix[users]
    if args.embeddings:
        emb = load_embeddings(args.embeddings)
        dense = emb.matrix.toarray() if sp.issparse(emb.matrix) else emb.matrix
        index = SparseIndex.from_embeddings(emb.matrix, emb.item_ids, nnz=args.nnz, values=args.values)
        model = f"{args.embeddings}"
    else:
        from spidx.bench.quick_embeddings import lifted_embeddings, svd_item_factors

        dense = lifted_embeddings(svd_item_factors(data.matrix, args.rank, seed=args.seed, power_iters=1), args.dim)
        index = SparseIndex.from_embeddings(dense, data.item_ids, nnz=args.nnz, values=args.values)
        model = f"post-hoc top-{args.nnz} of a rank-{args.rank} SVD model lifted to d={args.dim}"
    print(f"setup {time.perf_counter() - t0:.0f}s: {index.n_items:,} items, d={index.d}, k={index.k}, "
          f"{H.shape[0]} users (mean history {np.diff(H.indptr).mean():.1f})", flush=True)
    bandwidth = measure_bandwidth()
    A = index.to_csr()
    results = {"index": bench_index(index, H, args.repeats, args.single)}
    results["scipy"] = bench_scipy(A, H, args.repeats, args.single)
    results["faiss_flat"] = bench_faiss(dense, H, 1, max(args.single // 4, 10))
    del dense
    for r in results.values():
        r["bandwidth_share_single"] = r["bytes_single"] * r["qps_single"] / bandwidth
        r["bandwidth_share_batched"] = r["bytes_batched"] * r["qps_batched"] / bandwidth

    scaling = []
    for tiles in [int(t) for t in args.scale_tiles.split(",") if t]:
        big = index if tiles == 1 else SparseIndex.from_embeddings(tiled(A, tiles), values=args.values)
        Ht = sp.csr_matrix((H.data, H.indices, H.indptr), shape=(H.shape[0], big.n_items))
        big.recommend(Ht[:16], k=TOP)
        secs = _median_time(lambda: big.recommend(Ht, k=TOP), 1)
        scaling.append({"items": big.n_items, "seconds": secs, "qps_batched": H.shape[0] / secs,
                        "us_per_query_per_1k_items": secs / H.shape[0] * 1e6 / (big.n_items / 1000),
                        "index_mib": big.nbytes / 2**20})
        print(f"scaling {big.n_items:,} items: {H.shape[0] / secs:.0f} q/s", flush=True)
        del big

    report = {"model": model, "data": args.data, "n_items": index.n_items, "d": index.d, "k": index.k,
              "values": args.values, "users": int(H.shape[0]), "threads": numba.get_num_threads(),
              "cpu": platform.processor() or platform.machine(), "bandwidth_gb_s": bandwidth / 1e9,
              "memory": index.memory_report(), "results": results, "scaling": scaling,
              "argv": argv if argv is not None else os.sys.argv[1:]}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "retrieval.json"), "w") as f:
        json.dump(report, f, indent=2)
    table = markdown(report)
    with open(os.path.join(args.out, "retrieval.md"), "w") as f:
        f.write(table)
    print(table)


def markdown(rep) -> str:
    base = rep["results"]["scipy"]
    lines = [f"Gowalla-sized catalogue: {rep['n_items']:,} items, d={rep['d']}, k={rep['k']}, values {rep['values']}, "
             f"{rep['users']} real user histories, top-{TOP}, seen items excluded, {rep['threads']} threads; "
             f"measured read bandwidth {rep['bandwidth_gb_s']:.1f} GB/s. Model: {rep['model']}.", "",
             "| method | q/s single | p50 ms | p99 ms | q/s batched | x scipy (batched) | bytes/query single | "
             "bytes/query batched | share of bandwidth (single / batched) |",
             "|---|---|---|---|---|---|---|---|---|"]
    names = {"index": "SparseIndex (auto engine)", "scipy": "scipy CSR (x@Â, Â@u)",
             "faiss_flat": "faiss IndexFlatIP (dense d)"}
    for key, r in rep["results"].items():
        lines.append(f"| {names[key]} | {r['qps_single']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['qps_batched']:.0f} | {r['qps_batched'] / base['qps_batched']:.1f} | "
                     f"{r['bytes_single'] / 1e6:.2f} MB | {r['bytes_batched'] / 1e6:.3f} MB | "
                     f"{r['bandwidth_share_single']:.0%} / {r['bandwidth_share_batched']:.0%} |")
    m = rep["memory"]
    lines += ["", f"Index memory: {m['total_bytes'] / 2**20:.1f} MiB, {m['bytes_per_item']:.0f} B/item "
                  f"({m['search_bytes_per_nnz']:.2f} B per non-zero for search); "
                  f"paper accounting {m['paper_bytes_per_item']:.0f} B/item.",
              f"Items scored exactly (pruned engine): {rep['results']['index']['items_scored_share']:.0%}.", "",
              "| items | batched q/s | µs/query per 1k items | index MiB |", "|---|---|---|---|"]
    for s in rep["scaling"]:
        lines.append(f"| {s['items']:,} | {s['qps_batched']:.0f} | {s['us_per_query_per_1k_items']:.2f} | "
                     f"{s['index_mib']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
