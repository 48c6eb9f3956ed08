"""The item-embedding file format shared by the trainer and the index (numpy-only, no pickle).

One `.npz` holding either CSR arrays `data`, `indices`, `indptr`, `shape` (items x d) or a dense
array `dense` (items x d), plus `item_ids` (external ids in row order) and `meta` (a JSON string:
model, d, k, schedule, data fingerprint, seed, metrics, ...).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .atomic import atomic_path
from .errors import InputError
from .ids import normalize_ids
from .npz import NpzReader

FORMAT = "spidx-embeddings"
FORMAT_VERSION = 1


@dataclass
class Embeddings:
    matrix: "sp.csr_matrix | np.ndarray"  # items x d, float32
    item_ids: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.matrix)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.matrix.shape)


def save_embeddings(path, matrix, item_ids, meta: dict | None = None) -> None:
    """Write embeddings atomically (an interrupted save never replaces an existing file)."""
    item_ids = normalize_ids(item_ids)
    if matrix.shape[0] != len(item_ids):
        raise ValueError(f"{matrix.shape[0]} rows but {len(item_ids)} item ids")
    meta = dict(meta or {})
    meta.setdefault("format", FORMAT)
    meta.setdefault("format_version", FORMAT_VERSION)
    meta["n_items"], meta["d"] = int(matrix.shape[0]), int(matrix.shape[1])
    arrays = {"item_ids": item_ids, "meta": np.array(json.dumps(meta, default=json_default))}
    if sp.issparse(matrix):
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sort_indices()
        arrays.update(data=m.data, indices=m.indices.astype(np.int32), indptr=m.indptr.astype(np.int64),
                      shape=np.asarray(m.shape, np.int64))
    else:
        arrays["dense"] = np.ascontiguousarray(matrix, dtype=np.float32)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


MAX_DIM = 2**24  # largest embedding dimension d a file may declare


def load_embeddings(path) -> Embeddings:
    """Read an embeddings file; bad files raise InputError with a one-line reason.

    Shapes are checked against each other and against `MAX_DIM` from the members' headers before
    any array is read, so a small crafted file cannot make it allocate gigabytes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: embeddings file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an embeddings file")
    with NpzReader(path, "embeddings") as z:
        files = z.names
        if "item_ids" not in files or "meta" not in files:
            raise InputError(f"{path}: not a spidx embeddings file (needs 'item_ids' and 'meta' arrays)")
        if len(z.shape("item_ids")) != 1 or z.dtype("item_ids").kind not in "iufU":
            raise InputError(f"{path}: 'item_ids' must be a 1-D array of numbers or strings")
        if z.shape("meta") != () or z.dtype("meta").kind != "U":
            raise InputError(f"{path}: 'meta' must be a JSON string")
        n = z.shape("item_ids")[0]
        if {"data", "indices", "indptr", "shape"} <= files:
            matrix = _read_csr(path, z, n)
        elif "dense" in files:
            if len(z.shape("dense")) != 2:
                raise InputError(f"{path}: 'dense' must be 2-D, got shape {z.shape('dense')}")
            _check_dims(path, z.shape("dense"), n)
            if z.dtype("dense").kind not in "fiu":
                raise InputError(f"{path}: 'dense' must be numeric, got dtype {z.dtype('dense')}")
            matrix = z.read("dense").astype(np.float32, copy=False)
        else:
            raise InputError(f"{path}: holds neither CSR arrays (data/indices/indptr/shape) nor 'dense'")
        item_ids = z.read("item_ids")
        try:
            meta = json.loads(str(z.read("meta")))
        except (ValueError, RecursionError):
            raise InputError(f"{path}: 'meta' is not valid JSON") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: 'meta' must be a JSON object, got a JSON {type(meta).__name__}")
    values = matrix.data if sp.issparse(matrix) else matrix
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: embeddings contain NaN or infinite values")
    try:
        ids = normalize_ids(item_ids)
    except InputError as e:
        raise InputError(f"{path}: item ids: {e}") from None
    return Embeddings(matrix, ids, meta)


def _check_dims(path, shape, n_ids: int) -> None:
    n, d = shape
    if n != n_ids:
        raise InputError(f"{path}: {n} embedding rows but {n_ids} item ids")
    if not 0 < d <= MAX_DIM:
        raise InputError(f"{path}: embedding dimension d = {d} outside 1..{MAX_DIM}")


def _read_csr(path, z, n_ids: int) -> sp.csr_matrix:
    """CSR from data/indices/indptr/shape, every shape and pointer checked before the big reads."""
    if z.shape("shape") != (2,) or z.dtype("shape").kind not in "iu":
        raise InputError(f"{path}: 'shape' must hold two integers")
    shape = tuple(int(s) for s in z.read("shape"))
    _check_dims(path, shape, n_ids)
    for name, kinds in (("data", "fiu"), ("indices", "iu"), ("indptr", "iu")):
        if len(z.shape(name)) != 1 or z.dtype(name).kind not in kinds:
            raise InputError(f"{path}: '{name}' must be a 1-D {'numeric' if kinds == 'fiu' else 'integer'} array")
    nnz = z.shape("data")[0]
    if z.shape("indptr")[0] != shape[0] + 1 or z.shape("indices")[0] != nnz:
        raise InputError(f"{path}: CSR arrays disagree with the shape {shape} (indptr {z.shape('indptr')[0]}, "
                         f"indices {z.shape('indices')[0]}, data {nnz})")
    indptr = z.read("indptr").astype(np.int64)
    if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
        raise InputError(f"{path}: 'indptr' must rise monotonically from 0 to {nnz}")
    indices = z.read("indices")
    if nnz and (indices.min() < 0 or indices.max() >= shape[1]):
        raise InputError(f"{path}: 'indices' hold columns outside 0..{shape[1] - 1}")
    data = z.read("data").astype(np.float32)
    return sp.csr_matrix((data, indices.astype(np.int32), indptr), shape=shape)


def json_default(o):
    """`json.dumps` default for saved metadata: numpy scalars become Python numbers, arrays lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
