"""Why dense ELSA trails EASE on Gowalla (issue 12, item 2): training settings varied, chosen on validation users.

    python -m spidx.bench.elsa_gap run --data data/gowalla.npz --json runs/elsa-gap.json      # trains (long)
    python -m spidx.bench.elsa_gap page runs/elsa-gap.json --out docs/results/elsa-vs-ease-gowalla.md

The split is the Gowalla paper preset's (3,000 test users, 1,000 validation users, seed 42, one fold of 20 %
targets). Every ELSA variant trains at most `--max-epochs` epochs, keeps the epoch with the best validation
nDCG@100 and stops after 3 epochs without a new best (`spidx.ELSA(..., patience=3)`); EASE's λ is chosen on the
same validation users. Test figures are computed once, for the chosen epoch / λ, and compared per user
(paired 95 % intervals) with the preset's own setting and with EASE. `run` appends each finished variant to the
JSON, so an interrupted run resumes where it stopped (`--only` runs a subset).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from spidx.atomic import atomic_path

# name: (what changes against the preset's setting, ELSA options). The preset's dense models: batches of 256
# users, NAdam lr 0.1, 8,192 sampled output columns (the batch's items plus uniform negatives).
PRESET = dict(batch_size=256, lr=0.1, max_output=8192)
VARIANTS = {
    "preset d=256": ("the paper preset's setting at d = 256", dict(dim=256, **PRESET)),
    "full output d=256": ("every item as output (no sampled negatives)", dict(dim=256, **{**PRESET, "max_output": None})),
    "fewer negatives d=256": ("2,048 sampled outputs", dict(dim=256, **{**PRESET, "max_output": 2048})),
    "lr 0.01 d=256": ("learning rate 0.01", dict(dim=256, **{**PRESET, "lr": 0.01})),
    "lr 0.3 d=256": ("learning rate 0.3", dict(dim=256, **{**PRESET, "lr": 0.3})),
    "batch 1024 d=256": ("batches of 1,024 users", dict(dim=256, **{**PRESET, "batch_size": 1024})),
    "preset d=1024": ("the preset's setting at d = 1024", dict(dim=1024, **PRESET)),
}
EASE_LAMBDAS = (200.0,)  # the Gowalla paper preset's λ; each λ is one 41k x 41k inverse (~13 min on one core)
EASE_K = 1024  # EASE rows pruned to their 1,024 largest entries (the full 41k x 41k B is 6.7 GB; see page)
N_TEST, N_VAL, SEED = 3000, 1000, 42


def _split(data_path: str):
    from spidx import make_split, read_interactions

    data = read_interactions(data_path)
    return data, make_split(data.matrix, n_test=N_TEST, n_val=N_VAL, seed=SEED, folds=1)


def _per_user_ndcg(score_fn, folds) -> np.ndarray:
    from spidx.evaluation import rank_dense, ranking_metrics

    return np.concatenate([ranking_metrics(rank_dense(score_fn, f.history, 100), f.targets, per_user=True)["ndcg@100"]
                           for f in folds])


def _load(path: str) -> dict:
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"split": {"n_test": N_TEST, "n_val": N_VAL, "seed": SEED}, "runs": {}}


def _save(path: str, res: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(res, f, indent=1)


def run(data_path: str, json_path: str, only: list | None, max_epochs: int, progress: bool) -> None:
    import spidx
    from spidx.trainer.elsa import elsa_scores

    data, split = _split(data_path)
    res = _load(json_path)
    res["data"] = {"file": os.path.basename(data_path), "fingerprint": data.fingerprint(),
                   "users": int(data.matrix.shape[0]), "items": int(data.matrix.shape[1]),
                   "train_users": int(split.train.shape[0])}
    names = [n for n in list(VARIANTS) + ["EASE"] if not only or n in only]
    for name in names:
        if name in res["runs"]:
            print(f"{name}: done earlier, kept")
            continue
        t0 = time.perf_counter()
        if name == "EASE":
            per_lam = {}
            for lam in EASE_LAMBDAS:
                model = spidx.EASE(lam=lam, nnz=EASE_K).fit(split.train, show_progress=progress)
                B = model.embeddings  # CSR, EASE_K entries per row
                score = lambda h, B=B: np.asarray((h @ B).todense())  # noqa: E731
                val = _per_user_ndcg(score, split.validation)
                per_lam[lam] = (float(val.mean()), score)
                print(f"EASE λ={lam:g}: validation nDCG@100 {val.mean():.4f}")
            lam = max(per_lam, key=lambda k: per_lam[k][0])
            test = _per_user_ndcg(per_lam[lam][1], split.test)
            entry = {"what": f"EASE, rows pruned to their {EASE_K} largest entries, λ chosen on validation",
                     "params": {"lam": lam, "k": EASE_K},
                     "validation_by_lambda": {str(k): v[0] for k, v in per_lam.items()},
                     "best_epoch": None, "curve": [], "val_ndcg": per_lam[lam][0]}
        else:
            what, params = VARIANTS[name]
            model = spidx.ELSA(epochs=max_epochs, seed=SEED, patience=3, **params)
            model.fit(split.train, show_progress=progress, validation=split.validation)
            A = model.embeddings
            test = _per_user_ndcg(lambda h, A=A: elsa_scores(A, h), split.test)
            curve = model.meta["validation"]
            entry = {"what": what, "params": {**params, "max_epochs": max_epochs},
                     "best_epoch": int(model.meta["best_epoch"]),
                     "curve": [round(float(e["ndcg@100"]), 5) for e in curve],
                     "loss": [float(f"{e['loss']:.5g}") for e in curve],
                     "epoch_seconds": model.meta.get("epoch_seconds", []),
                     "val_ndcg": float(max(e["ndcg@100"] for e in curve))}
        entry.update(test_ndcg=float(test.mean()), test_per_user=[round(float(v), 5) for v in test],
                     seconds=time.perf_counter() - t0)
        res["runs"][name] = entry
        _save(json_path, res)
        print(f"{name}: validation {entry['val_ndcg']:.4f} (epoch {entry['best_epoch']}), test {entry['test_ndcg']:.4f}, "
              f"{entry['seconds'] / 60:.1f} min")


def _paired(a, b) -> str:
    from .compression import paired_diff_ci

    m, lo, hi = paired_diff_ci(a, b)
    return f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def page(json_path: str, out: str | None) -> str:
    with open(json_path) as f:
        res = json.load(f)
    runs = res["runs"]
    base = runs.get("preset d=256")
    ease = runs.get("EASE")
    d = res["data"]
    lines = ["# Dense ELSA against EASE on Gowalla: what closes the gap", "",
             f"_Generated by `python -m spidx.bench.elsa_gap page {json_path}` from the JSON written by "
             f"`python -m spidx.bench.elsa_gap run --data data/gowalla.npz --json {json_path}`._", "",
             f"Data: `{d['file']}` ({d['users']:,} users × {d['items']:,} items, fingerprint `{d['fingerprint']}`); "
             f"the Gowalla paper preset's split: {res['split']['n_test']:,} test users, {res['split']['n_val']:,} "
             f"validation users (seed {res['split']['seed']}), {d['train_users']:,} training users, one fold of 20 % "
             "targets. Every ELSA variant keeps its best validation epoch (at most the given maximum, stopping after "
             "3 epochs without a new best); EASE's λ is the best of the listed λ on the validation users. Test "
             "nDCG@100 is reported "
             "for the choice only, with the paired 95 % interval of the per-user difference.", "",
             "| variant | what changes | best epoch / trained | validation nDCG@100 per epoch | validation | test nDCG@100 "
             "| vs preset d=256 | vs EASE | minutes |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        curve = " ".join(f"**{v:.4f}**" if i + 1 == r["best_epoch"] else f"{v:.4f}" for i, v in enumerate(r["curve"]))
        if name == "EASE":
            curve = ", ".join(f"λ={float(k):g}: {v:.4f}" for k, v in r["validation_by_lambda"].items())
            r = {**r, "what": f"EASE λ = {r['params']['lam']:g}, each row's {r['params']['k']} largest entries kept"}
        lines.append(f"| {name} | {r['what']} | "
                     + (f"{r['best_epoch']} / {len(r['curve'])} (max {r['params']['max_epochs']})" if r["best_epoch"] else "–")
                     + f" | {curve} | {r['val_ndcg']:.4f} | {r['test_ndcg']:.4f} | "
                     + (_paired(r["test_per_user"], base["test_per_user"]) if base and r is not base else "–") + " | "
                     + (_paired(r["test_per_user"], ease["test_per_user"]) if ease and r is not ease else "–")
                     + f" | {r['seconds'] / 60:.1f} |")
    text = "\n".join(lines) + "\n"
    if out:
        notes_path = os.path.splitext(out)[0] + ".notes.md"
        if os.path.exists(notes_path):  # the written findings, kept beside the generated table
            with open(notes_path) as f:
                text += "\n" + f.read()
        with atomic_path(out) as tmp, open(tmp, "w") as f:
            f.write(text)
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m spidx.bench.elsa_gap", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the variants and EASE; append each result to the JSON")
    r.add_argument("--data", default=os.path.join("data", "gowalla.npz"))
    r.add_argument("--json", required=True)
    r.add_argument("--only", default=None, help="comma list of variant names (default: all, then EASE)")
    r.add_argument("--max-epochs", type=int, default=12)
    r.add_argument("--quiet", action="store_true")
    p = sub.add_parser("page", help="the Markdown page from the JSON")
    p.add_argument("json")
    p.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.cmd == "run":
        run(a.data, a.json, [s.strip() for s in a.only.split(",")] if a.only else None, a.max_epochs, not a.quiet)
    else:
        print(page(a.json, a.out))


if __name__ == "__main__":
    main()
