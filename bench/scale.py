"""Scale benchmark: exact and approximate top-100 retrieval on 40k / 250k / 1M-item catalogues, one thread.

    python -m spidx.bench.scale --out runs/scale --data data/gowalla.npz \\
        --embeddings CE.npz --dense ELSA256.npz --sizes 40k,250k --kinds tiled,clusters,zipf

Catalogue kinds (rows L2-normalised, signed values):

* ``tiled``: trained Compressed ELSA item rows (Gowalla), tiled; every tile maps the trained
  dimensions into ``--tile-dim`` dimensions by its own random injection (so tiles share no
  structure), and the dense ELSA model used by FAISS is tiled with one random orthogonal rotation
  per tile. Queries: the held-out test users of the model's own split, each user's whole fold-in
  history placed in one random tile.
* ``clusters``: taste clusters of ~1,000 items; an item draws 80 % of its k dimensions from its
  cluster's pool of 2k dimensions and the rest uniformly; histories of 30 items from 1-3 clusters.
* ``zipf``: no structure; dimensions drawn (without replacement) from a Zipf(0.8) popularity over
  d, histories of 30 items drawn from a Zipf(1.0) item popularity.

Every method answers u = x Â (seen items excluded, top-100) in one process on one thread; recall@100
is measured against the exact top-100 of the method's own embeddings (sparse methods against the
exact sparse scores, FAISS against the exact dense scores), with ties at the 100th score counted
as hits. Each (kind, size, methods) cell is written to ``OUT/cells/``; the report step merges every cell
found (cells of one catalogue measured by separate runs are united; plus ``--merge`` files) into ``scale.json``, ``scale.md`` and one ``scale-<kind>.png`` per kind,
and evaluates the issue-10 goals from those numbers.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import sys
import tempfile
import time

import numba
import numpy as np
import scipy.sparse as sp

from spidx import index_file
from spidx.embeddings import load_embeddings
from spidx.errors import InputError
from spidx.index import SparseIndex
from spidx.interactions import read_interactions
from spidx.evaluation import make_split, ranking_metrics

from .retrieval import index_bytes_per_query, measure_bandwidth

TOP = 100
KINDS = ("tiled", "clusters", "zipf")
RECALL_LEVELS = (0.95, 0.97, 0.98)  # where the approximate mode is compared with HNSW at equal recall
METHODS = ("spidx", "scipy", "faiss-hnsw", "faiss-ivf", "faiss-ivfpq", "hnsw-sparse", "seismic")
NAMED_SIZES = {"40k": 40_000, "250k": 250_000, "1m": 1_000_000}
CLUSTER_ITEMS = 1000      # items per taste cluster
IN_POOL = 0.8             # share of an item's dimensions drawn from its cluster's pool
HISTORY = 30              # synthetic history length
ZIPF_DIMS = 0.8           # exponent of the dimension popularity (zipf kind)
ZIPF_ITEMS = 1.0          # exponent of the item popularity (zipf histories)


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def one_thread() -> dict:
    """Pin numba, faiss and BLAS/OpenMP to one thread; returns what was pinned."""
    numba.set_num_threads(1)
    pinned = {"numba": numba.get_num_threads()}
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        pinned["faiss"] = 1
    except ImportError:
        pinned["faiss"] = None
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        pinned["blas"] = 1
    except ImportError:  # BLAS only serves untimed ground truth here; say so in the JSON
        pinned["blas"] = "not pinned (install threadpoolctl)"
    return pinned


def parse_size(token: str) -> int:
    t = token.strip().lower()
    if t in NAMED_SIZES:
        return NAMED_SIZES[t]
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise InputError(f"size '{token}' is not a number (e.g. 40k, 250k, 1m, 5000)") from None


# ---- catalogues ---------------------------------------------------------------------------------

class Catalogue:
    """Item rows A (CSR, n x d, unit rows), query histories H (CSR, q x n), optional dense model."""

    def __init__(self, kind, size, A, H, dense=None, description="", extra=None):
        self.kind, self.size, self.A, self.H, self.dense = kind, size, A, H, dense
        self.description, self.extra = description, dict(extra or {})


def _normalise_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.add.reduceat(m.data.astype(np.float64) ** 2, m.indptr[:-1]))
    m.data = (m.data / np.repeat(norms, np.diff(m.indptr))).astype(np.float32)
    return m


def _first_distinct(draws: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first k distinct values in draw order (successive sampling without replacement
    when the draws are i.i.d.); returns (values (m, k), rows that had k distinct values)."""
    m, w = draws.shape
    order = np.argsort(draws, axis=1, kind="stable")
    s = np.take_along_axis(draws, order, 1)
    first = np.ones_like(s, dtype=bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    is_first = np.empty_like(first)
    np.put_along_axis(is_first, order, first, 1)
    key = np.where(is_first, np.arange(w), w + np.arange(w))
    pick = np.argsort(key, axis=1, kind="stable")[:, :k]
    ok = is_first.sum(1) >= k
    return np.take_along_axis(draws, pick, 1), ok


def _sample_distinct(cdf: np.ndarray, rows: int, k: int, rng) -> np.ndarray:
    """`rows` x k distinct indices drawn without replacement with probabilities given by `cdf`."""
    out = np.empty((rows, k), np.int64)
    todo = np.arange(rows)
    width = 4 * k
    while len(todo):
        draws = np.minimum(np.searchsorted(cdf, rng.random((len(todo), width)) * cdf[-1]), len(cdf) - 1)
        vals, ok = _first_distinct(draws, k)
        out[todo[ok]] = vals[ok]
        todo = todo[~ok]
        width *= 2
    return out


def _csr_from_dims(dims: np.ndarray, d: int, rng) -> sp.csr_matrix:
    n, k = dims.shape
    dims = np.sort(dims, axis=1)
    vals = rng.standard_normal((n, k)).astype(np.float32)
    m = sp.csr_matrix((vals.ravel(), dims.ravel().astype(np.int32), np.arange(n + 1, dtype=np.int64) * k),
                      shape=(n, d))
    return _normalise_rows(m)


def _histories(rows: list, n: int) -> sp.csr_matrix:
    indptr = np.zeros(len(rows) + 1, np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    idx = np.concatenate([np.sort(r) for r in rows]).astype(np.int32) if rows else np.empty(0, np.int32)
    return sp.csr_matrix((np.ones(len(idx), np.float32), idx, indptr), shape=(len(rows), n))


def clusters_catalogue(n: int, d: int, k: int, n_queries: int, seed: int) -> Catalogue:
    """Taste clusters: each item draws IN_POOL of its k dimensions from its cluster's pool of 2k."""
    rng = np.random.default_rng(seed)
    n_clusters = max(2, n // CLUSTER_ITEMS)
    pool = min(2 * k, d)
    in_pool = min(int(round(IN_POOL * k)), pool)
    pools = np.stack([rng.choice(d, pool, replace=False) for _ in range(n_clusters)])
    cluster = rng.integers(n_clusters, size=n)
    parts = []
    for s in range(0, n, 65536):
        c = cluster[s:s + 65536]
        pick = np.argsort(rng.random((len(c), pool)), axis=1)[:, :in_pool]
        dims = np.concatenate([np.take_along_axis(pools[c], pick, 1),
                               rng.integers(d, size=(len(c), k - in_pool))], axis=1)
        while True:  # redraw the uniform part of rows that repeat a dimension
            srt = np.sort(dims, axis=1)
            bad = (srt[:, 1:] == srt[:, :-1]).any(1)
            if not bad.any():
                break
            dims[bad, in_pool:] = rng.integers(d, size=(int(bad.sum()), k - in_pool))
        parts.append(dims)
    A = _csr_from_dims(np.concatenate(parts), d, rng)
    members = np.split(np.argsort(cluster, kind="stable"), np.cumsum(np.bincount(cluster, minlength=n_clusters))[:-1])
    rows = []
    for _ in range(n_queries):
        chosen = rng.choice(n_clusters, size=min(int(rng.integers(1, 4)), n_clusters), replace=False)
        cand = np.concatenate([members[c] for c in chosen])
        rows.append(rng.choice(cand, size=min(HISTORY, len(cand)), replace=False))
    desc = (f"{n_clusters} taste clusters of ~{n // n_clusters} items; {in_pool} of k={k} dimensions from the "
            f"cluster's pool of {pool}, {k - in_pool} uniform over d={d}; histories of {HISTORY} items "
            f"from 1-3 clusters")
    return Catalogue("clusters", None, A, _histories(rows, n), description=desc,
                     extra={"clusters": n_clusters, "pool": pool, "in_pool": in_pool})


def zipf_catalogue(n: int, d: int, k: int, n_queries: int, seed: int) -> Catalogue:
    """No structure: dimensions from a Zipf popularity, histories of popularity-skewed items."""
    rng = np.random.default_rng(seed)
    dim_p = (1.0 / np.arange(1, d + 1) ** ZIPF_DIMS)[rng.permutation(d)]
    parts = [_sample_distinct(np.cumsum(dim_p), min(65536, n - s), k, rng) for s in range(0, n, 65536)]
    A = _csr_from_dims(np.concatenate(parts), d, rng)
    item_p = (1.0 / np.arange(1, n + 1) ** ZIPF_ITEMS)[rng.permutation(n)]
    hist = _sample_distinct(np.cumsum(item_p), n_queries, min(HISTORY, n), rng)
    desc = (f"dimensions drawn without replacement from Zipf({ZIPF_DIMS}) popularity over d={d}, k={k}; "
            f"histories of {HISTORY} items from Zipf({ZIPF_ITEMS}) item popularity")
    return Catalogue("zipf", None, A, _histories(list(hist), n), description=desc)


def random_rotation(r: int, rng) -> np.ndarray:
    q, upper = np.linalg.qr(rng.standard_normal((r, r)))
    return (q * np.sign(np.diag(upper))).astype(np.float32)


def tiled_catalogue(A0: sp.csr_matrix, E0, H0: sp.csr_matrix, tiles: int, tile_dim: int, seed: int) -> Catalogue:
    """`tiles` copies of the trained rows A0, each with its own random injection of A0's dimensions
    into `tile_dim` dimensions; E0 (dense model) tiled with one random rotation per tile (identity
    for tile 0); each history row moved as a whole into one random tile."""
    rng = np.random.default_rng(seed)
    n0, d0 = A0.shape
    if tile_dim < d0:
        raise InputError(f"--tile-dim {tile_dim} is smaller than the embeddings' d = {d0}")
    blocks, dense = [], []
    for t in range(tiles):
        dims = rng.permutation(tile_dim)[:d0].astype(np.int32)
        blocks.append(sp.csr_matrix((A0.data, dims[A0.indices], A0.indptr), shape=(n0, tile_dim)))
        if E0 is not None:
            dense.append(E0 if t == 0 else E0 @ random_rotation(E0.shape[1], rng))
    A = sp.vstack(blocks, format="csr")
    A.sort_indices()
    tile_of = rng.integers(tiles, size=H0.shape[0])
    H = sp.csr_matrix((H0.data, H0.indices + (tile_of[np.repeat(np.arange(H0.shape[0]), np.diff(H0.indptr))] * n0)
                       .astype(np.int64), H0.indptr), shape=(H0.shape[0], n0 * tiles))
    E = np.ascontiguousarray(np.vstack(dense), dtype=np.float32) if dense else None
    desc = (f"{tiles} tile(s) of the trained {n0:,}-item catalogue (d={d0}); each tile maps the {d0} "
            f"dimensions into d={tile_dim} by its own random injection; dense model tiled with a random "
            f"orthogonal rotation per tile; each held-out user's history placed in one random tile")
    return Catalogue("tiled", None, A, H, dense=E, description=desc, extra={"tiles": tiles, "tile_dim": tile_dim})


class Trained:
    """Trained Gowalla models and held-out users (loaded once per run)."""

    def __init__(self, data_path, ce_path, dense_path, n_queries):
        data = read_interactions(data_path)
        ce = load_embeddings(ce_path)
        if not sp.issparse(ce.matrix):
            raise InputError(f"{ce_path}: expected sparse (Compressed ELSA) embeddings")
        cfg = ce.meta.get("config", {})
        if not np.array_equal(ce.item_ids.astype(str), data.item_ids.astype(str)):
            raise InputError(f"{ce_path}: trained on other items than {data_path} holds")
        if cfg.get("test_users", 0) <= 0:
            raise InputError(f"{ce_path}: trained without --test-users; no held-out users to query with")
        split = make_split(data.matrix, cfg["test_users"], cfg.get("val_users", 0), cfg.get("seed", 42))
        fold = split.test[0]
        self.A0 = _normalise_rows(sp.csr_matrix(ce.matrix, dtype=np.float32))
        self.A0.sort_indices()
        self.history, self.targets = fold.history, fold.targets
        self.H0 = fold.history[:n_queries]
        self.E0 = None
        self.meta = {"data": os.path.abspath(data_path), "embeddings": os.path.abspath(ce_path),
                     "ce_model": {k: ce.meta.get(k) for k in ("model", "d", "k", "train_seconds")},
                     "test_users": int(cfg["test_users"]), "split_seed": int(cfg.get("seed", 42))}
        if dense_path:
            de = load_embeddings(dense_path)
            if sp.issparse(de.matrix) or not np.array_equal(de.item_ids.astype(str), data.item_ids.astype(str)):
                raise InputError(f"{dense_path}: expected dense embeddings of the same items")
            dcfg = de.meta.get("config", {})
            if (dcfg.get("test_users"), dcfg.get("seed")) != (cfg["test_users"], cfg.get("seed", 42)):
                raise InputError(f"{dense_path}: trained with another held-out split than {ce_path}")
            self.E0 = np.ascontiguousarray(de.matrix, dtype=np.float32)
            self.meta["dense"] = os.path.abspath(dense_path)
            self.meta["dense_model"] = {k: de.meta.get(k) for k in ("model", "d", "train_seconds")}


# ---- ground truth and recall --------------------------------------------------------------------

def _rows_times_queries(A: sp.csr_matrix, U: np.ndarray, qrow: np.ndarray, items: np.ndarray) -> np.ndarray:
    """float64 A[items[j]] · U[qrow[j]] for each j (items >= 0)."""
    sub = A[items]
    per_row = np.diff(sub.indptr)
    prod = sub.data.astype(np.float64) * U[np.repeat(qrow, per_row), sub.indices]
    out = np.zeros(len(items))
    nz = per_row > 0
    out[nz] = np.add.reduceat(prod, sub.indptr[:-1][nz])
    return out


def true_scores(A, U, ids: np.ndarray) -> np.ndarray:
    """Exact float64 scores of the returned ids (n, m) under item rows A (sparse or dense); -inf at -1."""
    n, m = ids.shape
    qrow = np.repeat(np.arange(n), m)
    flat = ids.ravel()
    ok = flat >= 0
    out = np.full(n * m, -np.inf)
    if sp.issparse(A):
        out[ok] = _rows_times_queries(A, U, qrow[ok], flat[ok])
    else:
        out[ok] = np.einsum("ij,ij->i", A[flat[ok]].astype(np.float64), U[qrow[ok]].astype(np.float64))
    return out.reshape(n, m)


def exact_topk(A, U: np.ndarray, H: sp.csr_matrix, top: int = TOP, chunk_bytes: int = 2**28) -> np.ndarray:
    """Exact top ids per query (seen excluded), scored in float32 chunks of queries."""
    n = A.shape[0]
    chunk = max(1, min(256, chunk_bytes // (4 * n)))
    out = []
    for s in range(0, U.shape[0], chunk):
        S = np.asarray(A @ U[s:s + chunk].T, dtype=np.float32).T.copy()
        out.append(_top_excluding(S, H[s:s + chunk], top))
    return np.vstack(out)


def _top_excluding(S: np.ndarray, h: sp.csr_matrix, top: int = TOP) -> np.ndarray:
    """Top ids of each score row with h's items masked (argpartition, then sort the top)."""
    r, c = h.nonzero()
    S[r, c] = -np.inf
    part = np.argpartition(-S, top - 1, axis=1)[:, :top]
    return np.take_along_axis(part, np.argsort(-np.take_along_axis(S, part, 1), 1, kind="stable"), 1)


class Truth:
    """Exact top-100 of one embedding (sparse or dense) and the 100th-best exact score per query."""

    def __init__(self, A, U, H):
        self.A, self.U, self.H = A, U, H
        self.ids = exact_topk(A, U, H)
        self.kth = true_scores(A, U, self.ids).min(axis=1)

    def recall(self, ids: np.ndarray) -> float:
        """Mean share of the exact top-100 found; an item tied with the 100th score counts."""
        ids = np.asarray(ids)[:, :TOP]
        n = len(ids)  # the first n queries (loop-timed methods answer a prefix)
        sc = true_scores(self.A, self.U[:n], ids)
        kth = self.kth[:n]
        tol = 1e-6 * np.maximum(np.abs(kth), 1e-30)[:, None] + 1e-9
        hits = sc >= kth[:, None] - tol
        # count each item once
        srt = np.sort(np.where(ids >= 0, ids, -1), axis=1)
        dup = np.zeros_like(hits)
        dup[:, 1:] = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
        n_dup = dup.sum(1)
        return float(np.mean(np.minimum(hits.sum(1) - n_dup, TOP) / TOP))


# ---- timing ---------------------------------------------------------------------------------------

def _seen(H: sp.csr_matrix, i: int) -> np.ndarray:
    return H.indices[H.indptr[i]:H.indptr[i + 1]]


def measure(batch_fn, single_fn, n_queries: int, n_single: int, repeats: int, budget_s: float = 30.0) -> dict:
    """Batched q/s (median of repeats, fewer when slow) and single-query latency of a method.
    batch_fn(rows) -> ids (len(rows), >=100) for a slice of the queries; single_fn(i) -> ids of query i."""
    single_fn(0)  # warm / compile both paths
    batch_fn(slice(0, min(n_queries, 40)))
    times, ids = [], None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        ids = batch_fn(slice(0, n_queries))
        times.append(time.perf_counter() - t)
        if sum(times) > budget_s:
            break
    lat = []
    for i in range(min(n_single, n_queries)):
        t = time.perf_counter()
        single_fn(i)
        lat.append(time.perf_counter() - t)
    lat = np.array(lat)
    return {"ids": ids, "qps_batched": n_queries / float(np.median(times)),
            "qps_single": float(1.0 / lat.mean()), "p50_ms": float(np.median(lat) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3), "batched_repeats": len(times),
            "single_queries": len(lat)}


def measure_loop(single_fn, n_queries: int) -> dict:
    """For methods whose batch is a loop of single queries (FAISS with per-query exclusion, Seismic):
    one timed pass over the first n_queries gives latency, q/s (batched = the same loop) and the ids."""
    single_fn(0)
    ids, lat = [], []
    for i in range(n_queries):
        t = time.perf_counter()
        ids.append(single_fn(i))
        lat.append(time.perf_counter() - t)
    lat = np.array(lat)
    return {"ids": np.stack(ids), "qps_batched": float(1.0 / lat.mean()), "qps_single": float(1.0 / lat.mean()),
            "p50_ms": float(np.median(lat) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "batched_repeats": 0, "single_queries": len(lat), "batched_is_loop": True}


def _filter_seen(ids: np.ndarray, H: sp.csr_matrix, rows) -> np.ndarray:
    """Drop each row's seen items from over-fetched results, keep the first TOP (-1 padded)."""
    out = np.full((len(ids), TOP), -1, np.int64)
    for r, q in enumerate(rows):
        keep = ids[r][(ids[r] >= 0) & ~np.isin(ids[r], _seen(H, q))][:TOP]
        out[r, :len(keep)] = keep
    return out


def _result(method, setting, m: dict, truth: Truth, build_s, stored_bytes, n_items, **extra) -> dict:
    ids = m.pop("ids")
    res = {"method": method, "setting": setting, "recall": truth.recall(ids), **m,
           "build_s": build_s, "stored_bytes": stored_bytes,
           "bytes_per_item": None if stored_bytes is None else stored_bytes / n_items}
    res.update(extra)
    log(f"  {method} {setting}: recall {res['recall']:.4f}, {res['qps_single']:.0f} q/s single, "
        f"{res['qps_batched']:.0f} q/s batched, p99 {res['p99_ms']:.2f} ms")
    return res


# ---- methods ----------------------------------------------------------------------------------------

def _stats_means(stats) -> dict:
    """Mean of every numeric per-query field of a stats record (namedtuple, dataclass or dict)."""
    if hasattr(stats, "_asdict"):
        fields = stats._asdict()
    elif isinstance(stats, dict):
        fields = stats
    else:
        fields = {k: v for k, v in vars(stats).items() if not k.startswith("_")}
    out = {}
    for name, v in fields.items():
        a = np.asarray(v)
        if a.dtype.kind in "iufb" and a.size:
            out[name] = float(a.mean())
    return out


def run_spidx(cat, U, truth, args, bandwidth) -> tuple[list, list]:
    results, notes = [], []
    H = cat.H
    excl = [_seen(H, i) for i in range(H.shape[0])]
    for values in args.values:
        t = time.perf_counter()
        index = SparseIndex.from_embeddings(cat.A, values=values)
        index.postings  # derived in memory on first use: part of building
        build = time.perf_counter() - t
        stored = int(sum(index_file.stored_nbytes(index).values()))  # bytes as stored in the .spidx file
        settings = [("exact", {"engine": e}) for e in ("scan", "pruned")]
        if values == args.values[0]:
            settings += [("approx", {"engine": "scan", "approx": a}) for a in args.approx]
        for mode, kw in settings:
            def batch(rows):
                return index.search(U[rows], TOP, exclude=H[rows], **kw)[1]

            def single(i):
                return index.search(U[i:i + 1], TOP, exclude=[excl[i]], **kw)[1]

            m = measure(batch, single, len(U), args.single, args.repeats)
            label = kw["engine"] if mode == "exact" else f"approx={kw['approx']}"
            extra = {"values": values, "engine": kw["engine"], "approx": kw.get("approx"), "mode": mode,
                     "nnz": index.nnz, "bytes_per_nnz": stored / index.nnz, "memory": index.memory_report()}
            _, _, stats = index.search(U, TOP, exclude=H, return_stats=True, **kw)
            _, _, stats1 = index.search(U[:args.single], TOP, exclude=excl[:args.single], return_stats=True,
                                        batch_size=1, **kw)
            extra["stats_mean"] = _stats_means(stats)
            extra["bytes_read_single"] = index_bytes_per_query(index, H[:args.single], stats1, kw["engine"])
            extra["bytes_read_batched"] = index_bytes_per_query(index, H, stats, kw["engine"])
            res = _result("spidx", f"{values} {label}", m, truth, build, stored, index.n_items, **extra)
            res["bandwidth_share_single"] = extra["bytes_read_single"] * res["qps_single"] / bandwidth
            res["bandwidth_share_batched"] = extra["bytes_read_batched"] * res["qps_batched"] / bandwidth
            results.append(res)
        del index
    return results, notes


def run_scipy(cat, U, truth, args, bandwidth) -> list:
    A, H = cat.A, cat.H
    n = A.shape[0]
    chunk = max(1, min(256, 2**28 // (4 * n)))

    def batch(rows):
        Ur, Hr = U[rows], H[rows]
        out = []
        for s in range(0, len(Ur), chunk):
            S = np.ascontiguousarray((A @ Ur[s:s + chunk].T).T)
            out.append(_top_excluding(S, Hr[s:s + chunk]))
        return np.vstack(out)

    def single(i):
        s = A @ U[i]
        s[_seen(H, i)] = -np.inf
        part = np.argpartition(-s, TOP - 1)[:TOP]
        return part[np.argsort(-s[part], kind="stable")]

    m = measure(batch, single, len(U), args.single, args.repeats)
    stored = int(A.data.nbytes + A.indices.nbytes + A.indptr.nbytes)
    res = _result("scipy", "A@u / A@U.T", m, truth, 0.0, stored, n, bytes_read_single=float(stored),
                  bytes_per_nnz=stored / A.nnz)
    res["bandwidth_share_single"] = stored * res["qps_single"] / bandwidth
    return [res]


def _faiss_sweep(index, knob_name, knobs, Xq, H, truth, args, build, label, method, n_items) -> list:
    """Time `index` at each knob value. FAISS has no per-query exclusion inside one batched call, so
    every query is one call with an IDSelector that skips its seen items (batched = that loop)."""
    import faiss

    stored = len(faiss.serialize_index(index))
    hnsw = knob_name == "efSearch"
    out = []
    for knob in knobs:
        def single(i):
            seen = faiss.IDSelectorBatch(_seen(H, i).astype(np.int64))
            skip = faiss.IDSelectorNot(seen)
            params = faiss.SearchParametersHNSW(efSearch=int(knob), sel=skip) if hnsw else \
                faiss.SearchParametersIVF(nprobe=int(knob), sel=skip)
            return index.search(Xq[i:i + 1], TOP, params=params)[1][0]

        m = measure_loop(single, min(len(Xq), args.loop_queries))
        out.append(_result(method, f"{label} {knob_name}={knob}", m, truth, build, stored, n_items,
                           knob=knob_name, knob_value=knob))
    return out


def run_faiss(method, E, U, H, truth, args) -> list:
    """HNSW / IVF-Flat / IVF-PQ on dense item rows E (n x r) with queries U (n_q x r)."""
    import faiss

    n, r = E.shape
    t = time.perf_counter()
    if method in ("faiss-hnsw", "hnsw-sparse"):
        index = faiss.IndexHNSWFlat(r, 32, faiss.METRIC_INNER_PRODUCT)
        index.add(E)
        build = time.perf_counter() - t
        label = "HNSW32" + (" (densified sparse)" if method == "hnsw-sparse" else "")
        return _faiss_sweep(index, "efSearch", args.ef, U, H, truth, args, build, label, method, n)
    nlist = 2 ** int(round(math.log2(max(4.0 * math.sqrt(n), 16))))
    quantizer = faiss.IndexFlatIP(r)
    if method == "faiss-ivf":
        index = faiss.IndexIVFFlat(quantizer, r, nlist, faiss.METRIC_INNER_PRODUCT)
        label = f"IVF{nlist},Flat"
    else:
        m_sub = args.pq_m if r % args.pq_m == 0 else r // 4
        index = faiss.IndexIVFPQ(quantizer, r, nlist, m_sub, 8, faiss.METRIC_INNER_PRODUCT)
        label = f"IVF{nlist},PQ{m_sub}x8"
    index.cp.niter = 10
    sample = np.random.default_rng(0).choice(n, size=min(n, 32 * nlist), replace=False)
    index.train(E[np.sort(sample)])
    index.add(E)
    build = time.perf_counter() - t
    knobs = [p for p in args.nprobe if p <= nlist]
    return _faiss_sweep(index, "nprobe", knobs, U, H, truth, args, build, label, method, n)


def run_seismic(cat, U, truth, args) -> tuple[list, list]:
    """Seismic (TusKANNy/seismic, pyseismic-lsr) on the same signed sparse rows (stored as f16)."""
    try:
        from seismic import SeismicDataset, SeismicIndex, get_seismic_string
    except ImportError:
        return [], ["seismic: pyseismic-lsr not installed (pip install -e '.[bench]'); skipped"]
    A, H = cat.A, cat.H
    n, d = A.shape
    string_type = get_seismic_string()
    names = np.array([str(j) for j in range(d)], dtype=string_type)
    t = time.perf_counter()
    ds = SeismicDataset()
    for i in range(n):
        a, b = A.indptr[i], A.indptr[i + 1]
        ds.add_document(str(i), names[A.indices[a:b]], A.data[a:b].astype(np.float32))
    lists = max(1, int((np.diff(A.tocsc().indptr) > 0).sum()))
    n_postings = int(2 * A.nnz / lists)
    index = SeismicIndex.build_from_dataset(ds, n_postings=n_postings, num_threads=1)
    build = time.perf_counter() - t
    del ds
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        path = os.path.join(tmp, "seismic.index")
        index.save(path)
        stored = sum(os.path.getsize(os.path.join(root, f)) for root, _, fs in os.walk(tmp) for f in fs)
    q_comp, q_val = [], []
    for u in U:
        nz = np.flatnonzero(u)
        q_comp.append(names[nz])
        q_val.append(u[nz].astype(np.float32))
    out = []
    for cut, heap in args.seismic:
        def single(i):
            # no exclusion in Seismic's API: fetch TOP + |seen| and drop the seen items
            fetch = TOP + int(H.indptr[i + 1] - H.indptr[i])
            res = index.search(str(i), q_comp[i], q_val[i], fetch, query_cut=cut, heap_factor=heap)
            ids = np.full(fetch, -1, np.int64)
            ids[:len(res)] = [int(doc) for _, _, doc in res]
            return _filter_seen(ids[None], H, [i])[0]

        m = measure_loop(single, min(len(U), args.loop_queries))
        out.append(_result("seismic", f"query_cut={cut} heap_factor={heap}", m, truth, build, stored, n,
                           query_cut=cut, heap_factor=heap, n_postings=n_postings))
    notes = [f"seismic: signed values indexed as they are (stored as f16 by Seismic), n_postings={n_postings} "
             f"(2x the mean posting-list length), other build parameters at their defaults; it has no exclusion, so each "
             f"query fetches 100 + |history| and drops seen items; batched = a loop of single queries, timed and "
             f"scored on the first {args.loop_queries} queries"]
    return out, notes


# ---- accuracy on held-out users (the two model families) ----------------------------------------

def heldout_accuracy(trained: Trained, values_list) -> dict:
    """nDCG@100 / Recall@k on the held-out test users: exact sparse retrieval per stored value type,
    and the dense model's exact retrieval."""
    out = {}
    for values in values_list:
        index = SparseIndex.from_embeddings(trained.A0, values=values)
        rec = index.recommend(trained.history, k=TOP)
        out[f"sparse_{values}"] = ranking_metrics(rec.positions, trained.targets)
    if trained.E0 is not None:
        E = trained.E0
        ids = exact_topk(E, np.asarray(trained.history @ E, dtype=np.float32), trained.history)
        out["dense"] = ranking_metrics(ids, trained.targets)
    out["users"] = int(trained.history.shape[0])
    return out


# ---- one cell --------------------------------------------------------------------------------------

def build_catalogue(kind, target, args, trained) -> Catalogue:
    if kind == "tiled":
        tiles = max(1, int(round(target / trained.A0.shape[0])))
        cat = tiled_catalogue(trained.A0, trained.E0, trained.H0, tiles, args.tile_dim, args.seed)
    else:
        n = target
        if trained is not None:  # same item counts as the tiled catalogue of this size
            n = max(1, int(round(target / trained.A0.shape[0]))) * trained.A0.shape[0]
        make = clusters_catalogue if kind == "clusters" else zipf_catalogue
        cat = make(n, args.synthetic_dim, args.nnz, args.queries, args.seed + 1)
    return cat


def run_cell(kind, size_label, args, trained, bandwidth, pinned, save=lambda cell: None) -> dict:
    """Measure every requested method on one catalogue; `save(cell)` runs after each method (partial cells
    survive an interrupted run)."""
    target = parse_size(size_label)
    t0 = time.perf_counter()
    cat = build_catalogue(kind, target, args, trained)
    A, H = cat.A, cat.H
    keep = np.diff(H.indptr) > 0
    H = cat.H = H[keep]
    n, d = A.shape
    log(f"{kind} {size_label}: {n:,} items, d={d}, nnz={A.nnz:,}, {H.shape[0]} queries "
        f"(mean history {np.diff(H.indptr).mean():.1f}), built in {time.perf_counter() - t0:.0f}s")
    U = np.asarray((H @ A).toarray(), dtype=np.float32)  # u = x Â per history (what SparseIndex.query_vectors gives)
    truth = Truth(A, U, H)
    cell = {"kind": kind, "size": size_label, "n_items": int(n), "d": int(d), "nnz": int(A.nnz),
            "queries": int(H.shape[0]), "mean_history": float(np.diff(H.indptr).mean()),
            "query_active_dims": float((U != 0).sum(1).mean()), "description": cat.description, **cat.extra,
            "bandwidth_bytes_s": bandwidth, "threads": pinned, "results": [], "notes": [], "accuracy": None}
    methods = args.methods
    if "spidx" in methods:
        res, notes = run_spidx(cat, U, truth, args, bandwidth)
        cell["results"] += res
        cell["notes"] += notes
        save(cell)
    if "scipy" in methods:
        cell["results"] += run_scipy(cat, U, truth, args, bandwidth)
        save(cell)
    dense_methods = [m for m in ("faiss-hnsw", "faiss-ivf", "faiss-ivfpq") if m in methods]
    if dense_methods and cat.dense is None:
        cell["notes"].append("FAISS on a dense model: only the tiled catalogue has one (pass --dense); skipped")
    elif dense_methods:
        Ud = np.ascontiguousarray(H @ cat.dense, dtype=np.float32)
        dtruth = Truth(cat.dense, Ud, H)
        for m in dense_methods:
            cell["results"] += run_faiss(m, cat.dense, Ud, H, dtruth, args)
            save(cell)
    if any(m in methods for m in ("faiss-hnsw", "faiss-ivf", "faiss-ivfpq", "hnsw-sparse")):
        cell["notes"].append("FAISS: one search call per query with an IDSelector skipping its seen items "
                             "(no per-query exclusion in one batched call), so batched = that loop, timed and scored on the "
                             f"first {args.loop_queries} queries")
    if "hnsw-sparse" in methods:
        if n * d * 4 > args.densify_max_mib * 2**20:
            cell["notes"].append(f"HNSW on densified sparse rows: {n * d * 4 / 2**30:.1f} GiB dense exceeds "
                                 f"--densify-max-mib {args.densify_max_mib}; skipped")
        else:
            dense = A.toarray()
            cell["results"] += run_faiss("hnsw-sparse", dense, U, H, truth, args)
            del dense
            save(cell)
    if "seismic" in methods:
        res, notes = run_seismic(cat, U, truth, args)
        cell["results"] += res
        cell["notes"] += notes
    if kind == "tiled" and trained is not None:
        cell["accuracy"] = heldout_accuracy(trained, args.values)
        cell["trained"] = trained.meta
    cell["seconds"] = time.perf_counter() - t0
    return cell


# ---- report ------------------------------------------------------------------------------------------

def _size_order(cells):
    return sorted(cells, key=lambda c: (KINDS.index(c["kind"]) if c["kind"] in KINDS else 99, c["n_items"]))


def _best(results, pred):
    cand = [r for r in results if pred(r)]
    return max(cand, key=lambda r: r["qps_single"]) if cand else None


def _largest(cells, kind):
    cs = [c for c in cells if c["kind"] == kind]
    return max(cs, key=lambda c: c["n_items"]) if cs else None


def goals(cells: list) -> list:
    """The issue-10 goals, evaluated from the measured numbers at the largest size run per kind
    (the goals are stated for 1M items on one thread). held: True / False / None (not measured)."""
    out = []

    def add(goal, held, value, where):
        out.append({"goal": goal, "held": held, "value": value, "where": where})

    def plain(c, values="f32"):
        return _best(c["results"], lambda r: r["method"] == "spidx" and r.get("engine") == "scan"
                     and r.get("mode") == "exact" and r.get("values") == values)

    def scipy_of(c):
        return _best(c["results"], lambda r: r["method"] == "scipy")

    ratios, where = [], []
    for kind in KINDS:
        c = _largest(cells, kind)
        if c and plain(c) and scipy_of(c):
            ratios.append(plain(c)["qps_single"] / scipy_of(c)["qps_single"])
            where.append(f"{kind} {c['n_items']:,}")
    add("exact engine, one query: >= 3x scipy A@u on every catalogue kind",
        (min(ratios) >= 3.0) if ratios else None,
        ", ".join(f"{w}: {r:.1f}x" for w, r in zip(where, ratios)) or "not measured", "largest size per kind")
    shares = []
    for kind in KINDS:
        ck = _largest(cells, kind)
        pk = plain(ck) if ck else None
        if pk and pk.get("bandwidth_share_single") is not None:
            shares.append((kind, pk["bandwidth_share_single"]))
    add("exact engine, one query: within 2x of the bandwidth floor for the bytes it reads",
        all(v >= 0.5 for _, v in shares) if shares else None,
        ", ".join(f"{k}: {v:.0%} of the read bandwidth" for k, v in shares) or "not measured",
        "largest size per kind")
    c = _largest(cells, "tiled")
    p = plain(c) if c else None
    ok, vals = [], []
    for kind in KINDS:
        ck = _largest(cells, kind)
        pk = plain(ck) if ck else None
        if pk:
            ok.append(pk["qps_batched"] >= pk["qps_single"])
            vals.append(f"{kind}: {pk['qps_batched'] / pk['qps_single']:.2f}x")
    add("exact engine: batched never slower than one at a time", all(ok) if ok else None,
        ", ".join(vals) or "not measured", "largest size per kind")
    pr = _best(c["results"], lambda r: r["method"] == "spidx" and r.get("engine") == "pruned"
               and r.get("mode") == "exact" and r.get("values") == "f32") if c else None
    if pr and p:
        ratio = pr["qps_single"] / p["qps_single"]
        add("exact with pruning: >= 10x today's exact engine, identical results",
            ratio >= 10 and pr["recall"] >= 1.0 - 1e-9, f"{ratio:.1f}x, recall {pr['recall']:.4f}",
            f"tiled {c['n_items']:,}")
    else:
        add("exact with pruning: >= 10x today's exact engine, identical results", None,
            "not measured (no 'pruned' engine)", "")
    approx = [r for r in c["results"] if r["method"] == "spidx" and r.get("mode") == "approx"] if c else []
    if approx:
        fast = [r for r in approx if r["recall"] >= 0.95 and r["qps_single"] >= 2000]
        best = _best(approx, lambda r: r["recall"] >= 0.95)
        add("approximate: recall@100 >= 0.95 at >= 2,000 queries/s", bool(fast),
            "none reaches recall 0.95" if best is None else
            f"best at recall >= 0.95: {best['qps_single']:.0f} q/s ({best['setting']})", f"tiled {c['n_items']:,}")
        # against HNSW at the largest tiled size where HNSW ran (its build is the slowest step)
        with_hnsw = [x for x in cells if x["kind"] == "tiled" and any(r["method"] == "faiss-hnsw"
                                                                      for r in x["results"])]
        ch = max(with_hnsw, key=lambda x: x["n_items"]) if with_hnsw else c
        mine = [r for r in ch["results"] if r["method"] == "spidx" and r.get("mode") == "approx"]
        levels = []  # (recall level, best spidx approx q/s reaching it, best HNSW q/s reaching it)
        for level in RECALL_LEVELS:
            a = _best(mine, lambda r: r["recall"] >= level)
            h = _best(ch["results"], lambda r: r["method"] == "faiss-hnsw" and r["recall"] >= level)
            levels.append((level, a, h))
        if not with_hnsw:
            held, val = None, "HNSW not run"
        else:
            held = all(a is not None and (h is None or a["qps_single"] > h["qps_single"]) for _, a, h in levels)
            val = "; ".join(f"recall >= {lv}: " + ("spidx never" if a is None else
                                                   f"{a['qps_single']:.0f} q/s ({a['setting']})")
                            + " vs HNSW " + ("never" if h is None else f"{h['qps_single']:.0f} q/s ({h['setting']})")
                            for lv, a, h in levels)
            top = max((r for r in ch["results"] if r["method"] == "faiss-hnsw"), key=lambda r: r["recall"])
            val += f" (HNSW's highest recall: {top['recall']:.3f} at {top['qps_single']:.0f} q/s, {top['setting']})"
        add("approximate: at equal recall faster than FAISS HNSW on the dense r=256 model", held, val,
            f"tiled {ch['n_items']:,}")
    else:
        add("approximate: recall@100 >= 0.95 at >= 2,000 queries/s", None, "not measured (no approx mode)", "")
        add("approximate: at equal recall faster than FAISS HNSW on the dense r=256 model", None,
            "not measured (no approx mode)", "")
    compact = [r for r in (c["results"] if c else []) if r["method"] == "spidx" and r.get("values") != "f32"
               and r.get("mode") == "exact"]
    if compact:
        best = min(compact, key=lambda r: r["bytes_per_nnz"])
        serving = best.get("memory", {}).get("serving_bytes_per_nnz")
        add("compact storage: <= 3 B per non-zero stored", best["bytes_per_nnz"] <= 3.0,
            f"{best['bytes_per_nnz']:.2f} B/nnz ({best['values']}, the whole file)"
            + (f"; in memory while serving {serving:.2f} B/nnz (rows + the posting lists derived from them)"
               if serving else ""), f"tiled {c['n_items']:,}")
        acc = next((x["accuracy"] for x in cells if x.get("accuracy")), None)
        if acc and f"sparse_{best['values']}" in acc and "sparse_f32" in acc:
            diff = acc[f"sparse_{best['values']}"]["ndcg@100"] - acc["sparse_f32"]["ndcg@100"]
            add("compact storage: nDCG@100 on Gowalla within 0.001 of f32", abs(diff) <= 0.001,
                f"{best['values']} - f32 = {diff:+.4f}", "Gowalla held-out users")
        else:
            add("compact storage: nDCG@100 on Gowalla within 0.001 of f32", None, "not measured", "")
    else:
        add("compact storage: <= 3 B per non-zero stored", None, "not measured", "")
        add("compact storage: nDCG@100 on Gowalla within 0.001 of f32", None, "not measured", "")
    return out


def markdown(report: dict) -> str:
    lines = [f"Scale benchmark, one thread, top-{TOP}, seen items excluded. Goals evaluated at the largest "
             f"size run per kind (stated for 1M items).", "", "| goal | held | measured | where |",
             "|---|---|---|---|"]
    for g in report["goals"]:
        held = {True: "held", False: "not held", None: "not measured"}[g["held"]]
        lines.append(f"| {g['goal']} | {held} | {g['value']} | {g['where']} |")
    acc = next((c["accuracy"] for c in report["cells"] if c.get("accuracy")), None)
    if acc:
        lines += ["", f"Exact retrieval accuracy on Gowalla ({acc['users']} held-out users, 40,981 items):", "",
                  "| model | nDCG@100 | Recall@20 | Recall@50 |", "|---|---|---|---|"]
        for key, m in acc.items():
            if isinstance(m, dict):
                lines.append(f"| {key} | {m['ndcg@100']:.4f} | {m['recall@20']:.4f} | {m['recall@50']:.4f} |")
    for c in report["cells"]:
        lines += ["", f"### {c['kind']}, {c['n_items']:,} items (d={c['d']}, {c['nnz']:,} non-zeros, "
                      f"{c['queries']} queries, mean history {c['mean_history']:.1f}, "
                      f"{c['query_active_dims']:.0f} active query dimensions)", "", c["description"] + ".", "",
                  "| method | setting | recall@100 | q/s single | p50 ms | p99 ms | q/s batched | build s | B/item |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(c["results"], key=lambda r: METHODS.index(r["method"]) if r["method"] in METHODS else 99):
            bpi = "" if r["bytes_per_item"] is None else f"{r['bytes_per_item']:.0f}"
            lines.append(f"| {r['method']} | {r['setting']} | {r['recall']:.4f} | {r['qps_single']:.0f} | "
                         f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['qps_batched']:.0f} | {r['build_s']:.1f} | "
                         f"{bpi} |")
        for note in c["notes"]:
            lines.append(f"\nNote: {note}")
    return "\n".join(lines) + "\n"


def plot(report: dict, out_dir: str) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for kind in KINDS:
        cells = [c for c in report["cells"] if c["kind"] == kind]
        if not cells:
            continue
        def group(r):
            if r["method"] != "spidx":
                return r["method"]
            key = f"spidx {r['values']} {r.get('mode')}"
            return key + f" ({r['engine']})" if r.get("mode") == "exact" else key

        keys = list(dict.fromkeys(group(r) for c in cells for r in sorted(
            c["results"], key=lambda r: METHODS.index(r["method"]) if r["method"] in METHODS else 99)))
        colours = {k: plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")(i) for i, k in enumerate(keys)}
        fig, axes = plt.subplots(1, len(cells), figsize=(5.5 * len(cells) + 2.5, 4.2), squeeze=False)
        for ax, c in zip(axes[0], cells):
            groups = {}
            for r in c["results"]:
                groups.setdefault(group(r), []).append(r)
            for key, rs in groups.items():
                rs = sorted(rs, key=lambda r: r["recall"])
                ax.plot([r["qps_single"] for r in rs], [r["recall"] for r in rs], marker="o", color=colours[key])
            ax.set_xscale("log")
            ax.set_xlabel("queries/s (one query at a time, 1 thread)")
            ax.set_ylabel("recall@100 vs exact (own embeddings)")
            ax.set_title(f"{kind}: {c['n_items']:,} items")
            ax.grid(True, which="both", alpha=0.3)
        handles = [plt.Line2D([], [], marker="o", color=colours[k]) for k in keys]
        fig.legend(handles, keys, fontsize=8, loc="center right")
        fig.tight_layout(rect=(0, 0, 1 - 2.4 / (5.5 * len(cells) + 2.5), 1))
        path = os.path.join(out_dir, f"scale-{kind}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def load_cells(paths) -> list:
    cells = {}
    for p in paths:
        # a folder contributes its cells (never its own merged report, which would replay old numbers)
        files = sorted(glob.glob(os.path.join(p, "cells", "*.json"))) if os.path.isdir(p) else [p]
        for f in files:
            with open(f) as fh:
                obj = json.load(fh)
            for c in obj.get("cells", [obj] if "kind" in obj and "results" in obj else []):
                key = (c["kind"], c["n_items"])
                cells[key] = _merge_cell(cells[key], c) if key in cells else c
    return _size_order(list(cells.values()))


def _merge_cell(old: dict, new: dict) -> dict:
    """One catalogue measured by several runs (e.g. methods run separately): results are united, a
    (method, setting) measured twice keeps the later file's numbers."""
    merged = {**old, **{k: v for k, v in new.items() if v is not None}}
    results = {(r["method"], r["setting"]): r for r in old["results"]}
    results.update({(r["method"], r["setting"]): r for r in new["results"]})
    merged["results"] = list(results.values())
    merged["notes"] = list(dict.fromkeys(old.get("notes", []) + new.get("notes", [])))
    if old.get("accuracy") and new.get("accuracy"):
        merged["accuracy"] = {**old["accuracy"], **new["accuracy"]}
    return merged


def write_report(out_dir: str, extra_paths=()) -> dict:
    cells = load_cells([out_dir, *extra_paths])
    report = {"cells": cells, "goals": goals(cells), "python": platform.python_version(),
              "machine": platform.machine()}
    with open(os.path.join(out_dir, "scale.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out_dir, "scale.md"), "w") as f:
        f.write(markdown(report))
    report["plots"] = plot(report, out_dir) if cells else []
    log(f"report: {len(cells)} cells -> {os.path.join(out_dir, 'scale.md')}")
    return report


# ---- CLI ---------------------------------------------------------------------------------------------

def _floats(s):
    return [float(x) for x in s.split(",") if x]


def _ints(s):
    return [int(x) for x in s.split(",") if x]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="Output folder (cells/, scale.json, scale.md, PNGs).")
    p.add_argument("--sizes", default="40k,250k,1m", help="Catalogue sizes: 40k, 250k, 1m or item counts.")
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--data", help="Interactions the embeddings were trained on (tiled kind).")
    p.add_argument("--embeddings", help="Trained Compressed ELSA embeddings (tiled kind).")
    p.add_argument("--dense", help="Dense ELSA embeddings, same split (FAISS on the tiled kind).")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--single", type=int, default=200, help="Queries timed one at a time.")
    p.add_argument("--repeats", type=int, default=3, help="Batched repeats (median; fewer past 30 s).")
    p.add_argument("--loop-queries", type=int, default=200,
                   help="Queries answered (and recall measured on) by methods whose batch is a loop (FAISS, Seismic).")
    p.add_argument("--values", default="f32,i8", help="spidx stored value types (first = approx sweeps).")
    p.add_argument("--approx", default="0.2,0.25,0.3,0.4,0.6,1.0", help="spidx approx settings.")
    p.add_argument("--ef", default="16,32,64,128,256,512", help="HNSW efSearch sweep.")
    p.add_argument("--nprobe", default="1,2,4,8,16,32,64,128", help="IVF nprobe sweep.")
    p.add_argument("--pq-m", type=int, default=64, help="IVF-PQ sub-quantisers (8 bits each).")
    p.add_argument("--seismic", default="64:0.9,256:0.9,1024:0.9,4096:1.0",
                   help="Seismic query_cut:heap_factor settings.")
    p.add_argument("--synthetic-dim", type=int, default=4096)
    p.add_argument("--nnz", type=int, default=32, help="Non-zeros per synthetic row.")
    p.add_argument("--tile-dim", type=int, default=4096, help="Dimensions the tiles' injections map into.")
    p.add_argument("--densify-max-mib", type=int, default=1024, help="Largest dense copy for HNSW on sparse rows.")
    p.add_argument("--bandwidth-mib", type=int, default=512, help="Buffer for the read-bandwidth probe.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", action="store_true", help="Only merge existing cells (and --merge files).")
    p.add_argument("--merge", nargs="*", default=[], help="More cell/report JSON files or folders to merge.")
    args = p.parse_args(argv)
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.methods = [m for m in args.methods.split(",") if m]
    for k in args.kinds:
        if k not in KINDS:
            raise InputError(f"unknown kind '{k}' (choose from {', '.join(KINDS)})")
    for m in args.methods:
        if m not in METHODS:
            raise InputError(f"unknown method '{m}' (choose from {', '.join(METHODS)})")
    args.values = [v for v in args.values.split(",") if v]
    args.approx, args.ef, args.nprobe = _floats(args.approx), _ints(args.ef), _ints(args.nprobe)
    args.seismic = [(int(a), float(b)) for a, b in (s.split(":") for s in args.seismic.split(",") if s)]
    for s in args.sizes:
        if parse_size(s) <= 0:
            raise InputError(f"size '{s}' must be positive")
    if "tiled" in args.kinds and not args.report and not (args.data and args.embeddings):
        raise InputError("the tiled kind needs --data and --embeddings (trained Compressed ELSA)")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        os.makedirs(os.path.join(args.out, "cells"), exist_ok=True)
        if not args.report:
            pinned = one_thread()
            trained = Trained(args.data, args.embeddings, args.dense, args.queries) \
                if args.data and args.embeddings else None
            bandwidth = measure_bandwidth(mib=args.bandwidth_mib)
            log(f"one-thread read bandwidth {bandwidth / 1e9:.1f} GB/s")
            for size in args.sizes:
                for kind in args.kinds:
                    def save(cell, kind=kind):
                        cell["argv"] = sys.argv[1:] if argv is None else list(argv)
                        name = f"scale-{kind}-{cell['n_items']}-{'+'.join(args.methods)}.json"
                        path = os.path.join(args.out, "cells", name)
                        with open(path + ".tmp", "w") as f:
                            json.dump(cell, f, indent=1)
                        os.replace(path + ".tmp", path)
                        return path

                    cell = run_cell(kind, size, args, trained, bandwidth, pinned, save)
                    log(f"wrote {save(cell)} ({cell['seconds']:.0f}s)")
        write_report(args.out, args.merge)
        return 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
