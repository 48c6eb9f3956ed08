"""Training time of a Compressed ELSA run, per phase as k falls, from the phase log in its embeddings file.

    python -m spidx.bench.training_time runs/ml1m-k32.npz [--plot docs/results/training-time.png]
"""
from __future__ import annotations

import argparse

import numpy as np

from spidx.embeddings import load_embeddings


def phase_table(phases: list[dict]) -> str:
    lines = ["| phase | k | engine | epochs | seconds | s/epoch | loss |", "|---|---|---|---|---|---|---|"]
    for p in phases:
        lines.append(f"| {p['phase']} | {p['nnz']} | {p['engine']} | {p['epochs']} | {p['seconds']:.1f} | "
                     f"{p['seconds'] / p['epochs']:.1f} | {p['loss']:.4g} |")
    return "\n".join(lines)


def summary(phases: list[dict], target: int | None = None) -> dict:
    """Total seconds, and seconds of the phases a single run to `target` needs (trajectory + its final)."""
    total = sum(p["seconds"] for p in phases)
    out = {"total_seconds": total, "epochs": sum(p["epochs"] for p in phases)}
    if target is not None:
        run = []
        for p in phases:
            if p["phase"].startswith("final"):
                if p["nnz"] == target:
                    run.append(p)
                    break
                continue
            run.append(p)
        out["run_to_target_seconds"] = sum(p["seconds"] for p in run)
    by_engine = {}
    for p in phases:
        by_engine.setdefault(p["engine"], []).append(p["seconds"] / p["epochs"])
    out["median_seconds_per_epoch"] = {e: float(np.median(v)) for e, v in by_engine.items()}
    return out


def plot(phases: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for engine, marker in (("dense", "o"), ("sparse", "s")):
        pts = [(p["nnz"], p["seconds"] / p["epochs"]) for p in phases if p["engine"] == engine]
        if pts:
            ax.plot(*zip(*pts), marker, label=f"{engine} engine", alpha=0.8)
    ax.set_xscale("log", base=2)
    ax.invert_xaxis()
    ax.set_xlabel("non-zeros per item row k (pruning proceeds to the right)")
    ax.set_ylabel("seconds per epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("embeddings")
    ap.add_argument("--target", type=int, default=None, help="k of a single run to time (default: the file's k)")
    ap.add_argument("--plot", default=None, help="write a PNG of seconds/epoch against k")
    args = ap.parse_args(argv)
    meta = load_embeddings(args.embeddings).meta
    phases = meta.get("phases")
    if not phases:
        raise SystemExit(f"{args.embeddings}: no phase log (not a Compressed ELSA file)")
    print(phase_table(phases))
    s = summary(phases, args.target or meta.get("k"))
    print()
    for key, value in s.items():
        print(f"- {key}: {value if not isinstance(value, float) else round(value, 1)}")
    if args.plot:
        plot(phases, args.plot)
        print(f"- plot: {args.plot}")


if __name__ == "__main__":
    main()
