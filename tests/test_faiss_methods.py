"""FAISS code configurations at matched budgets: every candidate fits its budget; bytes are counted."""
import numpy as np

from spidx.bench.faiss_methods import build_faiss, candidate_configs


def test_every_candidate_fits_its_budget():
    budgets = (256, 128, 64, 32)
    cfgs = candidate_configs(256, budgets, n_train=5000)
    assert {c.kind for c in cfgs} >= {"PQ8", "PQ4", "PQ4fs", "OPQ", "RaBitQ", "SQ8", "SQ4"}
    for c in cfgs:
        assert c.budget in budgets and c.budget / 2 < c.code_bytes <= c.budget, c
    # one RaBitQ per budget (the widest that fits); PQ with 4-bit codes uses twice the sub-quantisers
    rq = [c.budget for c in cfgs if c.kind == "RaBitQ"]
    assert len(rq) == len(set(rq))
    assert {(c.factory, c.code_bytes) for c in cfgs if c.kind == "PQ4"} == {("PQ64x4", 32), ("PQ128x4", 64)}


def test_small_catalogues_skip_codebooks_they_cannot_train():
    kinds = {c.kind for c in candidate_configs(128, (64, 32), n_train=100)}
    assert "PQ8" not in kinds and "OPQ" not in kinds and "PQ4" in kinds


def test_plain_pq4_bytes_and_decoding():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2000, 64)).astype(np.float32)
    cfg = next(c for c in candidate_configs(64, (32, 16), n_train=len(A)) if c.factory == "PQ32x4")
    served = build_faiss(A, cfg, "random", "random", {})
    assert served.code_bytes_per_item == 16 and served.paper_bytes_per_item == 16
    assert served.stored_bytes >= 16 * len(A) and served.fixed_bytes > 0  # codebooks counted
    # 16 centroids per 2-d sub-space: decoded vectors are much closer than a random guess
    assert served.extra["reconstruction_mse"] < 0.5 * float(np.mean(A ** 2))
