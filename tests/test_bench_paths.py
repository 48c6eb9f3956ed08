"""The benchmark takes its data, cache and output paths from arguments or the working directory."""
import pytest

from spidx.bench.compression import preset_config
from spidx.errors import InputError


def test_default_data_is_resolved_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="data/gowalla.npz not found"):
        preset_config("default")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gowalla.npz").write_bytes(b"")
    cfg = preset_config("default")
    assert cfg.data == "data/gowalla.npz" and cfg.out == "runs/bench/gowalla-default"
    assert cfg.cache_dir == ".cache/bench"


def test_training_parameters_are_one_train_config(tmp_path):
    cfg = preset_config("tiny", str(tmp_path / "x.npz"))
    dense, celsa = cfg.dense_config(64), cfg.celsa_config()
    assert (dense.model, dense.dim, dense.epochs, dense.batch_size) == ("elsa", 64, cfg.dense_epochs, cfg.dense_batch)
    assert celsa.model == "compressed-elsa" and celsa.dim == cfg.sparse_dim
    assert sorted(celsa.targets) == sorted(b // 8 for b in cfg.budgets) and celsa.epochs == cfg.celsa_epochs
