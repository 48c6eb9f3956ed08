"""Quick dense item embeddings without torch, as a stand-in until Compressed ELSA is trained.

A randomized truncated SVD of the popularity-normalised interaction matrix gives rank-r item factors
(ELSA-like: scores are inner products of item rows); a fixed Gaussian map lifts them to d dimensions,
so that post-hoc row-wise top-k of the lifted matrix gives d-dimensional k-sparse embeddings.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def svd_item_factors(X: sp.csr_matrix, rank: int, seed: int = 0, power_iters: int = 3) -> np.ndarray:
    """Item factors V·sqrt(Σ) (items x rank, float32) of X·diag(pop^-1/2), by randomized SVD."""
    X = sp.csr_matrix(X, dtype=np.float32)
    pop = np.asarray(X.sum(0)).ravel()
    Xn = (X @ sp.diags(1.0 / np.sqrt(np.maximum(pop, 1.0)))).tocsr().astype(np.float32)
    rng = np.random.default_rng(seed)
    width = min(rank + 16, min(X.shape))
    Y = Xn.T @ (Xn @ rng.standard_normal((X.shape[1], width)).astype(np.float32))
    for _ in range(power_iters):
        Y, _ = np.linalg.qr(Y)
        Y = Xn.T @ (Xn @ Y)
    Qm, _ = np.linalg.qr(Y)
    B = np.asarray(Xn @ Qm)  # users x width
    _, s, vt = np.linalg.svd(B, full_matrices=False)
    V = Qm @ vt.T[:, :rank]
    return (V * np.sqrt(s[:rank])).astype(np.float32)


def lifted_embeddings(factors: np.ndarray, d: int, seed: int = 0) -> np.ndarray:
    """Row-normalised factors @ G, G a fixed Gaussian (rank x d) map scaled by 1/sqrt(d)."""
    g = np.random.default_rng(seed + 1).standard_normal((factors.shape[1], d)).astype(np.float32) / np.sqrt(d)
    f = factors / np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12)
    return f @ g
