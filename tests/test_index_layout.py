"""Block layout: add / remove_ids / reconstruct against a rebuilt-from-scratch oracle, compact
version-2 files (round trip, crafted files refused), version-1 files converted on load."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from spidx import index_file
from spidx.errors import InputError
from spidx.index import SparseIndex

from test_index import assert_matches_oracle, clustered_sparse, oracle_scores, random_sparse


def queries(d, n=12, seed=1):
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((n, d)).astype(np.float32)
    Q[rng.random(Q.shape) < 0.5] = 0.0
    return Q


def assert_same_items(idx: SparseIndex, A: sp.csr_matrix, ids):
    """idx holds exactly the rows of A (by label) with external ids `ids`, and searches like them."""
    assert idx.ntotal == A.shape[0] == len(idx.item_ids)
    np.testing.assert_array_equal(idx.item_ids, ids)
    np.testing.assert_allclose(idx.to_csr().toarray(), A.toarray(), rtol=1e-6, atol=1e-7)
    for label in (0, A.shape[0] // 2, A.shape[0] - 1):
        np.testing.assert_allclose(idx.reconstruct(label), A[label].toarray().ravel(), rtol=1e-6, atol=1e-7)
    Q = queries(A.shape[1])
    excl = [np.arange(r, A.shape[0], 7) for r in range(len(Q))]
    S = oracle_scores(A, Q, excl)
    for engine in ("pruned", "scan"):
        s, i = idx.search(Q, 20, exclude=excl, engine=engine)
        assert_matches_oracle(s, i, S, 20)


@pytest.mark.parametrize("values", ["f32", "f16"])
def test_add_matches_an_index_built_from_scratch(values, tmp_path):
    A, _ = clustered_sparse(600, 128, 6, 10, seed=5)
    A = SparseIndex.from_embeddings(A, values=values).to_csr()  # values exactly representable
    idx = SparseIndex.from_embeddings(A[:400], values=values, block_size=16)
    idx.add(A[400:500])
    idx.add(A[500:].toarray())  # dense rows: cut to k = 6 (they have 6 already) and renormalised
    A = sp.vstack([A[:500], SparseIndex.from_embeddings(A[500:].toarray(), nnz=6, values=values).to_csr()]).tocsr()
    assert_same_items(idx, A, np.arange(600))
    scratch = SparseIndex.from_embeddings(A, values=values, block_size=16)
    Q = queries(128)
    np.testing.assert_array_equal(idx.search(Q, 30)[1], scratch.search(Q, 30)[1])
    idx.save(tmp_path / "a.spidx")
    assert_same_items(SparseIndex.load(tmp_path / "a.spidx"), A, np.arange(600))


def test_add_ids_dense_topk_and_errors():
    idx = SparseIndex.from_embeddings(random_sparse(50, 32, 4), [f"s{i}" for i in range(50)], values="i8")
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((3, 32)).astype(np.float32)
    with pytest.raises(InputError, match="string item ids"):
        idx.add(dense)
    with pytest.raises(InputError, match="already in the index"):
        idx.add(dense, ids=["s1", "n1", "n2"])
    with pytest.raises(InputError, match="unique"):
        idx.add(dense, ids=["n1", "n1", "n2"])
    with pytest.raises(InputError, match="dimensions"):
        idx.add(np.ones((2, 31)), ids=["a", "b"])
    with pytest.raises(InputError, match="NaN"):
        idx.add(np.full((1, 32), np.nan), ids=["a"])
    idx.add(dense, ids=["n1", "n2", "n3"])
    assert idx.ntotal == 53 and list(idx.item_ids[50:]) == ["n1", "n2", "n3"]
    row = idx.reconstruct(51)
    assert (row != 0).sum() == 4  # top-k to the index's k
    kept = np.argsort(-np.abs(dense[1]))[:4]
    np.testing.assert_allclose(row[kept], dense[1, kept] / np.linalg.norm(dense[1, kept]), atol=0.02)
    assert idx.lookup(["n2"])[0] == 51
    ints = SparseIndex.from_embeddings(random_sparse(10, 32, 4), np.arange(10) * 5)
    ints.add(random_sparse(2, 32, 4, seed=3))
    assert list(ints.item_ids[10:]) == [46, 47]
    for bad in (-1, 12, 2.0, True):
        with pytest.raises(InputError):
            ints.reconstruct(bad)


@pytest.mark.parametrize("values", ["f32", "i8"])
def test_remove_ids_matches_an_index_built_from_scratch(values, tmp_path):
    A, _ = clustered_sparse(500, 96, 6, 8, seed=6)
    idx = SparseIndex.from_embeddings(A, np.arange(500) * 3, values=values, block_size=16)
    full = idx.to_csr()
    rng = np.random.default_rng(2)
    gone = rng.choice(500, 120, replace=False)
    block0 = idx.order[idx.block_ptr[0]:idx.block_ptr[1]]  # empty one block entirely
    assert idx.remove_ids(np.concatenate([gone, block0, gone[:5]])) == len(np.unique(np.concatenate([gone, block0])))
    keep = np.setdiff1d(np.arange(500), np.concatenate([gone, block0]))
    assert_same_items(idx, full[keep], keep * 3)
    assert idx.remove_ids([]) == 0
    with pytest.raises(InputError, match="positions to remove"):
        idx.remove_ids([idx.ntotal])
    idx.save(tmp_path / "r.spidx")
    back = SparseIndex.load(tmp_path / "r.spidx")
    assert_same_items(back, full[keep], keep * 3)
    back.add(full[gone[:10]], ids=gone[:10] * 3)
    assert_same_items(back, sp.vstack([full[keep], full[gone[:10]]]).tocsr(), np.concatenate([keep, gone[:10]]) * 3)


def test_variable_row_lengths_store_row_ptr(tmp_path):
    A = sp.random(300, 64, density=0.08, format="csr", random_state=3, dtype=np.float32)
    A.data -= 0.5
    idx = SparseIndex.from_embeddings(A, values="f16", block_size=16)
    assert not idx.fixed_k
    idx.save(tmp_path / "v.spidx")
    fixed = SparseIndex.from_embeddings(random_sparse(300, 64, 5), values="f16")
    fixed.save(tmp_path / "f.spidx")
    assert fixed.fixed_k
    headers = [index_file.read_header(tmp_path / name) for name in ("v.spidx", "f.spidx")]
    assert "row_ptr" in headers[0]["arrays"] and "row_ptr" not in headers[1]["arrays"]
    assert {"row_dims_12bit", "summary_dims_12bit"} <= set(headers[1]["arrays"])  # d <= 4096: 12-bit dims
    assert headers[1]["arrays"]["row_dims_12bit"]["nbytes"] == 3 * 1500 // 2
    for index, name in ((idx, "v.spidx"), (fixed, "f.spidx")):  # the accounting matches the file
        arrays = index_file.read_header(tmp_path / name)["arrays"]
        assert index_file.stored_nbytes(index) == {a: spec["nbytes"] for a, spec in arrays.items()}
    rep = fixed.memory_report()
    assert rep["file_bytes_per_nnz"] == pytest.approx(sum(index_file.stored_nbytes(fixed).values()) / 1500)
    back = SparseIndex.load(tmp_path / "v.spidx")
    np.testing.assert_array_equal(back.to_csr().toarray(), idx.to_csr().toarray())
    Q = queries(64)
    np.testing.assert_array_equal(back.search(Q, 10)[1], idx.search(Q, 10)[1])


class _Version1:
    """The arrays a version-1 file held: posting lists and forward rows in label order."""

    def __init__(self, A, ids, values):
        new = SparseIndex.from_embeddings(A, ids, values=values)
        m = sp.csr_matrix(A)
        # carry each entry's CSR position through the transpose, so both copies hold the same entries
        csc = sp.csr_matrix((np.arange(1, m.nnz + 1), m.indices, m.indptr), shape=m.shape).tocsc()
        csc.sort_indices()
        self.values, self.build = values, {"note": "v1"}
        self.n_items, self.d, self.nnz, self.fixed_k, self.n_blocks = m.shape[0], m.shape[1], m.nnz, False, 0
        self.k = int(np.diff(m.indptr).max())
        self.summary_dims = np.empty(0)
        lab = new.position_of_label
        rows = [np.asarray(new.row_values)[new.row_ptr[i]:new.row_ptr[i + 1]] for i in lab]
        self._arrays = {"col_ptr": csc.indptr.astype(np.int32), "col_items": csc.indices.astype(np.int32),
                        "col_values": np.concatenate(rows)[csc.data - 1],
                        "row_ptr": m.indptr.astype(np.int32), "row_dims": m.indices.astype(np.uint16),
                        "row_values": np.concatenate(rows), "dim_scale": np.asarray(new.dim_scale),
                        "item_ids": np.asarray(new.item_ids)}
        self.expected = new

    def arrays(self):
        return self._arrays


def test_version_1_files_are_converted_on_load(tmp_path, monkeypatch):
    A = random_sparse(200, 48, 5, seed=9)
    A.sort_indices()
    old = _Version1(A, [f"x{i}" for i in range(200)], "i8")
    with monkeypatch.context() as m:
        m.setattr(index_file, "FORMAT_VERSION", 1)
        index_file.write_index(tmp_path / "v1.spidx", old)
    assert index_file.read_header(tmp_path / "v1.spidx")["format_version"] == 1
    idx = SparseIndex.load(tmp_path / "v1.spidx")
    assert idx.build["converted_from_format_version"] == 1 and idx.build["note"] == "v1"
    np.testing.assert_array_equal(idx.item_ids, old.expected.item_ids)
    np.testing.assert_array_equal(idx.to_csr().toarray(), old.expected.to_csr().toarray())
    Q = queries(48)
    np.testing.assert_array_equal(idx.search(Q, 15)[1], old.expected.search(Q, 15)[1])
    idx.save(tmp_path / "v2.spidx")
    assert index_file.read_header(tmp_path / "v2.spidx")["format_version"] == 2


@pytest.mark.parametrize("field, change, message", [
    ("order", lambda a: np.where(a == 0, 1, a), "permutation"),
    ("order", lambda a: a + 1, "permutation"),
    ("block_ptr", lambda a: a[::-1].copy(), "block pointers"),
    ("block_ptr", lambda a: np.where(a == a[-1], a[-1] + 5, a), "block pointers"),
    ("summary_ptr", lambda a: np.where(a == a[-1], a[-1] + 1, a), "summary pointers"),
    ("summary_dims", lambda a: np.where(a == a[0], 4000, a).astype(a.dtype), "summary dimension"),
    ("row_dims", lambda a: np.where(a == a[3], 500, a).astype(a.dtype), "row dimension"),
    ("block_rest_count", lambda a: a - 100, "rest count"),
    ("block_unit", lambda a: a[:-1].copy(), "has shape"),
    ("block_rest_max", lambda a: np.full_like(a, np.inf), "not finite"),
    ("summary_pos", lambda a: a[:-1].copy(), "has shape"),
])
def test_crafted_version_2_files_are_refused(tmp_path, field, change, message):
    idx = SparseIndex.from_embeddings(random_sparse(120, 64, 4), values="f16", block_size=8)
    setattr(idx, field, change(np.asarray(getattr(idx, field))))
    idx.save(tmp_path / "c.spidx")  # checksums are valid: only the structure is wrong
    with pytest.raises(InputError, match=message) as e:
        SparseIndex.load(tmp_path / "c.spidx")
    assert "\n" not in str(e.value) and ("inconsistent index" in str(e.value) or "corrupt index" in str(e.value))


def test_twelve_bit_packing_round_trips_and_wide_indexes_keep_u16(tmp_path):
    dims = np.array([0, 4095, 17, 2048, 4094, 1, 3000], np.uint16)
    for n in range(len(dims) + 1):
        packed = index_file.pack_12bit(dims[:n])
        assert len(packed) == 3 * ((n + 1) // 2)
        np.testing.assert_array_equal(index_file.unpack_12bit(packed, n), dims[:n])
    wide = SparseIndex.from_embeddings(sp.csr_matrix(random_sparse(40, 5000, 4)), values="i8")
    wide.save(tmp_path / "w.spidx")
    assert "row_dims" in index_file.read_header(tmp_path / "w.spidx")["arrays"]
    back = SparseIndex.load(tmp_path / "w.spidx")
    np.testing.assert_array_equal(back.to_csr().toarray(), wide.to_csr().toarray())


def test_unknown_version_is_refused(tmp_path):
    idx = SparseIndex.from_embeddings(random_sparse(20, 16, 3))
    idx.save(tmp_path / "a.spidx")
    raw = bytearray((tmp_path / "a.spidx").read_bytes())
    raw[8] = 7
    (tmp_path / "b.spidx").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="rebuild it with `spidx build`"):
        SparseIndex.load(tmp_path / "b.spidx")


@pytest.mark.slow
def test_approx_recall_on_real_embeddings():
    """The documented operating point: approx = 0.4 keeps recall@100 >= 0.99 against exact search on
    MovieLens-100k (quick SVD model lifted to d = 1024, top-32, i8), and approx = 1.0 is exact."""
    from pathlib import Path

    from spidx.bench.quick_embeddings import lifted_embeddings, svd_item_factors
    from spidx.interactions import read_interactions
    from spidx.evaluation import make_split

    data = read_interactions(Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "ml-100k.npz")
    split = make_split(data.matrix, n_test=300, seed=42, folds=1)
    dense = lifted_embeddings(svd_item_factors(split.train, 64, power_iters=1), 1024)
    idx = SparseIndex.from_embeddings(dense, data.item_ids, nnz=32, values="i8", block_size=64)
    H = split.test[0].history
    exact = idx.recommend(H, k=100).positions
    np.testing.assert_array_equal(idx.recommend(H, k=100, approx=1.0).positions, exact)
    approx = idx.recommend(H, k=100, approx=0.4).positions
    recall = np.mean([len(np.intersect1d(a[a >= 0], b[b >= 0])) / max((b >= 0).sum(), 1)
                      for a, b in zip(approx, exact)])
    assert recall >= 0.99


def test_positional_item_ids_are_derived_not_stored(tmp_path):
    """Ids 0..n-1 (faiss's default) are not written; other ids are, and both round-trip."""
    A = random_sparse(50, 64, 4)
    plain = SparseIndex.from_embeddings(A)
    plain.save(tmp_path / "p.spidx")
    assert "item_ids" not in index_file.read_header(tmp_path / "p.spidx")["arrays"]
    assert "item_ids" not in index_file.stored_nbytes(plain)
    back = SparseIndex.load(tmp_path / "p.spidx")
    np.testing.assert_array_equal(back.item_ids, np.arange(50))
    np.testing.assert_array_equal(back.search(A[:3].toarray(), 5)[1], plain.search(A[:3].toarray(), 5)[1])
    for ids in (np.arange(50)[::-1].copy(), np.arange(50) + 7, np.array([f"m{i}" for i in range(50)])):
        named = SparseIndex.from_embeddings(A, ids)
        named.save(tmp_path / "n.spidx")
        assert "item_ids" in index_file.read_header(tmp_path / "n.spidx")["arrays"]
        np.testing.assert_array_equal(SparseIndex.load(tmp_path / "n.spidx").item_ids, ids)
