"""Validated defaults (issue 12): `spidx train` with its defaults only, against the hand-tuned settings.

    python -m spidx.bench.validated_defaults run --runs runs/validated        # trains and evaluates (long)
    python -m spidx.bench.validated_defaults collect --runs runs/validated \\
        --json docs/results/validated-defaults.json --out docs/results/validated-defaults.md
    python -m spidx.bench.validated_defaults page docs/results/validated-defaults.json \\
        --out docs/results/validated-defaults.md                                # the page from the committed JSON

Per data set, Compressed ELSA at k = 128 … 8 (one pruning trajectory) is trained twice on the same test users:
*tuned* with the hand-found `--final-epochs 2` of docs/results/ml1m-trainer.md and every non-test user, and
*default* with no option but the budgets and the test users, i.e. with the default validation hold-out
(`spidx.trainer.config.default_val_users`), each final phase stopped at its best validation epoch. Both are
evaluated by `spidx evaluate` (nDCG@100 on the test users). `collect` reads the run files' metadata and the
evaluations into a JSON; the page and its checks (default within 1 % of tuned) are computed from that JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from spidx.atomic import atomic_path

KS = (128, 64, 32, 16, 8)
DATASETS = {  # name: (interactions file, test users as in the benchmark / results pages, options of both runs)
    "ml-100k": ("../shared/data/ml-100k/ml-100k.npz", 200, []),
    "ml-1m": ("../shared/data/ml-1m-implicit/ml-1m-implicit.npz", 1000, []),
    # sampled training as in the paper preset, scaled down to fit ~10 minutes of one CPU core per run (d = 512
    # instead of 4096, E = 3 instead of 5, 2,048 sampled outputs instead of 8,192): on Gowalla only the
    # final-epoch choice and the validation hold-out are left to the defaults
    "gowalla": ("../shared/data/gowalla/gowalla.npz", 3000,
                ["--dim", "512", "--epochs", "3", "--batch-size", "256", "--max-output", "2048"]),
    # the defaults at full scale (d = 4096, E = 10): an estimated 2-4 h per run on the 2-core machine, minutes on a GPU
    # (`run --device auto` there, then `collect --into` the committed figures)
    "gowalla-full": ("../shared/data/gowalla/gowalla.npz", 3000, []),
}
VARIANTS = {  # the options that differ: ML-1M's hand-found final epochs on every non-test user, or nothing
    "tuned": ["--final-epochs", "2", "--val-users", "0"],
    "default": [],
}
# optional diagnostics (run by hand, shown when their files exist): the defaults without the refit, and the tuned
# final epochs on the default split (validation users held out, the better of the 2 final epochs kept, no refit);
# they separate what holding out the validation users costs from what the epoch choice gains
DIAGNOSTIC = {"no-refit": ["--no-refit"], "final2-heldout": ["--final-epochs", "2", "--no-refit"]}
DIAGNOSTIC_LABELS = {"no-refit": "default with `--no-refit`",
                     "final2-heldout": "`--final-epochs 2 --no-refit` on the default split"}
TOLERANCE = 0.01  # the defaults must reach the tuned nDCG@100 within 1 %


def commands(name: str, runs: str, variants: dict = VARIANTS, device: str = "cpu") -> list[tuple[str, list]]:
    """(variant, argv) of the `spidx train` and `spidx evaluate` calls for one data set, training on `device`."""
    data, test_users, common = DATASETS[name]
    out = []
    for variant, extra in variants.items():
        stem = os.path.join(runs, f"{name}-{variant}-k")
        out.append((variant, ["train", data, "--out", stem + "{k}.npz", *common, "--nnz", ",".join(map(str, KS)),
                              "--test-users", str(test_users), "--quiet", "--device", device, *extra]))
        out += [(variant, ["evaluate", f"{stem}{k}.npz", data, "--json", f"{stem}{k}.json"]) for k in KS]
    return out


def run(runs: str, names, device: str = "cpu") -> None:
    """Train and evaluate every variant (one process at a time; progress to stderr)."""
    os.makedirs(runs, exist_ok=True)
    for name in names:
        for _, argv in commands(name, runs, device=device):
            print("spidx " + " ".join(argv), file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-m", "spidx.cli.main", *argv], check=True)


def per_user_test_ndcg(emb, data_path: str) -> np.ndarray:
    """nDCG@100 of each test user of the model's recorded split (the users `spidx evaluate` averages over)."""
    from spidx.evaluation import make_split, rank_dense, ranking_metrics
    from spidx.interactions import read_interactions
    from spidx.trainer.elsa import elsa_scores

    cfg = emb.meta["config"]
    fold = make_split(read_interactions(data_path).matrix, cfg["test_users"], cfg["val_users"], cfg["seed"]).test[0]
    ranked = rank_dense(lambda h: elsa_scores(emb.matrix, h), fold.history)
    return ranking_metrics(ranked, fold.targets, per_user=True)["ndcg@100"]


