"""Acceptance: a non-editable install into a fresh virtual environment works from any directory."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

USE = textwrap.dedent("""
    import os, sys
    import numpy as np, scipy.sparse as sp
    import spidx
    assert "site-packages" in spidx.__file__, spidx.__file__

    rng = np.random.default_rng(0)
    n_users, n_items = 150, 40
    rows = np.repeat(np.arange(n_users), 6)
    cols = (rows % 4) * 10 + rng.integers(0, 10, rows.size)
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    X.data[:] = 1.0

    model = spidx.CompressedELSA(dim=32, nnz=4, epochs=1, batch_size=64).fit(X, show_progress=False)
    ids, scores = model.recommend(np.arange(3), X[:3], N=5)
    assert ids.shape == (3, 5) and np.all(np.diff(scores, axis=1) <= 0)
    assert not set(ids[0]) & set(X[0].indices)
    sim, _ = model.similar_items(7, N=3)
    assert sim[0] == 7

    index = model.to_index(values="f32")
    D, I = index.search(index.query_vectors(X[:3]), 5, exclude=X[:3])
    np.testing.assert_array_equal(I, ids)  # the model ranks through its index
    np.testing.assert_allclose(D, scores)
    spidx.write_index(index, "items.spidx")
    back = spidx.read_index("items.spidx")
    D2, I2 = back.search(back.query_vectors(X[:3]), 5, exclude=X[:3])
    np.testing.assert_array_equal(I2, I)
    model.save("model.npz")
    np.testing.assert_array_equal(spidx.CompressedELSA.load("model.npz").embeddings.toarray(),
                                  model.embeddings.toarray())

    n0 = index.ntotal
    new = model.embeddings[:2]
    index.add(new, ids=np.array([10**6, 10**6 + 1]))
    assert index.ntotal == n0 + 2
    np.testing.assert_allclose(np.asarray(index.reconstruct(n0)).ravel(), new[0].toarray().ravel(), atol=1e-3)
    assert index.remove_ids(np.array([n0, n0 + 1])) == 2
    assert index.ntotal == n0
    D3, I3 = index.search(index.query_vectors(X[:3]), 5, exclude=X[:3])
    np.testing.assert_array_equal(I3, I)
    print("OK")
""")


@pytest.mark.slow
def test_non_editable_install_in_a_fresh_venv(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build", "__pycache__", ".cache",
                                                             "runs", ".pytest_cache", "data"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(src)],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    assert (site / "spidx" / "__init__.py").exists()
    assert not any((site / name).exists() for name in ("cli", "bench", "trainer", "sparse_index"))
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run([str(py), "-c", USE], capture_output=True, text=True, timeout=600, cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    used = r.stdout
    assert used.strip().endswith("OK")
    r = subprocess.run([str(venv / "bin" / "spidx"), "info", "items.spidx"], capture_output=True, text=True,
                       cwd=work, timeout=300)
    assert r.returncode == 0 and "items x d=32" in r.stdout, r.stdout + r.stderr
