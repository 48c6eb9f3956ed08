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
