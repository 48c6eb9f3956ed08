"""Interpretable item segments from sparse embeddings, segment-level scores and the 2D homepage.

Notes §6 (Compressed ELSA demo), implemented offline:

1. **Dominant factor** of item i: the signed dimension ±j* with j* = argmax_j |Â_ij| (ties: the
   lowest j), sign = sign(Â_ij*). Items sharing one form an initial group.
2. **Latent merge** (no metadata needed). A group's latent signature sig is the sum of its items'
   rows. Two rules (`latent_rule`):
   * `"average"` (default): the similarity of groups a, b is the *mean ELSA item-item weight* between
     their items, sig_a·sig_b / (|a| |b|) = mean over i in a, j in b of Â_i·Â_j (predicted
     co-consumption; average linkage). Merge while it is >= `latent_threshold` (default 0.1).
   * `"centroid"`: the cosine of the two signatures, merge while >= `latent_threshold` (0.5 was
     the old default). Summed signatures drift towards the popular dimensions, so at low thresholds
     one giant segment swallows the catalogue; average linkage keeps segments balanced.
   Agglomerative: repeatedly merge the most similar pair, recomputing the merged signature; ties
   broken by the smallest (a, b) group index, so the result is deterministic.
3. **Metadata merge** (optional; replaces the latent merge). Each initial group gets a description: TF-IDF over its items' genre tokens
   and title words (term share in the group x log(1/term share in the catalogue)). Groups are merged
   agglomeratively (same procedure) while the cosine of their descriptions is >= `metadata_threshold`
   (default 0.8) *and* their latent cosine is > `metadata_min_latent` (default 0.0, i.e. they must
   share at least one active dimension) -- the offline stand-in for the paper's "name embeddings with
   cosine >= 0.95". Names come from the (at most 2) most distinctive genres held by >= 30 % of the
   items plus a title word shared by >= 50 % of them (franchises); equal names are told apart by the
   segment's most central item; without metadata a segment is named by its factors.
4. **Segment vector** s: a normalised signed indicator over the segment's dominant dimensions
   (1/sqrt(m) on each of its m dims, with the dimension's sign; when a merged segment holds both +j
   and -j, the sign carried by more items wins). Segment score of a user = u·s with u = xÂ.
5. **Homepage**: row 1 "Recommended for you" (top items, seen excluded), then one row per top
   segment (positive scores only, best first) with the user's top items inside the segment; an item
   is never shown twice and seen items are never shown.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .atomic import atomic_path
from .errors import InputError
from .ids import normalize_ids

FORMAT = "spidx-segments"
FORMAT_VERSION = 1
FIRST_ROW_TITLE = "Recommended for you"


# --------------------------------------------------------------------------------------------- basics

def as_csr(A) -> sp.csr_matrix:
    """Items x d matrix as float32 CSR with sorted indices and explicit zeros removed."""
    m = sp.csr_matrix(A, dtype=np.float32, copy=True)
    m.eliminate_zeros()
    m.sort_indices()
    return m


def matrix_fingerprint(A, item_ids) -> str:
    """Short hash of the item matrix and its ids (ties a segments file to the index it was built on)."""
    m = as_csr(A)
    h = hashlib.sha256()
    h.update(np.asarray(m.shape, np.int64).tobytes())
    h.update(m.indptr.astype(np.int64).tobytes())
    h.update(m.indices.astype(np.int64).tobytes())
    h.update(m.data.astype(np.float32).tobytes())
    ids = normalize_ids(item_ids)
    h.update(ids.tobytes() if ids.dtype.kind in "iu" else "\x00".join(ids.astype(str)).encode())
    return h.hexdigest()[:16]


def dominant_factors(A) -> tuple:
    """(dims, signs) per item: dims[i] = argmax_j |A_ij| (lowest j on ties), signs[i] in {+1, -1}.

    Items whose row is all zero get dims = -1, signs = 0.
    """
    m = as_csr(A)
    n = m.shape[0]
    dims = np.full(n, -1, np.int64)
    signs = np.zeros(n, np.int8)
    lengths = np.diff(m.indptr)
    rows = np.flatnonzero(lengths > 0)
    if len(rows) == 0:
        return dims, signs
    absval = np.abs(m.data)
    # per-row argmax of |value| with the lowest column on ties: sort by (row, -|v|, col)
    row_of = np.repeat(np.arange(n), lengths)
    order = np.lexsort((m.indices, -absval, row_of))
    first = m.indptr[rows]  # positions in `order` where each non-empty row starts
    pick = order[first]
    dims[rows] = m.indices[pick]
    signs[rows] = np.where(m.data[pick] < 0, -1, 1)
    return dims, signs


def factor_label(dim: int, sign: int) -> str:
    return f"{'+' if sign >= 0 else '-'}{int(dim)}"


# ------------------------------------------------------------------------------------------- segments

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


# ------------------------------------------------------------------------------ descriptions & names

def item_terms(metadata) -> list:
    """Per item: the set of terms (genres as 'g:<Genre>', title words as 'w:<word>')."""
    from .metadata import title_words

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


# ---------------------------------------------------------------------------------------- building

LATENT_RULES = ("average", "centroid")
DEFAULT_LATENT_THRESHOLD = {"average": 0.1, "centroid": 0.5}


def build_segments(A, item_ids=None, metadata=None, latent_threshold: float | None = None,
                   metadata_threshold: float = 0.8, metadata_min_latent: float = 0.0,
                   merge: bool = True, latent_rule: str = "average") -> Segments:
    """Dominant-factor groups, merged (see module doc), named, as a `Segments` partition of all items.

    `metadata`: an `ItemMetadata` (aligned to `item_ids` here) or None. Items with an all-zero row
    form one extra segment "(no active dimension)" so that every item is covered.
    """
    A = as_csr(A)
    n, d = A.shape
    item_ids = normalize_ids(np.arange(n) if item_ids is None else item_ids)
    if len(item_ids) != n:
        raise InputError(f"{n} item rows but {len(item_ids)} item ids")
    if latent_rule not in LATENT_RULES:
        raise InputError(f"unknown latent merge rule '{latent_rule}' (choose from {', '.join(LATENT_RULES)})")
    if latent_threshold is None:
        latent_threshold = DEFAULT_LATENT_THRESHOLD[latent_rule]
    for name, v in (("latent_threshold", latent_threshold), ("metadata_threshold", metadata_threshold)):
        if not (np.isfinite(v) and -1.0 <= v <= 1.0 + 1e-9):
            raise InputError(f"{name} must be a cosine in [-1, 1], got {v}")
    dims, signs = dominant_factors(A)
    keys = dims * 2 + (signs < 0)  # signed factor key; -2 for empty rows
    uniq = np.unique(keys[dims >= 0])
    groups = [np.flatnonzero(keys == k) for k in uniq]  # sorted by (dim, sign): deterministic
    group_factor = [(int(k // 2), -1 if k % 2 else 1) for k in uniq]

    # stage 1: latent merge (without metadata only: with metadata, as in the paper, the initial groups
    # are described and merged by their descriptions -- latent pre-merging mixes genres into them)
    lat_vecs = _group_vectors(A, groups)
    if merge and metadata is None and len(groups) > 1:
        sizes = [len(g) for g in groups] if latent_rule == "average" else None
        root = _agglomerate(lat_vecs, latent_threshold, sizes=sizes)
    else:
        root = list(range(len(groups)))
    clusters = _collect(root)

    describer = None
    if metadata is not None:
        meta = metadata.align(item_ids)
        describer = _Describer(item_terms(meta))
        if merge and len(clusters) > 1:
            cl_members = [np.concatenate([groups[g] for g in c]) for c in clusters]
            cl_lat = _group_vectors(A, cl_members)
            desc_vecs = [describer.vector(m) for m in cl_members]

            def gate(ma, mb):
                va, vb = _sum_dicts(cl_lat, ma), _sum_dicts(cl_lat, mb)
                return _cosine(va, vb) > metadata_min_latent

            root2 = _agglomerate(desc_vecs, metadata_threshold, gate=gate)
            clusters = [[g for ci in c for g in clusters[ci]] for c in _collect(root2)]

    # order segments deterministically: by size (desc), then by smallest signed-factor key
    clusters = [sorted(c) for c in clusters]
    clusters.sort(key=lambda c: (-sum(len(groups[g]) for g in c), c[0]))
    item_segment = np.full(n, -1, np.int64)
    sig_indptr, sig_dims, sig_signs, names, descs, factors = [0], [], [], [], [], []
    for s, c in enumerate(clusters):
        members = np.concatenate([groups[g] for g in c])
        item_segment[members] = s
        per_dim: dict = {}
        for g in c:
            j, sg = group_factor[g]
            per_dim.setdefault(j, []).append((len(groups[g]), sg))
        for j in sorted(per_dim):
            votes = per_dim[j]
            total = sum(cnt * sg for cnt, sg in votes)
            sg = (1 if total > 0 else -1) if total != 0 else max(votes)[1]
            sig_dims.append(j)
            sig_signs.append(sg)
        sig_indptr.append(len(sig_dims))
        facs = [factor_label(*group_factor[g]) for g in sorted(c, key=lambda g: (-len(groups[g]), g))]
        factors.append(facs)
        if describer is not None:
            name, desc = describer.describe(members)
        else:
            name, desc = "", ""
        if not name:
            name = "Factor " + ", ".join(facs[:3]) + (" ..." if len(facs) > 3 else "")
        if not desc:
            desc = "factors " + " ".join(facs[:8]) + (" ..." if len(facs) > 8 else "")
        names.append(name)
        descs.append(desc)
    empty = np.flatnonzero(item_segment < 0)
    if len(empty):
        item_segment[empty] = len(names)
        names.append("(no active dimension)")
        descs.append("items whose embedding row is all zero")
        factors.append([])
        sig_indptr.append(len(sig_dims))
    titles = meta.titles if metadata is not None else None
    names = _disambiguate(names, clusters_members(item_segment, len(names)), A, titles)
    params = {"latent_rule": latent_rule, "latent_threshold": float(latent_threshold), "metadata_threshold": float(metadata_threshold),
              "metadata_min_latent": float(metadata_min_latent), "merge": bool(merge),
              "metadata": getattr(metadata, "source", None) if metadata is not None else None,
              "n_initial_groups": len(groups)}
    return Segments(item_segment, np.asarray(sig_indptr, np.int64), np.asarray(sig_dims, np.int64),
                    np.asarray(sig_signs, np.int8), names, descs, factors, item_ids, d,
                    matrix_fingerprint(A, item_ids), params, titles)


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


def clusters_members(item_segment, n_segments: int) -> list:
    order = np.argsort(item_segment, kind="stable")
    bounds = np.searchsorted(item_segment[order], np.arange(n_segments + 1))
    return [order[bounds[s]:bounds[s + 1]] for s in range(n_segments)]


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


# ------------------------------------------------------------------------------------ persistence

def load_item_matrix(path) -> tuple:
    """(Â as float32 CSR, item_ids) from a spidx index file (`spidx build`) or an embeddings .npz."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: index file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an index or embeddings file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == b"SPIDXIDX":
        from .index import SparseIndex

        idx = SparseIndex.load(path)
        return as_csr(idx.to_csr()), normalize_ids(np.asarray(idx.item_ids))
    if magic[:2] == b"PK":
        from .embeddings import load_embeddings

        emb = load_embeddings(path)
        return as_csr(emb.matrix), emb.item_ids
    raise InputError(f"{path}: neither a spidx index nor a spidx embeddings file")


