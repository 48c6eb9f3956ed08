"""`spidx bench`: choices on validation users (synthetic fixtures), and end-to-end on MovieLens-100K with tiny
settings (report structure, finite in-range numbers)."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "ml-100k.npz"

needs_ml100k = pytest.mark.skipif(not ML100K.exists(), reason="MovieLens-100K not available (see ../shared/data)")


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    from click.testing import CliRunner

    from spidx.cli.main import main

    out = tmp_path_factory.mktemp("bench")
    cache = tmp_path_factory.mktemp("cache")
    args = ["bench", "--preset", "tiny", "--data", str(ML100K), "--out", str(out), "--cache-dir", str(cache),
            "--quiet", "--n-test", "60"]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, res.output, args, cache


@pytest.mark.slow
@needs_ml100k
def test_outputs_exist(bench_run):
    out, stdout, _, _ = bench_run
    for name in ("results.json", "results.csv", "report.md", "ndcg_vs_bytes.png", "validation_curves.png"):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    for png in ("ndcg_vs_bytes.png", "validation_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| method | budget B |" in stdout and "## Claims" in stdout
    report = (out / "report.md").read_text()
    for heading in ("## Frontier: nDCG@100 against paper bytes per item",
                    "## Frontier: nDCG@100 against stored bytes per item", "## Choices on validation users",
                    "## Validation curves"):
        assert heading in report, heading


@pytest.mark.slow
@needs_ml100k
def test_validation_curves_of_every_trained_model(bench_run):
    out, _, _, _ = bench_run
    res = json.loads((out / "results.json").read_text())
    cfg = res["meta"]["config"]
    curves = res["curves"]
    ks = sorted(b // 8 for b in cfg["budgets"])
    expected = {f"dense ELSA r={r}" for r in cfg["ref_dims"]} | {f"dense ELSA r={b // 4}" for b in cfg["budgets"]} \
        | {f"Compressed ELSA d={cfg['sparse_dim']} k={k}" for k in ks}
    assert expected <= set(curves), sorted(curves)
    report = (out / "report.md").read_text()
    for name, cv in curves.items():
        nd = cv["ndcg@100"]
        assert 1 <= cv["epochs_trained"] == len(nd) <= cv["max_epochs"]
        assert cv["best_epoch"] == 1 + nd.index(max(nd))  # the kept epoch is the first best on validation
        assert f"| {name} | {cv['epochs_trained']} ({cv['max_epochs']}) | {cv['best_epoch']} |" in report
    # the reference row's validation figure is its kept epoch's
    ref = next(r for r in res["rows"] if r["group"] == "dense")
    ref_curve = curves[f"dense ELSA r={res['meta']['reference_dim']}"]
    assert ref["val_ndcg@100"] == pytest.approx(max(ref_curve["ndcg@100"]), abs=1e-4)
    # per-user nDCG@100 of every row, aligned with the rows, averaging to each row's test figure
    assert len(res["per_user_ndcg"]) == len(res["rows"])
    for r, pu in zip(res["rows"], res["per_user_ndcg"]):
        assert sum(pu) / len(pu) == pytest.approx(r["ndcg@100"], abs=1e-4)


@pytest.mark.slow
@needs_ml100k
def test_report_rerenders_from_results_json(bench_run, tmp_path):
    from spidx.bench.report import main as report_main

    out, _, _, _ = bench_run
    notes = tmp_path / "notes.md"
    notes.write_text("## How this run was made\n\nwritten by hand")
    report_main([str(out / "results.json"), "--out", str(tmp_path / "docs"), "--stem", "bench-x", "--notes", str(notes)])
    md = (tmp_path / "docs" / "bench-x.md").read_text()
    assert md.index("written by hand") < md.index("| method | budget B |")
    assert "(bench-x.png)" in md and "(bench-x-curves.png)" in md
    assert (tmp_path / "docs" / "bench-x.png").exists() and (tmp_path / "docs" / "bench-x-curves.png").exists()
    before = (out / "results.json").read_bytes()
    with pytest.raises(SystemExit, match="error: "):  # an output never replaces its input
        report_main([str(out / "results.json"), "--out", str(out)])
    assert (out / "results.json").read_bytes() == before
    claims = md.split("## Claims")[1].split("![")[0]
    assert "Δ " in claims and claims == (out / "report.md").read_text().split("## Claims")[1].split("![")[0]
    # the re-rendered JSON holds the same results, each row's per-user nDCG@100 on one line
    original, rerendered = json.loads(before), json.loads((tmp_path / "docs" / "bench-x.json").read_text())
    assert rerendered["rows"] == original["rows"] and rerendered["per_user_ndcg"] == original["per_user_ndcg"]
    lines = (tmp_path / "docs" / "bench-x.json").read_text().splitlines()
    users = len(original["per_user_ndcg"][0])
    assert users > 1 and len(lines) < len(json.dumps(original, indent=1).splitlines()) - users
    per_user_lines = [line for line in lines if line.strip().startswith("[") and line.strip().rstrip(",").endswith("]")]
    assert len(per_user_lines) >= len(original["per_user_ndcg"])


@pytest.mark.slow
@needs_ml100k
def test_rows_structure_and_ranges(bench_run):
    from spidx.bench.report import best_faiss

    out, _, _, _ = bench_run
    res = json.loads((out / "results.json").read_text())
    rows = res["rows"]
    groups = {r["group"] for r in rows}
    assert {"dense", "lowdim", "faiss", "posthoc", "compresae", "ease", "celsa"} <= groups
    budgets = set(res["meta"]["config"]["budgets"])
    for g in ("lowdim", "posthoc", "compresae", "ease"):
        assert {r["budget"] for r in rows if r["group"] == g and r["budget"] is not None} == budgets, g
    for r in rows:
        for m in ("recall@20", "recall@50", "ndcg@100", "val_ndcg@100"):
            assert 0.0 <= r[m] <= 1.0 and math.isfinite(r[m]), (r["config"], m)
        assert r["ndcg@100"] > 0.05, r["config"]  # every method beats a broken ranking on ML-100K
        for f in ("paper_bytes_per_item", "stored_bytes_per_item", "total_serving_bytes", "build_seconds"):
            assert r[f] is not None and math.isfinite(r[f]) and r[f] >= 0, (r["config"], f)
        # every row is timed but the FAISS configurations the validation users did not choose
        timed = r["group"] != "faiss" or r in best_faiss(rows)
        for f in ("qps_batch", "qps_single", "p50_ms", "p99_ms", "speedup_batch_vs_ref", "speedup_single_vs_ref"):
            assert (r[f] is not None and math.isfinite(r[f]) and r[f] > 0) if timed else r[f] is None, (r["config"], f)
        if timed:
            assert r["p50_ms"] <= r["p99_ms"] + 1e-9
        if r["budget"] is not None and r["group"] in ("lowdim", "posthoc", "ease", "faiss"):
            assert r["paper_bytes_per_item"] <= r["budget"] + 1e-9, r["config"]
        if r["group"] in ("celsa", "compresae"):
            assert r["params"]["k"] * 8 == r["budget"]
            assert r["paper_bytes_per_item"] <= r["budget"]
        if not r["exact"]:
            assert r["overlap@100"] is not None and 0.0 <= r["overlap@100"] <= 1.0
        assert "seed" in r and isinstance(r["params"], dict)
    ref = [r for r in rows if r["group"] == "dense"]
    assert len(ref) == 1 and abs(ref[0]["speedup_batch_vs_ref"] - 1.0) < 1e-9
    assert ref[0]["ndcg_diff_vs_ref"] == 0.0 and ref[0]["ndcg_diff_ci95"] == [0.0, 0.0]
    assert res["claims"], "claims section missing"


def test_paired_diff_ci_hand_computed():
    from spidx.bench.compression import paired_diff_ci

    # per-row nDCG of a method and of the reference on the same four evaluation rows
    a = [0.5, 0.2, 0.9, 0.4]
    b = [0.3, 0.3, 0.6, 0.1]
    # differences 0.2, -0.1, 0.3, 0.3: mean 0.175; squared deviations 0.000625 + 0.075625 + 0.015625 + 0.015625
    # = 0.1075; sample variance 0.1075 / 3; standard error sqrt(0.1075 / 3 / 4) = 0.0946485; z = 1.96
    half = 1.96 * math.sqrt(0.1075 / 3 / 4)
    mean, lo, hi = paired_diff_ci(a, b)
    assert mean == pytest.approx(0.175, abs=1e-12)
    assert lo == pytest.approx(0.175 - half, abs=1e-12) and lo == pytest.approx(-0.0105111, abs=1e-6)
    assert hi == pytest.approx(0.175 + half, abs=1e-12) and hi == pytest.approx(0.3605111, abs=1e-6)
    # one row: no interval
    mean, lo, hi = paired_diff_ci([0.4], [0.1])
    assert mean == pytest.approx(0.3) and math.isnan(lo) and math.isnan(hi)


@pytest.mark.slow
@needs_ml100k
def test_csv_matches_json(bench_run):
    out, _, _, _ = bench_run
    rows = json.loads((out / "results.json").read_text())["rows"]
    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows)
    for c, r in zip(csv_rows, rows):
        assert abs(float(c["ndcg@100"]) - r["ndcg@100"]) < 1e-9
        json.loads(c["params"])


@pytest.mark.slow
@needs_ml100k
def test_cache_reused(bench_run, tmp_path):
    from click.testing import CliRunner

    from spidx.cli.main import main

    out, _, args, cache = bench_run
    assert any(cache.iterdir())
    args2 = [a if a != str(out) else str(tmp_path) for a in args] + ["--methods", "celsa", "--no-plot"]
    res = CliRunner().invoke(main, args2, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert rows and all(r["cached"] for r in rows)
    first = {r["config"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    for r in rows:
        assert abs(r["ndcg@100"] - first[r["config"]]["ndcg@100"]) < 1e-6


@pytest.mark.slow
@needs_ml100k
def test_bad_method_is_an_input_error(tmp_path):
    from click.testing import CliRunner

    from spidx.cli.main import main

    res = CliRunner().invoke(main, ["bench", "--preset", "tiny", "--data", str(ML100K), "--methods", "nope",
                                    "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown method group" in res.output


# ---- choices on validation users (synthetic data, seconds) -----------------------------------------

def _tiny_config(path, tmp_path, **overrides):
    from spidx.bench.compression import preset_config

    return preset_config("tiny", str(path), cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "out"),
                         progress=False, **overrides)


def test_validation_and_test_users_are_disjoint(small_interactions_file, tmp_path):
    from spidx.bench.compression import Context
    from spidx.errors import InputError

    ctx = Context(_tiny_config(small_interactions_file, tmp_path))
    test_users = set(ctx.split.test[0].users.tolist())
    val_users = set(ctx.split.validation[0].users.tolist())
    assert len(test_users) == 100 and len(val_users) == 50  # every synthetic user has a target
    assert not test_users & val_users
    assert not (test_users | val_users) & set(ctx.split.train_users.tolist())
    assert ctx.train.shape[0] == 400 - 150
    # another number of validation users is another training set: cached models must not be shared
    other = Context(_tiny_config(small_interactions_file, tmp_path, n_val=60))
    assert ctx._key("elsa", {"dim": 8}) != other._key("elsa", {"dim": 8})
    with pytest.raises(InputError, match="needs validation users"):
        Context(_tiny_config(small_interactions_file, tmp_path, n_val=0))


def test_reference_and_ease_lambda_follow_the_validation_users(small_interactions_file, tmp_path, monkeypatch):
    """With validation nDCG@100 turned upside down (1 - nDCG on the validation folds only), the chosen r and
    λ must be the candidates that are worse on the test users: the test users play no part in the choice."""
    from spidx.bench import compression
    from spidx.bench.report import markdown

    true_evaluate = compression.evaluate_rankings

    def upside_down_on_validation(rankings, folds):
        m = true_evaluate(rankings, folds)
        return dict(m, **{"ndcg@100": 1.0 - m["ndcg@100"]}) if folds is validation[0] else m

    validation = []
    true_context = compression.Context

    def context(cfg, log=None):
        ctx = true_context(cfg, log)
        validation.append(ctx.split.validation)
        return ctx

    monkeypatch.setattr(compression, "Context", context)
    monkeypatch.setattr(compression, "evaluate_rankings", upside_down_on_validation)
    cfg = _tiny_config(small_interactions_file, tmp_path, methods=("dense", "ease"), ref_dims=(2, 32),
                       ease_lams=(0.1, 3000.0), budgets=(64,))
    result = compression.run_benchmark(cfg, log=lambda m: None)
    meta = result["meta"]
    ref_sel, ease_sel = meta["reference_selection_ndcg"], meta["ease_lambda_selection_ndcg"]
    # the test figures of the candidates disagree with the (inverted) validation figures ...
    assert max(ref_sel["test"], key=ref_sel["test"].get) != max(ref_sel["validation"], key=ref_sel["validation"].get)
    assert max(ease_sel["test"], key=ease_sel["test"].get) != max(ease_sel["validation"], key=ease_sel["validation"].get)
    # ... and the choice follows validation
    assert meta["reference_dim"] == max(ref_sel["validation"], key=ref_sel["validation"].get)
    lam = max(ease_sel["validation"], key=ease_sel["validation"].get)
    rows = {r["group"] + str(r["budget"]): r for r in result["rows"]}
    assert rows["denseNone"]["config"].startswith(f"ELSA r={meta['reference_dim']} ")
    assert f"lambda={lam:g}," in rows["easeNone"]["config"] and f"lambda={lam:g}," in rows["ease64"]["config"]
    # the reported figures are the chosen candidate's test figures, its validation figure alongside
    assert rows["denseNone"]["ndcg@100"] == pytest.approx(ref_sel["test"][meta["reference_dim"]], abs=1e-12)
    assert rows["denseNone"]["val_ndcg@100"] == pytest.approx(ref_sel["validation"][meta["reference_dim"]], abs=1e-12)
    assert rows["easeNone"]["ndcg@100"] == pytest.approx(ease_sel["test"][lam], abs=1e-12)
    assert meta["selection_users"] == "validation" and meta["n_val_users"] == 50
    md = markdown(result)
    assert f"r = {meta['reference_dim']}, the best validation nDCG@100" in md and "EASE λ: the best validation" in md


def _row(group, budget, config, val, test, paper, stored, method=None):
    return {"group": group, "budget": budget, "config": config, "method": method or group, "val_ndcg@100": val,
            "ndcg@100": test, "recall@20": test, "paper_bytes_per_item": paper, "stored_bytes_per_item": stored}


def test_claims_give_paired_intervals_on_both_accountings():
    from spidx.bench.report import check_claims

    def row(group, budget, config, test, paper, stored, values=None):
        r = _row(group, budget, config, val=test, test=test, paper=paper, stored=stored)
        r["params"] = {"values": values} if values else {}
        r.update(speedup_batch_vs_ref=2.0, speedup_single_vs_ref=2.0, ndcg_vs_ref=test / 0.6, ndcg_diff_vs_ref=0.0,
                 ndcg_diff_ci95=None)
        return r

    rows = [row("dense", None, "reference", 0.60, 1024, 1024),
            row("celsa", 1024, "k=128 f32", 0.60, 1024, 800, "f32"),
            row("celsa", 256, "k=32 f32", 0.60, 256, 230, "f32"),
            row("lowdim", 256, "r=64", 0.4667, 256, 256)]
    per_user = [[0.6, 0.6, 0.6], [0.5, 0.6, 0.7], [0.5, 0.6, 0.7], [0.4, 0.4, 0.6]]
    claims = {(c["claim"].split(",")[0][:40], c["accounting"]): c for c in check_claims(rows, per_user)}
    at256 = next(c for c in claims.values() if c["claim"].startswith("At 256 B"))
    # by hand: differences 0.1, 0.2, 0.1 -> mean 0.1333, sd 0.057735, se 0.033333, 1.96 se = 0.065333
    assert at256["holds"] and at256["accounting"] == "paper"
    assert "low-dim dense 0.4667 (Δ +0.1333 [+0.0680, +0.1987])" in at256["evidence"]
    stored = next(c for c in claims.values() if c["claim"].startswith("At 256 stored"))
    assert stored["accounting"] == "stored" and "(Δ +0.1333 [+0.0680, +0.1987])" in stored["evidence"]
    # differences from the reference -0.1, 0, +0.1: mean 0, se 0.057735, 1.96 se = 0.113161
    within = [c for c in claims.values() if "within 2%" in c["claim"]]
    assert {c["accounting"] for c in within} == {"paper", "stored"}
    assert all(c["holds"] and "(Δ +0.0000 [-0.1132, +0.1132])" in c["evidence"] for c in within)


def test_best_faiss_and_frontiers_choose_on_validation():
    from spidx.bench.report import best_faiss, frontier, frontier_table

    rows = [
        _row("faiss", 64, "PQ8", val=0.30, test=0.20, paper=64, stored=70),   # best on validation, worse on test
        _row("faiss", 64, "SQ8", val=0.25, test=0.40, paper=64, stored=64),
        _row("celsa", 64, "k=8 f32", val=0.31, test=0.30, paper=64, stored=110),
        _row("celsa", 64, "k=8 i8", val=0.29, test=0.35, paper=40.0, stored=60.0),
        _row("celsa", 128, "k=16 f32", val=0.40, test=0.38, paper=128, stored=200),
        _row("celsa", 128, "k=16 i8", val=0.39, test=0.39, paper=80, stored=100),
        _row("dense", None, "reference", val=0.50, test=0.50, paper=512, stored=512),
    ]
    assert [r["config"] for r in best_faiss(rows)] == ["PQ8"]
    paper = {(e["budget"], e["row"]["group"]): e["row"]["config"] for e in frontier(rows, "paper_bytes_per_item", (128, 64))}
    assert paper == {(128, "celsa"): "k=16 f32", (128, "faiss"): "PQ8", (64, "celsa"): "k=8 f32", (64, "faiss"): "PQ8"}
    # stored bytes: k=16 f32 (200 B) does not fit 128 B, its i8 copy (100 B) does; at 64 B only i8 k=8 and SQ8 fit
    stored = {(e["budget"], e["row"]["group"]): e["row"]["config"]
              for e in frontier(rows, "stored_bytes_per_item", (128, 64))}
    assert stored == {(128, "celsa"): "k=16 i8", (128, "faiss"): "PQ8", (64, "celsa"): "k=8 i8", (64, "faiss"): "SQ8"}
    lines = frontier_table(rows, "stored_bytes_per_item", "stored", (64,))
    assert "| 64 | Compressed ELSA (our index, best value type) | k=8 i8 | 60.0 | 0.2900 | 0.3500 | 0.3500 |" in lines


def test_prefill_trains_what_the_benchmark_then_finds_cached(small_interactions_file, tmp_path):
    """Models trained by `bench.prefill` (e.g. on a GPU machine) are the ones `spidx bench`'s context loads."""
    import numpy as np
    from spidx.bench.compression import Context
    from spidx.bench.prefill import main, prefill
    from spidx.errors import InputError

    cfg = _tiny_config(small_interactions_file, tmp_path)
    lines = prefill(cfg, ["celsa", "dense", "compresae"])
    assert any(line.startswith("Compressed ELSA") and "trained in" in line for line in lines)
    assert any(line.startswith(f"dense ELSA r={cfg.ref_dims[0]}") and "trained in" in line for line in lines)
    ctx = Context(cfg)
    models, _, cached, p = ctx.celsa()
    assert cached and sorted(models) == sorted(p["targets"])
    for k, m in models.items():
        assert np.all(np.diff(m.indptr) == k)
    assert ctx.dense(cfg.ref_dims[0])[2]
    pdim = cfg.posthoc_dim or cfg.sparse_dim
    for b in cfg.budgets:
        codes, _, cached, _ = ctx.compresae(pdim, b // 8)
        assert cached and np.all(np.diff(codes.indptr) == b // 8)
    assert "cached" in prefill(cfg, ["celsa"])[0]
    with pytest.raises(InputError, match="unknown model"):
        prefill(cfg, ["seismic"])
    assert main(["--preset", "tiny", "--data", str(small_interactions_file), "--models", "nope"]) == 2


@pytest.mark.slow
@needs_ml100k
def test_interrupted_run_resumes_from_the_row_cache(bench_run, tmp_path):
    """A second run with the same cache takes every evaluated row (figures, per-user nDCG, timings) from the row
    cache; rows whose cache files are gone (an interrupted run) are evaluated again, to the same figures."""
    from click.testing import CliRunner

    from spidx.cli.main import main

    out, _, args, cache = bench_run
    first = json.loads((out / "results.json").read_text())

    def rerun(name):
        again = list(args)
        again[again.index("--out") + 1] = str(tmp_path / name)
        res = CliRunner().invoke(main, again, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return json.loads((tmp_path / name / "results.json").read_text())

    def figures(row):
        return {k: v for k, v in row.items() if k not in ("row_cached", "cached")}

    second = rerun("second")
    assert second["meta"]["rows_from_cache"] == len(second["rows"]) == len(first["rows"])
    assert [figures(r) for r in second["rows"]] == [figures(r) for r in first["rows"]]
    assert second["per_user_ndcg"] == first["per_user_ndcg"]
    assert "come from the row cache" in (tmp_path / "second" / "report.md").read_text()

    row_files = sorted((cache / "rows").glob("row-*.json"))
    dropped = {}
    for path in row_files:
        identity = json.loads(path.read_text())["identity"]
        # an untimed FAISS configuration of the grid and a Compressed ELSA row
        if identity["group"] in ("faiss", "celsa") and identity["group"] not in dropped \
                and not (identity["group"] == "faiss" and identity["timed"]):
            dropped[identity["group"]] = identity
            path.unlink()
    assert set(dropped) == {"faiss", "celsa"}
    third = rerun("third")
    fresh = [r for r in third["rows"] if not r["row_cached"]]
    assert {r["group"] for r in fresh} == {"faiss", "celsa"} and len(fresh) == 2
    for a, b in zip(third["rows"], first["rows"]):
        assert (a["method"], a["config"]) == (b["method"], b["config"])
        assert a["ndcg@100"] == pytest.approx(b["ndcg@100"], abs=1e-9)
        assert a["val_ndcg@100"] == pytest.approx(b["val_ndcg@100"], abs=1e-9)
    assert third["per_user_ndcg"] == first["per_user_ndcg"]


def test_row_cache_round_trip_and_unkeepable_rows(small_interactions_file, tmp_path):
    """A kept row comes back equal (NaN and numpy scalars included); a row that cannot be serialised is logged and
    not kept, and the run would go on."""
    import math

    import numpy as np
    from spidx.bench.compression import Context

    logged = []
    ctx = Context(_tiny_config(small_interactions_file, tmp_path), log=logged.append)
    identity = {"method": "m", "config": "c", "params": {"k": 8}, "timed": False}
    row = {"method": "m", "ndcg@100": np.float64(0.25), "qps_batch": None, "overlap@100": float("nan"),
           "params": {"k": np.int64(8), "targets": [8, 16]}}
    assert ctx.load_row(identity) is None
    ctx.save_row(identity, row, np.array([0.5, 0.0]))
    back, users = ctx.load_row(identity)
    assert back["ndcg@100"] == 0.25 and back["qps_batch"] is None and math.isnan(back["overlap@100"])
    assert back["params"] == {"k": 8, "targets": [8, 16]} and users.tolist() == [0.5, 0.0]
    assert ctx.load_row(dict(identity, timed=True)) is None  # another identity, another row
    other = dict(identity, config="d")
    ctx.save_row(other, dict(row, extra=object()), [0.1])
    assert ctx.load_row(other) is None and any("not kept" in m for m in logged)
