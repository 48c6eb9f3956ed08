"""Training beyond one CPU process: the torch fixed-k engine (GPU path) against the numba engine,
devices, data-parallel training over torch.distributed (2 gloo processes) and checkpoint / resume."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spidx.errors import InputError
from spidx.trainer import torch_fixed_k
from spidx.trainer.compressed import train_compressed_elsa
from spidx.trainer.elsa import BatchSampler, SparseEngine, batch_loss, resolve_device, train_elsa
from spidx.trainer.fixed_k import elsa_raw_scores

# float32 sums in another order (index_add / embedding_bag vs numba loops; two half-batch gradients
# summed vs one batch): differences stay at rounding level
TOL = 1e-5


def _rows(n_items, dim, k, seed):
    rng = np.random.default_rng(seed)
    cols = np.sort(np.stack([rng.choice(dim, k, replace=False) for _ in range(n_items)]), axis=1).astype(np.int32)
    return cols, torch.tensor(rng.standard_normal((n_items, k)), dtype=torch.float32)


def _histories(n_users, n_items, density, seed):
    X = sp.random(n_users, n_items, density=density, format="csr", random_state=seed, dtype=np.float32)
    X.data[:] = 1
    return X


def _synthetic(n_users=240, n_items=60, seed=0):
    """Users who like one of four item blocks, plus noise: enough structure to learn, tiny to train."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 4, n_users)
    dense = rng.random((n_users, n_items)) < 0.04
    for u in range(n_users):
        lo = block[u] * n_items // 4
        dense[u, lo + rng.choice(n_items // 4, 5, replace=False)] = True
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize("out_rows", [None, np.array([3, 7, 7, 10, 49, 0])])
def test_torch_fixed_k_scores_and_gradients_equal_numba(out_rows):
    n, dim, k = 50, 24, 5
    cols, vals = _rows(n, dim, k, seed=4)
    X = _histories(9, n, 0.2, seed=5)
    got = {}
    for name in ("numba", "torch"):
        v = vals.clone().requires_grad_(True)
        if name == "numba":
            y = elsa_raw_scores(v, cols, X, dim, out_rows)
        else:
            as_index = lambda a: torch.from_numpy(a).long()  # noqa: E731
            y = torch_fixed_k.elsa_raw_scores(v, as_index(cols), as_index(X.indptr), as_index(X.indices), dim,
                                              None if out_rows is None else as_index(out_rows))
        (y * torch.linspace(-1, 2, y.numel()).view_as(y)).sum().backward()
        got[name] = (y.detach(), v.grad)
    assert got["torch"][0].shape == (9, n if out_rows is None else len(out_rows))
    assert torch.allclose(got["torch"][0], got["numba"][0], atol=TOL)
    assert torch.allclose(got["torch"][1], got["numba"][1], atol=TOL)
    assert got["torch"][1].abs().max() > 0.1  # a real gradient, not zeros on both sides


@pytest.mark.parametrize("max_output", [None, 25])
def test_torch_engine_loss_and_gradient_equal_numba_engine(max_output):
    n, dim, k = 60, 48, 6
    cols, vals = _rows(n, dim, k, seed=3)
    batch = next(BatchSampler(_histories(16, n, 0.15, seed=2), 16, max_output, np.random.default_rng(0)).epoch())
    engines = {b: SparseEngine(cols, vals, dim, backend=b) for b in ("numba", "torch")}
    losses = {}
    for b, engine in engines.items():
        losses[b] = batch_loss(engine, batch)
        losses[b].backward()
    assert torch.allclose(losses["torch"], losses["numba"], rtol=1e-6)
    assert torch.allclose(engines["torch"].vals.grad, engines["numba"].vals.grad, atol=1e-7)


def test_compressed_training_with_the_torch_engine_equals_numba():
    X = _synthetic()
    kw = dict(dim=32, targets=(4,), epochs=2, batch_size=64, progress=False, max_output=40)
    a = train_compressed_elsa(X, **kw)[4]
    b = train_compressed_elsa(X, fixed_k_backend="torch", **kw)[4]
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.indptr, b.indptr)
    assert np.abs(a.data - b.data).max() < 1e-4


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no GPU"):
            resolve_device("cuda")
    with pytest.raises(InputError, match="numba runs on cpu"):
        SparseEngine(*_rows(4, 8, 2, seed=0), 8, device="meta", backend="numba")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_training_equals_cpu():
    X = _synthetic()
    kw = dict(dim=32, targets=(4,), epochs=2, batch_size=64, progress=False)
    cpu = train_compressed_elsa(X, **kw)[4]
    gpu = train_compressed_elsa(X, device="cuda", **kw)[4]
    assert np.array_equal(cpu.indices, gpu.indices)
    assert np.abs(cpu.data - gpu.data).max() < 1e-3
    assert np.abs(train_elsa(X, 16, 2, progress=False) - train_elsa(X, 16, 2, progress=False, device="cuda")).max() < 1e-3


# ---- checkpoints -------------------------------------------------------------------------------

class _Stop(Exception):
    pass


def _stop_after_saves(monkeypatch, n):
    """Interrupt a run right after its n-th checkpoint was written (as a killed process would)."""
    from spidx.trainer.checkpoint import Checkpointer

    real, calls = Checkpointer.save, []

    def save(self, *args, **kwargs):
        real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == n:
            raise _Stop

    monkeypatch.setattr(Checkpointer, "save", save)


@pytest.mark.parametrize("schedule_name,stop_after", [("exponential", 3), ("exponential", 5), ("step", 2)])
def test_compressed_run_resumed_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                              schedule_name, stop_after):
    X = _synthetic()
    path = str(tmp_path / "ckpt.npz")
    kw = dict(dim=32, targets=(8, 4), schedule_name=schedule_name, epochs=2, batch_size=64, progress=False,
              max_output=40)
    full_log = []
    full = train_compressed_elsa(X, phase_log=full_log, **kw)
    with monkeypatch.context() as m:
        _stop_after_saves(m, stop_after)
        with pytest.raises(_Stop):
            train_compressed_elsa(X, checkpoint=path, **kw)
    resumed_log = []
    resumed = train_compressed_elsa(X, checkpoint=path, resume=True, phase_log=resumed_log, **kw)
    for k in (8, 4):
        assert (full[k] != resumed[k]).nnz == 0  # bit-identical on CPU
    assert [e["phase"] for e in resumed_log] == [e["phase"] for e in full_log]
    assert [e["loss"] for e in resumed_log] == [e["loss"] for e in full_log]


