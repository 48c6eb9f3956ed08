"""`spidx train` / `spidx evaluate` end to end on a synthetic interactions file, and their errors."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from spidx.cli.main import main
from spidx.embeddings import load_embeddings
from spidx.interactions import read_interactions


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_interactions_file):
    out = tmp_path_factory.mktemp("train") / "ce-k{k}.npz"
    r = CliRunner().invoke(main, ["train", str(small_interactions_file), "--out", str(out), "--dim", "128", "--nnz", "16,8",
                                  "--epochs", "2", "--test-users", "100", "--quiet"])
    assert r.exit_code == 0, r.output
    return out


def test_train_writes_one_file_per_k_with_metadata(trained, small_interactions_file):
    data = read_interactions(small_interactions_file)
    for k in (16, 8):
        emb = load_embeddings(str(trained).replace("{k}", str(k)))
        assert emb.shape == (data.n_items, 128) and np.all(np.diff(emb.matrix.indptr) == k)
        assert emb.meta["model"] == "compressed-elsa" and emb.meta["k"] == k
        assert emb.meta["config"]["test_users"] == 100 and emb.meta["config"]["seed"] == 42
        assert emb.meta["data"]["fingerprint"] == data.fingerprint()
        assert [p["nnz"] for p in emb.meta["phases"] if p["phase"].startswith("final")] == [16, 8]


def test_evaluate_prints_table_and_json(trained, small_interactions_file, tmp_path):
    out = tmp_path / "m.json"
    r = CliRunner().invoke(main, ["evaluate", str(trained).replace("{k}", "16"), str(small_interactions_file), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "| compressed-elsa d=128 k=16 |" in r.output
    metrics = json.loads(out.read_text())["metrics"]
    assert 0.2 < metrics["ndcg@100"] < 1 and 0 < metrics["recall@20"] <= metrics["recall@50"] <= 1


def test_ease_with_lambda_chosen_on_validation(tmp_path, small_interactions_file):
    out = tmp_path / "ease.npz"
    r = CliRunner().invoke(main, ["train", str(small_interactions_file), "--out", str(out), "--model", "ease", "--lam",
                                  "50,400", "--val-users", "100", "--test-users", "100", "--nnz", "32"])
    assert r.exit_code == 0, r.output
    emb = load_embeddings(out)
    assert emb.meta["lam"] in (50.0, 400.0) and len(emb.meta["validation"]) == 2
    per_row = np.diff(emb.matrix.indptr)  # rows keep their 32 largest |B_ij|; exact zeros are not stored
    assert per_row.max() == 32 and np.mean(per_row == 32) > 0.95
    best = max(emb.meta["validation"], key=lambda v: v["ndcg@100"])
    assert best["lambda"] == emb.meta["lam"]


@pytest.mark.parametrize("args, message", [
    (["train", "missing.csv", "--out", "x.npz"], "missing.csv: file not found"),
    (["train", "{data}", "--out", "x.npz", "--nnz", "0"], "nnz must be positive"),
    (["train", "{data}", "--out", "x.npz", "--nnz", "16,8"], "put {k} in --out"),
    (["train", "{data}", "--out", "x.npz", "--model", "elsa", "--dim", "-3"], "dim must be positive"),
    (["evaluate", "{data}", "{data}"], "not a spidx embeddings file"),
])
def test_bad_input_exits_nonzero_with_one_line(args, message, small_interactions_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{data}", str(small_interactions_file)) for a in args]
    r = CliRunner().invoke(main, args)
    assert r.exit_code != 0
    assert message in r.output
    assert "Traceback" not in r.output


def test_evaluate_refuses_a_model_trained_on_every_user(tmp_path, small_interactions_file):
    out = tmp_path / "all.npz"
    assert CliRunner().invoke(main, ["train", str(small_interactions_file), "--out", str(out), "--model", "ease"]).exit_code == 0
    r = CliRunner().invoke(main, ["evaluate", str(out), str(small_interactions_file)])
    assert r.exit_code == 2 and "trained on every user" in r.output


@pytest.mark.parametrize("extra, message", [
    (["--test-users", "110"], "--test-users 110 differs from the model's recorded split (test_users=100)"),
    (["--test-users", "50"], "--test-users 50 differs from the model's recorded split (test_users=100)"),
    (["--seed", "7"], "--seed 7 differs from the model's recorded split (seed=42)"),
])
def test_evaluate_refuses_another_split(trained, small_interactions_file, extra, message):
    r = CliRunner().invoke(main, ["evaluate", str(trained).replace("{k}", "16"), str(small_interactions_file)] + extra)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_evaluate_accepts_the_recorded_split_given_explicitly(trained, small_interactions_file):
    emb = str(trained).replace("{k}", "16")
    plain = CliRunner().invoke(main, ["evaluate", emb, str(small_interactions_file)])
    explicit = CliRunner().invoke(main, ["evaluate", emb, str(small_interactions_file), "--test-users", "100",
                                         "--seed", "42"])
    assert plain.exit_code == 0 and explicit.exit_code == 0, explicit.output
    assert plain.output == explicit.output


def test_served_index_accuracy_equals_the_model_and_f16_is_close(trained, small_interactions_file, tmp_path):
    emb = str(trained).replace("{k}", "16")
    results = {}
    for values in (None, "f32", "f16"):
        out = tmp_path / f"{values}.json"
        args = ["evaluate", emb, str(small_interactions_file), "--json", str(out)] + (["--values", values] if values else [])
        assert CliRunner().invoke(main, args).exit_code == 0
        results[values] = json.loads(out.read_text())["metrics"]
    assert results["f32"] == pytest.approx(results[None], abs=1e-9)  # the index is exact
    assert abs(results["f16"]["ndcg@100"] - results[None]["ndcg@100"]) < 0.002


def test_evaluate_json_dash_prints_to_stdout(trained, small_interactions_file):
    r = CliRunner().invoke(main, ["evaluate", str(trained).replace("{k}", "16"), str(small_interactions_file), "--json", "-"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output[r.output.index("{"):])
    assert report["model"] == "compressed-elsa d=128 k=16" and 0 < report["metrics"]["ndcg@100"] < 1
