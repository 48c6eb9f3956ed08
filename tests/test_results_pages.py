"""Results pages that are generated from committed JSON match what their script produces now."""
import json
from pathlib import Path

from spidx.bench.trainer_report import markdown

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def test_ml1m_trainer_page_is_generated_from_its_json():
    page = markdown(json.loads((RESULTS / "ml1m-trainer.json").read_text(encoding="utf-8")))
    assert (RESULTS / "ml1m-trainer.md").read_text(encoding="utf-8") == page
    # derived figures are computed: dense ELSA is the 100 % row, the recommended k=128 row is above it
    assert "| 0.4106 | 0.4769 | 0.4686 | 100.0% |" in page and "| 0.4704 | 100.4% |" in page


def test_validated_defaults_page_is_generated_from_its_json():
    from spidx.bench.validated_defaults import markdown as validated_page

    figures = json.loads((RESULTS / "validated-defaults.json").read_text(encoding="utf-8"))
    page = validated_page(figures)
    assert (RESULTS / "validated-defaults.md").read_text(encoding="utf-8") == page
    # the ratio column is computed from the two nDCG figures of each row
    ml1m = figures["datasets"]["ml-1m"]
    tuned, default = ml1m["tuned"]["k"]["128"]["test"]["ndcg@100"], ml1m["default"]["k"]["128"]["test"]["ndcg@100"]
    assert f"| 128 | 1024 | {tuned:.4f} | {default:.4f} | {default / tuned:.1%} |" in page


def test_validated_defaults_merges_data_sets_run_elsewhere():
    """Figures collected on another machine (e.g. full-scale Gowalla on a GPU) join the committed ones."""
    from spidx.bench.validated_defaults import commands, markdown as validated_page, merge_figures

    figures = json.loads((RESULTS / "validated-defaults.json").read_text(encoding="utf-8"))
    new = {"commands": {"gowalla-full": ["spidx train x"]},
           "datasets": {"gowalla-full": figures["datasets"]["gowalla"] | {"options": []}}}
    merged = merge_figures(figures, new)
    assert set(merged["datasets"]) == set(figures["datasets"]) | {"gowalla-full"}
    assert merged["commands"]["ml-1m"] == figures["commands"]["ml-1m"]
    assert merged["datasets"]["ml-1m"] == figures["datasets"]["ml-1m"] and "gowalla-full" not in figures["datasets"]
    assert "## gowalla-full" in validated_page(merged)
    train = [argv for _, argv in commands("gowalla-full", "runs", device="auto") if argv[0] == "train"]
    assert len(train) == 2 and all(argv[argv.index("--device") + 1] == "auto" for argv in train)
    assert all("--dim" not in argv for argv in train)  # the defaults at full scale


def test_validated_defaults_bad_inputs_get_one_line_errors(tmp_path, capsys):
    """A missing --into file, an unknown data set and a corrupt figures JSON: exit 2 and one line, no traceback."""
    from spidx.bench.validated_defaults import main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    cases = [["collect", "--runs", str(tmp_path), "--datasets", "nope"],
             ["page", str(tmp_path / "missing.json")],
             ["page", str(bad)]]
    for argv in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