def segments_path(index_path) -> str:
    """Sidecar path of the segments of an index: INDEX.segments.npz (INDEX/segments.npz for a folder)."""
    p = os.fspath(index_path)
    if os.path.isdir(p):
        return os.path.join(p, "segments.npz")
    return p + ".segments.npz"


def _checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_segments(path, seg: Segments) -> None:
    """Atomic, versioned, pickle-free .npz (a checksum over all arrays is stored and verified)."""
    ids = seg.item_ids
    arrays = {
        "item_segment": seg.item_segment.astype(np.int64),
        "sig_indptr": seg.sig_indptr.astype(np.int64),
        "sig_dims": seg.sig_dims.astype(np.int64),
        "sig_signs": seg.sig_signs.astype(np.int8),
        "item_ids": ids if ids.dtype.kind in "iu" else ids.astype(str),
        "header": np.array(json.dumps({
            "format": FORMAT, "format_version": FORMAT_VERSION, "d": int(seg.d), "fingerprint": seg.fingerprint,
            "names": list(seg.names), "descriptions": list(seg.descriptions),
            "factors": [list(f) for f in seg.factors], "params": seg.params,
        })),
    }
    if seg.titles is not None:
        arrays["titles"] = np.asarray([str(t) for t in seg.titles], dtype=str)
    arrays["checksum"] = np.array(_checksum(arrays))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_segments(path, fingerprint: str | None = None) -> Segments:
    """Read a segments file; wrong format/version, corruption or (with `fingerprint`) a segments
    file built on a different index raise InputError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: segments file not found (run `spidx segments INDEX` first)")
    from .npz import NpzReader

    with NpzReader(path, "segments") as z:
        arrays = {k: z.read(k) for k in z.names}
    need = {"item_segment", "sig_indptr", "sig_dims", "sig_signs", "item_ids", "header", "checksum"}
    if not need <= set(arrays):
        raise InputError(f"{path}: not a spidx segments file (missing {', '.join(sorted(need - set(arrays)))})")
    stored = str(arrays.pop("checksum"))
    if _checksum(arrays) != stored:
        raise InputError(f"{path}: segments file checksum mismatch (corrupt or edited)")
    try:
        head = json.loads(str(arrays["header"]))
    except ValueError:
        raise InputError(f"{path}: segments header is not valid JSON") from None
    if head.get("format") != FORMAT:
        raise InputError(f"{path}: not a spidx segments file (format {head.get('format')!r})")
    if head.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: segments format version {head.get('format_version')} is not supported "
                         f"(expected {FORMAT_VERSION}); rebuild with `spidx segments`")
    if fingerprint is not None and head.get("fingerprint") != fingerprint:
        raise InputError(f"{path}: segments were built on a different index (fingerprint "
                         f"{head.get('fingerprint')} != {fingerprint}); rebuild with `spidx segments`")
    seg = Segments(arrays["item_segment"].astype(np.int64), arrays["sig_indptr"].astype(np.int64),
                   arrays["sig_dims"].astype(np.int64), arrays["sig_signs"].astype(np.int8),
                   list(head["names"]), list(head["descriptions"]), [list(f) for f in head["factors"]],
                   normalize_ids(arrays["item_ids"]), int(head["d"]), str(head["fingerprint"]),
                   dict(head.get("params", {})),
                   [str(t) for t in arrays["titles"]] if "titles" in arrays else None)
    k = seg.n_segments
    if (len(seg.descriptions) != k or len(seg.factors) != k or len(seg.sig_indptr) != k + 1
            or seg.item_segment.min(initial=0) < 0 or seg.item_segment.max(initial=-1) >= k
            or len(seg.item_ids) != len(seg.item_segment)):
        raise InputError(f"{path}: inconsistent segments file")
    return seg


# --------------------------------------------------------------------------------- scoring & layout

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


def _top(scores: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k best candidates by score (desc), ties by the smaller item index."""
    if len(candidates) == 0 or k <= 0:
        return candidates[:0]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


