"""Served models with one uniform interface, so the runner can evaluate and time them alike.

A `Served` object is what a deployment would hold in memory: it answers `recommend(H, k)` (top-k
item positions for each row of a binary history matrix, seen items excluded) and knows its bytes.
Query time always starts from the user's history: u = xÂ is part of every timed query.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from . import adapters
from spidx.ranking import rank_by_scores, topk


@dataclass
class Served:
    method: str                     # table label, e.g. "Compressed ELSA f32"
    group: str                      # --methods group
    budget: int | None              # matched budget in bytes per item (None: reference)
    config: str                     # human-readable configuration
    params: dict                    # everything that produced it (incl. seed)
    paper_bytes_per_item: float     # the paper's accounting (notes §3.3)
    stored_bytes: int               # total serving bytes, as actually held / serialised
    n_items: int
    code_bytes_per_item: float | None = None  # FAISS: code bytes per item, fixed parts excluded
    fixed_bytes: int | None = None            # FAISS: codebooks/rotations/header (serialised - codes)
    build_seconds: float = 0.0      # index build / quantiser training (not model training)
    train_seconds: float = 0.0      # model training (from the cache record when cached)
    cached: bool = False
    exact: bool = True
    base: str | None = None         # key of the uncompressed embeddings (for overlap@100)
    extra: dict = field(default_factory=dict)

    def recommend(self, H: sp.csr_matrix, k: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def recommend_one(self, h: sp.csr_matrix, k: int) -> np.ndarray:
        return self.recommend(h, k)[0]

    @property
    def stored_bytes_per_item(self) -> float:
        return self.stored_bytes / max(self.n_items, 1)


# ---- helpers ---------------------------------------------------------------------------------------

def exact_dense_topk(A, H: sp.csr_matrix, k: int, block: int = 1024) -> np.ndarray:
    """Exact ELSA top-k, s = (xÂ)Âᵀ with seen items masked, for dense or CSR Â (the overlap reference)."""
    return rank_by_scores(lambda h: (h @ A) @ A.T, H, k, exclude_seen=True, batch_size=block)[0]


def overfetch_search(search, U: np.ndarray, H: sp.csr_matrix, k: int, n_items: int, chunk: int = 256) -> np.ndarray:
    """Top-k item ids from a `search(U, kk) -> (scores, ids)` that cannot exclude per-query items.

    Users are grouped by history length; each group fetches k + its longest history, then seen items are
    dropped and the candidates ranked by the shared `ranking.topk` (ties: smaller item). Where the k-th
    kept score ties the last fetched one, items beyond the fetch could tie too: those rows fetch twice as
    many until the tie is resolved (or every item is fetched). This is what a deployment of such an index
    has to do.
    """
    lens = np.diff(H.indptr)
    order = np.argsort(lens, kind="stable")
    out = np.full((H.shape[0], k), -1, np.int64)
    for s in range(0, len(order), chunk):
        rows = order[s:s + chunk]
        kk = int(min(n_items, k + lens[rows].max()))
        while len(rows):
            D, I = search(np.ascontiguousarray(U[rows]), kk)
            D, I = np.asarray(D, np.float32), np.asarray(I, np.int64)
            dense = np.full((len(rows), n_items), -np.inf, np.float32)
            valid = I >= 0
            dense[np.nonzero(valid)[0], I[valid]] = D[valid]
            ids, scores = topk(dense, k, exclude=H[rows])
            out[rows] = ids
            kth = scores[:, -1]
            unresolved = (kk < n_items) & valid[:, -1] & (D[:, -1] >= kth) & (kth > -np.inf)
            rows, kk = rows[unresolved], int(min(n_items, 2 * kk))
    return out


# ---- dense / FAISS ---------------------------------------------------------------------------------

@dataclass
class FaissServed(Served):
    """A faiss index over (possibly compressed) item vectors; queries u = x·Â_dec use the decoded vectors
    (a deployment stores only codes), then search(u, k + |history|) and drop seen items."""

    index: object = None
    decoded: np.ndarray | None = None  # items x D, float32

    def recommend(self, H, k):
        U = np.asarray(H @ self.decoded, dtype=np.float32)
        return overfetch_search(self.index.search, U, H, k, self.n_items)


def flat_served(A: np.ndarray, method: str, group: str, budget, config: str, params: dict, **kw) -> FaissServed:
    import faiss

    t0 = time.perf_counter()
    A = np.ascontiguousarray(A, dtype=np.float32)
    index = faiss.IndexFlatIP(A.shape[1])
    index.add(A)
    build = time.perf_counter() - t0
    stored = len(faiss.serialize_index(index))
    return FaissServed(method=method, group=group, budget=budget, config=config, params=params,
                       paper_bytes_per_item=4.0 * A.shape[1], stored_bytes=stored, n_items=A.shape[0],
                       code_bytes_per_item=4.0 * A.shape[1], fixed_bytes=stored - A.nbytes,
                       build_seconds=build, exact=True, index=index, decoded=A, **kw)


# ---- our inverted index ----------------------------------------------------------------------------

VALUE_BYTES = {"f32": 4, "f16": 2, "i8": 1}


@dataclass
class IndexServed(Served):
    index: object = None

    def recommend(self, H, k):
        return adapters.index_recommend(self.index, H, k)


def index_served(A: sp.csr_matrix, values: str, method: str, group: str, budget, config: str, params: dict,
                 **kw) -> IndexServed:
    t0 = time.perf_counter()
    index = adapters.build_index(A, values)
    build = time.perf_counter() - t0
    k = int(np.diff(A.indptr).max())
    return IndexServed(method=method, group=group, budget=budget, config=config, params=params,
                       paper_bytes_per_item=(4.0 + VALUE_BYTES[values]) * A.nnz / A.shape[0],
                       stored_bytes=adapters.index_nbytes(index), n_items=A.shape[0], build_seconds=build,
                       exact=True, index=index, extra={"memory_breakdown": adapters.index_breakdown(index), "k": k},
                       **kw)


# ---- pruned EASE -----------------------------------------------------------------------------------

@dataclass
class SparseRowsServed(Served):
    """Item-item model with sparse rows B (pruned EASE): scores x·B, exact, seen items masked."""

    B: sp.csr_matrix | None = None

    def recommend(self, H, k):
        return rank_by_scores(lambda h: h @ self.B, H, k, exclude_seen=True, batch_size=512)[0]


def sparse_rows_served(B: sp.csr_matrix, method: str, group: str, budget, config: str, params: dict,
                       **kw) -> SparseRowsServed:
    B = sp.csr_matrix(B, dtype=np.float32)
    B.sort_indices()
    stored = B.data.nbytes + B.indices.nbytes + B.indptr.nbytes
    return SparseRowsServed(method=method, group=group, budget=budget, config=config, params=params,
                            paper_bytes_per_item=8.0 * B.nnz / B.shape[0], stored_bytes=int(stored),
                            n_items=B.shape[0], exact=True, B=B, **kw)


@dataclass
class DenseItemItemServed(Served):
    """Full EASE: scores x·B with a dense item-item B (reference only)."""

    B: np.ndarray | None = None

    def recommend(self, H, k):
        return rank_by_scores(lambda h: h @ self.B, H, k, exclude_seen=True, batch_size=512)[0]


# ---- Seismic (optional) ----------------------------------------------------------------------------

@contextlib.contextmanager
def quiet_stdout():
    """Silence native code that prints to file descriptor 1 (keeps the Markdown on stdout clean)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def seismic_available() -> bool:
    try:
        import seismic  # noqa: F401
        return True
    except Exception:
        return False


