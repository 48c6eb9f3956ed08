"""The 2D homepage: segment scores of a user, the layout spec, and the rows of items shown."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import InputError
from ..ranking import topk
from .factors import as_csr
from .partition import Segments, _py

FIRST_ROW_TITLE = "Recommended for you"


def user_vectors(A, histories) -> sp.csr_matrix:
    """U = X Â for a users x items (binary) history matrix."""
    X = sp.csr_matrix(histories, dtype=np.float32)
    X.data[:] = 1.0
    return sp.csr_matrix(X @ as_csr(A))


def segment_scores(U, seg: Segments) -> np.ndarray:
    """users x segments matrix of u·s."""
    return np.asarray((sp.csr_matrix(U) @ seg.matrix().T).toarray(), dtype=np.float64)


def parse_layout(spec: str) -> dict:
    """'rows=5,items=10[,min_items=1]' -> dict. rows = total rows shown, the first being
    'Recommended for you'; items = items per row; min_items = hide segment rows shorter than this."""
    out = {"rows": 5, "items": 10, "min_items": 1}
    if spec is None or not str(spec).strip():
        return out
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise InputError(f"--layout: expected key=value, got '{part}' (e.g. rows=5,items=10)")
        k, v = (x.strip() for x in part.split("=", 1))
        k = k.replace("-", "_")
        if k not in out:
            raise InputError(f"--layout: unknown key '{k}' (use rows, items, min_items)")
        try:
            iv = int(v)
        except ValueError:
            raise InputError(f"--layout: {k} must be an integer, got '{v}'") from None
        if iv < 1:
            raise InputError(f"--layout: {k} must be >= 1, got {iv}")
        out[k] = iv
    return out


def user_scores(A: sp.csr_matrix, history) -> tuple:
    """(u, scores, history) for one user: u = xÂ, scores = Âu, history as sorted unique item rows."""
    hist = np.unique(np.asarray(history, dtype=np.int64))
    if hist.size and (hist.min() < 0 or hist.max() >= A.shape[0]):
        raise InputError("history holds item indices outside the catalogue")
    u = np.asarray(A[hist].sum(axis=0)).ravel() if hist.size else np.zeros(A.shape[1], np.float32)
    return u, np.asarray(A @ u, dtype=np.float32).ravel(), hist


def _top(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k best `candidates` by score through the shared `ranking.topk` (ties: smaller item)."""
    if len(candidates) == 0 or k <= 0:
        return candidates[:0]
    masked = np.full(len(scores), -np.inf, np.float32)
    masked[candidates] = scores[candidates]
    ids = topk(masked, int(k))[0][0]
    return ids[ids >= 0]


def homepage_rows(A, seg: Segments, history, rows: int = 5, items: int = 10, min_items: int = 1,
                  exclude_seen: bool = True, first_row: bool = True) -> list:
    """The 2D homepage for one user as plain data (internal item indices).

    `history`: item row indices the user consumed. Returns a list of rows
    {"title", "kind": "top"|"segment", "segment", "segment_score", "items": [idx...], "scores": [...]};
    row 1 is the global top `items`, then one row per segment with a positive score (best first),
    each holding the user's best `items` unseen and not yet shown items of that segment.
    """
    A = A if (sp.isspmatrix_csr(A) and A.dtype == np.float32) else as_csr(A)
    u, scores, hist = user_scores(A, history)
    allowed = np.ones(A.shape[0], bool)
    if exclude_seen:
        allowed[hist] = False
    out = []
    if first_row:
        top = _top(scores, np.flatnonzero(allowed), items)
        out.append({"title": FIRST_ROW_TITLE, "kind": "top", "segment": None, "segment_score": None,
                    "items": top.tolist(), "scores": scores[top].astype(float).tolist()})
        allowed[top] = False
    seg_sc = seg.matrix() @ u
    order = np.lexsort((np.arange(len(seg_sc)), -seg_sc))
    for s in order:
        if len(out) >= rows:
            break
        if seg_sc[s] <= 0:
            break
        members = seg.items_of(int(s))
        top = _top(scores, members[allowed[members]], items)
        if len(top) < min_items:
            continue
        out.append({"title": seg.names[s], "kind": "segment", "segment": int(s), "segment_score": float(seg_sc[s]),
                    "items": top.tolist(), "scores": scores[top].astype(float).tolist()})
        allowed[top] = False
    return out


def layout_data(A, ids, seg: Segments, history, layout: dict, unknown=()) -> dict:
    """JSON-ready homepage for one user: `homepage_rows` with external ids, scores and titles."""
    rows = homepage_rows(A, seg, history, rows=layout["rows"], items=layout["items"], min_items=layout["min_items"])
    titled = seg.titles is not None and len(seg.titles) > 0
    out_rows = []
    for r in rows:
        out_rows.append({
            "title": r["title"], "kind": r["kind"], "segment": r["segment"], "segment_score": r["segment_score"],
            "items": [{"id": _py(ids[int(i)]), "score": float(s), **({"title": seg.titles[int(i)]} if titled else {})}
                      for i, s in zip(r["items"], r["scores"])],
        })
    return {"layout": layout, "history": [_py(ids[int(i)]) for i in history], "unknown": list(unknown),
            "rows": out_rows}
