"""External ids (any type) <-> dense internal ids."""
from __future__ import annotations

import numpy as np

from .errors import InputError


def normalize_ids(values) -> np.ndarray:
    """Return ids as int64 when every value is integer-like, else as str (so "42" and 42 match).

    Float ids that are NaN or infinite are refused (InputError): they name no item."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise InputError("ids contain NaN or infinite values")
        if np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**63):
            return arr.astype(np.int64)
        return arr.astype(str)
    as_str = arr.astype(str)
    try:
        as_int = as_str.astype(np.int64)
    except (ValueError, OverflowError):
        return as_str
    # keep strings like "007" distinct from 7
    if np.array_equal(as_int.astype(str), as_str):
        return as_int
    return as_str


class IdMap:
    """Maps external ids to row positions; unknown ids map to -1."""

    def __init__(self, ids):
        self.ids = normalize_ids(ids)
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]
        if len(self._sorted) > 1 and np.any(self._sorted[1:] == self._sorted[:-1]):
            raise ValueError("item ids must be unique")

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, values) -> np.ndarray:
        """Positions of `values` (int64), -1 where the id is unknown."""
        query = np.asarray(values)
        if query.size == 0:
            return np.empty(0, dtype=np.int64)
        if self.ids.dtype.kind in "iu":
            query, valid = _as_int_ids(query)
        else:
            query, valid = query.astype(str), np.ones(query.shape, bool)
        pos = np.searchsorted(self._sorted, query)
        pos = np.minimum(pos, len(self._sorted) - 1)
        found = len(self._sorted) > 0
        hit = (self._sorted[pos] == query) if found else np.zeros(query.shape, bool)
        return np.where(hit & valid, self._order[pos], -1).astype(np.int64)


def _as_int_ids(query: np.ndarray):
    """Integer ids for an int-keyed map; values that are not integers are marked invalid."""
    if query.dtype.kind in "iu":
        return query.astype(np.int64), np.ones(query.shape, bool)
    out = np.zeros(query.shape, np.int64)
    valid = np.zeros(query.shape, bool)
    for i, v in enumerate(query.ravel()):
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if f.is_integer():
            out.flat[i], valid.flat[i] = int(f), True
    return out, valid