def collect(runs: str, names) -> dict:
    """The figures of finished runs: per data set, variant and k the test metrics and the training record.

    Per k also the paired difference default − tuned of the test users' nDCG@100 with its 95 % interval.
    """
    from spidx.bench.compression import paired_diff_ci
    from spidx.embeddings import load_embeddings

    result = {"commands": {}, "datasets": {}}
    for name in names:
        found = {**VARIANTS, **{v: extra for v, extra in DIAGNOSTIC.items()
                                if os.path.exists(os.path.join(runs, f"{name}-{v}-k{KS[0]}.json"))}}
        result["commands"][name] = ["spidx " + " ".join(argv) for _, argv in commands(name, runs, found)
                                    if argv[0] == "train"]
        per_variant = {}
        for variant in found:
            rows = {}
            for k in KS:
                stem = os.path.join(runs, f"{name}-{variant}-k{k}")
                meta = load_embeddings(stem + ".npz").meta
                with open(stem + ".json", encoding="utf-8") as f:
                    metrics = json.load(f)["metrics"]
                final = [p for p in meta["phases"] if p["phase"] == f"final k={k}"][0]
                # with validation: the epochs of the validated final phase (a refit then trains the best count)
                rows[str(k)] = {"test": metrics, "final_epochs_trained": len(meta.get("validation") or [])
                                or final["epochs"],
                                "best_epoch": meta.get("best_epoch"),
                                "validation_ndcg": [round(c["ndcg@100"], 4) for c in meta.get("validation", [])]}
            refit = meta.get("refit") or {}
            per_variant[variant] = {"val_users": meta["config"]["val_users"], "test_users": meta["config"]["test_users"],
                                    "train_users": refit.get("validation_train_users", meta["data"]["train_users"]),
                                    "refit_train_users": refit.get("train_users"),
                                    "train_seconds": meta["train_seconds"], "k": rows}
        data = DATASETS[name][0]
        for k in map(str, KS):
            a, b = (per_user_test_ndcg(load_embeddings(os.path.join(runs, f"{name}-{v}-k{k}.npz")), data)
                    for v in ("default", "tuned"))
            per_variant["default"]["k"][k]["paired_diff_ndcg"] = [round(x, 5) for x in paired_diff_ci(a, b)]
        per_variant["options"] = DATASETS[name][2]
        result["datasets"][name] = per_variant
    return result


