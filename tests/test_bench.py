"""End-to-end `spidx bench` on MovieLens-100K with tiny settings: report structure, finite in-range numbers."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "ml-100k.npz"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not ML100K.exists(), reason="MovieLens-100K not available (see ../shared/data)")]


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


def test_outputs_exist(bench_run):
    out, stdout, _, _ = bench_run
    for name in ("results.json", "results.csv", "report.md", "ndcg_vs_bytes.png"):
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    assert (out / "ndcg_vs_bytes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| method | budget B |" in stdout and "## Claims" in stdout


def test_rows_structure_and_ranges(bench_run):
    out, _, _, _ = bench_run
    res = json.loads((out / "results.json").read_text())
    rows = res["rows"]
    groups = {r["group"] for r in rows}
    assert {"dense", "lowdim", "faiss", "posthoc", "compresae", "ease", "celsa"} <= groups
    budgets = set(res["meta"]["config"]["budgets"])
    for g in ("lowdim", "posthoc", "compresae", "ease"):
        assert {r["budget"] for r in rows if r["group"] == g and r["budget"] is not None} == budgets, g
    for r in rows:
        for m in ("recall@20", "recall@50", "ndcg@100"):
            assert 0.0 <= r[m] <= 1.0 and math.isfinite(r[m]), (r["config"], m)
        assert r["ndcg@100"] > 0.05, r["config"]  # every method beats a broken ranking on ML-100K
        for f in ("paper_bytes_per_item", "stored_bytes_per_item", "total_serving_bytes", "qps_batch", "qps_single",
                  "p50_ms", "p99_ms", "speedup_batch_vs_ref", "speedup_single_vs_ref", "build_seconds"):
            assert r[f] is not None and math.isfinite(r[f]) and r[f] >= 0, (r["config"], f)
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


def test_csv_matches_json(bench_run):
    out, _, _, _ = bench_run
    rows = json.loads((out / "results.json").read_text())["rows"]
    with open(out / "results.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == len(rows)
    for c, r in zip(csv_rows, rows):
        assert abs(float(c["ndcg@100"]) - r["ndcg@100"]) < 1e-9
        json.loads(c["params"])


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


def test_bad_method_is_an_input_error(tmp_path):
    from click.testing import CliRunner

    from spidx.cli.main import main

    res = CliRunner().invoke(main, ["bench", "--preset", "tiny", "--data", str(ML100K), "--methods", "nope",
                                    "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown method group" in res.output
