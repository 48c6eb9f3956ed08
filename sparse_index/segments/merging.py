"""Deterministic agglomerative merging of item groups (latent signatures or TF-IDF descriptions)."""
from __future__ import annotations

import heapq
import math

import numpy as np
import scipy.sparse as sp


def _agglomerate(vectors: list, threshold: float, gate=None, sizes=None) -> list:
    """Deterministic agglomerative merging of summed (sparse dict) vectors.

    `vectors` are dicts {term: weight}; returns a list mapping each input index to a root index (the
    smallest index of its merged cluster). Repeatedly merges the most similar pair with
    similarity >= threshold (ties: smallest (a, b)); the merged vector is the sum. Similarity is the
    cosine of the summed vectors, or with `sizes` (item counts per input) the average linkage
    dot(a, b) / (size_a size_b). `gate(a_members, b_members)` can veto a merge.
    """
    n = len(vectors)
    vecs = [dict(v) for v in vectors]
    if sizes is None:
        norms = [math.sqrt(sum(w * w for w in v.values())) for v in vecs]
    else:
        norms = [float(x) for x in sizes]
    postings: dict = {}
    for g, v in enumerate(vecs):
        for t in v:
            postings.setdefault(t, set()).add(g)
    alive = [True] * n
    version = [0] * n
    members = [[g] for g in range(n)]

    def sims_of(a):
        va, na = vecs[a], norms[a]
        if na == 0:
            return {}
        acc: dict = {}
        for t, w in va.items():
            for b in postings.get(t, ()):
                if b != a:
                    acc[b] = acc.get(b, 0.0) + w * vecs[b][t]
        return {b: s / (na * norms[b]) for b, s in acc.items() if norms[b] > 0}

    heap = []
    for a in range(n):
        for b, s in sims_of(a).items():
            if a < b and s >= threshold - 1e-12:
                heap.append((-round(s, 12), a, b, 0, 0))
    heapq.heapify(heap)
    while heap:
        negs, a, b, va_, vb_ = heapq.heappop(heap)
        if not (alive[a] and alive[b]) or version[a] != va_ or version[b] != vb_:
            continue
        if gate is not None and not gate(members[a], members[b]):
            continue
        # merge b into a (a < b)
        for t, w in vecs[b].items():
            vecs[a][t] = vecs[a].get(t, 0.0) + w
            postings[t].discard(b)
            postings[t].add(a)
        vecs[b] = {}
        alive[b] = False
        members[a] = members[a] + members[b]
        members[b] = []
        norms[a] = math.sqrt(sum(w * w for w in vecs[a].values())) if sizes is None else norms[a] + norms[b]
        version[a] += 1
        for c, s in sims_of(a).items():
            if alive[c] and s >= threshold - 1e-12:
                x, y = (a, c) if a < c else (c, a)
                heapq.heappush(heap, (-round(s, 12), x, y, version[x], version[y]))
    root = list(range(n))
    for a in range(n):
        for g in members[a]:
            root[g] = a
    return root


def _group_vectors(A: sp.csr_matrix, groups: list) -> list:
    """Latent signature (sum of member rows) per group, as {dim: weight} dicts."""
    out = []
    for members in groups:
        row = np.asarray(A[members].sum(axis=0)).ravel()
        nz = np.flatnonzero(row)
        out.append({int(j): float(row[j]) for j in nz})
    return out


def _cosine(u: dict, v: dict) -> float:
    if len(u) > len(v):
        u, v = v, u
    dot = sum(w * v.get(t, 0.0) for t, w in u.items())
    nu = math.sqrt(sum(w * w for w in u.values()))
    nv = math.sqrt(sum(w * w for w in v.values()))
    return dot / (nu * nv) if nu > 0 and nv > 0 else 0.0


def _collect(root: list) -> list:
    out: dict = {}
    for g, r in enumerate(root):
        out.setdefault(r, []).append(g)
    return [out[r] for r in sorted(out)]


def _sum_dicts(vecs: list, idx: list) -> dict:
    out: dict = {}
    for i in idx:
        for t, w in vecs[i].items():
            out[t] = out.get(t, 0.0) + w
    return out
