"""SparseIndex: every engine against a brute-force oracle, memory accounting, persistence."""
from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import data_file
from spidx import index_file, kernels
from spidx.errors import InputError
from spidx.index import SparseIndex
from spidx.sparsify import row_topk
from spidx.interactions import read_interactions



def random_sparse(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    cols = np.sort(np.argsort(rng.random((n, d)), axis=1)[:, :k], axis=1)
    vals = rng.standard_normal((n, k)).astype(np.float32)
    vals /= np.linalg.norm(vals, axis=1, keepdims=True)
    return sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(n + 1) * k), shape=(n, d))


def clustered_sparse(n, d, k, n_clusters, seed=0, pool=None):
    """Items in taste clusters: each row draws its k dimensions from its cluster's pool of 2k, signed
    random values, so items of a cluster share dimensions (block bounds get tight, pruning triggers)."""
    rng = np.random.default_rng(seed)
    pool = pool or 2 * k
    pools = np.stack([rng.choice(d, pool, replace=False) for _ in range(n_clusters)])
    cluster = rng.integers(n_clusters, size=n)
    cols = np.sort(np.take_along_axis(pools[cluster], np.argsort(rng.random((n, pool)), axis=1)[:, :k], 1), axis=1)
    vals = rng.standard_normal((n, k)).astype(np.float32)
    vals /= np.linalg.norm(vals, axis=1, keepdims=True)
    return sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(n + 1) * k), shape=(n, d)), cluster


def oracle_scores(A: sp.csr_matrix, Q, exclude=None) -> np.ndarray:
    Qd = Q.toarray() if sp.issparse(Q) else np.atleast_2d(Q)
    S = (A.astype(np.float64) @ Qd.T.astype(np.float64)).T
    for r, items in enumerate(exclude or []):
        S[r, list(items)] = -np.inf
    return S