@dataclass
class SeismicServed(Served):
    """Seismic (Bruch et al.) approximate learned-sparse retrieval over the same sparse Â."""

    index: object = None
    A: sp.csr_matrix | None = None
    query_cut: int = 0
    heap_factor: float = 0.9
    threads: int = 1

    def _search(self, U: np.ndarray, kk: int) -> tuple:
        import seismic

        S = seismic.get_seismic_string()
        comps, vals = [], []
        for u in U:
            nz = np.flatnonzero(u)
            comps.append(nz.astype(S))
            vals.append(u[nz].astype(np.float32))
        qids = np.arange(len(U)).astype(S)
        res = self.index.batch_search(qids, comps, vals, kk, self.query_cut or 1_000_000, self.heap_factor,
                                      num_threads=self.threads)
        ids = np.full((len(U), kk), -1, np.int64)
        scores = np.full((len(U), kk), -np.inf, np.float32)
        for r, lst in enumerate(res):  # (query id, score, item id) per result
            got = lst[:kk]
            ids[r, :len(got)] = [int(t[2]) for t in got]
            scores[r, :len(got)] = [float(t[1]) for t in got]
        return scores, ids

    def recommend(self, H, k):
        U = (H @ self.A).toarray().astype(np.float32)
        return overfetch_search(self._search, U, H, k, self.n_items)



def seismic_served(A: sp.csr_matrix, method: str, group: str, budget, config: str, params: dict, threads: int = 1,
                   **kw) -> SeismicServed:
    import tempfile

    import seismic

    A = sp.csr_matrix(A, dtype=np.float32)
    A.sort_indices()
    n, d = A.shape
    avg_post = max(1, A.nnz // max(1, len(np.unique(A.indices))))
    n_postings = int(params.get("n_postings") or max(64, 2 * avg_post))
    t0 = time.perf_counter()
    with quiet_stdout():
        ds = seismic.SeismicDataset()
        ds.add_documents_by_id([str(i) for i in range(n)], A.indices.astype(np.int64), A.data.astype(np.float32),
                               A.indptr.astype(np.int64))
        index = seismic.SeismicIndex.build_from_dataset(
            ds, n_postings=n_postings, centroid_fraction=float(params.get("centroid_fraction", 0.1)),
            summary_energy=float(params.get("summary_energy", 0.4)), num_threads=threads)
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp, quiet_stdout():
        index.save(os.path.join(tmp, "seismic"))
        stored = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    params = dict(params, n_postings=n_postings)
    return SeismicServed(method=method, group=group, budget=budget, config=config, params=params,
                         paper_bytes_per_item=8.0 * A.nnz / n, stored_bytes=int(stored), n_items=n,
                         build_seconds=build, exact=False, index=index, A=A,
                         query_cut=int(params.get("query_cut", 0)), heap_factor=float(params.get("heap_factor", 0.9)),
                         threads=threads, **kw)