def markdown(r: dict) -> str:
    """The results page; every ratio and check is computed here from the figures in `r`."""
    out = ["# Validated defaults: `spidx train` without tuning against the hand-tuned final epochs", "",
           "_Generated by `python -m spidx.bench.validated_defaults page docs/results/validated-defaults.json` "
           "from the figures `collect` read from the run files (not in the repository) and their `spidx evaluate` "
           "output._", "",
           "Compressed ELSA (d = 4096, exponential schedule with rewinding, E = 10, batch 256: the defaults) at "
           "k = 128 … 8 from one pruning trajectory. *tuned*: `--final-epochs 2` (found by hand on ML-1M, "
           "docs/results/ml1m-trainer.md), trained on every non-test user. *default*: no option but the budgets and "
           "the test users, so `spidx train` holds out its default validation users (5 % of the non-test users, "
           "at least 100, at most 1,000 and a fifth of them), trains each k's final phase for at most 10 epochs, "
           "stops after 3 epochs without a new best validation nDCG@100 and keeps the best epoch; when the "
           "validation users are more than 5 % of the non-test users (small data sets) it then retrains on every "
           "non-test user with each k's chosen final epochs (`--refit`). "
           "nDCG@100 on the same seeded test users (`spidx evaluate`, 1 fold). One CPU thread each "
           "(OMP/MKL/NUMBA_NUM_THREADS=1) on a shared 2-core machine.", ""]
    verdicts = []
    for name, v in r["datasets"].items():
        tuned, default = v["tuned"], v["default"]
        diagnostics = [x for x in DIAGNOSTIC if x in v]
        refit = (f"; then refit on all {default['refit_train_users']:,} non-test users with the chosen final epochs "
                 "(the default for data sets whose validation users exceed 5 % of the non-test users)"
                 if default.get("refit_train_users") else "")
        options = (f" Both runs use `{' '.join(v['options'])}` instead of the defaults of those options."
                   if v.get("options") else "")
        out += [f"## {name}", "",
                f"{tuned['test_users']:,} test users; tuned trained on {tuned['train_users']:,} users "
                f"({tuned['train_seconds'] / 60:.1f} min), default on {default['train_users']:,} "
                f"({default['val_users']:,} validation users held out{refit}; {default['train_seconds'] / 60:.1f} min "
                f"in all).{options}", "",
                "| k | bytes (8 B/nnz) | tuned nDCG@100 | default nDCG@100 | default / tuned | default − tuned, 95 % "
                "paired interval | default: best final "
"epoch / trained | default: validation nDCG@100 per final epoch |"
                + "".join(f" {DIAGNOSTIC_LABELS[x]} (diagnostic) |" for x in diagnostics),
                "|---|---|---|---|---|---|---|---|" + "---|" * len(diagnostics)]
        for k, t in tuned["k"].items():
            d = default["k"][k]
            a, b = t["test"]["ndcg@100"], d["test"]["ndcg@100"]
            ratio = b / a
            verdicts.append((name, int(k), ratio))
            curve = " ".join(f"**{x:.4f}**" if i + 1 == d["best_epoch"] else f"{x:.4f}"
                             for i, x in enumerate(d["validation_ndcg"]))
            diff, lo, hi = d["paired_diff_ndcg"]
            row = (f"| {k} | {int(k) * 8} | {a:.4f} | {b:.4f} | {ratio:.1%} | {diff:+.4f} [{lo:+.4f}, {hi:+.4f}] "
                   f"| {d['best_epoch']} / "
                   f"{d['final_epochs_trained']} | {curve} |")
            row += "".join(f" {v[x]['k'][k]['test']['ndcg@100']:.4f} |" for x in diagnostics)
            out.append(row)
        out.append("")
    held = [x for x in verdicts if x[2] >= 1 - TOLERANCE]
    out += ["## Check: defaults within 1 % of tuned", "",
            f"{len(held)} of {len(verdicts)} (data set, k) cells hold (default ≥ 99 % of tuned)."]
    missed = [x for x in verdicts if x[2] < 1 - TOLERANCE]
    if missed:
        out.append("Missed: " + "; ".join(f"{n} k = {k}: {ratio:.1%} ({(1 - ratio):.1%} below)"
                                           for n, k, ratio in missed) + ".")
    out += [""] + r.get("notes", []) + ["", "## Commands", "", "```bash"]
    for name, cmds in r["commands"].items():
        out += cmds
    out += ["# then, for every file: spidx evaluate RUN.npz DATA --json RUN.json", "```", ""]
    return "\n".join(out)


def merge_figures(earlier: dict, new: dict) -> dict:
    """`earlier` figures with the data sets (and their commands) of `new` added or replaced, so data sets run
    on different machines (e.g. the full-scale Gowalla runs on a GPU) make one page."""
    out = dict(earlier)
    for key in ("commands", "datasets"):
        out[key] = {**earlier.get(key, {}), **new.get(key, {})}
    return out


def _write(path: str | None, text: str) -> None:
    if path is None:
        print(text, end="")
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd in ("run", "collect"):
        p = sub.add_parser(cmd)
        p.add_argument("--runs", default="runs/validated", help="folder of the run files")
        p.add_argument("--datasets", default=",".join(d for d in DATASETS if d != "gowalla-full"),
                       help="comma list of " + ", ".join(DATASETS))
        if cmd == "run":
            p.add_argument("--device", default="cpu", help="training device: cpu (default), auto or cuda")
        if cmd == "collect":
            p.add_argument("--into", help="an earlier figures JSON whose other data sets are kept")
            p.add_argument("--json", help="write the figures here")
            p.add_argument("--notes", help="a text file whose lines are appended to the page as notes")
            p.add_argument("--out", help="write the page here (default: print it)")
    p = sub.add_parser("page")
    p.add_argument("results", help="the figures JSON (docs/results/validated-defaults.json)")
    p.add_argument("--out", help="write the page here (default: print it)")
    args = ap.parse_args(argv)
    try:
        return _main(args)
    except subprocess.CalledProcessError as e:  # spidx printed its own one-line error
        print(f"error: `spidx {' '.join(e.cmd[3:])}` failed (exit {e.returncode})", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"error: unknown data set or missing figure {e}; data sets: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:  # missing or unreadable file, bad JSON
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args) -> int:
    if args.cmd == "run":
        run(args.runs, args.datasets.split(","), args.device)
        return 0
    if args.cmd == "collect":
        r = collect(args.runs, args.datasets.split(","))
        if args.into:
            with open(args.into, encoding="utf-8") as f:
                r = merge_figures(json.load(f), r)
        if args.notes:
            with open(args.notes, encoding="utf-8") as f:
                r["notes"] = f.read().splitlines()
        if args.json:
            _write(args.json, json.dumps(r, indent=2) + "\n")
        _write(args.out, markdown(r))
        return 0
    with open(args.results, encoding="utf-8") as f:
        _write(args.out, markdown(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