def assert_matches_oracle(scores, ids, S, k):
    """Tie-tolerant: the returned scores are the oracle's top-k values, and each id has its score."""
    assert scores.shape == ids.shape == (S.shape[0], k)
    for r in range(S.shape[0]):
        finite = np.isfinite(S[r])
        m = min(k, int(finite.sum()))
        assert np.all(ids[r, m:] == -1) and np.all(np.isneginf(scores[r, m:])), "padding"
        got = ids[r, :m]
        assert np.all(got >= 0) and len(np.unique(got)) == m, "ids valid and distinct"
        assert np.all(finite[got]), "no excluded item returned"
        assert np.all(np.diff(scores[r, :m]) <= 0), "descending"
        expected = np.sort(S[r, finite])[::-1][:m]
        np.testing.assert_allclose(scores[r, :m], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(S[r, got], scores[r, :m], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def ml100k_embeddings():
    from spidx.bench.quick_embeddings import lifted_embeddings, svd_item_factors

    data = read_interactions(data_file("ml-100k", "ml-100k.npz"))  # real data: skips without it
    dense = lifted_embeddings(svd_item_factors(data.matrix, 64, power_iters=1), 512)
    return data, dense


class EngineContract:
    """Every engine (and every value type, and a reloaded index) must equal the oracle."""

    engine = "auto"
    approx = None
    values = "f32"
    reload = False
    clustered = False
    posting_cost = None  # scan engine: 0 always reads postings, inf always forward rows (default: per query)
    chunk_items = None   # scan engine: items per posting-list chunk (default: spidx.index.CHUNK_ITEMS)

    @pytest.fixture
    def index(self, tmp_path, monkeypatch):
        if self.chunk_items is not None:
            monkeypatch.setattr("spidx.index.CHUNK_ITEMS", self.chunk_items)
        A = clustered_sparse(700, 96, 6, 12)[0] if self.clustered else random_sparse(700, 96, 6)
        idx = SparseIndex.from_embeddings(A, np.arange(700) * 10, values=self.values, block_size=16)
        if self.reload:
            idx.save(tmp_path / "i.spidx")
            idx = SparseIndex.load(tmp_path / "i.spidx", mmap=True)
        if self.posting_cost is not None:
            idx.posting_cost = self.posting_cost
        return idx

    def queries(self, idx, n, seed=1):
        rng = np.random.default_rng(seed)
        Q = rng.standard_normal((n, idx.d)).astype(np.float32)
        Q[rng.random(Q.shape) < 0.7] = 0.0
        return Q

    def test_single_query(self, index):
        q = self.queries(index, 1)[0]
        s, i = index.search(q, 10, engine=self.engine, approx=self.approx)
        assert_matches_oracle(s, i, oracle_scores(index.to_csr(), q), 10)

    def test_batch_dense_and_sparse_queries(self, index):
        Q = self.queries(index, 45)
        S = oracle_scores(index.to_csr(), Q)
        for batch in (Q, sp.csr_matrix(Q)):
            s, i = index.search(batch, 25, engine=self.engine, approx=self.approx, batch_size=20)
            assert_matches_oracle(s, i, S, 25)

    def test_exclusion(self, index):
        rng = np.random.default_rng(3)
        Q = self.queries(index, 20)
        excl = [rng.choice(index.n_items, size=rng.integers(0, 50), replace=False) for _ in range(20)]
        s, i = index.search(Q, 15, exclude=excl, engine=self.engine, approx=self.approx)
        assert_matches_oracle(s, i, oracle_scores(index.to_csr(), Q, excl), 15)

    def test_k_larger_than_candidates(self, index):
        Q = self.queries(index, 3)
        excl = [np.arange(650), [], np.arange(0, 700, 2)]
        s, i = index.search(Q, 800, exclude=excl, engine=self.engine, approx=self.approx)
        assert i.shape == (3, 700)  # k is capped at the 700 items; rows with fewer candidates are padded
        assert_matches_oracle(s, i, oracle_scores(index.to_csr(), Q, excl), 700)
        assert (i[0] >= 0).sum() == 50 and (i[1] >= 0).sum() == 700

    def test_recommend_with_and_without_seen(self, index):
        rng = np.random.default_rng(5)
        hist = [rng.choice(index.n_items, size=n, replace=False) for n in (1, 3, 40, 200)]
        H = sp.csr_matrix((np.ones(sum(map(len, hist)), np.float32),
                           (np.repeat(np.arange(4), [len(h) for h in hist]), np.concatenate(hist))),
                          shape=(4, index.n_items))
        A = index.to_csr()
        U = (H @ A).toarray()
        for exclude_seen in (True, False):
            rec = index.recommend([index.item_ids[h] for h in hist], k=30, exclude_seen=exclude_seen,
                                  engine=self.engine, approx=self.approx)
            S = oracle_scores(A, U, hist if exclude_seen else None)
            assert_matches_oracle(rec.scores, rec.positions, S, 30)
            np.testing.assert_array_equal(rec.items, index.item_ids[rec.positions])
            rec2 = index.recommend(H, k=30, exclude_seen=exclude_seen, engine=self.engine, approx=self.approx)
            np.testing.assert_array_equal(rec2.positions, rec.positions)

    @pytest.mark.slow
    def test_real_embeddings(self, ml100k_embeddings):
        data, dense = ml100k_embeddings
        idx = SparseIndex.from_embeddings(dense, data.item_ids, nnz=16, values=self.values)
        H = data.matrix[:64]
        rec = idx.recommend(H, k=100, engine=self.engine, approx=self.approx)
        A = idx.to_csr()
        S = oracle_scores(A, (H @ A).toarray(), [H.indices[H.indptr[r]:H.indptr[r + 1]] for r in range(64)])
        assert_matches_oracle(rec.scores, rec.positions, S, 100)


class TestAuto(EngineContract):
    engine = "auto"


class TestPruned(EngineContract):
    engine = "pruned"


class TestPrunedClustered(EngineContract):
    engine = "pruned"
    clustered = True


class TestScan(EngineContract):
    engine = "scan"


class TestScanPostingsAcrossChunks(EngineContract):
    engine = "scan"
    posting_cost = 0.0
    chunk_items = 64  # 11 chunks, the last one partial
    values = "i8"


class TestScanForwardRows(EngineContract):
    engine = "scan"
    posting_cost = float("inf")
    values = "f16"


class TestApproxOneIsExact(EngineContract):
    approx = 1.0
    clustered = True


class TestInt8Clustered(EngineContract):
    values = "i8"
    clustered = True


class TestFloat16(EngineContract):
    values = "f16"


class TestInt8(EngineContract):
    values = "i8"


class TestReloaded(EngineContract):
    values = "f16"
    reload = True
    clustered = True


def clustered_index_and_queries(n=3000, d=512, k=8, n_clusters=30, values="f32", n_queries=30, block_size=32):
    A, cluster = clustered_sparse(n, d, k, n_clusters, seed=2)
    idx = SparseIndex.from_embeddings(A, values=values, block_size=block_size)
    rng = np.random.default_rng(4)
    hist = [np.flatnonzero(np.isin(cluster, rng.choice(n_clusters, rng.integers(1, 3), replace=False)))[:20]
            for _ in range(n_queries)]
    H = sp.csr_matrix((np.ones(sum(map(len, hist)), np.float32),
                       (np.repeat(np.arange(n_queries), [len(h) for h in hist]), np.concatenate(hist))),
                      shape=(n_queries, n))
    return idx, idx.query_vectors(H), hist


@pytest.mark.parametrize("values", ["f32", "f16", "i8"])
def test_pruning_skips_blocks_and_equals_scan(values):
    idx, Q, hist = clustered_index_and_queries(values=values)
    s, i, stats = idx.search(Q, 20, exclude=hist, engine="pruned", return_stats=True)
    s2, i2, full = idx.search(Q, 20, exclude=hist, engine="scan", return_stats=True)
    np.testing.assert_array_equal(i, i2)  # identical, ties included: both break ties by label
    np.testing.assert_array_equal(s, s2)
    assert np.all(full.blocks_skipped == 0) and np.all(full.items_scored == idx.n_items)
    assert np.median(stats.blocks_skipped) > 0.5 * idx.n_blocks, "clustered items: most blocks skipped"
    np.testing.assert_array_equal(stats.blocks_scored + stats.blocks_skipped, idx.n_blocks)
    np.testing.assert_array_equal(stats.items_scored + stats.items_skipped, idx.n_items)
    assert_matches_oracle(s, i, oracle_scores(idx.to_csr(), Q, hist), 20)


def test_adversarial_queries_ties_and_signs():
    A, _ = clustered_sparse(500, 64, 4, 10, seed=3)
    A.data = np.sign(A.data) * 0.5  # many exact ties
    idx = SparseIndex.from_embeddings(A, values="f32", block_size=8)
    rng = np.random.default_rng(0)
    Q = np.stack([-np.abs(rng.standard_normal(64)), np.full(64, -1.0), np.zeros(64), np.ones(64),
                  np.where(rng.random(64) < 0.1, -3.0, 0.0)]).astype(np.float32)
    S = oracle_scores(idx.to_csr(), Q)
    for k in (1, 3, 50, 499, 500, 600):
        for engine, approx in (("pruned", None), ("scan", None), ("auto", 1.0)):
            s, i = idx.search(Q, k, engine=engine, approx=approx)
            assert_matches_oracle(s, i, S, min(k, idx.n_items))  # k is capped at n_items
            for r in range(len(Q)):  # ties go to the smaller label
                m = min(k, idx.n_items)
                order = np.lexsort((np.arange(idx.n_items), -S[r]))[:m]
                np.testing.assert_array_equal(i[r, :m], order)


def test_approx_recall_grows_with_the_knob_and_one_is_exact():
    idx, Q, hist = clustered_index_and_queries(n=4000, n_clusters=30, values="i8", block_size=32)
    S = oracle_scores(idx.to_csr(), Q, hist)
    exact = idx.search(Q, 50, exclude=hist)[1]
    prev_recall = 0.0
    for approx in (0.05, 0.2, 0.4, 0.6, 0.8, 1.0):
        s, i = idx.search(Q, 50, exclude=hist, approx=approx)
        recall = np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(i, exact)])
        assert recall >= prev_recall - 1e-12
        prev_recall = recall
        got = set(map(tuple, np.stack([np.repeat(np.arange(len(i)), 50), i.ravel()], 1)))
        assert all((r, x) not in got for r, h in enumerate(hist) for x in h), "exclusions hold"
        # candidates are rescored exactly: returned scores are the items' true scores, best first
        np.testing.assert_allclose(s, np.take_along_axis(S, i, 1), rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(s, axis=1) <= 0)
    np.testing.assert_array_equal(i, exact)
    assert 0.0 < np.mean([len(np.intersect1d(a, b)) / 50
                          for a, b in zip(idx.search(Q, 50, exclude=hist, approx=0.05)[1], exact)]) < 1.0


