"""Building segments: dominant-factor groups, merged latently or by metadata, then named (see the package doc)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..ids import normalize_ids
from .factors import as_csr, dominant_factors, factor_label, matrix_fingerprint
from .merging import _agglomerate, _collect, _cosine, _group_vectors, _sum_dicts
from .naming import _Describer, _disambiguate, item_terms
from .partition import Segments, clusters_members


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
