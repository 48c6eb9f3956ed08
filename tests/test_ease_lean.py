"""The memory-lean pruned EASE of the benchmark (float32 in-place Cholesky) against the trainer's float64 EASE."""
import numpy as np
import scipy.sparse as sp

from spidx.bench.ease_lean import pruned_ease_lean
from spidx.trainer.ease import fit_ease, prune_rows


def test_matches_trainer_ease_on_ml100k(ml100k):
    X = sp.csr_matrix(ml100k.matrix, dtype=np.float32)
    lam = 200.0
    B = fit_ease(X, lam)
    lean = pruned_ease_lean(X, lam, ks=(32, 8), block=300)  # blocks that do not divide the 1,682 items
    for k in (32, 8):
        got = lean[k]
        ref = sp.csr_matrix(prune_rows(B, k))
        assert got.shape == B.shape and np.all(np.diff(got.indptr) == k)
        assert np.all(got.diagonal() == 0)
        # the kept magnitudes are each row's k largest |B_ij| (ties may pick different columns)
        got_mag = np.sort(np.abs(got.data.reshape(-1, k)), axis=1)
        ref_mag = np.sort(np.abs(ref.data.reshape(-1, k)), axis=1)
        np.testing.assert_allclose(got_mag, ref_mag, rtol=2e-3, atol=1e-6)
        same = [set(got[i].indices) == set(ref[i].indices) for i in range(B.shape[0])]
        assert np.mean(same) > 0.95
        # every kept value equals the full EASE entry at that position
        r, c = got.nonzero()
        np.testing.assert_allclose(np.asarray(got[r, c]).ravel(), B[r, c], rtol=2e-3, atol=1e-6)
