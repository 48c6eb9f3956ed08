"""`import spidx`: the public surface, and serving never imports torch, faiss, matplotlib or implicit."""
import subprocess
import sys

import numpy as np
import scipy.sparse as sp

import spidx

HEAVY = ("torch", "faiss", "matplotlib", "implicit")


def run_python(code: str, cwd) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_import_and_serving_never_import_heavy_packages(tmp_path):
    code = f"""
import sys, numpy as np, scipy.sparse as sp
import spidx
A = sp.random(30, 16, density=0.25, format="csr", random_state=0, dtype=np.float32)
index = spidx.SparseIndex.from_embeddings(A)
spidx.write_index(index, "x.spidx")
D, I = spidx.read_index("x.spidx").search(np.ones((2, 16), np.float32), 3)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    assert run_python(code, tmp_path) == "[]"


def test_query_and_info_commands_never_import_heavy_packages(tmp_path):
    code = f"""
import sys, numpy as np, scipy.sparse as sp
import spidx
from click.testing import CliRunner
from spidx.cli.main import main
A = sp.random(30, 16, density=0.25, format="csr", random_state=0, dtype=np.float32)
spidx.write_index(spidx.SparseIndex.from_embeddings(A), "x.spidx")
for args in (["info", "x.spidx"], ["query", "x.spidx", "--items", "1,2"]):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    assert run_python(code, tmp_path) == "[]"


def test_model_classes_load_lazily():
    assert set(dir(spidx)) >= {"ELSA", "CompressedELSA", "EASE", "SparseIndex", "read_index", "write_index"}
    from spidx.trainer.models import CompressedELSA

    assert spidx.CompressedELSA is CompressedELSA


def test_write_and_read_index_faiss_argument_order(tmp_path):
    A = sp.random(20, 8, density=0.3, format="csr", random_state=1, dtype=np.float32)
    index = spidx.SparseIndex.from_embeddings(A)
    spidx.write_index(index, tmp_path / "i.spidx")
    for mmap in (True, False):
        back = spidx.read_index(tmp_path / "i.spidx", mmap=mmap)
        np.testing.assert_array_equal(back.to_csr().toarray(), index.to_csr().toarray())
