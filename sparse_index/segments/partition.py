"""`Segments`: the partition of the items into named segments, with each segment's signed dimensions."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .factors import as_csr


@dataclass
class Segments:
    """Final segments: a partition of the items plus each segment's signed dimensions and name."""

    item_segment: np.ndarray  # int64 per item row -> segment index
    sig_indptr: np.ndarray  # CSR over segments: signed dominant dims of each segment
    sig_dims: np.ndarray  # int64
    sig_signs: np.ndarray  # int8 (+1/-1)
    names: list  # str per segment
    descriptions: list  # str per segment (distinctive terms with their shares, or factor list)
    factors: list  # list[list[str]] signed factors ("+12", "-7") merged into each segment
    item_ids: np.ndarray
    d: int
    fingerprint: str
    params: dict = field(default_factory=dict)
    titles: list | None = None  # item titles from the metadata (for display), or None

    @property
    def n_segments(self) -> int:
        return len(self.names)

    @property
    def n_items(self) -> int:
        return len(self.item_segment)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.item_segment, minlength=self.n_segments)

    def items_of(self, s: int) -> np.ndarray:
        return self._members()[s]

    def _members(self):
        if getattr(self, "_members_cache", None) is None:
            self._members_cache = clusters_members(self.item_segment, self.n_segments)
        return self._members_cache

    def matrix(self) -> sp.csr_matrix:
        """S (n_segments x d): row s = signed indicator of its dims, L2-normalised (1/sqrt(m))."""
        if getattr(self, "_S", None) is None:
            counts = np.diff(self.sig_indptr)
            vals = self.sig_signs.astype(np.float32) / np.sqrt(np.repeat(np.maximum(counts, 1), counts)).astype(np.float32)
            self._S = sp.csr_matrix((vals, self.sig_dims.astype(np.int64), self.sig_indptr.astype(np.int64)),
                                    shape=(self.n_segments, self.d))
        return self._S

    def dims_of(self, s: int) -> list:
        a, b = self.sig_indptr[s], self.sig_indptr[s + 1]
        return [(int(j), int(g)) for j, g in zip(self.sig_dims[a:b], self.sig_signs[a:b])]

    def segment_of_factor(self) -> dict:
        """{(dim, sign): segment} for every signed dominant factor of the catalogue."""
        out = {}
        for s, facs in enumerate(self.factors):
            for f in facs:
                out[(int(f[1:]), 1 if f[0] == "+" else -1)] = s
        return out

    def to_rows(self, item_ids=None, examples: int = 5, A=None) -> list:
        """Plain data for listing: id, name, size, dims, description, example items (most central first)."""
        ids = self.item_ids if item_ids is None else item_ids
        S = self.matrix()
        rows = []
        for s in range(self.n_segments):
            members = self.items_of(s)
            if A is not None and len(members):
                central = np.asarray(as_csr(A)[members] @ S[s].T.toarray()).ravel()
                members = members[np.lexsort((members, -central))]
            rows.append({
                "segment": s, "name": self.names[s], "size": int(len(self.items_of(s))),
                "factors": list(self.factors[s]), "description": self.descriptions[s],
                "examples": [_py(ids[i]) for i in members[:examples]],
            })
        return rows


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def clusters_members(item_segment, n_segments: int) -> list:
    order = np.argsort(item_segment, kind="stable")
    bounds = np.searchsorted(item_segment[order], np.arange(n_segments + 1))
    return [order[bounds[s]:bounds[s + 1]] for s in range(n_segments)]
