"""`spidx build`, `spidx query`, `spidx info` end to end, including bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from spidx.cli.main import main
from spidx.embeddings import save_embeddings


@pytest.fixture(scope="module")
def cli():
    return main


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((60, 32)).astype(np.float32)
    save_embeddings(tmp_path / "emb.npz", dense, [f"m{i}" for i in range(60)], {"model": "test"})
    sparse = sp.random(60, 32, density=0.2, format="csr", random_state=1, dtype=np.float32)
    save_embeddings(tmp_path / "sparse.npz", sparse, [f"m{i}" for i in range(60)])
    (tmp_path / "hist.csv").write_text("user,item\nu1,m1\nu1,m2\nu2,m3\nu2,nope\nu3,zzz\n")
    return tmp_path


def run(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_build_info_query(cli, files):
    r = run(cli, "build", "--embeddings", files / "emb.npz", "--out", files / "i.spidx", "--nnz", 4, "--values", "f16")
    assert r.exit_code == 0, r.output
    assert "60 items" in r.output
    r = run(cli, "info", files / "i.spidx")
    assert r.exit_code == 0 and "row_values" in r.output and "blocks:" in r.output and "paper" in r.output
    assert json.loads(run(cli, "info", files / "i.spidx", "--json").output)["k"] == 4
    r = run(cli, "query", files / "i.spidx", "--items", "m1, m2", "-k", 5)
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[0].split() == ["rank", "item", "score"] and len(lines) == 6
    assert all(line.split()[1] not in ("m1", "m2") for line in lines[1:])
    exact = run(cli, "query", files / "i.spidx", "--items", "m1, m2", "-k", 5, "--approx", 1.0)
    assert exact.exit_code == 0 and exact.output == r.output
    r = run(cli, "query", files / "i.spidx", "--items", "m1, m2", "-k", 5, "--approx", 0.3)
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) >= 2
    r = run(cli, "build", "--embeddings", files / "sparse.npz", "--out", files / "s.spidx")
    assert r.exit_code == 0, r.output


def test_query_histories_jsonl(cli, files):
    run(cli, "build", "--embeddings", files / "emb.npz", "--out", files / "i.spidx", "--nnz", 4)
    out = files / "out.jsonl"
    r = run(cli, "query", files / "i.spidx", "--histories", files / "hist.csv", "-k", 3, "--output", out)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["user"] for row in rows] == ["u1", "u2", "u3"]
    assert len(rows[0]["items"]) == 3 and len(rows[0]["scores"]) == 3 and "m1" not in rows[0]["items"]
    assert rows[1]["unknown"] == ["nope"] and rows[2]["items"] == [] and rows[2]["unknown"] == ["zzz"]
    assert "not in the index" in r.output and "no known history item" in r.output


@pytest.mark.parametrize("args, message", [
    (["query", "{d}/missing.spidx", "--items", "m1"], "not found"),
    (["query", "{d}/corrupt.spidx", "--items", "m1"], "corrupt"),
    (["query", "{d}/i.spidx", "--items", " , "], "empty history"),
    (["query", "{d}/i.spidx", "--items", "x,y"], "none of the given item ids"),
    (["query", "{d}/i.spidx", "--items", "m1", "-k", "0"], "-k must be positive"),
    (["query", "{d}/i.spidx", "--items", "m1", "--approx", "1.5"], "approx must be a number in (0, 1]"),
    (["query", "{d}/i.spidx"], "exactly one of --items or --histories"),
    (["build", "--embeddings", "{d}/emb.npz", "--out", "{d}/j.spidx"], "--nnz"),
    (["build", "--embeddings", "{d}/hist.csv", "--out", "{d}/j.spidx", "--nnz", "2"], "hist.csv"),
])
def test_bad_input_is_one_line(cli, files, args, message):
    run(cli, "build", "--embeddings", files / "emb.npz", "--out", files / "i.spidx", "--nnz", 4)
    raw = bytearray((files / "i.spidx").read_bytes())
    raw[-3] ^= 1
    (files / "corrupt.spidx").write_bytes(bytes(raw))
    r = CliRunner().invoke(cli, [a.format(d=files) for a in args])
    assert r.exit_code == 2, r.output
    assert message in r.output and len(r.output.strip().splitlines()) == 1 and r.output.startswith("error:")
