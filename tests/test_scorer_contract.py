"""One contract every scorer passes (in the style of implicit's RecommenderBase test mixin).

A scorer ranks items for users given by their histories: exact top-k by score, best first, ties broken by
the smaller item position, the user's history (and any other exclusion) never returned, rows with fewer
than k rankable items padded with item -1 (and score -inf where scores are returned). Each scorer is
checked against a brute-force oracle on small fixtures: the index engines, the shared dense top-k, the
model classes (ELSA, Compressed ELSA, pruned EASE) and the benchmark's wrappers (our index, pruned and
full EASE, FAISS flat, FAISS 8-bit codes against their own decoded vectors).
"""
import numpy as np
import pytest
import scipy.sparse as sp

from spidx.embeddings import Embeddings
from spidx.index import SparseIndex
from spidx.ranking import rank_by_scores

N_ITEMS, DIM = 14, 9


def dyadic(rng, size):
    """Values k/16 (k = ±1..±31): every score below is exact in float32, whatever the summation order,
    so equal scores are true ties for every scorer (BLAS, numba kernels, FAISS)."""
    return rng.integers(1, 32, size) / 16.0 * rng.choice([-1, 1], size)


def item_matrix(seed=0, ties=False) -> sp.csr_matrix:
    """Items x DIM, 3 non-zeros per row; with `ties` items 5, 9 and 12 are copies of item 2."""
    rng = np.random.default_rng(seed)
    A = np.zeros((N_ITEMS, DIM), np.float32)
    for i in range(N_ITEMS):
        A[i, rng.choice(DIM, 3, replace=False)] = dyadic(rng, 3)
    if ties:
        A[[5, 9, 12]] = A[2]
    return sp.csr_matrix(A)


def item_item(seed=0, ties=False) -> sp.csr_matrix:
    """A sparse item-item matrix B (pruned-EASE shaped); with `ties` columns 5, 9, 12 copy column 2."""
    rng = np.random.default_rng(seed + 100)
    B = np.where(rng.random((N_ITEMS, N_ITEMS)) < 0.5, dyadic(rng, (N_ITEMS, N_ITEMS)), 0).astype(np.float32)
    np.fill_diagonal(B, 0)
    if ties:
        B[:, [5, 9, 12]] = B[:, [2]]
    return sp.csr_matrix(B)


def histories(seed=1, long_user=True) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows = [rng.choice(N_ITEMS, rng.integers(1, 4), replace=False) for _ in range(6)]
    if long_user:
        rows.append(np.arange(N_ITEMS - 2))  # only items 12 and 13 left to rank
    H = sp.lil_matrix((len(rows), N_ITEMS), dtype=np.float32)
    for r, items in enumerate(rows):
        H[r, items] = 1.0
    return H.tocsr()


def oracle(scores: np.ndarray, H: sp.csr_matrix, k: int):
    """Sort the allowed items by (-score, position); pad with -1 / -inf."""
    ids = np.full((H.shape[0], k), -1, np.int64)
    vals = np.full((H.shape[0], k), -np.inf)
    for r in range(H.shape[0]):
        seen = set(H[r].indices)
        order = sorted((j for j in range(scores.shape[1]) if j not in seen), key=lambda j: (-scores[r, j], j))[:k]
        ids[r, :len(order)] = order
        vals[r, :len(order)] = scores[r, order]
    return ids, vals


class ScorerContract:
    """Subclasses give `make(ties)` -> rank(H, k) -> (ids, scores or None), and `scores(H, ties)`."""

    item_item = False

    def model(self, ties):
        return item_item(ties=ties) if self.item_item else item_matrix(ties=ties)

    def scores(self, H, ties=False) -> np.ndarray:
        M = self.model(ties).toarray().astype(np.float64)
        Hd = H.toarray().astype(np.float64)
        return Hd @ M if self.item_item else (Hd @ M) @ M.T

    def check(self, ties, k):
        H = histories()
        ids, scores = self.make(ties)(H, k)
        exp_ids, exp_scores = oracle(self.scores(H, ties), H, k)
        assert np.asarray(ids).shape == (H.shape[0], k)
        np.testing.assert_array_equal(ids, exp_ids)
        if scores is not None:
            assert np.asarray(scores).shape == (H.shape[0], k)
            np.testing.assert_allclose(scores, exp_scores, rtol=1e-5, atol=1e-6)

    def test_exact_top_k_against_the_oracle(self):
        self.check(ties=False, k=5)

    def test_ties_break_towards_the_smaller_position(self):
        self.check(ties=True, k=N_ITEMS)

    def test_history_is_excluded_and_short_rows_are_padded(self):
        H = histories()
        ids, scores = self.make(False)(H, 6)
        for r in range(H.shape[0]):
            assert not set(H[r].indices) & set(np.asarray(ids[r]).tolist())
        assert list(ids[-1][2:]) == [-1] * 4 and set(ids[-1][:2]) == {12, 13}
        if scores is not None:
            assert np.all(np.isneginf(scores[-1][2:]))

    def test_k_of_one(self):
        self.check(ties=True, k=1)


