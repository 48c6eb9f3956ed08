"""Explanations: an item's active dimensions and segment; the dimensions behind a user's top items."""
from __future__ import annotations

import numpy as np

from .factors import as_csr, dominant_factors, factor_label
from .homepage import _top, user_scores
from .partition import Segments


def explain_item(A, seg: Segments | None, i: int, top: int | None = None) -> dict:
    """Active dims of item i (by |weight|), its dominant factor and segment, and the segment each
    active signed dim leads (if any)."""
    A = as_csr(A)
    a, b = A.indptr[i], A.indptr[i + 1]
    cols, vals = A.indices[a:b], A.data[a:b]
    order = np.lexsort((cols, -np.abs(vals)))
    if top is not None:
        order = order[:top]
    fac = seg.segment_of_factor() if seg is not None else {}
    dims = []
    for o in order:
        j, w = int(cols[o]), float(vals[o])
        s = fac.get((j, 1 if w >= 0 else -1))
        dims.append({"dim": j, "weight": w, "segment": s, "segment_name": seg.names[s] if s is not None else None})
    dom, sg = dominant_factors(A[i])
    out = {"item": int(i), "nnz": int(b - a), "norm": float(np.sqrt((vals.astype(np.float64) ** 2).sum())),
           "dominant": factor_label(dom[0], sg[0]) if dom[0] >= 0 else None, "dims": dims}
    if seg is not None:
        s = int(seg.item_segment[i])
        out.update(segment=s, segment_name=seg.names[s], segment_size=int(len(seg.items_of(s))))
    return out


def explain_user(A, seg: Segments | None, history, n: int = 10, top_dims: int = 8, feeders: int = 5) -> dict:
    """Why a user gets their top-n items: the dims that contribute most to the scores of those items
    (contribution_j = u_j * sum_{i in top} Â_ij), and for each dim the history items feeding it
    (largest u_j-aligned weight Â_hj first)."""
    A = as_csr(A)
    u, scores, hist = user_scores(A, history)
    allowed = np.ones(A.shape[0], bool)
    allowed[hist] = False
    top = _top(scores, np.flatnonzero(allowed), n)
    col_sums = np.asarray(A[top].sum(axis=0)).ravel()
    contrib = u.astype(np.float64) * col_sums
    total = float(scores[top].sum())
    active = np.flatnonzero(contrib != 0)
    active = active[np.lexsort((active, -contrib[active]))][:top_dims]
    fac = seg.segment_of_factor() if seg is not None else {}
    H = A[hist].tocsc()
    dims = []
    for j in active:
        a, b = H.indptr[j], H.indptr[j + 1]
        rows, w = H.indices[a:b], H.data[a:b].astype(np.float64)
        aligned = w * np.sign(u[j])
        o = np.lexsort((hist[rows], -aligned))[:feeders]
        s = fac.get((int(j), 1 if u[j] >= 0 else -1))
        dims.append({"dim": int(j), "u": float(u[j]), "contribution": float(contrib[j]),
                     "share": float(contrib[j] / total) if total else None,
                     "segment": s, "segment_name": seg.names[s] if s is not None else None,
                     "feeders": [{"item": int(hist[r]), "weight": float(x)} for r, x in zip(rows[o], w[o])]})
    out = {"history": hist.tolist(), "user_nnz": int(np.count_nonzero(u)), "top_items": top.tolist(),
           "top_scores": scores[top].tolist(), "dims": dims}
    if seg is not None:
        ss = seg.matrix() @ u
        order = [int(s) for s in np.lexsort((np.arange(len(ss)), -ss)) if ss[s] > 0][:5]
        out["top_segments"] = [{"segment": s, "name": seg.names[s], "score": float(ss[s])} for s in order]
    return out
