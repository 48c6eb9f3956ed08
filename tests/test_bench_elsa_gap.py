"""`spidx.bench.elsa_gap page`: the study's table from its JSON, paired intervals computed by hand."""
import json

from spidx.bench.elsa_gap import page


def test_page_pairs_every_variant_with_the_preset_and_ease(tmp_path):
    def run(what, curve, best, test, val=None):
        return {"what": what, "params": {"max_epochs": 4}, "best_epoch": best, "curve": curve,
                "val_ndcg": val if val is not None else max(curve), "test_ndcg": sum(test) / len(test),
                "test_per_user": test, "seconds": 60.0}

    ease = run("", [], None, [0.7, 0.7, 0.9], val=0.6)
    ease.update(params={"lam": 200.0, "k": 1024}, validation_by_lambda={"200.0": 0.6})
    res = {"split": {"n_test": 3, "n_val": 2, "seed": 42},
           "data": {"file": "x.npz", "fingerprint": "f", "users": 10, "items": 5, "train_users": 5},
           "runs": {"preset d=256": run("preset", [0.1, 0.3, 0.2], 2, [0.5, 0.6, 0.7]),
                    "full output d=256": run("full", [0.2, 0.4], 2, [0.6, 0.8, 0.8]),
                    "EASE": ease}}
    path = tmp_path / "gap.json"
    path.write_text(json.dumps(res))
    text = page(str(path), str(tmp_path / "gap.md"))
    # full - preset per user: 0.1, 0.2, 0.1 -> mean 0.1333, 1.96 * sd / sqrt(3) = 0.0653
    assert "| full output d=256 | full | 2 / 2 (max 4) | 0.2000 **0.4000** | 0.4000 | 0.7333 | +0.1333 [+0.0680, +0.1987] |" in text
    # preset - EASE: -0.2, -0.1, -0.2 -> mean -0.1667, same spread
    assert "| preset d=256 | preset | 2 / 3 (max 4) | 0.1000 **0.3000** 0.2000 | 0.3000 | 0.6000 | – | -0.1667 [-0.2320, -0.1013] |" in text
    assert "| EASE | EASE λ = 200, each row's 1024 largest entries kept | – | λ=200: 0.6000 |" in text
    assert (tmp_path / "gap.md").read_text() == text
