"""EASE (float32 in-place Cholesky) against the float64 closed form on a small fixture."""
import numpy as np

from spidx.sparsify import row_topk
from spidx.trainer.ease import fit_ease, fit_pruned_ease, prune_rows


def closed_form(X, lam):
    G = (X.T @ X).toarray().astype(np.float64) + lam * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = P / -np.diag(P)
    np.fill_diagonal(B, 0.0)
    return B


def test_full_and_pruned_match_the_float64_closed_form(small_interactions):
    X = small_interactions
    lam = 20.0
    ref = closed_form(X, lam)
    B = fit_ease(X, lam, block=7)  # blocks that do not divide the items
    np.testing.assert_allclose(B, ref, rtol=1e-3, atol=1e-5)
    assert np.all(np.diag(B) == 0)
    pruned = fit_pruned_ease(X, lam, ks=(9, 4), block=11)
    for k in (9, 4):
        got = pruned[k]
        assert got.shape == B.shape and np.all(np.diff(got.indptr) == k)
        np.testing.assert_array_equal(got.toarray(), prune_rows(B, k).toarray())
        # every kept entry is one of the row's k largest magnitudes of the exact B
        kth = -np.sort(-np.abs(ref), axis=1)[:, k - 1]
        r, c = got.nonzero()
        assert np.all(np.abs(ref[r, c]) >= kth[r] * (1 - 1e-3))


def test_prune_rows_is_the_shared_row_topk():
    B = np.array([[0.0, -3.0, 1.0, 3.0], [2.0, 0.0, 2.0, -2.0]], np.float32)
    P = prune_rows(B, 2)
    # ties on |value| keep the smaller column
    np.testing.assert_array_equal(P.toarray(), [[0, -3, 0, 3], [2, 0, 2, 0]])
    np.testing.assert_array_equal(P.toarray(), row_topk(B, 2).toarray())
