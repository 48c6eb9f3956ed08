"""CompresSAE: a sparse autoencoder fitted post hoc on dense item embeddings (the paper's baseline).

The Compressed ELSA paper compares against "ELSA, sparse projection post training": CompresSAE
(Kasalický et al., RecSys'25) fitted on the item rows of a trained dense ELSA; its k-sparse codes are then
used directly as ELSA's item matrix. This module reproduces that model so the benchmark can serve the codes
from our index at every budget's k.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from spidx.errors import InputError
from spidx.trainer.elsa import resolve_device


class CompresSAE(torch.nn.Module):
    """Top-k sparse autoencoder on row-normalised embeddings.

    Encoder ``e = TopK_k(rownorm(a) W_enc + b_enc)`` (W_enc Kaiming-uniform, b_enc = 0 at the start);
    decoder ``â = e W_dec`` with unit-norm rows of ``W_dec`` (renormalised after every step, the gradient
    projected onto the tangent of the unit sphere before the step).
    """

    def __init__(self, in_dim: int, dim: int, k: int):
        super().__init__()
        self.k = int(k)
        self.encoder_weight = torch.nn.Parameter(torch.empty(in_dim, dim))
        torch.nn.init.kaiming_uniform_(self.encoder_weight)
        self.encoder_bias = torch.nn.Parameter(torch.zeros(dim))
        decoder = torch.randn(dim, in_dim)
        self.decoder_weight = torch.nn.Parameter(decoder / decoder.norm(dim=1, keepdim=True))

    def pre_activation(self, a: torch.Tensor) -> torch.Tensor:
        """The encoder's dense pre-activation of row-normalised inputs."""
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return a @ self.encoder_weight + self.encoder_bias

    def reconstruct(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        """â = e W_dec for the k-sparse code e holding the top-k of the pre-activations `pre`.

        Up to 1/16 of the code dimension the k chosen decoder rows are gathered, weighted and summed
        (`embedding_bag`); above, the dense code times W_dec (one blocked matrix product) is faster. Measured
        per batch of 1,024 at 4096 x 4096, forward and backward on 2 CPU threads: k = 8: 0.33 s against 1.97 s,
        k = 128: 1.1 s against 2.1 s, k = 512: 3.1 s against 2.0 s. Both give the same values and gradients.
        """
        vals, idx = torch.topk(pre, int(k), dim=1)
        if 16 * int(k) <= pre.shape[1]:
            return torch.nn.functional.embedding_bag(idx, self.decoder_weight, per_sample_weights=vals, mode="sum")
        return torch.zeros_like(pre).scatter(1, idx, vals) @ self.decoder_weight

    def project_decoder_gradient(self) -> None:
        """Remove the gradient's radial part on each decoder row (the rows stay on the unit sphere)."""
        g, w = self.decoder_weight.grad, self.decoder_weight.data
        if g is not None:
            g.sub_((g * w).sum(dim=1, keepdim=True) * w)

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.decoder_weight.data /= self.decoder_weight.data.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _cosine_loss(a: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
    return (1.0 - torch.nn.functional.cosine_similarity(a, a_hat, dim=1)).mean()


def compressae_loss(model: CompresSAE, a: torch.Tensor) -> torch.Tensor:
    """(1 - cos(a, â_k)) + (1 - cos(a, â_4k)) / 8, â_m decoded from the top-m pre-activations.

    The released code computes the auxiliary term with ``min(k, 4k) = k`` (the same as the main term); here it
    uses ``min(4k, dim)`` active units, as intended.
    """
    dim = model.encoder_weight.shape[1]
    pre = model.pre_activation(a)  # shared by both terms
    main = _cosine_loss(a, model.reconstruct(pre, model.k))
    aux = _cosine_loss(a, model.reconstruct(pre, min(4 * model.k, dim)))
    return main + aux / 8.0


def train_compressae(E: np.ndarray, dim: int = 4096, k: int = 16, epochs: int = 10, batch_size: int = 1024,
                     lr: float = 1e-3, seed: int = 42, progress: bool = True, device: str = "auto") -> CompresSAE:
    """Fit a CompresSAE on the rows of E (items x r) and return the model in its best-loss state.

    Parameters
    ----------
    E : ndarray, shape (items, r)
        Dense item embeddings (e.g. a trained dense ELSA's item matrix); rows need not be normalised.
    dim : int
        Code dimension (paper: 4096).
    k : int
        Non-zeros per code (paper: the budget's k; the released script defaults to 16).
    epochs, batch_size, lr : int, int, float
        Adam with learning rate ``lr`` for ``epochs`` passes over shuffled items in batches of
        ``batch_size`` (paper: 10, 1024, 1e-3).
    seed : int
        Seeds the initialisation and the shuffling (same seed, same model on CPU).
    progress : bool
        Show a progress bar over epochs.
    device : str
        "auto" (CUDA when torch sees a GPU), "cpu", "cuda" or "cuda:N". The initialisation and the shuffling
        are drawn on the CPU, so only the arithmetic differs between devices.

    Notes
    -----
    As in the paper's script there is no validation split: the state with the lowest mean training loss over
    an epoch is kept. Deviations: the degenerate "4k" auxiliary term is computed with 4k units (see
    `compressae_loss`); no per-epoch k annealing (the paper's lists are unknown).
    """
    E = np.asarray(E, np.float32)
    if E.ndim != 2 or E.shape[0] == 0 or E.shape[1] == 0:
        raise InputError(f"CompresSAE needs a non-empty items x r matrix, got shape {E.shape}")
    if not np.all(np.isfinite(E)):
        raise InputError("CompresSAE input embeddings contain NaN or infinite values")
    if not 0 < k <= dim:
        raise InputError(f"CompresSAE needs 0 < k <= dim, got k={k}, dim={dim}")
    if epochs <= 0 or batch_size <= 0:
        raise InputError(f"CompresSAE needs epochs > 0 and batch_size > 0, got {epochs}, {batch_size}")
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = CompresSAE(E.shape[1], int(dim), int(k)).to(dev)
    data = torch.from_numpy(E).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    best_loss, best_state = float("inf"), None
    for _ in tqdm(range(epochs), desc="CompresSAE", disable=not progress, unit="epoch"):
        order = torch.randperm(data.shape[0], generator=gen).to(dev)
        total = 0.0
        for start in range(0, data.shape[0], batch_size):
            batch = data[order[start:start + batch_size]]
            loss = compressae_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            model.project_decoder_gradient()
            opt.step()
            model.normalise_decoder()
            total += float(loss.detach()) * batch.shape[0]
        epoch_loss = total / data.shape[0]
        if epoch_loss < best_loss:
            best_loss = epoch_loss
            best_state = {n: t.detach().clone() for n, t in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model


@torch.no_grad()
def compressae_codes(model: CompresSAE, E: np.ndarray, batch_size: int = 4096) -> sp.csr_matrix:
    """The k-sparse codes of E's rows as CSR (exactly k stored entries per row), rows scaled to unit L2 norm;
    computed on the model's device."""
    data = torch.from_numpy(np.asarray(E, np.float32))
    dev = model.encoder_weight.device
    k = model.k
    values, indices = [], []
    for start in range(0, data.shape[0], batch_size):
        vals, idx = torch.topk(model.pre_activation(data[start:start + batch_size].to(dev)), k, dim=1)
        values.append(vals.cpu().numpy())
        indices.append(idx.cpu().numpy())
    vals = np.concatenate(values).astype(np.float32)
    idx = np.concatenate(indices).astype(np.int32)
    norms = np.linalg.norm(vals, axis=1, keepdims=True)
    vals = vals / np.where(norms > 0, norms, 1.0)
    order = np.argsort(idx, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    n = data.shape[0]
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    return sp.csr_matrix((vals.ravel(), idx.ravel(), indptr), shape=(n, model.encoder_weight.shape[1]))


def fit_compressae(E: np.ndarray, dim: int = 4096, k: int = 16, epochs: int = 10, batch_size: int = 1024,
                   lr: float = 1e-3, seed: int = 42, progress: bool = True, device: str = "auto") -> sp.csr_matrix:
    """Fit a CompresSAE on E (see `train_compressae`) and return its codes of E, the matrix the paper serves
    as ELSA's item embeddings: CSR, items x dim, exactly k non-zeros per row, unit rows."""
    model = train_compressae(E, dim=dim, k=k, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                             progress=progress, device=device)
    return compressae_codes(model, E)
