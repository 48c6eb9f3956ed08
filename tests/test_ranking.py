"""The one dense top-k (spidx.ranking) and the one row-wise top-k (spidx.sparsify) against brute force."""
import numpy as np
import pytest
import scipy.sparse as sp

from spidx.errors import InputError
from spidx.ranking import rank_by_scores, topk
from spidx.sparsify import row_topk


def test_topk_order_ties_exclusions_and_padding():
    S = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.5, 0.5, 0.5, 0.5, 0.5]], np.float32)
    ex = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [1, 1, 1, 1, 0]], np.float32))
    ids, vals = topk(S, 4, exclude=ex)
    assert ids.tolist() == [[1, 4, 3, 0], [4, -1, -1, -1]]
    assert vals[0].tolist() == [3, 3, 2, 1] and vals[1, 0] == 0.5 and np.all(np.isneginf(vals[1, 1:]))
    # the boundary of a tie is cut at the smaller positions, whatever argpartition picks
    rng = np.random.default_rng(0)
    T = rng.integers(0, 3, (50, 40)).astype(np.float32)
    for k in (1, 7, 40, 45):
        ids, _ = topk(T, k)
        for r in range(50):
            expect = sorted(range(40), key=lambda j: (-T[r, j], j))[:k]
            assert ids[r, :len(expect)].tolist() == expect


def test_topk_bad_input():
    with pytest.raises(InputError, match="k must be"):
        topk(np.ones((2, 3)), 0)
    with pytest.raises(InputError, match="NaN"):
        topk(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(InputError, match="exclude has shape"):
        topk(np.ones((2, 3)), 1, exclude=sp.csr_matrix((3, 3)))


def test_rank_by_scores_batches_like_one_call():
    rng = np.random.default_rng(1)
    A = (rng.integers(-8, 9, (30, 6)) / 8).astype(np.float32)  # exact sums: batching cannot change a score
    H = sp.random(25, 30, density=0.2, format="csr", random_state=2, dtype=np.float32)
    H.data[:] = 1
    score = lambda h: (h @ A) @ A.T  # noqa: E731
    whole = topk(score(H), 10, exclude=H)
    for part, one in zip(rank_by_scores(score, H, 10, batch_size=4), whole):
        np.testing.assert_array_equal(part, one)


@pytest.mark.parametrize("sparse", [False, True])
def test_row_topk_keeps_the_largest_magnitudes(sparse):
    M = np.array([[0.0, -3.0, 1.0, 3.0, 0.5], [2.0, 0.0, -2.0, 2.0, 0.0], [0, 0, 0, 1.0, 0]], np.float32)
    got = row_topk(sp.csr_matrix(M) if sparse else M, 2)
    # ties on |value| keep the smaller column; rows with fewer non-zeros keep what they have
    np.testing.assert_array_equal(got.toarray(), [[0, -3, 0, 3, 0], [2, 0, -2, 0, 0], [0, 0, 0, 1, 0]])
    unit = row_topk(sp.csr_matrix(M) if sparse else M, 2, renormalise=True)
    np.testing.assert_allclose(np.linalg.norm(unit.toarray(), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit.toarray()[0], np.array([0, -1, 0, 1, 0]) / np.sqrt(2), rtol=1e-6)
    with pytest.raises(InputError):
        row_topk(M, 0)
