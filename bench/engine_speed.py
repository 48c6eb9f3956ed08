"""Seconds per training batch of the dense and the fixed-k engine as k falls (same process, medians).

    python -m spidx.bench.engine_speed --data ../shared/data/ml-1m-implicit/ml-1m-implicit.npz --dim 4096 \
        --batch-size 256 --nnz 4096,1910,1024,512,256,128,32 --repeats 7

The dense engine multiplies I x d matrices whatever k is; the fixed-k engine's work is O(batch x items x k).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from spidx.interactions import read_interactions
from spidx.trainer.compressed import topk_support
from spidx.trainer.elsa import BatchSampler, DenseEngine, SparseEngine, batch_loss, check_interactions, xavier_uniform


def seconds_per_batch(engine, batches) -> float:
    """Median wall time of forward + backward + NAdam step over `batches` (the first is a warm-up)."""
    opt = torch.optim.NAdam(engine.parameters(), lr=0.1)
    times = []
    for b in batches:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        batch_loss(engine, b).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--nnz", default="4096,1910,1024,512,256,128,32")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--max-output", type=int, default=None)
    args = ap.parse_args(argv)
    X = check_interactions(read_interactions(args.data).matrix)
    init = xavier_uniform(X.shape[1], args.dim, torch.Generator().manual_seed(0))
    sampler = BatchSampler(X, args.batch_size, args.max_output, np.random.default_rng(0))
    batches = [b for _, b in zip(range(args.repeats + 1), sampler.epoch())]
    dense_engine = DenseEngine(init)
    print(f"{X.shape[0]} users x {X.shape[1]} items, d={args.dim}, batch {args.batch_size}, "
          f"median of {args.repeats} batches; epoch = {len(sampler)} batches\n")
    print("| k | dense engine s/batch | fixed-k engine s/batch | dense / fixed-k |")
    print("|---|---|---|---|")
    for k in [int(v) for v in args.nnz.split(",")]:
        cols = topk_support(dense_engine, k)
        vals = torch.gather(init, 1, torch.from_numpy(cols).long())
        n, _ = cols.shape
        idx = (torch.arange(n)[:, None].expand(n, k), torch.from_numpy(cols).long())
        mask = None if k == args.dim else torch.zeros(n, args.dim).index_put(idx, torch.ones(n, k))
        dense = seconds_per_batch(DenseEngine(init * mask if mask is not None else init, mask), batches)
        sparse = seconds_per_batch(SparseEngine(cols, vals, args.dim), batches)
        print(f"| {k} | {dense:.3f} | {sparse:.3f} | {dense / sparse:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
