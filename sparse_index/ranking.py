"""The one dense-score top-k: rank items by score with per-user exclusions.

Every ranking computed from a dense score matrix (model recommendations, the evaluation protocol,
segment homepages and explanations, benchmark references) goes through `topk`, so every one breaks
ties the same way as the inverted index's kernel: **higher score first, then the smaller item
position**. Excluded items score -inf; rows with fewer than k rankable items are padded with item
-1 and score -inf.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

from .errors import InputError


def topk(scores, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Top-`k` items per row of a dense score matrix, best first.

    Parameters
    ----------
    scores : array_like, shape (n, m) or (m,)
        Scores of m items for n users (a 1-D array is one user).
    k : int
        Items to return per row (positive).
    exclude : scipy.sparse matrix of shape (n, m), optional
        Items never returned: the non-zero positions of each row (e.g. the user's history).

    Returns
    -------
    ids : ndarray of int64, shape (n, k)
        Item positions, best first; -1 where fewer than k items are rankable.
    values : ndarray of float32, shape (n, k)
        Their scores; -inf at the padding.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise InputError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    S = np.array(scores, dtype=np.float32, copy=True)
    if S.ndim == 1:
        S = S[None, :]
    if S.ndim != 2:
        raise InputError(f"scores must be 2-D (users x items), got shape {S.shape}")
    if np.isnan(S).any():
        raise InputError("scores contain NaN")
    n, m = S.shape
    if exclude is not None:
        E = sp.csr_matrix(exclude)
        if E.shape != S.shape:
            raise InputError(f"exclude has shape {E.shape}, the scores {S.shape}")
        r, c = E.nonzero()
        S[r, c] = -np.inf
    kk = min(k, m)
    ids = np.full((n, k), -1, np.int64)
    values = np.full((n, k), -np.inf, np.float32)
    if kk == 0 or n == 0:
        return ids, values
    part = np.argpartition(-S, kk - 1, axis=1)[:, :kk] if kk < m else np.tile(np.arange(m), (n, 1))
    vals = np.take_along_axis(S, part, axis=1)
    if kk < m:
        # argpartition picks arbitrarily among items tied at the k-th score: redo those rows exactly
        threshold = vals.min(axis=1)
        tied = np.flatnonzero((S >= threshold[:, None]).sum(axis=1) > kk)
        for row in tied:
            cand = np.flatnonzero(S[row] >= threshold[row])
            pick = cand[np.lexsort((cand, -S[row, cand]))[:kk]]
            part[row], vals[row] = pick, S[row, pick]
    order = np.lexsort((part, -vals), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    rankable = vals > -np.inf
    ids[:, :kk] = np.where(rankable, part, -1)
    values[:, :kk] = np.where(rankable, vals, -np.inf)
    return ids, values


def rank_by_scores(score_fn: Callable[[sp.csr_matrix], np.ndarray], histories, k: int,
                   exclude_seen: bool = True, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """`topk` of a dense scorer over users given by their histories, in batches.

    Parameters
    ----------
    score_fn : callable
        ``score_fn(h) -> (len(h), m)`` dense scores for a CSR batch of histories (e.g. x Â Âᵀ or x B).
    histories : scipy.sparse matrix, shape (n, m)
        Binary user x item-position histories.
    k : int
        Items per user.
    exclude_seen : bool
        Never return a user's history items.
    batch_size : int
        Users scored at once (bounds the dense score block's memory).

    Returns
    -------
    ids, values : ndarray
        As `topk`.
    """
    H = sp.csr_matrix(histories)
    ids, values = [], []
    for s in range(0, H.shape[0], batch_size):
        h = H[s:s + batch_size]
        scores = score_fn(h)
        scores = scores.toarray() if sp.issparse(scores) else np.asarray(scores)
        i, v = topk(scores, k, h if exclude_seen else None)
        ids.append(i)
        values.append(v)
    if not ids:
        return np.empty((0, k), np.int64), np.empty((0, k), np.float32)
    return np.vstack(ids), np.vstack(values)
