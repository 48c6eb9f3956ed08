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
    arrays = {"item_ids": item_ids, "meta": np.array(json.dumps(meta, default=_json_default))}
    if sp.issparse(matrix):
        m = sp.csr_matrix(matrix, dtype=np.float32)
        m.sort_indices()
        arrays.update(data=m.data, indices=m.indices.astype(np.int32), indptr=m.indptr.astype(np.int64),
                      shape=np.asarray(m.shape, np.int64))
    else:
        arrays["dense"] = np.ascontiguousarray(matrix, dtype=np.float32)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_embeddings(path) -> Embeddings:
    """Read an embeddings file; bad files raise InputError with a one-line reason."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: embeddings file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "item_ids" not in files or "meta" not in files:
                raise InputError(f"{path}: not a spidx embeddings file (needs 'item_ids' and 'meta' arrays)")
            item_ids = z["item_ids"]
            meta = json.loads(str(z["meta"]))
            if {"data", "indices", "indptr", "shape"} <= files:
                shape = tuple(int(s) for s in z["shape"])
                matrix = sp.csr_matrix((z["data"].astype(np.float32), z["indices"], z["indptr"]), shape=shape)
                matrix.check_format(full_check=True)
            elif "dense" in files:
                matrix = z["dense"].astype(np.float32, copy=False)
                if matrix.ndim != 2:
                    raise InputError(f"{path}: 'dense' must be 2-D, got shape {matrix.shape}")
            else:
                raise InputError(f"{path}: holds neither CSR arrays (data/indices/indptr/shape) nor 'dense'")
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{path}: corrupt or unreadable embeddings file ({type(e).__name__}: {e})") from None
    if matrix.shape[0] != len(item_ids):
        raise InputError(f"{path}: {matrix.shape[0]} embedding rows but {len(item_ids)} item ids")
    values = matrix.data if sp.issparse(matrix) else matrix
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: embeddings contain NaN or infinite values")
    return Embeddings(matrix, normalize_ids(item_ids), meta)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
