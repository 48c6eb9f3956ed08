"""SparseIndex: sparse item embeddings as an inverted index with exact top-k retrieval.

Â (items x d, a few non-zeros per row) is held twice: as posting lists (dimension -> items, CSC)
and as forward rows (item -> dimensions, CSR). A user's history x becomes the query u = xÂ (forward
rows); items are scored s = Âu, exactly, by whichever engine is cheaper for that query (see
`kernels`). Values are float32, float16 or int8 with a per-dimension scale.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from . import kernels
from .errors import InputError
from .ids import IdMap, normalize_ids

VALUE_TYPES = ("f32", "f16", "i8")
ENGINES = {"auto": kernels.ENGINE_AUTO, "taat": kernels.ENGINE_TAAT, "forward": kernels.ENGINE_FORWARD}
# A TAAT posting costs about this many non-zeros of a BLOCK-wide forward scan (random scatter vs. one
# sequential pass serving a whole block of queries);
# measured on Gowalla (d=4096, k=32) on this 2-core machine.
TAAT_COST_RATIO = 0.45
_F16_MAX = 65504.0


def topk_sparsify(dense: np.ndarray, nnz: int, chunk_rows: int = 4096) -> sp.csr_matrix:
    """Keep the `nnz` largest |values| of each row and L2-renormalise the row (post-hoc top-k)."""
    dense = np.asarray(dense)
    if dense.ndim != 2:
        raise InputError(f"dense embeddings must be 2-D, got shape {dense.shape}")
    n, d = dense.shape
    keep = min(int(nnz), d)
    if keep <= 0:
        raise InputError(f"--nnz must be positive, got {nnz}")
    cols, vals = [], []
    for s in range(0, n, chunk_rows):
        block = np.asarray(dense[s:s + chunk_rows], dtype=np.float32)
        part = np.argpartition(-np.abs(block), keep - 1, axis=1)[:, :keep] if keep < d else \
            np.broadcast_to(np.arange(d), block.shape)
        part = np.sort(part, axis=1)
        v = np.take_along_axis(block, part, axis=1)
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        cols.append(part.astype(np.int32))
        vals.append(np.divide(v, norms, out=np.zeros_like(v), where=norms > 0))
    indptr = np.arange(n + 1, dtype=np.int64) * keep
    m = sp.csr_matrix((np.concatenate(vals).ravel() if vals else np.empty(0, np.float32),
                       np.concatenate(cols).ravel() if cols else np.empty(0, np.int32), indptr), shape=(n, d))
    m.eliminate_zeros()
    return m


def _row_topk(m: sp.csr_matrix, nnz: int) -> sp.csr_matrix:
    """Row-wise top-`nnz` by magnitude (then renormalise) of a CSR matrix; rows with fewer are kept."""
    counts = np.diff(m.indptr)
    if counts.max(initial=0) <= nnz:
        return m
    rows, cols, vals = [], [], []
    for i in np.flatnonzero(counts > 0):
        a, b = m.indptr[i], m.indptr[i + 1]
        v, c = m.data[a:b], m.indices[a:b]
        if b - a > nnz:
            sel = np.sort(np.argpartition(-np.abs(v), nnz - 1)[:nnz])
            v = v[sel] / np.linalg.norm(v[sel])
            c = c[sel]
        rows.append(np.full(len(v), i))
        cols.append(c)
        vals.append(v)
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=m.shape,
                        dtype=np.float32)
    out.sort_indices()
    return out


def _quantise(values: np.ndarray, dims: np.ndarray, d: int, kind: str):
    """Return (stored values, per-dimension scale) for float32 `values` living in columns `dims`."""
    if kind == "f32":
        return values.astype(np.float32), np.ones(d, np.float32)
    if kind == "f16":
        if values.size and np.abs(values).max() > _F16_MAX:
            raise InputError(f"values up to {np.abs(values).max():.3g} do not fit float16; use f32 or i8")
        return values.astype(np.float16).view(np.uint16), np.ones(d, np.float32)
    if kind == "i8":
        col_max = np.zeros(d, np.float32)
        np.maximum.at(col_max, dims, np.abs(values))
        scale = np.where(col_max > 0, col_max / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(values / scale[dims]), -127, 127).astype(np.int8)
        return q, scale
    raise InputError(f"unknown value type '{kind}' (choose from {', '.join(VALUE_TYPES)})")


def _dequantise(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "f16":
        return values.view(np.float16).astype(np.float32)
    return values.astype(np.float32)


class SearchStats(NamedTuple):
    """Per query: engine used ('taat'/'forward' as 1/2) and index entries walked."""

    engine: np.ndarray
    entries: np.ndarray


class Recommendations(NamedTuple):
    """Batch recommendations. `positions` is -1 and `scores` -inf where fewer than k items exist;
    `items` (external ids) holds -1 or "" there. `unknown` lists, per user, ids not in the index;
    `empty` marks users with no known history item (they get no recommendations)."""

    items: np.ndarray
    scores: np.ndarray
    positions: np.ndarray
    unknown: list
    empty: np.ndarray


@dataclass
class SparseIndex:
    """Exact inverted index over sparse item embeddings. Build with `from_embeddings`/`from_file`."""

    col_ptr: np.ndarray       # (d + 1,) int32/int64: posting list j is col_items[col_ptr[j]:col_ptr[j + 1]]
    col_items: np.ndarray     # (nnz,) int32 item positions
    col_values: np.ndarray    # (nnz,) float32 | uint16 (float16 bits) | int8
    row_ptr: np.ndarray       # (n_items + 1,) int32/int64: forward row i is row_*[row_ptr[i]:row_ptr[i + 1]]
    row_dims: np.ndarray      # (nnz,) uint16 when d <= 65,536 else int32
    row_values: np.ndarray    # (nnz,) same type as col_values
    dim_scale: np.ndarray     # (d,) float32 dequantisation scale (ones unless i8)
    item_ids: np.ndarray      # (n_items,) external ids, int64 or unicode
    values: str = "f32"
    build: dict = field(default_factory=dict)
    taat_cost_ratio: float = TAAT_COST_RATIO

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_embeddings(cls, matrix, item_ids=None, nnz: int | None = None, values: str = "f32",
                        build: dict | None = None) -> "SparseIndex":
        """Build from a CSR (items x d) or dense matrix. Dense input needs `nnz` (post-hoc top-k and
        renormalise); CSR input is used as is, or cut to its top-`nnz` per row when it has more."""
        if values not in VALUE_TYPES:
            raise InputError(f"unknown value type '{values}' (choose from {', '.join(VALUE_TYPES)})")
        if nnz is not None and int(nnz) <= 0:
            raise InputError(f"--nnz must be positive, got {nnz}")
        params = dict(build or {})
        if sp.issparse(matrix):
            m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
            m.sum_duplicates()
            m.eliminate_zeros()
            params["source_format"] = "sparse"
            if nnz is not None:
                m = _row_topk(m, int(nnz))
        else:
            dense = np.asarray(matrix)
            if dense.ndim != 2:
                raise InputError(f"embeddings must be 2-D, got shape {dense.shape}")
            if nnz is None:
                raise InputError("dense embeddings need --nnz K (post-hoc row-wise top-k sparsification)")
            params["source_format"] = "dense"
            m = topk_sparsify(dense, int(nnz))
        n, d = m.shape
        if n == 0 or d == 0:
            raise InputError(f"embeddings are empty (shape {n} x {d})")
        if not np.all(np.isfinite(m.data)):
            raise InputError("embeddings contain NaN or infinite values")
        if n >= 2**31:
            raise InputError(f"{n} items exceed the int32 item-id range")
        ids = normalize_ids(np.arange(n) if item_ids is None else item_ids)
        if len(ids) != n:
            raise InputError(f"{n} embedding rows but {len(ids)} item ids")
        if len(np.unique(ids)) != n:
            raise InputError("item ids must be unique")
        m.sort_indices()
        ptr_type = np.int32 if m.nnz < 2**31 else np.int64
        dim_type = np.uint16 if d <= 65536 else np.int32
        row_values, scale = _quantise(m.data, m.indices, d, values)
        # carry each entry's CSR position (+1, so none is an explicit zero) through the transpose
        csc = sp.csr_matrix((np.arange(1, m.nnz + 1, dtype=np.int64), m.indices, m.indptr), shape=m.shape).tocsc()
        csc.sort_indices()
        order = csc.data - 1
        counts = np.diff(m.indptr)
        params.update(nnz_requested=None if nnz is None else int(nnz), values=values,
                      nnz_per_row_min=int(counts.min()), nnz_per_row_max=int(counts.max()))
        return cls(
            col_ptr=csc.indptr.astype(ptr_type), col_items=csc.indices.astype(np.int32),
            col_values=row_values[order], row_ptr=m.indptr.astype(ptr_type),
            row_dims=m.indices.astype(dim_type), row_values=row_values, dim_scale=scale,
            item_ids=ids, values=values, build=params,
        )

    @classmethod
    def from_file(cls, path, nnz: int | None = None, values: str = "f32") -> "SparseIndex":
        """Build from a spidx embeddings file (the format the trainer writes)."""
        from .embeddings import load_embeddings

        emb = load_embeddings(path)
        build = {"embeddings": os.path.abspath(os.fspath(path)),
                 "embeddings_meta": {k: v for k, v in emb.meta.items() if isinstance(v, (str, int, float, bool))}}
        return cls.from_embeddings(emb.matrix, emb.item_ids, nnz=nnz, values=values, build=build)

    # ---- shape and memory ---------------------------------------------------------------------

    @property
    def n_items(self) -> int:
        return len(self.row_ptr) - 1

    @property
    def d(self) -> int:
        return len(self.col_ptr) - 1

    @property
    def nnz(self) -> int:
        return int(len(self.col_items))

    @property
    def k(self) -> int:
        """Non-zeros per item (the maximum, when rows differ)."""
        return int(np.diff(self.row_ptr).max(initial=0))

    def arrays(self) -> dict:
        return {"col_ptr": self.col_ptr, "col_items": self.col_items, "col_values": self.col_values,
                "row_ptr": self.row_ptr, "row_dims": self.row_dims, "row_values": self.row_values,
                "dim_scale": self.dim_scale, "item_ids": self.item_ids}

    def memory_breakdown(self) -> dict:
        """Bytes of each array."""
        return {name: int(a.nbytes) for name, a in self.arrays().items()}

    @property
    def nbytes(self) -> int:
        return sum(self.memory_breakdown().values())

    def memory_report(self) -> dict:
        """Our bytes per item next to the paper's accounting (8 bytes per non-zero, nothing else)."""
        b = self.memory_breakdown()
        n = max(self.n_items, 1)
        search = sum(b[x] for x in ("col_ptr", "col_items", "col_values", "row_ptr", "row_dims", "row_values",
                                    "dim_scale"))
        return {
            "total_bytes": self.nbytes,
            "bytes_per_item": self.nbytes / n,
            "search_bytes_per_item": search / n,
            "inverted_bytes_per_item": (b["col_ptr"] + b["col_items"] + b["col_values"]) / n,
            "forward_bytes_per_item": (b["row_ptr"] + b["row_dims"] + b["row_values"]) / n,
            "paper_bytes_per_item": 8.0 * self.nnz / n,
        }

    def posting_stats(self) -> dict:
        lengths = np.diff(self.col_ptr)
        return {"dims": self.d, "empty": int((lengths == 0).sum()), "min": int(lengths.min()),
                "median": float(np.median(lengths)), "mean": float(lengths.mean()),
                "p99": float(np.percentile(lengths, 99)), "max": int(lengths.max())}

    def to_csr(self) -> sp.csr_matrix:
        """The (dequantised) item matrix Â that the index scores with."""
        vals = _dequantise(np.asarray(self.row_values), self.values) * np.asarray(self.dim_scale)[self.row_dims]
        return sp.csr_matrix((vals, np.asarray(self.row_dims).astype(np.int32), np.asarray(self.row_ptr)),
                             shape=(self.n_items, self.d))

    def bytes_per_entry(self) -> tuple[int, int]:
        """Bytes read per posting (TAAT) and per forward non-zero."""
        vb = self.col_values.itemsize
        return self.col_items.itemsize + vb, self.row_dims.itemsize + vb

    # ---- search ------------------------------------------------------------------------------

    def search(self, Q, k: int, exclude=None, engine: str = "auto", batch_size: int = 1024,
               return_stats: bool = False):
        """Exact top-k of Â q for each query row q (dense array or CSR, shape (n, d) or (d,)).

        Returns (scores (n, k') float32, ids (n, k') int64 item positions), best first, padded with
        -inf / -1 where fewer items qualify; k' = min(k, n_items) (a larger k is capped, so an absurd k
        never allocates n x k). `exclude`: items never returned, as a CSR (n, n_items) matrix or one sequence of
        positions per query. `engine`: 'auto' (cheaper per query), 'taat' or 'forward'.
        """
        k = _check_k(k, self.n_items)
        if engine not in ENGINES:
            raise InputError(f"unknown engine '{engine}' (choose from {', '.join(ENGINES)})")
        if sp.issparse(Q):
            Q = sp.csr_matrix(Q)
        else:
            Q = np.asarray(Q)
            if Q.ndim == 1:
                Q = Q[None, :]
            if Q.ndim != 2 or Q.dtype.kind not in "fiub":
                raise InputError(f"queries must be a 2-D numeric array, got shape {Q.shape} dtype {Q.dtype}")
        if Q.shape[1] != self.d:
            raise InputError(f"queries have {Q.shape[1]} dimensions, the index has {self.d}")
        data = Q.data if sp.issparse(Q) else Q
        if not np.all(np.isfinite(data)):
            raise InputError("queries contain NaN or infinite values")
        excl_ptr, excl_items = self._exclusions(exclude, Q.shape[0])
        scores, ids, used, work = [], [], [], []
        for s in range(0, Q.shape[0], batch_size):
            block = Q[s:s + batch_size]
            block = block.toarray() if sp.issparse(block) else block
            e_ptr = excl_ptr[s:s + batch_size + 1] - excl_ptr[s]
            e_items = excl_items[excl_ptr[s]:excl_ptr[min(s + batch_size, Q.shape[0])]]
            out = self.search_fast(np.ascontiguousarray(block, dtype=np.float32), k, e_ptr, e_items,
                                   ENGINES[engine])
            for lst, x in zip((scores, ids, used, work), out):
                lst.append(x)
        if not scores:
            scores, ids = [np.empty((0, k), np.float32)], [np.empty((0, k), np.int64)]
            used, work = [np.empty(0, np.int8)], [np.empty(0, np.int64)]
        result = (np.concatenate(scores), np.concatenate(ids))
        if return_stats:
            return result + (SearchStats(np.concatenate(used), np.concatenate(work)),)
        return result

    def search_fast(self, Q: np.ndarray, k: int, excl_ptr: np.ndarray, excl_items: np.ndarray,
                    engine: int = kernels.ENGINE_AUTO):
        """Unchecked fast path: Q float32 C-contiguous (n, d); excl_* a CSR (int64 ptr of length n + 1,
        int32 sorted positions). Returns (scores, ids, engine used, entries walked)."""
        kernel = kernels.search_dense if len(Q) > kernels.BLOCK else kernels.search_dense_serial
        return kernel(Q, self.dim_scale, k, engine, self.taat_cost_ratio, excl_ptr, excl_items,
                                    self.col_ptr, self.col_items, self.col_values,
                                    self.row_ptr, self.row_dims, self.row_values)

    def query_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        """u = xÂ (dense, float32) for each row of a binary user x item-position matrix."""
        h = sp.csr_matrix(histories)
        h.sort_indices()
        kernel = kernels.histories_to_queries if h.shape[0] > kernels.BLOCK else kernels.histories_to_queries_serial
        return kernel(h.indptr.astype(np.int64), h.indices.astype(np.int32),
                                            self.row_ptr, self.row_dims, self.row_values, self.dim_scale, self.d)

    def recommend(self, histories, k: int = 20, exclude_seen: bool = True, batch_size: int = 1024,
                  engine: str = "auto", progress=None) -> Recommendations:
        """Top-k items for users given by their histories: a list of external-id sequences, or a CSR
        (users x n_items) matrix of item positions. Seen items are never returned when exclude_seen.
        k is capped at n_items (the arrays have min(k, n_items) columns)."""
        k = _check_k(k, self.n_items)
        if engine not in ENGINES:
            raise InputError(f"unknown engine '{engine}' (choose from {', '.join(ENGINES)})")
        H, unknown = self._history_matrix(histories)
        H.sort_indices()
        n = H.shape[0]
        empty = np.diff(H.indptr) == 0
        scores = np.full((n, k), -np.inf, np.float32)
        positions = np.full((n, k), -1, np.int64)
        for s in range(0, n, batch_size):
            block = H[s:s + batch_size]
            Q = self.query_vectors(block)
            if exclude_seen:
                e_ptr, e_items = block.indptr.astype(np.int64), block.indices.astype(np.int32)
            else:
                e_ptr, e_items = np.zeros(block.shape[0] + 1, np.int64), np.empty(0, np.int32)
            sc, ids, _, _ = self.search_fast(Q, k, e_ptr, e_items, ENGINES[engine])
            scores[s:s + batch_size], positions[s:s + batch_size] = sc, ids
            if progress is not None:
                progress(block.shape[0])
        scores[empty] = -np.inf
        positions[empty] = -1
        return Recommendations(self.external_ids(positions), scores, positions, unknown, empty)

    def external_ids(self, positions: np.ndarray) -> np.ndarray:
        """Map item positions to external ids; -1 positions become -1 (int ids) or '' (string ids)."""
        pad = -1 if self.item_ids.dtype.kind in "iu" else ""
        out = np.asarray(self.item_ids)[np.maximum(positions, 0)]
        return np.where(positions >= 0, out, np.array(pad, dtype=out.dtype))

    def lookup(self, ids) -> np.ndarray:
        """Positions of external ids, -1 for ids not in the index."""
        if getattr(self, "_id_map", None) is None:
            self._id_map = IdMap(self.item_ids)
        return self._id_map.lookup(ids)

    def _history_matrix(self, histories):
        if sp.issparse(histories):
            H = sp.csr_matrix(histories, dtype=np.float32, copy=True)
            if H.shape[1] != self.n_items:
                raise InputError(f"history matrix has {H.shape[1]} columns, the index has {self.n_items} items")
            H.sum_duplicates()
            H.eliminate_zeros()
            H.data[:] = 1.0
            return H, [[] for _ in range(H.shape[0])]
        if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence | np.ndarray):
            raise InputError("histories must be a list of item-id lists or a CSR matrix")
        rows, cols, unknown = [], [], []
        for r, hist in enumerate(histories):
            hist = list(hist)
            pos = self.lookup(np.asarray([str(x) for x in hist])) if hist else np.empty(0, np.int64)
            unknown.append([x for x, p in zip(hist, pos) if p < 0])
            known = np.unique(pos[pos >= 0])
            rows.append(np.full(len(known), r))
            cols.append(known)
        n = len(rows)
        rr = np.concatenate(rows) if rows else np.empty(0, np.int64)
        cc = np.concatenate(cols) if cols else np.empty(0, np.int64)
        H = sp.csr_matrix((np.ones(len(rr), np.float32), (rr, cc)), shape=(n, self.n_items))
        return H, unknown

    def _exclusions(self, exclude, n_queries: int):
        if exclude is None:
            return np.zeros(n_queries + 1, np.int64), np.empty(0, np.int32)
        if sp.issparse(exclude):
            E = sp.csr_matrix(exclude)
            if E.shape != (n_queries, self.n_items):
                raise InputError(f"exclude has shape {E.shape}, expected ({n_queries}, {self.n_items})")
            E.sum_duplicates()
            E.sort_indices()
            return E.indptr.astype(np.int64), E.indices.astype(np.int32)
        if len(exclude) != n_queries:
            raise InputError(f"exclude has {len(exclude)} rows for {n_queries} queries")
        lists = [np.unique(np.asarray(e, dtype=np.int64)) for e in exclude]
        for e in lists:
            if e.size and (e[0] < 0 or e[-1] >= self.n_items):
                raise InputError(f"exclude holds item positions outside 0..{self.n_items - 1}")
        ptr = np.zeros(n_queries + 1, np.int64)
        ptr[1:] = np.cumsum([len(e) for e in lists])
        items = np.concatenate(lists).astype(np.int32) if lists else np.empty(0, np.int32)
        return ptr, items

    # ---- persistence ---------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the index atomically (an interrupted save leaves an existing file untouched)."""
        from .index_file import write_index

        write_index(path, self)

    @classmethod
    def load(cls, path, mmap: bool = True, verify: bool = True) -> "SparseIndex":
        """Open a saved index (memory-mapped by default); checksums are verified unless verify=False."""
        from .index_file import read_index

        return read_index(cls, path, mmap=mmap, verify=verify)


def _check_k(k, n_items: int) -> int:
    """k as an int, capped at `n_items` (no more items exist); k <= 0 or a non-integer is refused."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be a positive integer, got {k!r}")
    if k <= 0:
        raise InputError(f"k must be positive, got {k}")
    return int(min(k, n_items))
