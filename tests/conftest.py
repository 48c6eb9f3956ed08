from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def data_file(*parts) -> Path:
    """A real data set beside the checkout (../shared/data); tests about real data skip without it."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data missing: {path} (real-data tests read ../shared/data beside the checkout)")
    return path


def synthetic_interactions(n_users: int = 120, n_items: int = 40, n_groups: int = 4, seed: int = 0) -> sp.csr_matrix:
    """Binary users x items with block structure: each user mostly consumes one group's items.

    Every user has >= 5 items and every item >= 1 user, so splits and models have signal to find.
    """
    rng = np.random.default_rng(seed)
    group_of_item = np.arange(n_items) % n_groups
    rows, cols = [], []
    for u in range(n_users):
        g = u % n_groups
        own = np.flatnonzero(group_of_item == g)
        picks = set(rng.choice(own, size=min(len(own), rng.integers(4, 8)), replace=False).tolist())
        picks |= set(rng.choice(n_items, size=rng.integers(1, 3), replace=False).tolist())
        rows += [u] * len(picks)
        cols += sorted(picks)
    for i in range(n_items):  # no item without a user
        rows.append(i % n_users)
        cols.append(i)
    X = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


@pytest.fixture(scope="session")
def small_interactions() -> sp.csr_matrix:
    """A small synthetic users x items CSR (120 x 40) for unit tests that need no real data."""
    return synthetic_interactions()


@pytest.fixture(scope="session")
def small_data(small_interactions):
    """`small_interactions` as an `Interactions` with string item ids."""
    from spidx.interactions import Interactions

    n_users, n_items = small_interactions.shape
    return Interactions(small_interactions, np.arange(n_users), np.array([f"i{j}" for j in range(n_items)]),
                        source="synthetic")


@pytest.fixture(scope="session")
def small_interactions_file(tmp_path_factory) -> Path:
    """A synthetic interactions file (.npz with `user`, `item`, as in ../shared/data): 400 users x 60 items."""
    X = synthetic_interactions(n_users=400, n_items=60, n_groups=5, seed=3)
    users, items = X.nonzero()
    path = tmp_path_factory.mktemp("data") / "synthetic.npz"
    np.savez(path, user=users.astype(np.int32), item=items.astype(np.int32))
    return path


@pytest.fixture(scope="session")
def ml100k_path() -> Path:
    return data_file("ml-100k", "ml-100k.npz")


@pytest.fixture(scope="session")
def ml100k(ml100k_path):
    from spidx.interactions import read_interactions

    return read_interactions(ml100k_path)
