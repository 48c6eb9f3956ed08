"""Numba kernel for the structural validation of index files (see `index_file._validate_structure`)."""
from __future__ import annotations

import numpy as np
from numba import njit

_M0 = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True)
def entries_digest(ptr, inner, bits, by_row):
    """Order-independent digest of one copy of the index matrix: the wrapping sum over entries of a
    mixed 64-bit hash of (item, dimension, value bits). Equal multisets of entries give equal digests,
    so the posting lists (by_row=False: outer = dimension, inner = item) and the forward rows
    (by_row=True: outer = item, inner = dimension) can be compared in one pass each.

    Unchecked: `ptr` must already be monotone within 0..len(inner), `inner` non-negative.
    """
    total = np.uint64(0)
    for o in range(ptr.shape[0] - 1):
        outer = np.uint64(o)
        for p in range(ptr[o], ptr[o + 1]):
            other = np.uint64(inner[p])
            item, dim = (outer, other) if by_row else (other, outer)
            h = (item * _M0) ^ (dim * _M1 + np.uint64(bits[p]))
            h ^= h >> np.uint64(31)
            h *= _M2
            h ^= h >> np.uint64(29)
            total += h
    return total
