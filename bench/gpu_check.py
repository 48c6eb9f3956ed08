"""GPU check: train one small Compressed ELSA on CPU and on CUDA; compare speed and results.

    python -m spidx.bench.gpu_check [--items 4000 --users 8000 --dim 256 --nnz 16 --epochs 2]

Prints (1) seconds per batch of the fixed-k engine, numba vs torch on CPU (same process, medians):
the reason numba stays the CPU default; (2) seconds per epoch of the same training run on CPU and on
CUDA, per engine (dense masked phases, fixed-k phases); (3) the largest difference between the CPU
and CUDA embeddings and whether their supports are identical. Without a GPU, (2)-(3) say so and stop.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.sparse as sp
import torch


def synthetic_interactions(n_users: int, n_items: int, per_user: int, seed: int = 0) -> sp.csr_matrix:
    """Users drawn from 32 taste clusters, items Zipf-popular within a cluster: learnable, not uniform."""
    rng = np.random.default_rng(seed)
    cluster_items = np.array_split(rng.permutation(n_items), 32)
    rows, cols = [], []
    for u in range(n_users):
        pool = cluster_items[rng.integers(32)]
        weights = 1.0 / np.arange(1, len(pool) + 1)
        picks = rng.choice(pool, size=min(per_user, len(pool)), replace=False, p=weights / weights.sum())
        rows.append(np.full(len(picks), u))
        cols.append(picks)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))


def fixed_k_seconds_per_batch(X, dim: int, k: int, batch_size: int, max_output, backend: str, device: str,
                              repeats: int = 5) -> float:
    """Median seconds of one forward + backward of the fixed-k engine on real batches of X."""
    from spidx.trainer.elsa import BatchSampler, SparseEngine, batch_loss

    rng = np.random.default_rng(0)
    cols = np.sort(np.argsort(rng.random((X.shape[1], dim)), axis=1)[:, :k], axis=1).astype(np.int32)
    engine = SparseEngine(cols, torch.randn(X.shape[1], k), dim, device=device, backend=backend)
    batches = list(BatchSampler(X, batch_size, max_output, np.random.default_rng(1)).epoch())[: repeats + 1]
    times = []
    for i, batch in enumerate(batches):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        batch_loss(engine, batch).backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first call compiles / warms caches
            times.append(time.perf_counter() - t0)
        engine.vals.grad = None
    return statistics.median(times)


def train_once(X, args, device: str):
    from spidx.trainer.compressed import train_compressed_elsa

    log = []
    t0 = time.perf_counter()
    result = train_compressed_elsa(X, dim=args.dim, targets=(args.nnz,), epochs=args.epochs,
                                   batch_size=args.batch_size, max_output=args.max_output, progress=False,
                                   phase_log=log, device=device)[args.nnz]
    total = time.perf_counter() - t0
    per_engine = {}
    for entry in log:
        secs, epochs = per_engine.get(entry["engine"], (0.0, 0))
        per_engine[entry["engine"]] = (secs + entry["seconds"], epochs + entry["epochs"])
    return result, total, {e: s / n for e, (s, n) in per_engine.items()}, sum(e["epochs"] for e in log)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=4000)
    p.add_argument("--users", type=int, default=8000)
    p.add_argument("--per-user", type=int, default=20)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--nnz", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2, help="epochs per halving and at the final k")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-output", type=int, default=None)
    args = p.parse_args(argv)
    X = synthetic_interactions(args.users, args.items, args.per_user)
    print(f"data: {args.users} users x {args.items} items, {X.nnz} interactions; d={args.dim}, k={args.nnz}, "
          f"{args.epochs} epochs per halving, batch {args.batch_size}, max_output {args.max_output}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")

    print("\n1) fixed-k engine, seconds per batch (forward + backward, median of 5), CPU:")
    print("| k | numba | torch | torch / numba |")
    print("|---|---|---|---|")
    for k in sorted({args.nnz, 4 * args.nnz, args.dim // 4}):
        nb_s = fixed_k_seconds_per_batch(X, args.dim, k, args.batch_size, args.max_output, "numba", "cpu")
        th_s = fixed_k_seconds_per_batch(X, args.dim, k, args.batch_size, args.max_output, "torch", "cpu")
        print(f"| {k} | {nb_s:.4f} | {th_s:.4f} | {th_s / nb_s:.2f} |")
    if torch.cuda.is_available():
        th_g = fixed_k_seconds_per_batch(X, args.dim, args.nnz, args.batch_size, args.max_output, "torch", "cuda")
        print(f"   torch on CUDA, k={args.nnz}: {th_g:.4f} s per batch")

    print("\n2) Compressed ELSA training, seconds per epoch by engine:")
    cpu, cpu_total, cpu_epoch, n_epochs = train_once(X, args, "cpu")
    print(f"   cpu : {cpu_total:.1f} s for {n_epochs} epochs; "
          + ", ".join(f"{e} {s:.2f} s/epoch" for e, s in cpu_epoch.items()))
    if not torch.cuda.is_available():
        print("   cuda: skipped, torch.cuda.is_available() is False (no GPU on this machine)")
        return
    train_once(X, args, "cuda")  # warm-up: CUDA context, kernels
    gpu, gpu_total, gpu_epoch, _ = train_once(X, args, "cuda")
    print(f"   cuda: {gpu_total:.1f} s for {n_epochs} epochs; "
          + ", ".join(f"{e} {s:.2f} s/epoch" for e, s in gpu_epoch.items()))
    print(f"   speed-up cpu/cuda: {cpu_total / gpu_total:.1f}x")
    same_support = np.array_equal(cpu.indices, gpu.indices) and np.array_equal(cpu.indptr, gpu.indptr)
    print("\n3) CPU vs CUDA results: supports " + ("identical" if same_support else "DIFFER")
          + (f", max |difference| of values {np.abs(cpu.data - gpu.data).max():.2e}" if same_support else
             f" ({(cpu != gpu).nnz} entries differ; float reductions in another order can flip near-ties)"))


if __name__ == "__main__":
    main()
