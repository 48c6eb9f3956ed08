"""Peak memory and seconds per batch of one training phase at catalogue scale (synthetic interactions).

    python -m spidx.bench.train_memory            # the default table (100k and 1M items; < 6 GiB each)
    python -m spidx.bench.train_memory --items 1000000 --phase fixed-k --dim 4096 --nnz 32 --max-output 20000

Each measurement runs in a fresh child process: it builds `batches` x `batch_size` synthetic users
(20 items each), the phase's engine (what Compressed ELSA builds: `dense` = phase 0, `masked` = a
dense phase with a k = d/2 mask, `fixed-k` = the fixed-k engine at k) and trains one epoch of those
batches. Reported: the peak RSS above the process's RSS before the engine existed (ru_maxrss), the
prediction of the formula below, and the median seconds per batch.

Formula (float32 = 4 B; n = items, d = dimension, k = non-zeros per row, b = batch, o = outputs per
batch = n, or --max-output when sampling):
    dense phase  ~ n*d*4 B * 7   (weight, gradient, 2 NAdam moments, normalised Â, backward temporaries)
    masked phase ~ n*d*4 B * 9   (+ the 0/1 mask and the masked weight)
    fixed-k      ~ n*k*(4 B * 8 + 4 B cols) + 0.45 GiB (values, gradient, 2 moments, normalised and its
                   backward temporaries; int32 cols; the constant is numba's compiled kernels and runtime)
    every phase  + b*o*4 B * 6   (scores, prediction, target, normalised copies, their gradients)
The multipliers were fitted on the default runs (bench/README.md, "Beyond one machine").
Not counted: the Xavier init kept for rewinding (n*d*4 B for the whole run; n*k when not rewinding is
not possible either: the init is drawn dense) and the interactions matrix.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

FACTORS = {"dense": 7, "masked": 9}
NUMBA_RUNTIME_BYTES = 0.45 * 2**30

DEFAULT_RUNS = [  # (items, phase, dim, nnz, max_output)
    (100_000, "dense", 1024, None, None),
    (100_000, "dense", 1024, None, 20_000),
    (100_000, "masked", 1024, 768, 20_000),
    (100_000, "fixed-k", 1024, 32, None),
    (100_000, "fixed-k", 1024, 32, 20_000),
    (1_000_000, "dense", 128, None, 20_000),
    (1_000_000, "fixed-k", 4096, 32, 20_000),
    (1_000_000, "fixed-k", 4096, 128, 20_000),
]


def predicted_bytes(items, phase, dim, nnz, max_output, batch_size) -> float:
    outputs = items if max_output is None else max_output
    batch = batch_size * outputs * 4 * 6
    if phase == "fixed-k":
        return items * nnz * (4 * 8 + 4) + NUMBA_RUNTIME_BYTES + batch
    return items * dim * 4 * FACTORS[phase] + batch


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(items, phase, dim, nnz, max_output, batch_size, batches):
    import scipy.sparse as sp
    import torch

    from spidx.trainer.compressed import make_engine
    from spidx.trainer.elsa import BatchSampler, DenseEngine, fit

    rng = np.random.default_rng(0)
    users = batch_size * batches
    rows = np.repeat(np.arange(users), 20)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, rng.integers(0, items, len(rows)))),
                      shape=(users, items))
    X.data[:] = 1
    sampler = BatchSampler(X, batch_size, max_output, np.random.default_rng(0))
    base = _rss_bytes()
    if phase == "dense":
        engine = DenseEngine(torch.rand(items, dim) - 0.5)
    else:
        k = nnz
        cols = np.sort(np.stack([rng.choice(dim, k, replace=False) for _ in range(min(items, 1000))]), axis=1)
        cols = np.resize(cols, (items, k)).astype(np.int32)
        engine = make_engine(cols, torch.rand(items, k) - 0.5, dim)
        expected = "SparseEngine" if phase == "fixed-k" else "DenseEngine"
        assert type(engine).__name__ == expected, (type(engine).__name__, phase)
    t0 = time.perf_counter()
    log = fit(engine, sampler, 1, 0.1, progress=False)
    seconds = (time.perf_counter() - t0) / batches
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak_above_base": peak - base, "seconds_per_batch": seconds, "loss": log[-1].loss}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int)
    p.add_argument("--phase", choices=["dense", "masked", "fixed-k"])
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--nnz", type=int, default=32)
    p.add_argument("--max-output", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args.items, args.phase, args.dim, args.nnz, args.max_output, args.batch_size, args.batches)
    runs = DEFAULT_RUNS if args.items is None else [(args.items, args.phase or "fixed-k", args.dim,
                                                     args.nnz if (args.phase or "fixed-k") != "dense" else None,
                                                     args.max_output)]
    print(f"batch {args.batch_size} users x 20 items, {args.batches} batches per run")
    print("| items | phase | d | k | outputs/batch | peak RSS above base | formula | s/batch |")
    print("|---|---|---|---|---|---|---|---|")
    for items, phase, dim, nnz, max_output in runs:
        cmd = [sys.executable, "-m", "spidx.bench.train_memory", "--child", "--items", str(items), "--phase", phase,
               "--dim", str(dim), "--nnz", str(nnz or 0), "--batch-size", str(args.batch_size),
               "--batches", str(args.batches)] + ([] if max_output is None else ["--max-output", str(max_output)])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"| {items:,} | {phase} | {dim} | {nnz or '-'} | failed: {done.stderr.strip().splitlines()[-1]} |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        pred = predicted_bytes(items, phase, dim, nnz, max_output, args.batch_size)
        print(f"| {items:,} | {phase} | {dim} | {nnz or '-'} | {max_output or items:,} | "
              f"{r['peak_above_base'] / 2**30:.2f} GiB | {pred / 2**30:.2f} GiB | {r['seconds_per_batch']:.3f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
