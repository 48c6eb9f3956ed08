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


# ---- the default validation hold-out (issue 12) ----------------------------------------------------------------

def _train(data_file, out, *extra):
    r = CliRunner().invoke(main, ["train", str(data_file), "--out", str(out), "--quiet", "--test-users", "100",
                                  "--device", "cpu", *extra])
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def validated(tmp_path_factory, small_interactions_file):
    """Compressed ELSA trained with the default hold-out; final phases of at most 5 epochs, patience 1."""
    out = tmp_path_factory.mktemp("val") / "ce-k{k}.npz"
    r = _train(small_interactions_file, out, "--dim", "64", "--nnz", "16,8", "--epochs", "1", "--final-epochs", "5",
               "--patience", "1", "--lr", "0.3", "--no-refit")
    return out, r.output


def _validation_ndcg(matrix, data_file, meta):
    """nDCG@100 of `matrix` on the validation users of the model's recorded split, recomputed from scratch."""
    from spidx.evaluation import evaluate_scorer, make_split
    from spidx.trainer.elsa import elsa_scores

    cfg = meta["config"]
    split = make_split(read_interactions(data_file).matrix, cfg["test_users"], cfg["val_users"], cfg["seed"])
    return evaluate_scorer(lambda h: elsa_scores(matrix, h), split.validation)["ndcg@100"]


def test_train_holds_out_validation_users_by_default(validated, small_interactions_file):
    from spidx.evaluation import split_users
    from spidx.trainer.config import default_val_users

    out, output = validated
    data = read_interactions(small_interactions_file)
    expected = default_val_users(data.n_users, 100)
    assert expected == 60  # 400 users, 100 test: 5 % of 300 is under 100, a fifth of 300 is 60
    assert "100 test, 60 validation users (default rule" in output
    for k in (16, 8):
        meta = load_embeddings(str(out).replace("{k}", str(k))).meta
        assert meta["config"]["val_users"] == expected and meta["data"]["train_users"] == data.n_users - 100 - expected
    test, val, train = split_users(data.n_users, 100, expected, 42)
    assert not set(val) & set(test) and not (set(val) | set(test)) & set(train)
    # the test users are those of a run without validation users: `spidx evaluate` tests the same users
    assert np.array_equal(split_users(data.n_users, 100, 0, 42)[0], test)


def test_kept_model_is_the_best_validation_epoch_of_the_recorded_curve(validated, small_interactions_file):
    out, _ = validated
    stopped_early = False
    for k in (16, 8):
        emb = load_embeddings(str(out).replace("{k}", str(k)))
        curve = emb.meta["validation"]
        assert [c["epoch"] for c in curve] == list(range(1, len(curve) + 1)) and 1 <= len(curve) <= 5
        assert set(curve[0]) == {"epoch", "recall@20", "recall@50", "ndcg@100"}
        scores = [c["ndcg@100"] for c in curve]
        best = int(np.argmax(scores)) + 1
        assert emb.meta["best_epoch"] == best and emb.meta["selected"] == curve[best - 1]
        # patience 1: training went on while each epoch improved, and stopped one epoch after the best
        assert len(curve) == 5 or len(curve) == best + 1
        stopped_early |= len(curve) < 5
        final = [p for p in emb.meta["phases"] if p["phase"] == f"final k={k}"][0]
        assert final["epochs"] == len(curve) and final["max_epochs"] == 5 and final["best_epoch"] == best
        assert _validation_ndcg(emb.matrix, small_interactions_file, emb.meta) == pytest.approx(max(scores), abs=1e-6)
    assert stopped_early  # the fixture exercises the early stop


def test_dense_elsa_keeps_its_best_validation_epoch_by_default(tmp_path, small_interactions_file):
    out = tmp_path / "elsa.npz"
    _train(small_interactions_file, out, "--model", "elsa", "--dim", "32", "--epochs", "6", "--lr", "0.3", "--no-refit")
    emb = load_embeddings(out)
    curve = emb.meta["validation"]
    assert emb.meta["config"]["val_users"] == 60 and emb.meta["epochs_trained"] == len(curve) <= 6
    best = int(np.argmax([c["ndcg@100"] for c in curve])) + 1
    assert emb.meta["best_epoch"] == best and (len(curve) == 6 or len(curve) == best + 3)
    assert _validation_ndcg(emb.matrix, small_interactions_file, emb.meta) == pytest.approx(curve[best - 1]["ndcg@100"],
                                                                                           abs=1e-6)


