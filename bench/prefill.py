"""Train a benchmark preset's models into its cache, e.g. on a GPU machine, for `spidx bench` to reuse.

    python -m spidx.bench.prefill --preset paper --data data/gowalla.npz --models celsa [--cache-dir .cache/bench]

then copy the cache folder's new files next to the machine that runs `spidx bench --preset paper --data
data/gowalla.npz`: it finds them under the same keys (data fingerprint, split, training parameters) and does not
train those models again. Models train on the default device (`cuda` where torch sees a GPU, else the CPU); the
benchmark's validation users choose their epochs exactly as in `spidx bench`. `compresae` fits CompresSAE at every
budget's k on the dense model the benchmark sparsifies, trained here or found in the cache: copy that dense model's
cache file to the GPU machine first, so the codes are fitted on the very model the benchmark serves beside them.
"""
from __future__ import annotations

import argparse
import sys
import time

from spidx.errors import InputError

MODELS = ("dense", "celsa", "compresae")


def prefill(cfg, models) -> list:
    """Train `models` (a subset of MODELS) of the benchmark configuration `cfg` through the benchmark's own
    cache; returns one line per model: what was trained or found cached, and the seconds it took."""
    from spidx.bench.compression import Context

    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise InputError(f"unknown model(s) {unknown}: choose from {', '.join(MODELS)}")
    ctx = Context(cfg)
    lines = []
    for name in models:
        t0 = time.perf_counter()
        if name == "dense":
            for r in cfg.ref_dims:
                _, secs, cached, _ = ctx.dense(r)
                lines.append(f"dense ELSA r={r}: {'cached' if cached else f'trained in {secs:.1f} s'}")
        elif name == "celsa":
            _, secs, cached, p = ctx.celsa()
            lines.append(f"Compressed ELSA d={p['dim']} k={p['targets']}: "
                         f"{'cached' if cached else f'trained in {secs:.1f} s'}")
        else:
            pdim = cfg.posthoc_dim or cfg.sparse_dim
            for k in [b // 8 for b in cfg.budgets]:
                _, secs, cached, _ = ctx.compresae(pdim, k)
                lines.append(f"CompresSAE k={k} on dense ELSA r={pdim}: "
                             f"{'cached' if cached else f'dense and codes fitted in {secs:.1f} s'}")
        lines[-1] += f" ({time.perf_counter() - t0:.1f} s wall)"
    for label, curve in ctx.curves.items():
        lines.append(f"  {label}: validation nDCG@100 {curve['ndcg@100']}, best epoch {curve['best_epoch']}")
    return lines


def main(argv=None) -> int:
    from spidx.bench.compression import preset_config

    ap = argparse.ArgumentParser(prog="python -m spidx.bench.prefill", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", help="benchmark preset (default, paper, tiny)")
    ap.add_argument("--data", required=True, help="interactions file, as given to spidx bench")
    ap.add_argument("--models", default="celsa", help=f"comma-separated, from {', '.join(MODELS)}")
    ap.add_argument("--cache-dir", default=None, help="benchmark cache folder (default .cache/bench)")
    args = ap.parse_args(argv)
    try:
        cfg = preset_config(args.preset, args.data, cache_dir=args.cache_dir, progress=sys.stderr.isatty())
        for line in prefill(cfg, [m.strip() for m in args.models.split(",") if m.strip()]):
            print(line)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
