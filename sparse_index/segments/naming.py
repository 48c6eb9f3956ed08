"""Segment names and descriptions: TF-IDF over genres and title words, disambiguated by central items."""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import scipy.sparse as sp


def item_terms(metadata) -> list:
    """Per item: the set of terms (genres as 'g:<Genre>', title words as 'w:<word>')."""
    from ..metadata import title_words

    out = []
    for title, genres in zip(metadata.titles, metadata.genres):
        terms = {"g:" + g for g in genres if g and g.lower() != "unknown"}
        terms |= {"w:" + w for w in title_words(title)}
        out.append(terms)
    return out


class _Describer:
    """TF-IDF descriptions of item groups from per-item term sets."""

    def __init__(self, terms: list, title_weight: float = 0.5):
        self.terms = terms
        n = max(len(terms), 1)
        df = Counter(t for ts in terms for t in ts)
        self.p = {t: c / n for t, c in df.items()}
        self.title_weight = title_weight

    def shares(self, members) -> dict:
        c = Counter(t for i in members for t in self.terms[i])
        m = max(len(members), 1)
        return {t: k / m for t, k in c.items()}

    def vector(self, members) -> dict:
        """share x idf, title words down-weighted; words held by a single item are ignored."""
        out = {}
        for t, f in self.shares(members).items():
            if t.startswith("w:") and f * len(members) < 2:
                continue
            w = f * math.log(1.0 / self.p[t])
            if t.startswith("w:"):
                w *= self.title_weight
            if w > 0:
                out[t] = w
        return out

    def describe(self, members, top: int = 4) -> tuple:
        """(name, description). Name: the (at most 2) most distinctive genres held by >= 30 % of the
        items (distinctiveness = share x log(share / catalogue share)), plus a title word shared by >= half of the items (>= 2 items, >= 3x its catalogue share), e.g. 'Star: Sci-Fi & Action'."""
        shares = self.shares(members)
        m = len(members)

        def score(t):  # KL-style distinctiveness: share x log(share / catalogue share)
            f = shares[t]
            return f * math.log(f / self.p[t]) if f > self.p[t] else 0.0

        genres = sorted((t for t in shares if t.startswith("g:")), key=lambda t: (-score(t), -shares[t], t))
        main = [t for t in genres if shares[t] >= 0.3 and score(t) > 0][:2]
        if not main and genres:
            main = [max(genres, key=lambda t: (shares[t], score(t), t))]
        # keep the name order stable and readable: most common first
        main.sort(key=lambda t: (-shares[t], t))
        words = sorted((t for t in shares if t.startswith("w:") and shares[t] >= 0.5 and shares[t] * m >= 2
                        and shares[t] >= 3 * self.p[t]),
                       key=lambda t: (-score(t), t))
        name = " & ".join(t[2:] for t in main) if main else ""
        if words:
            w = words[0][2:].title()
            name = f"{w}: {name}" if name else w
        ranked = sorted((t for t in shares if t.startswith("g:")), key=lambda t: (-shares[t], t))[:top]
        ranked += [t for t in words[:2]]
        desc = ", ".join(f"{t[2:]} {shares[t]:.0%}" for t in ranked)
        return name, desc


def _central(A: sp.csr_matrix, members: np.ndarray) -> int:
    """The member closest to the segment's summed signature (ties: smallest index)."""
    sig = np.asarray(A[members].sum(axis=0)).ravel()
    sc = np.asarray(A[members] @ sig).ravel()
    return int(members[np.lexsort((members, -sc))[0]])


def _disambiguate(names: list, members: list, A, titles=None) -> list:
    """Names shared by several segments get the title of their most central item ('Drama (like
    Fargo)'), or a numeric suffix without titles; the largest segment keeps the plain name."""
    counts = Counter(names)
    seen: Counter = Counter()
    out = []
    for s, nm in enumerate(names):
        seen[nm] += 1
        if counts[nm] == 1 or seen[nm] == 1 or not len(members[s]):
            out.append(nm)
            continue
        t = titles[_central(A, members[s])] if titles is not None else ""
        out.append(f"{nm} (like {t})" if t else f"{nm} ({seen[nm]})")
    # still equal (same central title): number them
    final, again = [], Counter()
    dup = Counter(out)
    for nm in out:
        again[nm] += 1
        final.append(nm if dup[nm] == 1 or again[nm] == 1 else f"{nm} ({again[nm]})")
    return final
