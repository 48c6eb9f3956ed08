"""Evaluation: the strong-generalisation protocol (Mult-VAE / EASE / ELSA) and the ranking metrics.

Held-out users are never trained on. Each held-out user's items are shuffled with a seed; fold f
uses the f-th fifth as targets and the rest as fold-in history. Recall@K = hits / min(K, |T|);
nDCG@100 uses binary gains and the ideal DCG over min(100, |T|) items; seen items are never ranked.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .ranking import rank_by_scores

METRICS = ("recall@20", "recall@50", "ndcg@100")


@dataclass
class FoldIn:
    """Held-out users of one fold: `history` is what the model sees, `targets` what it must find."""

    users: np.ndarray  # row indices into the full matrix
    history: sp.csr_matrix
    targets: sp.csr_matrix


@dataclass
class Split:
    train: sp.csr_matrix  # rows = training users only
    train_users: np.ndarray
    test: list  # list[FoldIn], one per fold
    validation: list  # list[FoldIn] (empty without validation users)
    seed: int


def split_users(n_users: int, n_test: int, n_val: int, seed: int):
    """Seeded disjoint (test, validation, train) user index arrays."""
    if n_test + n_val >= n_users:
        raise InputError(f"need fewer held-out users ({n_test} test + {n_val} validation) than users ({n_users})")
    perm = np.random.default_rng(seed).permutation(n_users)
    return np.sort(perm[:n_test]), np.sort(perm[n_test:n_test + n_val]), np.sort(perm[n_test + n_val:])


def fold_in_split(X: sp.csr_matrix, users: np.ndarray, seed: int, folds: int = 1, holdout: float = 0.2) -> list:
    """Split each user's items: shuffle (seeded), hold out m = max(1, floor(holdout*n)) items per fold."""
    if not 1 <= folds <= int(round(1 / holdout)):
        raise InputError(f"folds must be between 1 and {int(round(1 / holdout))}")
    rng = np.random.default_rng(seed + 1)
    X = sp.csr_matrix(X)
    rows_h = [[] for _ in range(folds)]
    cols_h = [[] for _ in range(folds)]
    rows_t = [[] for _ in range(folds)]
    cols_t = [[] for _ in range(folds)]
    kept = [[] for _ in range(folds)]
    for r, u in enumerate(users):
        items = X.indices[X.indptr[u]:X.indptr[u + 1]].copy()
        rng.shuffle(items)
        n = len(items)
        m = max(1, int(np.floor(holdout * n)))
        for f in range(folds):
            tgt = items[f * m:(f + 1) * m]
            hist = np.concatenate([items[:f * m], items[(f + 1) * m:]])
            if len(tgt) == 0 or len(hist) == 0:
                continue
            row = len(kept[f])
            kept[f].append(u)
            rows_h[f].append(np.full(len(hist), row)); cols_h[f].append(hist)
            rows_t[f].append(np.full(len(tgt), row)); cols_t[f].append(tgt)
    out = []
    for f in range(folds):
        n = len(kept[f])
        def build(rows, cols):
            rr = np.concatenate(rows) if rows else np.empty(0, int)
            cc = np.concatenate(cols) if cols else np.empty(0, int)
            m = sp.csr_matrix((np.ones(len(rr), np.float32), (rr, cc)), shape=(n, X.shape[1]))
            m.sort_indices()
            return m
        out.append(FoldIn(np.asarray(kept[f], np.int64), build(rows_h[f], cols_h[f]), build(rows_t[f], cols_t[f])))
    return out


def make_split(X: sp.csr_matrix, n_test: int = 1000, n_val: int = 0, seed: int = 42, folds: int = 1,
               holdout: float = 0.2) -> Split:
    """Strong-generalisation split of a binary user x item matrix."""
    X = sp.csr_matrix(X)
    test_u, val_u, train_u = split_users(X.shape[0], n_test, n_val, seed)
    return Split(
        train=X[train_u],
        train_users=train_u,
        test=fold_in_split(X, test_u, seed, folds, holdout),
        validation=fold_in_split(X, val_u, seed + 7, folds, holdout) if n_val else [],
        seed=seed,
    )


def ranking_metrics(ranked: np.ndarray, targets: sp.csr_matrix, per_user: bool = False) -> dict:
    """Mean Recall@20, Recall@50 and nDCG@100 over users with a non-empty target set.

    `ranked` is (n_users, >=100) item indices, best first, -1 for padding. With `per_user`, each
    metric is the array of values of those users instead of their mean (for paired comparisons).
    """
    targets = sp.csr_matrix(targets)
    n = ranked.shape[0]
    sizes = np.diff(targets.indptr)
    valid = sizes > 0
    depth = min(100, ranked.shape[1])
    hits = np.zeros((n, depth), dtype=bool)
    for r in range(n):
        t = targets.indices[targets.indptr[r]:targets.indptr[r + 1]]
        hits[r] = np.isin(ranked[r, :depth], t) & (ranked[r, :depth] >= 0)
    out = {}
    for K in (20, 50):
        out[f"recall@{K}"] = hits[:, :K].sum(1) / np.maximum(np.minimum(K, sizes), 1)
    disc = 1.0 / np.log2(np.arange(2, 102))
    dcg = (hits * disc[:depth]).sum(1)
    idcg = np.cumsum(disc)[np.minimum(sizes, 100) - 1]
    out["ndcg@100"] = np.where(valid, dcg / np.where(valid, idcg, 1.0), 0.0)
    if per_user:
        return {k: v[valid] for k, v in out.items()}
    return {k: float(v[valid].mean()) if valid.any() else float("nan") for k, v in out.items()}


def rank_dense(score_fn: Callable[[sp.csr_matrix], np.ndarray], history: sp.csr_matrix, depth: int = 100,
               batch_size: int = 1024) -> np.ndarray:
    """Top-`depth` item indices per user from a dense scorer (seen items excluded; -1 padded).

    Ranks with the shared `ranking.topk`, so ties break as in the index (smaller item first).
    """
    return rank_by_scores(score_fn, history, depth, exclude_seen=True, batch_size=batch_size)[0]


def evaluate_ranker(rank_fn: Callable[[sp.csr_matrix], np.ndarray], folds: list) -> dict:
    """Average the metrics of `rank_fn(history) -> top-100 item indices` over the folds (weighted by users)."""
    totals, weights = {m: 0.0 for m in METRICS}, 0
    for fold in folds:
        res = ranking_metrics(rank_fn(fold.history), fold.targets)
        w = int((np.diff(fold.targets.indptr) > 0).sum())
        for m in METRICS:
            totals[m] += res[m] * w
        weights += w
    return {m: totals[m] / max(weights, 1) for m in METRICS}


def evaluate_scorer(score_fn, folds: list, batch_size: int = 1024) -> dict:
    """`evaluate_ranker` for a dense scorer (users x items scores); seen items are excluded."""
    return evaluate_ranker(lambda h: rank_dense(score_fn, h, 100, batch_size), folds)
