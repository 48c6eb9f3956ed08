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

from .build import DEFAULT_LATENT_THRESHOLD, LATENT_RULES, build_segments
from .explain import explain_item, explain_user
from .factors import as_csr, dominant_factors, factor_label, matrix_fingerprint
from .homepage import FIRST_ROW_TITLE, homepage_rows, layout_data, parse_layout, segment_scores, user_vectors
from .naming import item_terms
from .partition import Segments, clusters_members
from .persistence import FORMAT, FORMAT_VERSION, load_item_matrix, load_segments, save_segments, segments_path
from .purity import genre_purity, random_purity

__all__ = ["DEFAULT_LATENT_THRESHOLD", "FIRST_ROW_TITLE", "FORMAT", "FORMAT_VERSION", "LATENT_RULES", "Segments",
           "as_csr", "build_segments", "clusters_members", "dominant_factors", "explain_item", "explain_user",
           "factor_label", "genre_purity", "homepage_rows", "item_terms", "layout_data", "load_item_matrix",
           "load_segments", "matrix_fingerprint", "parse_layout", "random_purity", "save_segments",
           "segment_scores", "segments_path", "user_vectors"]