def test_small_data_sets_are_refit_on_every_non_test_user_with_the_chosen_epochs(tmp_path, small_interactions_file):
    """60 validation users are 20 % of the 300 non-test users: by default the validated choice is retrained on all
    300, exactly as the library trains with those per-k final epochs; the validation curves stay in the metadata."""
    from spidx.evaluation import make_split
    from spidx.trainer.models import CompressedELSA

    out = tmp_path / "ce-k{k}.npz"
    r = _train(small_interactions_file, out, "--dim", "64", "--nnz", "16,8", "--epochs", "1", "--final-epochs", "5",
               "--patience", "1", "--lr", "0.3")
    assert "then refit on every non-test user" in r.output
    metas = {k: load_embeddings(str(out).replace("{k}", str(k))).meta for k in (16, 8)}
    best = {k: int(np.argmax([c["ndcg@100"] for c in m["validation"]])) + 1 for k, m in metas.items()}
    split = make_split(read_interactions(small_interactions_file).matrix, 100, 0, 42)
    model = CompressedELSA(dim=64, nnz=[16, 8], epochs=1, final_epochs={16: best[16], 8: best[8]}, lr=0.3)
    model.fit(split.train, show_progress=False, device="cpu")
    for k, meta in metas.items():
        assert meta["best_epoch"] == best[k] and meta["config"]["final_epochs"] == best[k]
        assert meta["config"]["val_users"] == 60 and meta["config"]["refit"] is True
        assert meta["refit"]["validation_train_users"] == 240 and meta["refit"]["train_users"] == 300
        assert meta["data"]["train_users"] == 300
        assert [p["epochs"] for p in meta["phases"] if p["phase"] == f"final k={k}"] == [best[k]]
        emb = load_embeddings(str(out).replace("{k}", str(k)))
        assert abs(emb.matrix - model.at(k).embeddings).max() == 0


def test_dense_elsa_refit_trains_the_best_epoch_count_on_every_non_test_user(tmp_path, small_interactions_file):
    out = tmp_path / "elsa.npz"
    _train(small_interactions_file, out, "--model", "elsa", "--dim", "32", "--epochs", "6", "--lr", "0.3")
    meta = load_embeddings(out).meta
    best = int(np.argmax([c["ndcg@100"] for c in meta["validation"]])) + 1
    assert meta["best_epoch"] == best and meta["refit"]["chosen"] == {"epochs": best}
    assert meta["config"]["epochs"] == best and meta["epochs_trained"] == best and meta["data"]["train_users"] == 300


def test_val_users_0_trains_as_without_validation(tmp_path, small_interactions_file):
    """--val-users 0: every epoch is trained and the last one kept, exactly as the library without validation."""
    from spidx.evaluation import make_split
    from spidx.trainer.models import CompressedELSA

    out = tmp_path / "ce.npz"
    _train(small_interactions_file, out, "--dim", "64", "--nnz", "8", "--epochs", "1", "--final-epochs", "3",
           "--val-users", "0")
    emb = load_embeddings(out)
    assert emb.meta["config"]["val_users"] == 0 and emb.meta["validation"] == [] and emb.meta["selected"] == {}
    assert [p["epochs"] for p in emb.meta["phases"] if p["phase"].startswith("final")] == [3]
    split = make_split(read_interactions(small_interactions_file).matrix, 100, 0, 42)
    model = CompressedELSA(dim=64, nnz=8, epochs=1, final_epochs=3).fit(split.train, show_progress=False,
                                                                         device="cpu")
    assert emb.meta["data"]["train_users"] == split.train.shape[0]
    assert abs(emb.matrix - model.embeddings).max() == 0


def test_single_lambda_ease_holds_out_no_validation_users_by_default(tmp_path, small_interactions_file):
    out = tmp_path / "ease.npz"
    _train(small_interactions_file, out, "--model", "ease")
    assert load_embeddings(out).meta["config"]["val_users"] == 0


@pytest.mark.slow
def test_default_validation_on_movielens_100k(tmp_path, ml100k_path):
    """ML-100K (943 users, 200 test): 100 validation users by default; each k keeps its best validation epoch."""
    out = tmp_path / "ce-k{k}.npz"
    r = CliRunner().invoke(main, ["train", str(ml100k_path), "--out", str(out), "--quiet", "--device", "cpu",
                                  "--test-users", "200", "--dim", "256", "--nnz", "32,8", "--epochs", "1",
                                  "--final-epochs", "4", "--patience", "1", "--no-refit"])
    assert r.exit_code == 0, r.output
    for k in (32, 8):
        emb = load_embeddings(str(out).replace("{k}", str(k)))
        assert emb.meta["config"]["val_users"] == 100
        curve = [c["ndcg@100"] for c in emb.meta["validation"]]
        assert emb.meta["best_epoch"] == int(np.argmax(curve)) + 1
        assert _validation_ndcg(emb.matrix, ml100k_path, emb.meta) == pytest.approx(max(curve), abs=1e-6)
        ev = CliRunner().invoke(main, ["evaluate", str(out).replace("{k}", str(k)), str(ml100k_path), "--json", "-"])
        assert ev.exit_code == 0 and 0.1 < json.loads(ev.output[ev.output.index("{"):])["metrics"]["ndcg@100"] < 1
