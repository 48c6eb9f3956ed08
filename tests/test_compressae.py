import numpy as np
import pytest
import torch

from spidx.errors import InputError
from spidx.sparsify import row_topk
from spidx.trainer.compressae import CompresSAE, compressae_codes, compressae_loss, fit_compressae, train_compressae


def sparse_mixture(n_items=1500, r=32, atoms=128, active=4, seed=0):
    """Item embeddings that are sums of `active` atoms of a dictionary (what a sparse autoencoder can learn)."""
    rng = np.random.default_rng(seed)
    D = rng.standard_normal((atoms, r))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    E = np.zeros((n_items, r))
    for i in range(n_items):
        E[i] = rng.uniform(0.5, 1.5, active) @ D[rng.choice(atoms, active, replace=False)]
    return E.astype(np.float32)


def mean_cosine(E, R):
    num = (E * R).sum(1)
    return float(np.mean(num / (np.linalg.norm(E, axis=1) * np.maximum(np.linalg.norm(R, axis=1), 1e-12))))


def test_codes_exactly_k_sparse_unit_rows():
    E = sparse_mixture(n_items=300)
    C = fit_compressae(E, dim=64, k=5, epochs=2, batch_size=128, progress=False)
    assert C.shape == (300, 64)
    assert np.all(np.diff(C.indptr) == 5)
    for i in range(C.shape[0]):  # distinct columns in every row
        assert len(np.unique(C.indices[C.indptr[i]:C.indptr[i + 1]])) == 5
    norms = np.sqrt(np.asarray(C.multiply(C).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_reconstructs_better_than_posthoc_topk():
    # the paper's criterion is its loss, the cosine between an embedding and its decoded code
    E = sparse_mixture(n_items=800, atoms=64)
    k = 4
    model = train_compressae(E, dim=128, k=k, epochs=15, batch_size=128, lr=1e-2, progress=False)
    with torch.no_grad():
        t = torch.from_numpy(E)
        decoded = model.reconstruct(model.pre_activation(t), k).numpy()
    sae = mean_cosine(E, decoded)
    posthoc = mean_cosine(E, row_topk(E, k, renormalise=True).toarray())
    assert sae > posthoc + 0.1, (sae, posthoc)


def test_sparse_decoding_equals_the_dense_code_product():
    # oracle: the k-sparse code formed densely (top-k kept, the rest zero) times W_dec, and the paper's loss on it
    torch.manual_seed(0)
    model = CompresSAE(24, 64, 3)
    a = torch.randn(17, 24)
    pre = model.pre_activation(a)
    for k in (3, 4, 12, 64):  # gathered decoder rows (k <= 64 / 16) and the dense product
        vals, idx = torch.topk(pre, k, dim=1)
        dense_code = torch.zeros_like(pre).scatter(1, idx, vals)
        torch.testing.assert_close(model.reconstruct(pre, k), dense_code @ model.decoder_weight, rtol=1e-5, atol=1e-6)

    def dense_loss():
        p = model.pre_activation(a)
        out = 0.0
        for k, w in ((3, 1.0), (12, 1 / 8)):
            v, i = torch.topk(p, k, dim=1)
            rec = torch.zeros_like(p).scatter(1, i, v) @ model.decoder_weight
            out = out + w * (1 - torch.nn.functional.cosine_similarity(a, rec, dim=1)).mean()
        return out

    grads = []
    for loss_fn in (lambda: compressae_loss(model, a), dense_loss):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for g_sparse, g_dense in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-6)


def test_deterministic_with_seed():
    E = sparse_mixture(n_items=200)
    a = fit_compressae(E, dim=32, k=3, epochs=2, batch_size=64, seed=7, progress=False)
    b = fit_compressae(E, dim=32, k=3, epochs=2, batch_size=64, seed=7, progress=False)
    c = fit_compressae(E, dim=32, k=3, epochs=2, batch_size=64, seed=8, progress=False)
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0


def test_bad_input():
    with pytest.raises(InputError):
        fit_compressae(np.zeros((0, 4), np.float32), dim=8, k=2)
    with pytest.raises(InputError):
        fit_compressae(np.full((3, 4), np.nan, np.float32), dim=8, k=2)
    with pytest.raises(InputError):
        fit_compressae(np.ones((3, 4), np.float32), dim=8, k=9)
