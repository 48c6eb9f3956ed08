from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_file(*parts) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"test data missing: {path} (tests read ../shared/data beside the checkout)")
    return path


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    return data_file("ml-100k", "ml-100k.npz")


@pytest.fixture(scope="session")
def ml100k(ml100k_path):
    from spidx.interactions import read_interactions

    return read_interactions(ml100k_path)
