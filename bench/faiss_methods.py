"""FAISS compressed codes at matched budgets: PQ (8 and 4 bits, 4-bit also fast-scan), OPQ+PQ, RaBitQ, SQ8/SQ4.

Each configuration is trained on the item vectors of one dense ELSA model (the dense reference or a
low-dimensional model) and assigned to the smallest budget B (bytes per item) its code fits in, with
code bytes > B/2 (so a configuration counts at the budget it actually uses). Bytes: the serialised
index (`faiss.serialize_index`: codes + codebooks/rotations + header) is the total serving size;
code bytes per item (`sa_code_size`) are shown separately. Queries u = x·Â_dec use the decoded
(reconstructed) item vectors: a deployment stores only codes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .methods import FaissServed


@dataclass(frozen=True)
class FaissConfig:
    factory: str      # faiss index_factory string
    kind: str         # PQ8 / PQ4fs / OPQ / RaBitQ / SQ8 / SQ4
    dim: int          # input dimension
    code_bytes: int   # sa_code_size
    budget: int


def _code_size(factory: str, d: int) -> int:
    import faiss

    return int(faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT).sa_code_size())


def candidate_configs(d: int, budgets, kinds=("PQ8", "PQ4", "PQ4fs", "OPQ", "RaBitQ", "SQ8", "SQ4"),
                      opq_max_dim: int = 1024, n_train: int | None = None) -> list[FaissConfig]:
    """All configurations of the requested kinds that fit one of `budgets` for input dimension d."""
    budgets = sorted(int(b) for b in budgets)
    out = []

    def assign(cs):
        for b in budgets:
            if cs <= b:
                return b if cs > b / 2 else None
        return None

    cands = []
    for b in budgets:
        # dsub >= 2: a 1-dimensional sub-quantiser is a scalar quantiser (covered by SQ8)
        if "PQ8" in kinds and 2 * b <= d and d % b == 0:
            cands.append((f"PQ{b}x8", "PQ8"))
        if "PQ4" in kinds and 4 * b <= d and d % (2 * b) == 0:
            cands.append((f"PQ{2 * b}x4", "PQ4"))
        if "PQ4fs" in kinds and 4 * b <= d and d % (2 * b) == 0:
            cands.append((f"PQ{2 * b}x4fs", "PQ4fs"))
        if "OPQ" in kinds and d <= opq_max_dim and b < d and d % b == 0:
            cands.append((f"OPQ{b}_{d},PQ{b}x8", "OPQ"))
    if "RaBitQ" in kinds:
        for nb in (1, 2, 3, 4, 5, 6, 7, 8):
            cands.append((f"RaBitQ{nb}" if nb > 1 else "RaBitQ", "RaBitQ"))
    if "SQ8" in kinds:
        cands.append(("SQ8", "SQ8"))
    if "SQ4" in kinds:
        cands.append(("SQ4", "SQ4"))
    seen = set()
    for fac, kind in cands:
        if fac in seen:
            continue
        seen.add(fac)
        try:
            cs = _code_size(fac, d)
        except Exception:
            continue
        b = assign(cs)
        if b is None:
            continue
        min_train = {"PQ8": 256, "OPQ": 256, "PQ4": 16}.get(kind, 0)  # k-means needs >= centroids points
        if n_train is not None and n_train < min_train:
            continue
        out.append(FaissConfig(fac, kind, d, cs, b))
    # RaBitQ: keep only the largest bit width per budget (more bits never hurt at the same budget)
    best_rq = {}
    for c in out:
        if c.kind == "RaBitQ" and (c.budget not in best_rq or c.code_bytes > best_rq[c.budget].code_bytes):
            best_rq[c.budget] = c
    return [c for c in out if c.kind != "RaBitQ" or best_rq[c.budget] is c]


def faiss_identity(cfg: FaissConfig, base_label: str, base_key: str, params: dict) -> dict:
    """What names a FAISS row (method, budget, configuration, parameters, base), known before the (slow) build, so
    the benchmark can find its cached row without training the quantiser."""
    return {"method": "FAISS codes (best per budget)", "group": "faiss", "budget": cfg.budget,
            "config": f"{cfg.factory} on {base_label}",
            "params": dict(params, factory=cfg.factory, kind=cfg.kind, input_dim=cfg.dim), "base": base_key,
            "exact": False}


def build_faiss(A: np.ndarray, cfg: FaissConfig, base_label: str, base_key: str, params: dict) -> FaissServed:
    """Train + add; decoded vectors via sa_decode of the stored codes."""
    import faiss

    A = np.ascontiguousarray(A, dtype=np.float32)
    n, d = A.shape
    t0 = time.perf_counter()
    index = faiss.index_factory(d, cfg.factory, faiss.METRIC_INNER_PRODUCT)
    if cfg.kind in ("PQ8", "PQ4", "OPQ"):
        # index_factory turns on polysemous training for PQ (a code re-ordering for Hamming
        # pre-filtering, unused by plain ADC search) which costs minutes; it does not change results.
        inner = faiss.downcast_index(index.index if cfg.kind == "OPQ" else index)
        inner.do_polysemous_training = False
    index.train(A)
    index.add(A)
    build = time.perf_counter() - t0
    codes = index.sa_encode(A)
    decoded = np.ascontiguousarray(index.sa_decode(codes), dtype=np.float32)
    stored = len(faiss.serialize_index(index))
    code_bytes = int(index.sa_code_size())
    return FaissServed(
        **faiss_identity(cfg, base_label, base_key, params),
        paper_bytes_per_item=float(code_bytes), stored_bytes=stored, n_items=n, code_bytes_per_item=float(code_bytes),
        fixed_bytes=max(0, stored - code_bytes * n), build_seconds=build,
        index=index, decoded=decoded,
        extra={"reconstruction_mse": float(np.mean((decoded - A) ** 2)), "kind": cfg.kind})
