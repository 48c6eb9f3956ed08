"""EASE (Steck, WWW'19): closed-form item-item model, the accuracy anchor; and its pruned variant."""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from spidx.errors import InputError

from .elsa import check_interactions


def fit_ease(X, lam: float) -> np.ndarray:
    """B = I - P diagMat(1/diag(P)) with P = (XᵀX + λI)⁻¹; zero diagonal; float32 items x items."""
    if not lam > 0:
        raise InputError("EASE lambda must be positive")
    X = check_interactions(X)
    gram = (X.T @ X).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def prune_rows(B: np.ndarray, k: int) -> sp.csr_matrix:
    """Keep the k largest |B_ij| of every row (row-wise top-k, as in the paper's pruned EASE)."""
    n = B.shape[0]
    if not 0 < k <= B.shape[1]:
        raise InputError(f"nnz must be in 1..{B.shape[1]}")
    cols = np.argpartition(-np.abs(B), k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(B, cols, axis=1)
    m = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n * k + 1, k)), shape=B.shape)
    m.sort_indices()
    return m


def ease_scores(B, history: sp.csr_matrix) -> np.ndarray:
    """Scores x B (users x items) for dense or sparse B."""
    s = history @ B
    return np.asarray(s.todense() if sp.issparse(s) else s, dtype=np.float32)
