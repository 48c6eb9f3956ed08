"""`bench.compression.import_compressed`: models trained elsewhere enter the benchmark only on its split."""
import copy

import pytest
from click.testing import CliRunner

from spidx.bench.compression import import_compressed, preset_config
from spidx.cli.main import main
from spidx.embeddings import load_embeddings, save_embeddings
from spidx.errors import InputError


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_interactions_file):
    tmp = tmp_path_factory.mktemp("import")
    out = tmp / "ce-k{k}.npz"
    r = CliRunner().invoke(main, ["train", str(small_interactions_file), "--out", str(out), "--dim", "64",
                                  "--nnz", "16,8", "--epochs", "1", "--test-users", "100", "--val-users", "50", "--seed", "42", "--quiet",
                                  "--no-refit"])
    assert r.exit_code == 0, r.output
    cfg = preset_config("tiny", str(small_interactions_file), n_test=100, n_val=50, seed=42, sparse_dim=64, budgets=[128, 64],
                        cache_dir=str(tmp / "cache"), progress=False)
    files = {k: str(out).replace("{k}", str(k)) for k in (16, 8)}
    return cfg, files, tmp


def test_matching_split_is_imported(setup):
    cfg, files, _ = setup
    written = import_compressed(cfg, files)
    assert len(written) == 2
    for path, k in zip(written, sorted(files)):
        assert load_embeddings(path).meta["k"] == k


def _with_meta(files, tmp, change):
    """A copy of the k=16 file whose metadata `change` edits."""
    emb = load_embeddings(files[16])
    meta = copy.deepcopy(emb.meta)
    change(meta)
    path = tmp / f"edited-{len(list(tmp.iterdir()))}.npz"
    save_embeddings(path, emb.matrix, emb.item_ids, meta)
    return {16: str(path), 8: files[8]}


@pytest.mark.parametrize("change, message", [
    (lambda m: m["config"].update(test_users=80), "trained with test_users=80, the benchmark holds out test_users=100"),
    (lambda m: m["config"].update(seed=7), "trained with seed=7, the benchmark holds out seed=42"),
    (lambda m: m["config"].update(val_users=20), "trained with val_users=20, the benchmark holds out val_users=50"),
    (lambda m: m["data"].update(fingerprint="0" * 16), "trained on data with fingerprint 0000000000000000"),
    (lambda m: m.pop("config"), "records no test_users"),
    (lambda m: m.update(refit={"validation_train_users": 1}), "retrained on its validation users"),
])
def test_other_split_is_refused(setup, change, message):
    cfg, files, tmp = setup
    with pytest.raises(InputError, match=message) as err:
        import_compressed(cfg, _with_meta(files, tmp, change))
    assert "\n" not in str(err.value)