def test_query_cut_keeps_the_heaviest_dimensions_nested():
    """approx keeps the shortest prefix of dimensions by |u_j| holding >= approx of ‖u‖₁; a larger approx
    keeps a superset."""
    rng = np.random.default_rng(0)
    u = (rng.standard_normal(300) * (rng.random(300) < 0.3)).astype(np.float32)
    w = u * 2.0
    prev = np.zeros(300, bool)
    l1 = np.abs(u).sum(dtype=np.float64)
    for approx in (0.1, 0.3, 0.5, 0.9, 1.0):
        kept = kernels._query_cut(u, w, approx) != 0
        assert np.all(kept >= prev)
        mass = np.abs(u[kept]).sum(dtype=np.float64)
        assert mass >= approx * l1 * (1 - 1e-9)
        smallest = np.abs(u[kept]).min()
        assert mass - smallest < approx * l1, "the shortest such prefix"
        assert np.all(np.abs(u[~kept]) <= smallest)
        np.testing.assert_array_equal(kernels._query_cut(u, w, approx)[kept], w[kept])
        prev = kept
    assert prev.sum() == np.count_nonzero(u)


def test_approx_and_engine_validation():
    idx = SparseIndex.from_embeddings(random_sparse(50, 32, 4))
    q = np.ones(32, np.float32)
    for bad in (0, 0.0, -0.5, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(InputError, match="approx"):
            idx.search(q, 5, approx=bad)
    with pytest.raises(InputError, match="pruned engine is always exact"):
        idx.search(q, 5, engine="pruned", approx=0.5)
    with pytest.raises(InputError, match="unknown engine"):
        idx.search(q, 5, engine="taat")


def test_topk_sparsify_keeps_largest_and_renormalises():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((50, 40)).astype(np.float32)
    m = row_topk(dense, 5, renormalise=True)
    assert np.all(np.diff(m.indptr) == 5)
    np.testing.assert_allclose(np.sqrt(m.multiply(m).sum(1)).A.ravel(), 1.0, rtol=1e-6)
    for r in range(50):
        kept = m.indices[m.indptr[r]:m.indptr[r + 1]]
        assert set(kept) == set(np.argsort(-np.abs(dense[r]))[:5])
        np.testing.assert_array_equal(np.sign(m.data[m.indptr[r]:m.indptr[r + 1]]), np.sign(dense[r, kept]))


def test_sparse_input_is_cut_to_nnz():
    idx = SparseIndex.from_embeddings(random_sparse(100, 64, 12), nnz=4)
    assert idx.k == 4 and idx.nnz == 400


def test_dtypes_and_memory_accounting():
    A = random_sparse(300, 128, 8)
    f32 = SparseIndex.from_embeddings(A, values="f32")
    f16 = SparseIndex.from_embeddings(A, values="f16")
    i8 = SparseIndex.from_embeddings(A, values="i8")
    assert f32.row_dims.dtype == np.uint16 and f32.summary_dims.dtype == np.uint16
    assert (f32.row_values.dtype, f16.row_values.dtype, i8.row_values.dtype) == (np.float32, np.uint16, np.int8)
    b32, b16, b8 = (x.memory_breakdown() for x in (f32, f16, i8))
    assert b32["row_values"] == 4 * 2400 and b16["row_values"] == 2 * 2400 and b8["row_values"] == 2400
    assert f32.nbytes == sum(b32.values())
    rep, rep8 = f32.memory_report(), i8.memory_report()
    assert rep["paper_bytes_per_item"] == 64.0
    assert rep["bytes_per_item"] == pytest.approx(f32.nbytes / 300)
    assert rep8["forward_bytes_per_nnz"] == 3.0  # u16 dimension + i8 value; row_ptr implied (fixed k)
    summaries = sum(b8[x] for x in ("summary_ptr", "summary_dims", "summary_pos", "summary_neg", "block_unit",
                                    "block_row_norm", "block_rest_max", "block_rest_count", "block_rest_norm",
                                    "block_ptr"))
    assert rep8["summary_bytes_per_nnz"] == pytest.approx(summaries / 2400)
    assert rep8["search_bytes_per_nnz"] == pytest.approx(3.0 + (summaries + b8["order"] + b8["dim_scale"]) / 2400)
    # the scan engine's posting lists: u16 position in the chunk + i8 value, chunk starts, per-dim counts
    d = i8.d
    assert rep8["postings_bytes_per_nnz"] == pytest.approx(3.0 + ((d + 1) * 8 + d * 8) / 2400)
    assert rep8["serving_bytes_per_nnz"] == pytest.approx(rep8["search_bytes_per_nnz"] + rep8["postings_bytes_per_nnz"])
    wide = SparseIndex.from_embeddings(sp.csr_matrix(([1.0], ([0], [70000])), shape=(1, 70001)))
    assert wide.row_dims.dtype == np.int32


def test_bad_input():
    idx = SparseIndex.from_embeddings(random_sparse(50, 32, 4), np.arange(50))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InputError):
            idx.search(np.ones(32), bad)
    with pytest.raises(InputError, match="dimensions"):
        idx.search(np.ones(31), 5)
    with pytest.raises(InputError, match="NaN"):
        idx.search(np.full(32, np.nan), 5)
    with pytest.raises(InputError, match="--nnz"):
        SparseIndex.from_embeddings(np.ones((4, 4)))
    with pytest.raises(InputError, match="unique"):
        SparseIndex.from_embeddings(random_sparse(3, 8, 2), [1, 1, 2])
    rec = idx.recommend([[1, 999, "x"], [], [998]], k=5)
    assert rec.unknown == [[999, "x"], [], [998]]
    assert list(rec.empty) == [False, True, True]
    assert np.all(rec.positions[1:] == -1) and np.all(np.isneginf(rec.scores[1:]))
    assert 1 not in rec.positions[0]