def test_dense_elsa_resumed_mid_training_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    X = _synthetic()
    path = str(tmp_path / "elsa.npz")
    full = train_elsa(X, 16, epochs=3, batch_size=64, progress=False)
    with monkeypatch.context() as m:
        _stop_after_saves(m, 1)
        with pytest.raises(_Stop):
            train_elsa(X, 16, epochs=3, batch_size=64, progress=False, checkpoint=path)
    with np.load(path) as z:
        assert {"weight", "opt.0.exp_avg", "opt.0.exp_avg_sq", "torch_rng"} <= set(z.files)
    logs = []
    resumed = train_elsa(X, 16, epochs=3, batch_size=64, progress=False, checkpoint=path, resume=True, logs=logs)
    assert np.array_equal(full, resumed)
    assert [log.epoch for log in logs] == [1, 2, 3]


def test_checkpoint_of_another_run_or_corrupt_is_refused(tmp_path):
    X = _synthetic()
    path = tmp_path / "ckpt.npz"
    train_elsa(X, 8, epochs=1, batch_size=64, progress=False, checkpoint=str(path))
    with pytest.raises(InputError, match="another run.*dim"):
        train_elsa(X, 16, epochs=1, batch_size=64, progress=False, checkpoint=str(path), resume=True)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="checkpoint"):
        train_elsa(X, 8, epochs=1, batch_size=64, progress=False, checkpoint=str(path), resume=True)


# ---- data-parallel (torchrun, 2 gloo processes) ---------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_fixture(path):
    X = _synthetic(n_users=300, n_items=80, seed=7).tocoo()
    np.savez(path, user=X.row.astype(np.int32), item=X.col.astype(np.int32))


def _spidx_train(args, nproc=None, cwd=None):
    if nproc is None:
        cmd = [sys.executable, "-m", "spidx.cli.main", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "spidx.cli.main", "train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("model_args", [
    ["--model", "compressed-elsa", "--dim", "32", "--nnz", "4", "--epochs", "2", "--max-output", "50"],
    ["--model", "elsa", "--dim", "16", "--epochs", "3"],
], ids=["compressed-sampled", "elsa-full"])
def test_two_gloo_processes_train_the_same_model_as_one(tmp_path, model_args):
    from spidx.embeddings import load_embeddings

    data = tmp_path / "data.npz"
    _write_fixture(data)
    common = [str(data), *model_args, "--batch-size", "64", "--quiet", "--device", "cpu", "--val-users", "0"]
    _spidx_train([*common, "--out", str(tmp_path / "one.npz")])
    _spidx_train([*common, "--out", str(tmp_path / "two.npz"), "--distributed",
                  "--checkpoint", str(tmp_path / "ckpt.npz")], nproc=2, cwd=tmp_path)
    one, two = load_embeddings(str(tmp_path / "one.npz")).matrix, load_embeddings(str(tmp_path / "two.npz")).matrix
    if sp.issparse(one):
        assert np.array_equal(one.indices, two.indices) and np.array_equal(one.indptr, two.indptr)
        one, two = one.data, two.data
    assert np.abs(one - two).max() < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz", "data.npz", "one.npz", "two.npz"]


def test_distributed_outside_torchrun_is_one_line_error(tmp_path):
    data = tmp_path / "data.npz"
    _write_fixture(data)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "-m", "spidx.cli.main", "train", str(data), "--out",
                           str(tmp_path / "m.npz"), "--distributed", "--quiet"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: --distributed needs torchrun")
