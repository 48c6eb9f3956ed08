"""SparseIndex: sparse item embeddings with exact or approximate top-k retrieval.

Â (items x d, a few non-zeros per row) is stored once, as forward rows (item -> dimensions) in an
internal block order with a rank-safe bound summary per block (`layout`). A user's history x becomes
the query u = xÂ; items are scored s = Âu from posting lists (dimension -> items) per chunk of items,
derived from the rows in memory, touching only the dimensions u uses; or, with the pruned engine,
by visiting blocks in decreasing upper bound until no unvisited block can beat the current k-th
score (`kernels`). Values are float32, float16 or int8 with a per-dimension scale.
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
from .sparsify import row_topk
from .layout import DEFAULT_BLOCK_SIZE, block_order, default_summary_dims, permute_rows, summarise

VALUE_TYPES = ("f32", "f16", "i8")
# 'scan' scores every item: it accumulates the query dimensions' posting lists (or reads the forward
# rows when the query touches most postings), exact, or approximate with approx < 1; 'pruned' (exact)
# visits blocks by their signed upper bounds and skips those that cannot enter the top-k; 'auto' is
# 'scan' (measured faster: the bounds of signed k-sparse rows are loose, see bench/README.md).
ENGINES = ("auto", "pruned", "scan")
CHUNK_ITEMS = 1 << 15  # items per chunk of the scan engine's posting lists (uint16 positions, 128 KiB of scores)
_F16_MAX = 65504.0


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


def _quantise_with(values: np.ndarray, dims: np.ndarray, scale: np.ndarray, kind: str) -> np.ndarray:
    """Stored values of float32 `values` (columns `dims`) with an existing per-dimension scale."""
    if kind == "i8":
        return np.clip(np.rint(values / scale[dims]), -127, 127).astype(np.int8)
    return _quantise(values, dims, len(scale), kind)[0]


def _dequantise(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "f16":
        return values.view(np.float16).astype(np.float32)
    return values.astype(np.float32)


class ChunkPostings(NamedTuple):
    """The index's rows cut into chunks of `CHUNK_ITEMS` consecutive internal rows, each chunk
    transposed into one posting list per dimension (see `layout_kernels.chunk_postings`): what the
    scan engine reads, so that a query touches only the postings of the dimensions it uses, in
    sequential runs, and accumulates them into a cache-resident array of one score per chunk item."""

    starts: np.ndarray  # (n_chunks, d + 1) int64: chunk c's list of dim j is postings starts[c, j]:starts[c, j + 1]
    items: np.ndarray   # (nnz,) uint16: item position within its chunk
    values: np.ndarray  # (nnz,) the stored values, same type as row_values
    dim_count: np.ndarray  # (d,) int64: postings per dimension over all chunks

    @classmethod
    def of(cls, index: "SparseIndex") -> "ChunkPostings":
        from .layout_kernels import chunk_postings

        items = np.empty(index.nnz, np.uint16)
        values = np.empty_like(np.asarray(index.row_values))
        starts = chunk_postings(np.asarray(index.row_ptr, np.int64), np.asarray(index.row_dims),
                                np.asarray(index.row_values), index.d, CHUNK_ITEMS, items, values)
        return cls(starts, items, values, (starts[:, 1:] - starts[:, :-1]).sum(axis=0))

    @property
    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.items.nbytes + self.values.nbytes + self.dim_count.nbytes)


class SearchStats(NamedTuple):
    """Per query: blocks and items scored, blocks and items skipped by their bounds (pruned engine),
    and the stored non-zeros read (from the posting lists, the forward rows, and for approximate
    search the rows of the rescored candidates) and not read."""

    blocks_scored: np.ndarray
    blocks_skipped: np.ndarray
    items_scored: np.ndarray
    items_skipped: np.ndarray
    postings_read: np.ndarray
    postings_skipped: np.ndarray


class Recommendations(NamedTuple):
    """Batch recommendations. `positions` is -1 and `scores` -inf where fewer than k items exist;
    `items` (external ids) holds -1 or "" there. `unknown` lists, per user, ids not in the index;
    `empty` marks users with no known history item (they get no recommendations)."""

    items: np.ndarray
    scores: np.ndarray
    positions: np.ndarray
    unknown: list
    empty: np.ndarray


# the arrays of the block layout that are not the forward rows (see `layout.summarise`)
SUMMARY_FIELDS = ("summary_ptr", "summary_dims", "summary_pos", "summary_neg", "block_unit", "block_row_norm",
                  "block_rest_max", "block_rest_count", "block_rest_norm")


@dataclass
class SparseIndex:
    """Exact (or, on request, approximate) top-k index over sparse item embeddings.

    Build with `from_embeddings`/`from_file`, open with `load`. Items are stored once, as forward
    rows in an internal block order (`layout`); `order[i]` is the label (the user-visible position,
    0..ntotal-1, like a faiss flat index) of internal row i. Each block carries a bound summary, so
    a query can skip every block whose upper bound is below its current k-th best score (exact).
    """

    row_ptr: np.ndarray           # (n_items + 1,) int64: internal row i is row_*[row_ptr[i]:row_ptr[i + 1]]
    row_dims: np.ndarray          # (nnz,) uint16 when d <= 65,536 else int32
    row_values: np.ndarray        # (nnz,) float32 | uint16 (float16 bits) | int8
    dim_scale: np.ndarray         # (d,) float32 dequantisation scale (ones unless i8)
    order: np.ndarray             # (n_items,) int32: label of each internal row
    block_ptr: np.ndarray         # (n_blocks + 1,) int64: block b is internal rows block_ptr[b]:block_ptr[b + 1]
    summary_ptr: np.ndarray       # (n_blocks + 1,) int64: block b lists summary_*[summary_ptr[b]:summary_ptr[b + 1]]
    summary_dims: np.ndarray      # (n_listed,) same type as row_dims, increasing within a block
    summary_pos: np.ndarray       # (n_listed,) uint8: max⁺ of the dimension in the block, in block_unit, rounded up
    summary_neg: np.ndarray       # (n_listed,) uint8: |min⁻| likewise
    block_unit: np.ndarray        # (n_blocks,) float32
    block_row_norm: np.ndarray    # (n_blocks,) float32: largest row L2 norm
    block_rest_max: np.ndarray    # (n_blocks,) float32: largest |value| in an unlisted dimension
    block_rest_count: np.ndarray  # (n_blocks,) int32: most unlisted entries in one row
    block_rest_norm: np.ndarray   # (n_blocks,) float32: largest L2 norm of one row's unlisted entries
    item_ids: np.ndarray          # (n_items,) external ids by label, int64 or unicode
    values: str = "f32"
    build: dict = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_embeddings(cls, matrix, item_ids=None, nnz: int | None = None, values: str = "f32",
                        build: dict | None = None, block_size: int = DEFAULT_BLOCK_SIZE,
                        summary_dims: int | None = None) -> "SparseIndex":
        """Build from a CSR (items x d) or dense matrix. Dense input needs `nnz` (post-hoc top-k and
        renormalise); CSR input is used as is, or cut to its top-`nnz` per row when it has more.
        `block_size` items share one bound summary of `summary_dims` listed dimensions (default
        `layout.default_summary_dims`)."""
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
                m = row_topk(m, int(nnz), renormalise=True)
        else:
            dense = np.asarray(matrix)
            if dense.ndim != 2:
                raise InputError(f"embeddings must be 2-D, got shape {dense.shape}")
            if nnz is None:
                raise InputError("dense embeddings need --nnz K (post-hoc row-wise top-k sparsification)")
            params["source_format"] = "dense"
            m = row_topk(dense, int(nnz), renormalise=True)
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
        dim_type = np.uint16 if d <= 65536 else np.int32
        row_values, scale = _quantise(m.data, m.indices, d, values)
        counts = np.diff(m.indptr)
        params.update(nnz_requested=None if nnz is None else int(nnz), values=values,
                      nnz_per_row_min=int(counts.min()), nnz_per_row_max=int(counts.max()))
        return cls.from_quantised(m.indptr.astype(np.int64), m.indices.astype(dim_type), row_values, scale, ids,
                                  values, params, block_size, summary_dims)

    @classmethod
    def from_quantised(cls, row_ptr, row_dims, row_values, dim_scale, item_ids, values: str, build: dict,
                       block_size: int = DEFAULT_BLOCK_SIZE, summary_dims: int | None = None) -> "SparseIndex":
        """Lay out already quantised forward rows (in label order) in blocks with bound summaries."""
        block_size = int(block_size)
        if block_size <= 0:
            raise InputError(f"block size must be positive, got {block_size}")
        row_ptr = np.asarray(row_ptr, np.int64)
        k_max = int(np.diff(row_ptr).max(initial=0))
        summary_dims = default_summary_dims(block_size, k_max) if summary_dims is None else int(summary_dims)
        if summary_dims <= 0:
            raise InputError(f"summary dims must be positive, got {summary_dims}")
        d = len(dim_scale)
        A = sp.csr_matrix((_dequantise(np.asarray(row_values), values) * np.asarray(dim_scale)[row_dims],
                           np.asarray(row_dims).astype(np.int32), row_ptr), shape=(len(row_ptr) - 1, d))
        order, block_ptr = block_order(A, block_size)
        row_ptr, row_dims, row_values = permute_rows(row_ptr, row_dims, row_values, order)
        build = dict(build, block_size=block_size, summary_dims=summary_dims)
        summaries = summarise(block_ptr, row_ptr, row_dims, row_values, dim_scale, summary_dims, row_dims.dtype)
        return cls(row_ptr=row_ptr, row_dims=row_dims, row_values=row_values, dim_scale=np.asarray(dim_scale),
                   order=order.astype(np.int32), block_ptr=block_ptr, **summaries, item_ids=np.asarray(item_ids),
                   values=values,
                   build=build)

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
    def ntotal(self) -> int:
        """Number of items (faiss naming); labels run 0..ntotal-1."""
        return self.n_items

    @property
    def d(self) -> int:
        return len(self.dim_scale)

    @property
    def nnz(self) -> int:
        return int(len(self.row_dims))

    @property
    def n_blocks(self) -> int:
        return len(self.block_ptr) - 1

    @property
    def k(self) -> int:
        """Non-zeros per item (the maximum, when rows differ)."""
        return int(np.diff(self.row_ptr).max(initial=0))

    @property
    def fixed_k(self) -> bool:
        """True when every row has exactly `k` non-zeros (row_ptr is then implied, not stored)."""
        return bool(np.all(np.diff(self.row_ptr) == self.k))

    def arrays(self) -> dict:
        """The arrays held in memory, by field name."""
        return {"row_ptr": self.row_ptr, "row_dims": self.row_dims, "row_values": self.row_values,
                "dim_scale": self.dim_scale, "order": self.order, "block_ptr": self.block_ptr,
                **{name: getattr(self, name) for name in SUMMARY_FIELDS}, "item_ids": self.item_ids}

    def memory_breakdown(self) -> dict:
        """Bytes of each array."""
        return {name: int(a.nbytes) for name, a in self.arrays().items()}

    @property
    def nbytes(self) -> int:
        return sum(self.memory_breakdown().values())

    def memory_report(self) -> dict:
        """Bytes per item and per non-zero: what the index holds in memory (forward rows, summaries,
        block structure; row_ptr only when rows vary, as it is implied otherwise), the scan engine's
        posting lists derived from the rows in memory (`postings`; computed here if not yet), what
        the file holds (dimensions packed to 12 bits when d <= 4096; with and without the external
        ids), next to the paper's accounting (8 bytes per non-zero, nothing else)."""
        b = self.memory_breakdown()
        n, nnz = max(self.n_items, 1), max(self.nnz, 1)
        forward = b["row_dims"] + b["row_values"] + (0 if self.fixed_k else b["row_ptr"])
        summaries = sum(b[x] for x in SUMMARY_FIELDS) + b["block_ptr"]
        search = forward + summaries + b["order"] + b["dim_scale"]
        from .index_file import stored_nbytes

        stored = stored_nbytes(self)
        file_search = sum(v for name, v in stored.items() if name != "item_ids")
        return {
            "total_bytes": self.nbytes,
            "bytes_per_item": self.nbytes / n,
            "search_bytes_per_item": search / n,
            "search_bytes_per_nnz": search / nnz,
            "file_bytes_per_nnz": sum(stored.values()) / nnz,
            "file_search_bytes_per_nnz": file_search / nnz,
            "forward_bytes_per_nnz": forward / nnz,
            "summary_bytes_per_nnz": summaries / nnz,
            "postings_bytes_per_nnz": self.postings.nbytes / nnz,
            "serving_bytes_per_nnz": (search + self.postings.nbytes) / nnz,
            "paper_bytes_per_item": 8.0 * self.nnz / n,
        }

    def block_stats(self) -> dict:
        """Block sizes and listed summary dimensions per block."""
        sizes = np.diff(self.block_ptr)
        listed = np.diff(self.summary_ptr)
        return {"blocks": self.n_blocks, "size_min": int(sizes.min()) if len(sizes) else 0,
                "size_mean": float(sizes.mean()),
                "size_max": int(sizes.max(initial=0)), "listed_mean": float(listed.mean()),
                "listed_max": int(listed.max(initial=0)), "rest_count_max": int(self.block_rest_count.max(initial=0))}

    def to_csr(self) -> sp.csr_matrix:
        """The (dequantised) item matrix Â that the index scores with, rows by label."""
        vals = _dequantise(np.asarray(self.row_values), self.values) * np.asarray(self.dim_scale)[self.row_dims]
        internal = sp.csr_matrix((vals, np.asarray(self.row_dims).astype(np.int32), np.asarray(self.row_ptr)),
                                 shape=(self.n_items, self.d))
        return internal[self.position_of_label]

    @property
    def position_of_label(self) -> np.ndarray:
        """Internal row of each label (the inverse of `order`), computed once."""
        inverse = getattr(self, "_position_of_label", None)
        if inverse is None or len(inverse) != self.n_items:
            inverse = np.empty(self.n_items, np.int64)
            inverse[np.asarray(self.order)] = np.arange(self.n_items)
            self._position_of_label = inverse
        return inverse

    def reconstruct(self, label: int) -> np.ndarray:
        """The dequantised embedding row of item `label`, dense (d,) float32 (faiss naming)."""
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < self.n_items:
            raise InputError(f"item position must be an integer in 0..{self.n_items - 1}, got {label!r}")
        i = self.position_of_label[int(label)]
        a, b = self.row_ptr[i], self.row_ptr[i + 1]
        out = np.zeros(self.d, np.float32)
        dims = np.asarray(self.row_dims[a:b]).astype(np.int64)
        out[dims] = _dequantise(np.asarray(self.row_values[a:b]), self.values) * self.dim_scale[dims]
        return out

    # ---- mutation (faiss-shaped) ---------------------------------------------------------------

    def add(self, x, ids=None) -> None:
        """Append items: `x` is a CSR or dense (n, d) matrix (dense rows are cut to the index's k
        largest |values| and renormalised, like `from_embeddings`); `ids` their external ids
        (default: continuing the integer range after the largest integer id). Labels of the new
        items are ntotal..ntotal+n-1.

        Cost: the new rows are clustered among themselves into new blocks with their own summaries;
        existing blocks are untouched (O(n_new log n_new) plus one copy of the stored arrays). Values
        are quantised with the index's scales (i8: a value beyond a dimension's existing range is
        clipped to ±127 units; f16: beyond ±65504 raises InputError)."""
        if sp.issparse(x):
            m = sp.csr_matrix(x, dtype=np.float32, copy=True)
            m.sum_duplicates()
            m.eliminate_zeros()
        else:
            dense = np.asarray(x)
            if dense.ndim == 1:
                dense = dense[None, :]
            if dense.ndim != 2 or dense.dtype.kind not in "fiub":
                raise InputError(f"rows to add must be a 2-D numeric array, got shape {dense.shape}")
            if dense.shape[1] != self.d:
                raise InputError(f"rows to add have {dense.shape[1]} dimensions, the index has {self.d}")
            if not np.all(np.isfinite(dense)):
                raise InputError("rows to add contain NaN or infinite values")
            m = row_topk(dense, max(self.k, 1), renormalise=True)
        n_new, d = m.shape
        if d != self.d:
            raise InputError(f"rows to add have {d} dimensions, the index has {self.d}")
        if not np.all(np.isfinite(m.data)):
            raise InputError("rows to add contain NaN or infinite values")
        if n_new == 0:
            return
        new_ids = self._new_ids(ids, n_new)
        m.sort_indices()
        stored = _quantise_with(m.data, m.indices, self.dim_scale, self.values)
        added = SparseIndex.from_quantised(
            m.indptr.astype(np.int64), m.indices.astype(self.row_dims.dtype), stored, self.dim_scale, new_ids,
            self.values, {}, self.build.get("block_size", DEFAULT_BLOCK_SIZE), self.build.get("summary_dims"))
        n, nnz, n_listed = self.n_items, self.nnz, len(self.summary_dims)
        self.row_ptr = np.concatenate([self.row_ptr, added.row_ptr[1:] + nnz])
        self.row_dims = np.concatenate([self.row_dims, added.row_dims])
        self.row_values = np.concatenate([self.row_values, added.row_values])
        self.order = np.concatenate([self.order, added.order + np.int32(n)])
        self.block_ptr = np.concatenate([self.block_ptr, added.block_ptr[1:] + n])
        self.summary_ptr = np.concatenate([self.summary_ptr, added.summary_ptr[1:] + n_listed])
        for name in SUMMARY_FIELDS[1:]:
            setattr(self, name, np.concatenate([getattr(self, name), getattr(added, name)]))
        self.item_ids = np.concatenate([self.item_ids, new_ids])
        self.build = dict(self.build, items_added=int(self.build.get("items_added", 0)) + n_new)
        self._forget_derived()

    def _forget_derived(self) -> None:
        """Drop what is derived from the rows (label map, id map, bound slack, posting lists) after
        add / remove_ids; each is rebuilt on next use."""
        self._position_of_label = None
        self._id_map = None
        self._slack = None
        self._postings = None

    def _new_ids(self, ids, n_new: int) -> np.ndarray:
        if ids is None:
            if self.item_ids.dtype.kind not in "iu":
                raise InputError("this index has string item ids: give ids for the added items")
            start = int(self.item_ids.max()) + 1 if len(self.item_ids) else 0
            new_ids = np.arange(start, start + n_new, dtype=np.int64)
        else:
            new_ids = normalize_ids(ids)
            if len(new_ids) != n_new:
                raise InputError(f"{n_new} rows to add but {len(new_ids)} ids")
            if (new_ids.dtype.kind in "iu") != (self.item_ids.dtype.kind in "iu"):
                new_ids = new_ids.astype(str)
                if self.item_ids.dtype.kind in "iu":
                    raise InputError("this index has integer item ids; the added ids are not integers")
        if len(np.unique(new_ids)) != n_new:
            raise InputError("ids to add must be unique")
        if np.any(self.lookup(new_ids) >= 0):
            raise InputError("ids to add are already in the index")
        return new_ids

    def remove_ids(self, positions) -> int:
        """Remove items by label (position), like faiss IndexFlat.remove_ids: later labels shift down
        and external ids travel with their items. Returns the number removed.

        Cost: one pass copying the stored arrays without the removed rows (O(nnz)); the remaining
        blocks keep their summaries, which stay safe upper bounds (a block can only lose items), and
        blocks left empty are dropped. Bounds loosen as items go; rebuild to tighten them."""
        labels = np.unique(np.asarray(positions, dtype=np.int64).ravel()) if np.size(positions) else \
            np.empty(0, np.int64)
        if labels.size and (labels[0] < 0 or labels[-1] >= self.n_items):
            raise InputError(f"positions to remove must lie in 0..{self.n_items - 1}")
        if labels.size == 0:
            return 0
        keep_row = np.ones(self.n_items, np.bool_)
        keep_row[self.position_of_label[labels]] = False
        lengths = np.diff(self.row_ptr)
        keep_entry = np.repeat(keep_row, lengths)
        block_sizes = np.add.reduceat(keep_row.astype(np.int64), self.block_ptr[:-1]) if self.n_blocks else \
            np.empty(0, np.int64)
        keep_block = block_sizes > 0
        listed = np.diff(self.summary_ptr)
        keep_listed = np.repeat(keep_block, listed)
        old_order = np.asarray(self.order)[keep_row]
        self.row_ptr = np.concatenate([[0], np.cumsum(lengths[keep_row])]).astype(np.int64)
        self.row_dims = np.asarray(self.row_dims)[keep_entry]
        self.row_values = np.asarray(self.row_values)[keep_entry]
        self.order = (old_order - np.searchsorted(labels, old_order)).astype(np.int32)
        self.block_ptr = np.concatenate([[0], np.cumsum(block_sizes[keep_block])]).astype(np.int64)
        self.summary_ptr = np.concatenate([[0], np.cumsum(listed[keep_block])]).astype(np.int64)
        for name in ("summary_dims", "summary_pos", "summary_neg"):
            setattr(self, name, np.asarray(getattr(self, name))[keep_listed])
        for name in SUMMARY_FIELDS[4:]:
            setattr(self, name, np.asarray(getattr(self, name))[keep_block])
        self.item_ids = np.delete(np.asarray(self.item_ids), labels)
        self._forget_derived()
        return int(labels.size)

    # ---- search ------------------------------------------------------------------------------

    def search(self, Q, k: int, exclude=None, engine: str = "auto", approx: float | None = None,
               batch_size: int = 1024, return_stats: bool = False):
        """Top-k of Â q for each query row q (dense array or CSR, shape (n, d) or (d,)).

        Returns (scores (n, k') float32, labels (n, k') int64 item positions), best first, padded
        with -inf / -1 where fewer items qualify; k' = min(k, n_items) (a larger k is capped, so an
        absurd k never allocates n x k); ties go to the smaller label. `exclude`: items never returned, as a CSR
        (n, n_items) matrix or one sequence of positions per query. `engine`: 'auto' (= 'scan'),
        'scan' (exact: per chunk of 32k items, the posting lists of the query's dimensions are
        accumulated into one score per item, so the work is the postings those dimensions hold;
        a query whose dimensions hold most postings reads the forward rows instead) or 'pruned'
        (exact: visits blocks in decreasing signed upper bound and skips those below the current
        k-th score; slower than 'scan' on the catalogues measured so far, whose bounds are loose).
        Every engine returns identical scores. `approx`: None for exact results, or a float in
        (0, 1]: the scan keeps only the query's heaviest dimensions, the fewest largest |q_j| that
        hold a fraction approx of ‖q‖₁, takes the best 2k candidates by those partial scores and
        returns their top k by exact scores. approx = 1.0 is exact; a larger approx keeps a superset
        of dimensions. Measured recall@100 against exact (bench/README.md, Scale): Gowalla Compressed
        ELSA (tiled to 246k items) 0.94 at approx 0.3, 0.99 at 0.5, 0.9995 at 0.7; MovieLens-100k (quick
        SVD model, top-32 of d = 1024, i8) >= 0.99 at 0.4. The pruned engine takes no approx.
        `return_stats` adds a SearchStats (blocks/items scored and skipped, postings read and
        skipped, per query).
        """
        k = _check_k(k, self.n_items)
        approx = self._approx(engine, approx)
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
        parts = []
        for s in range(0, Q.shape[0], batch_size):
            block = Q[s:s + batch_size]
            block = block.toarray() if sp.issparse(block) else block
            e_ptr = excl_ptr[s:s + batch_size + 1] - excl_ptr[s]
            e_items = excl_items[excl_ptr[s]:excl_ptr[min(s + batch_size, Q.shape[0])]]
            parts.append(self.search_fast(np.ascontiguousarray(block, dtype=np.float32), k, e_ptr, e_items,
                                          _pruned(engine, approx), approx))
        if not parts:
            parts = [(np.empty((0, k), np.float32), np.empty((0, k), np.int64)) + (np.empty(0, np.int64),) * 3]
        scores, ids, blocks, items, postings = (np.concatenate(x) for x in zip(*parts))
        if return_stats:
            return scores, ids, SearchStats(blocks, self.n_blocks - blocks, items, self.n_items - items, postings,
                                            np.maximum(self.nnz - postings, 0))
        return scores, ids

    def search_fast(self, Q: np.ndarray, k: int, excl_ptr: np.ndarray, excl_labels: np.ndarray,
                    pruned: bool = True, approx: float = 1.0):
        """Unchecked fast path: Q float32 C-contiguous (n, d); excl_* a CSR of excluded labels
        (int64 ptr of length n + 1, labels distinct per row). Returns (scores, labels, blocks
        scored, items scored, postings read)."""
        ex = kernels.internal_exclusions(excl_ptr, excl_labels, self.position_of_label)
        kernel = kernels.search_batch if len(Q) >= kernels.PARALLEL_MIN_QUERIES else kernels.search_batch_serial
        post = self.postings
        return kernel(Q, self.dim_scale, k, float(approx), bool(pruned), excl_ptr, ex, self.row_ptr, self.row_dims,
                      self.row_values, self.order, self.position_of_label, self.block_ptr, post.starts, post.items,
                      post.values, CHUNK_ITEMS, post.dim_count, self.posting_cost, self.summary_ptr,
                      self.summary_dims, self.summary_pos, self.summary_neg, self.block_unit, self.block_row_norm,
                      self.block_rest_max, self.block_rest_count, self.block_rest_norm, self._bound_slack())

    # the scan engine reads forward rows instead of postings when posting_cost x postings touched > nnz
    posting_cost = kernels.POSTING_COST

    @property
    def postings(self) -> "ChunkPostings":
        """The rows transposed into per-chunk posting lists: what the scan engine reads. Derived from
        the forward rows on first use (O(nnz), not stored in the file; add and remove_ids reset it)."""
        post = getattr(self, "_postings", None)
        if post is None:
            post = self._postings = ChunkPostings.of(self)
        return post

    def _bound_slack(self) -> float:
        """kernels.bound_slack for this index, computed once (add/remove_ids reset it)."""
        if getattr(self, "_slack", None) is None:
            self._slack = kernels.bound_slack(self.k)
        return self._slack

    @staticmethod
    def _approx(engine: str, approx) -> float:
        """Validate engine and approx; return the approx factor the kernels take (1.0 = exact)."""
        if engine not in ENGINES:
            raise InputError(f"unknown engine '{engine}' (choose from {', '.join(ENGINES)})")
        if approx is None:
            return 1.0
        if isinstance(approx, bool) or not isinstance(approx, (int, float, np.integer, np.floating)) \
                or not 0.0 < float(approx) <= 1.0:
            raise InputError(f"approx must be a number in (0, 1] (1 = exact), got {approx!r}")
        if engine == "pruned":
            raise InputError("approx runs on the scan engine (or auto); the pruned engine is always exact")
        return float(approx)

    def query_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        """u = xÂ (dense, float32) for each row of a binary user x item-position matrix."""
        h = sp.csr_matrix(histories)
        h.sort_indices()
        kernel = kernels.histories_to_queries if h.shape[0] >= kernels.PARALLEL_MIN_QUERIES \
            else kernels.histories_to_queries_serial
        return kernel(h.indptr.astype(np.int64), h.indices.astype(np.int64), self.position_of_label,
                      self.row_ptr, self.row_dims, self.row_values, self.dim_scale, self.d)

    def recommend(self, histories, k: int = 20, exclude_seen: bool = True, batch_size: int = 1024,
                  engine: str = "auto", approx: float | None = None, progress=None) -> Recommendations:
        """Top-k items for users given by their histories: a list of external-id sequences, or a CSR
        (users x n_items) matrix of item positions. Seen items are never returned when exclude_seen.
        `engine` and `approx` as in `search`; k is capped at n_items (the arrays have min(k, n_items)
        columns)."""
        k = _check_k(k, self.n_items)
        approx = self._approx(engine, approx)
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
                e_ptr, e_items = block.indptr.astype(np.int64), block.indices.astype(np.int64)
            else:
                e_ptr, e_items = np.zeros(block.shape[0] + 1, np.int64), np.empty(0, np.int64)
            sc, ids, *_ = self.search_fast(Q, k, e_ptr, e_items, _pruned(engine, approx), approx)
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
            return np.zeros(n_queries + 1, np.int64), np.empty(0, np.int64)
        if sp.issparse(exclude):
            E = sp.csr_matrix(exclude)
            if E.shape != (n_queries, self.n_items):
                raise InputError(f"exclude has shape {E.shape}, expected ({n_queries}, {self.n_items})")
            E.sum_duplicates()
            E.sort_indices()
            return E.indptr.astype(np.int64), E.indices.astype(np.int64)
        if len(exclude) != n_queries:
            raise InputError(f"exclude has {len(exclude)} rows for {n_queries} queries")
        lists = [np.unique(np.asarray(e, dtype=np.int64)) for e in exclude]
        for e in lists:
            if e.size and (e[0] < 0 or e[-1] >= self.n_items):
                raise InputError(f"exclude holds item positions outside 0..{self.n_items - 1}")
        ptr = np.zeros(n_queries + 1, np.int64)
        ptr[1:] = np.cumsum([len(e) for e in lists])
        items = np.concatenate(lists).astype(np.int64) if lists else np.empty(0, np.int64)
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


def _pruned(engine: str, approx: float) -> bool:
    """Whether a (validated) engine / approx pair runs the block-pruned engine."""
    return engine == "pruned"


def _check_k(k, n_items: int) -> int:
    """k as an int, capped at `n_items` (no more items exist); k <= 0 or a non-integer is refused."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"k must be a positive integer, got {k!r}")
    if k <= 0:
        raise InputError(f"k must be positive, got {k}")
    return int(min(k, n_items))