def homepage_rows(A, seg: Segments, history, rows: int = 5, items: int = 10, min_items: int = 1,
                  exclude_seen: bool = True, first_row: bool = True) -> list:
    """The 2D homepage for one user as plain data (internal item indices).

    `history`: item row indices the user consumed. Returns a list of rows
    {"title", "kind": "top"|"segment", "segment", "segment_score", "items": [idx...], "scores": [...]};
    row 1 is the global top `items`, then one row per segment with a positive score (best first),
    each holding the user's best `items` unseen and not yet shown items of that segment.
    """
    A = A if (sp.isspmatrix_csr(A) and A.dtype == np.float32) else as_csr(A)
    hist = np.unique(np.asarray(history, dtype=np.int64))
    if hist.size and (hist.min() < 0 or hist.max() >= A.shape[0]):
        raise InputError("history holds item indices outside the catalogue")
    u = np.asarray(A[hist].sum(axis=0)).ravel() if hist.size else np.zeros(A.shape[1], np.float32)
    scores = (A @ u).astype(np.float64)
    allowed = np.ones(A.shape[0], bool)
    if exclude_seen:
        allowed[hist] = False
    out = []
    if first_row:
        top = _top(scores, np.flatnonzero(allowed), items)
        out.append({"title": FIRST_ROW_TITLE, "kind": "top", "segment": None, "segment_score": None,
                    "items": top.tolist(), "scores": scores[top].tolist()})
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
                    "items": top.tolist(), "scores": scores[top].tolist()})
        allowed[top] = False
    return out


# ------------------------------------------------------------------------------------------ explain

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
    hist = np.unique(np.asarray(history, dtype=np.int64))
    u = np.asarray(A[hist].sum(axis=0)).ravel() if hist.size else np.zeros(A.shape[1], np.float32)
    scores = (A @ u).astype(np.float64)
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


# ------------------------------------------------------------------------------------ evaluation

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
