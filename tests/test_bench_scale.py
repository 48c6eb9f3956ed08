"""Scale benchmark end to end on tiny catalogues: exact methods agree, JSON is complete, goals come from numbers."""
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from spidx.bench import scale
from spidx.embeddings import save_embeddings
from spidx.interactions import from_pairs


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 400-item interactions file with random 'trained' sparse (d=64, k=8) and dense (r=16) models."""
    root = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(300), 12)
    items = np.concatenate([rng.choice(400, 12, replace=False) for _ in range(300)])
    data = from_pairs(users, items)
    np.savez(root / "data.npz", user=users.astype(np.int32), item=items.astype(np.int32))
    n = data.n_items
    cols = np.sort(np.stack([rng.choice(64, 8, replace=False) for _ in range(n)]), axis=1)
    A = sp.csr_matrix((rng.standard_normal(n * 8).astype(np.float32), cols.ravel(), np.arange(n + 1) * 8),
                      shape=(n, 64))
    meta = {"model": "compressed-elsa", "d": 64, "k": 8, "config": {"test_users": 40, "val_users": 0, "seed": 42}}
    save_embeddings(root / "ce.npz", A, data.item_ids, meta)
    save_embeddings(root / "dense.npz", rng.standard_normal((n, 16)).astype(np.float32), data.item_ids,
                    {"model": "elsa", "d": 16, "config": {"test_users": 40, "val_users": 0, "seed": 42}})
    return root


def test_synthetic_catalogues_have_k_distinct_unit_rows():
    for make in (scale.clusters_catalogue, scale.zipf_catalogue):
        cat = make(3000, 256, 8, 20, seed=1)
        A = cat.A
        assert A.shape == (3000, 256) and np.all(np.diff(A.indptr) == 8)
        srt = np.sort(A.indices.reshape(-1, 8), axis=1)
        assert np.all(srt[:, 1:] != srt[:, :-1])
        assert np.allclose(sp.linalg.norm(A, axis=1), 1.0, atol=1e-5)
        assert cat.H.shape == (20, 3000) and np.all(np.diff(cat.H.indptr) == scale.HISTORY)


def test_tiled_catalogue_keeps_each_tile_and_history_in_one_tile():
    rng = np.random.default_rng(0)
    A0 = scale._normalise_rows(sp.random(50, 16, density=0.25, format="csr", random_state=1, dtype=np.float32))
    E0 = rng.standard_normal((50, 4)).astype(np.float32)
    H0 = sp.csr_matrix((np.ones(6, np.float32), [1, 2, 3, 10, 20, 30], [0, 3, 6]), shape=(2, 50))
    cat = scale.tiled_catalogue(A0, E0, H0, tiles=3, tile_dim=40, seed=0)
    assert cat.A.shape == (150, 40) and cat.dense.shape == (150, 4)
    for t in range(3):  # each tile: same values and the same inner products among its items
        tile = cat.A[t * 50:(t + 1) * 50]
        assert np.allclose((tile @ tile.T).toarray(), (A0 @ A0.T).toarray(), atol=1e-6)
        E = cat.dense[t * 50:(t + 1) * 50]
        assert np.allclose(E @ E.T, E0 @ E0.T, atol=1e-4)
    for r in range(2):
        seen = cat.H.indices[cat.H.indptr[r]:cat.H.indptr[r + 1]]
        assert len(set(seen // 50)) == 1 and set(seen % 50) == set(H0.indices[H0.indptr[r]:H0.indptr[r + 1]])


def test_recall_counts_ties_and_duplicates_once():
    A = sp.csr_matrix(np.array([[1.0], [1.0], [0.5]], np.float32))
    U = np.ones((1, 1), np.float32)
    H = sp.csr_matrix((1, 3), dtype=np.float32)
    truth = scale.Truth.__new__(scale.Truth)
    truth.A, truth.U, truth.H = A, U, H
    truth.kth = np.array([1.0])
    ids = np.full((1, scale.TOP), -1)
    ids[0, :2] = [1, 1]  # a duplicate counts once
    assert truth.recall(ids) == pytest.approx(1 / scale.TOP)
    ids[0, :2] = [1, 0]  # the tie at the cut counts
    assert truth.recall(ids) == pytest.approx(2 / scale.TOP)


def test_end_to_end_exact_methods_agree_and_report(tiny_model, tmp_path):
    out = tmp_path / "out"
    rc = scale.main(["--out", str(out), "--sizes", "2000", "--kinds", "tiled,clusters,zipf",
                     "--methods", "spidx,scipy,faiss-hnsw", "--data", str(tiny_model / "data.npz"),
                     "--embeddings", str(tiny_model / "ce.npz"), "--dense", str(tiny_model / "dense.npz"),
                     "--queries", "30", "--single", "5", "--repeats", "1", "--synthetic-dim", "128",
                     "--nnz", "8", "--tile-dim", "96", "--ef", "16,400", "--values", "f32", "--bandwidth-mib", "16"])
    assert rc == 0
    rep = json.loads((out / "scale.json").read_text())
    assert {(c["kind"], c["n_items"]) for c in rep["cells"]} == {(k, n) for k in scale.KINDS for n in (2000,)}
    for c in rep["cells"]:
        exact = [r for r in c["results"] if r["method"] == "scipy" or
                 (r["method"] == "spidx" and r["values"] == "f32" and r["mode"] == "exact")]
        assert exact and all(r["recall"] == 1.0 for r in exact)
        for r in c["results"]:
            for key in ("recall", "qps_single", "qps_batched", "p50_ms", "p99_ms", "build_s"):
                assert math.isfinite(r[key]) and r[key] >= 0, (r["method"], key)
            assert 0.0 <= r["recall"] <= 1.0
        if c["kind"] == "tiled":
            hnsw = [r for r in c["results"] if r["method"] == "faiss-hnsw"]
            assert len(hnsw) == 2 and hnsw[-1]["recall"] > 0.9  # efSearch 400 on 2,000 items: ~exact
            acc = c["accuracy"]
            assert 0.0 <= acc["sparse_f32"]["ndcg@100"] <= 1.0 and "dense" in acc
    assert (out / "scale.md").read_text().count("| goal |") == 1
    assert (out / "scale-zipf.png").exists()


def test_goals_follow_the_numbers():
    def res(method, qs, qb, recall=1.0, **kw):
        return {"method": method, "qps_single": qs, "qps_batched": qb, "recall": recall, **kw}

    def cell(kind, spidx_qs, scipy_qs):
        return {"kind": kind, "n_items": 1000, "accuracy": None, "results": [
            res("spidx", spidx_qs, spidx_qs * 2, engine="scan", mode="exact", values="f32",
                bandwidth_share_single=0.6),
            res("scipy", scipy_qs, scipy_qs)]}

    held = {g["goal"]: g["held"] for g in scale.goals([cell(k, 300, 100) for k in scale.KINDS])}
    assert held["exact engine, one query: >= 3x scipy A@u on every catalogue kind"] is True
    assert held["exact engine, one query: within 2x of the bandwidth floor for the bytes it reads"] is True
    assert held["exact engine: batched never slower than one at a time"] is True
    assert held["exact with pruning: >= 10x today's exact engine, identical results"] is None
    cells = [cell("tiled", 300, 100), cell("clusters", 299, 100), cell("zipf", 300, 100)]
    held = {g["goal"]: g["held"] for g in scale.goals(cells)}
    assert held["exact engine, one query: >= 3x scipy A@u on every catalogue kind"] is False
    cells[2]["results"][0]["bandwidth_share_single"] = 0.4
    held = {g["goal"]: g["held"] for g in scale.goals(cells)}
    assert held["exact engine, one query: within 2x of the bandwidth floor for the bytes it reads"] is False


def test_cells_of_one_catalogue_from_separate_runs_are_united(tmp_path):
    def cell(results, accuracy=None):
        return {"kind": "zipf", "n_items": 10, "results": results, "notes": ["n"], "accuracy": accuracy}

    first = cell([{"method": "spidx", "setting": "f32 auto", "qps_single": 1.0},
                  {"method": "scipy", "setting": "A@u", "qps_single": 2.0}], accuracy={"users": 3})
    second = cell([{"method": "scipy", "setting": "A@u", "qps_single": 5.0},
                   {"method": "seismic", "setting": "x", "qps_single": 3.0}], accuracy={"dense": 1})
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / "a.json").write_text(json.dumps(first))
    (tmp_path / "cells" / "b.json").write_text(json.dumps(second))
    [merged] = scale.load_cells([str(tmp_path)])
    by = {(r["method"], r["setting"]): r["qps_single"] for r in merged["results"]}
    assert by == {("spidx", "f32 auto"): 1.0, ("scipy", "A@u"): 5.0, ("seismic", "x"): 3.0}
    assert merged["accuracy"] == {"users": 3, "dense": 1} and merged["notes"] == ["n"]
