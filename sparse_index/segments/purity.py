"""Segment quality against item genres: purity of the segments and of random partitions of the same sizes."""
from __future__ import annotations

from collections import Counter

import numpy as np


def genre_purity(item_segment: np.ndarray, genres: list, sizes_weighted: bool = True) -> float:
    """Share of items carrying their segment's most common genre (item-weighted over segments by
    default). Items without any genre count as not carrying it."""
    item_segment = np.asarray(item_segment)
    total, hits = 0, 0
    per = []
    order = np.argsort(item_segment, kind="stable")
    bounds = np.flatnonzero(np.diff(item_segment[order])) + 1
    for members in np.split(order, bounds):
        c = Counter(g for i in members for g in set(genres[i]))
        best = max(c.values()) if c else 0
        hits += best
        total += len(members)
        per.append(best / len(members))
    if sizes_weighted:
        return hits / total if total else float("nan")
    return float(np.mean(per)) if per else float("nan")


def random_purity(item_segment: np.ndarray, genres: list, draws: int = 10, seed: int = 0,
                  sizes_weighted: bool = True) -> np.ndarray:
    """Purity of random partitions with the same segment sizes (one value per draw)."""
    rng = np.random.default_rng(seed)
    item_segment = np.asarray(item_segment)
    return np.array([genre_purity(rng.permutation(item_segment), genres, sizes_weighted) for _ in range(draws)])