@pytest.mark.parametrize("engine", ["scan", "pruned", "auto"])
class TestIndexEngines(ScorerContract):
    @pytest.fixture(autouse=True)
    def _engine(self, engine):
        self.engine = engine

    def make(self, ties):
        index = SparseIndex.from_embeddings(self.model(ties))

        def rank(H, k):
            D, I = index.search(index.query_vectors(H), k, exclude=H, engine=self.engine)
            return I, D
        return rank


class TestIndexRecommend(ScorerContract):
    def make(self, ties):
        index = SparseIndex.from_embeddings(self.model(ties))
        return lambda H, k: (index.recommend(H, k).positions, index.recommend(H, k).scores)


class TestDenseTopK(ScorerContract):
    def make(self, ties):
        A = self.model(ties).toarray()
        return lambda H, k: rank_by_scores(lambda h: (h @ A) @ A.T, H, k)


class ModelContract(ScorerContract):
    name = ""
    dense = False

    def make(self, ties):
        from spidx.trainer.models import _ItemModel

        M = self.model(ties)
        model = _ItemModel.from_embeddings(Embeddings(M.toarray() if self.dense else M, np.arange(M.shape[0]),
                                                      {"model": self.name}))
        return lambda H, k: model.recommend(np.arange(H.shape[0]), H, N=k)


class TestCompressedELSAModel(ModelContract):
    name = "compressed-elsa"


class TestELSAModel(ModelContract):
    name, dense = "elsa", True


class TestPrunedEASEModel(ModelContract):
    name, item_item = "ease", True


class BenchContract(ScorerContract):
    def make(self, ties):
        served = self.served(self.model(ties))
        return lambda H, k: (served.recommend(H, k), None)


class TestBenchIndexServed(BenchContract):
    def served(self, A):
        from spidx.bench.methods import index_served

        return index_served(A, "f32", "index", "celsa", None, "", {})


class TestBenchPrunedEASE(BenchContract):
    item_item = True

    def served(self, B):
        from spidx.bench.methods import sparse_rows_served

        return sparse_rows_served(B, "pruned EASE", "ease", None, "", {})


class TestBenchFullEASE(BenchContract):
    item_item = True

    def served(self, B):
        from spidx.bench.methods import DenseItemItemServed

        return DenseItemItemServed(method="EASE", group="ease", budget=None, config="", params={},
                                   paper_bytes_per_item=0, stored_bytes=0, n_items=B.shape[0], B=B.toarray())


class TestBenchFaissFlat(BenchContract):
    def served(self, A):
        pytest.importorskip("faiss")
        from spidx.bench.methods import flat_served

        return flat_served(A.toarray(), "FlatIP", "dense", None, "", {})


class TestBenchFaissCodes(BenchContract):
    """A compressed FAISS index (8-bit scalar codes) is exact with respect to its own decoded vectors."""

    def served(self, A):
        pytest.importorskip("faiss")
        from spidx.bench.faiss_methods import FaissConfig, build_faiss

        self._served = build_faiss(A.toarray(), FaissConfig("SQ8", "SQ8", DIM, DIM, DIM), "A", "A", {})
        return self._served

    def make(self, ties):
        self.served(self.model(ties))
        return lambda H, k: (self._served.recommend(H, k), None)

    def scores(self, H, ties=False) -> np.ndarray:
        D = self._served.decoded.astype(np.float64)
        U = H.toarray().astype(np.float64) @ D
        return U @ D.T