# ---- persistence ------------------------------------------------------------------------------

def test_round_trip_mmap_and_not(tmp_path):
    idx = SparseIndex.from_embeddings(random_sparse(400, 64, 5), [f"item{i}" for i in range(400)], values="i8",
                                      build={"note": "test"})
    path = tmp_path / "a.spidx"
    idx.save(path)
    Q = np.random.default_rng(0).standard_normal((30, 64)).astype(np.float32)
    expected = idx.search(Q, 17)
    for mmap in (True, False):
        back = SparseIndex.load(path, mmap=mmap)
        for name, a in idx.arrays().items():
            np.testing.assert_array_equal(getattr(back, name), a)
        assert back.values == "i8" and back.build["note"] == "test"
        got = back.search(Q, 17)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert isinstance(SparseIndex.load(path, mmap=True).row_values, np.memmap) or \
        isinstance(SparseIndex.load(path, mmap=True).row_values.base, np.memmap)


def test_every_corrupted_byte_is_detected(tmp_path):
    idx = SparseIndex.from_embeddings(random_sparse(12, 16, 3), np.arange(12), values="f16")
    path = tmp_path / "small.spidx"
    idx.save(path)
    raw = path.read_bytes()
    bad = tmp_path / "bad.spidx"
    for pos in range(len(raw)):
        flipped = bytearray(raw)
        flipped[pos] ^= 0x5A
        bad.write_bytes(bytes(flipped))
        with pytest.raises(InputError) as e:
            SparseIndex.load(bad, mmap=False)
        assert "\n" not in str(e.value)
    for cut in (0, 10, 60, len(raw) // 2, len(raw) - 1):
        bad.write_bytes(raw[:cut])
        with pytest.raises(InputError):
            SparseIndex.load(bad)
    bad.write_bytes(raw + b"\0")
    with pytest.raises(InputError, match="truncated or extended"):
        SparseIndex.load(bad)


def test_foreign_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        SparseIndex.load(tmp_path / "nope.spidx")
    npz = tmp_path / "x.npz"
    np.savez(npz, a=np.arange(100))
    with pytest.raises(InputError, match="not a spidx index"):
        SparseIndex.load(npz)
    with pytest.raises(InputError, match="is a directory"):
        SparseIndex.load(tmp_path)


def test_interrupted_save_keeps_previous_index(tmp_path, monkeypatch):
    path = tmp_path / "keep.spidx"
    old = SparseIndex.from_embeddings(random_sparse(50, 32, 4), values="f32")
    old.save(path)
    before = path.read_bytes()
    calls = []

    def failing_write(f, a):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        f.write(memoryview(np.ascontiguousarray(a)).cast("B"))

    monkeypatch.setattr(index_file, "_write_array", failing_write)
    with pytest.raises(KeyboardInterrupt):
        SparseIndex.from_embeddings(random_sparse(80, 32, 4), values="f16").save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.spidx"]
    assert SparseIndex.load(path).n_items == 50
