"""Issue 9, case by case: outputs never destroy inputs or special files, modes and temp files are
handled, crafted files cannot crash `spidx query`, -k and npz sizes are bounded, diverging training
fails without writing, and the smaller input cases give one-line errors."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from spidx import atomic
from spidx.cli.main import main
from spidx.embeddings import save_embeddings
from spidx.errors import InputError, TrainingDiverged
from spidx.index import SparseIndex

N_ITEMS = 30


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    m = sp.random(N_ITEMS, 16, density=0.3, format="csr", random_state=1, dtype=np.float32)
    save_embeddings(tmp_path / "emb.npz", m, [f"m{i}" for i in range(N_ITEMS)], {"model": "test"})
    SparseIndex.from_file(tmp_path / "emb.npz").save(tmp_path / "i.spidx")
    users, items = rng.integers(0, 40, 500), rng.integers(0, N_ITEMS, 500)
    (tmp_path / "data.csv").write_text("user,item\n" + "".join(f"u{u},m{i}\n" for u, i in zip(users, items)))
    (tmp_path / "hist.csv").write_text("user,item\nu1,m1\nu1,m2\nu2,m3\n")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(r, message):
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
    assert message in r.output, r.output


def snapshot(path):
    st = os.lstat(path)
    return (st.st_mode, st.st_ino, open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None)


# ------------------------------------------------------------------------ 1. outputs that are inputs

TRAIN = ["--dim", "8", "--nnz", "2", "--epochs", "1", "--quiet"]


@pytest.mark.parametrize("args, victim", [
    (["query", "{d}/i.spidx", "--histories", "{d}/hist.csv", "--output", "{out}"], "i.spidx"),
    (["query", "{d}/i.spidx", "--histories", "{d}/hist.csv", "--output", "{out}"], "hist.csv"),
    (["build", "--embeddings", "{d}/emb.npz", "--out", "{out}"], "emb.npz"),
    (["train", "{d}/data.csv", "--out", "{out}", *TRAIN], "data.csv"),
    (["evaluate", "{d}/emb.npz", "{d}/data.csv", "--json", "{out}"], "emb.npz"),
    (["evaluate", "{d}/emb.npz", "{d}/data.csv", "--json", "{out}"], "data.csv"),
])
@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_output_that_is_an_input_is_refused(files, args, victim, alias):
    target = files / victim
    out = target
    if alias != "same":  # the output names the input through another path
        out = files / ("alias-" + victim)
        (os.symlink if alias == "symlink" else os.link)(target, out)
    before = snapshot(target)
    r = run(*[a.format(d=files, out=out) for a in args])
    assert_one_line_error(r, "same file as the input")
    assert snapshot(target) == before


# ------------------------------------------------------------------- 2. what exists at the output

def test_fifo_directory_symlink_and_device_outputs_are_refused(files):
    os.mkfifo(files / "fifo")
    (files / "dir").mkdir()
    (files / "real.jsonl").write_text("keep me\n")
    os.symlink(files / "real.jsonl", files / "link.jsonl")
    cases = {"fifo": "a FIFO", "dir": "is a directory", "link.jsonl": "symbolic link"}
    for name, message in cases.items():
        before = snapshot(files / name)
        r = run("query", files / "i.spidx", "--histories", files / "hist.csv", "--output", files / name)
        if name == "dir":  # click's own path check answers first (a usage error, exit 2)
            assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
        else:
            assert_one_line_error(r, message)
        assert snapshot(files / name) == before
    with pytest.raises(InputError, match="is a directory, not a regular file"):
        atomic.check_outputs([files / "dir"])
    assert (files / "real.jsonl").read_text() == "keep me\n"
    r = run("query", files / "i.spidx", "--histories", files / "hist.csv", "--output", "/dev/null")
    assert_one_line_error(r, "a character device")
    with pytest.raises(InputError, match="a FIFO"):
        with atomic.atomic_path(files / "fifo") as tmp:
            open(tmp, "w").close()


def test_dash_means_stdout(files):
    r = run("query", files / "i.spidx", "--histories", files / "hist.csv", "--output", "-", "-k", "2")
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert [row["user"] for row in rows] == ["u1", "u2"] and not os.path.exists("-")


def test_replaced_file_keeps_its_mode_and_new_files_follow_the_umask(files):
    out = files / "out.spidx"
    out.write_bytes(b"old")
    os.chmod(out, 0o644)
    r = run("build", "--embeddings", files / "emb.npz", "--out", out)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644 and SparseIndex.load(out).n_items == N_ITEMS
    os.chmod(out, 0o640)
    run("build", "--embeddings", files / "emb.npz", "--out", out)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    old = os.umask(0o027)
    try:
        r = run("build", "--embeddings", files / "emb.npz", "--out", files / "new.spidx")
    finally:
        os.umask(old)
    assert r.exit_code == 0 and stat.S_IMODE(os.stat(files / "new.spidx").st_mode) == 0o640


def test_stale_temp_files_of_dead_writers_are_removed(files):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = files / f".out.jsonl.{dead_pid}.abc123{atomic.TEMP_MARK}.jsonl"
    alive = files / f".out.jsonl.{os.getppid()}.xyz789{atomic.TEMP_MARK}.jsonl"
    other = files / f".other.jsonl.{dead_pid}.abc123{atomic.TEMP_MARK}"
    for p in (stale, alive, other):
        p.write_bytes(b"x" * 100)
    r = run("query", files / "i.spidx", "--histories", files / "hist.csv", "--output", files / "out.jsonl")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and alive.exists() and other.exists()
    leftovers = [n for n in os.listdir(files) if atomic.TEMP_MARK in n]
    assert sorted(leftovers) == sorted([alive.name, other.name])


def test_a_failed_write_leaves_no_temp_file(files):
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(files / "x.bin") as tmp:
            open(tmp, "wb").write(b"partial")
            raise RuntimeError("killed")
    assert not (files / "x.bin").exists() and not [n for n in os.listdir(files) if atomic.TEMP_MARK in n]


# ------------------------------------------------------- 3. crafted files cannot crash `spidx query`

def test_query_and_search_on_crafted_index_fail_cleanly_in_a_subprocess(files, tmp_path):
    import test_fuzz_inputs as fz

    arrays, header = fz.index_parts(fz.small_index())
    fz.write_raw_index(tmp_path / "k0.spidx", arrays, header, lambda h: {**h, "k": 0})
    arrays["order"][:] = 10**6
    fz.write_raw_index(tmp_path / "oob.spidx", arrays, header)
    arrays, header = fz.index_parts(fz.small_index())
    arrays["row_dims"][::7] = 4000
    fz.write_raw_index(tmp_path / "dims.spidx", arrays, header)
    script = ("import sys; from spidx.index import SparseIndex; from spidx.errors import InputError\n"
              "try:\n    SparseIndex.load(sys.argv[1]).search([[1.0] * 48], 5, engine='scan')\n"
              "except InputError as e:\n    print('InputError', e)\n")
    for name in ("k0.spidx", "oob.spidx", "dims.spidx"):
        p = subprocess.run([sys.executable, "-m", "spidx.cli.main", "query", str(tmp_path / name), "--items", "100"],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and p.stderr.startswith("error:") and "Traceback" not in p.stderr, p.stderr
        p = subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0 and p.stdout.startswith("InputError"), (p.returncode, p.stderr[-500:])


# ------------------------------------------------------------------------------ 4. bounded memory

def test_k_is_capped_at_the_number_of_items(files):
    index = SparseIndex.load(files / "i.spidx")
    scores, ids = index.search(np.ones((2, 16), np.float32), 10**9)
    assert ids.shape == (2, N_ITEMS) and sorted(ids[0]) == list(range(N_ITEMS))
    rec = index.recommend([["m1"]], k=10**9)
    assert rec.positions.shape == (1, N_ITEMS) and rec.positions[0, -1] == -1  # m1 itself is excluded
    r = run("query", files / "i.spidx", "--histories", files / "hist.csv", "-k", 10**9)
    assert r.exit_code == 0, r.output
    assert f"capped at the {N_ITEMS} items" in r.output
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert len(rows[0]["items"]) == N_ITEMS - 2


def test_csr_with_absurd_dimension_is_refused_before_allocation(tmp_path):
    np.savez(tmp_path / "e.npz", data=np.ones(2, np.float32), indices=np.array([0, 5], np.int32),
             indptr=np.array([0, 1, 2]), shape=np.array([2, 10**9]), item_ids=np.arange(2),
             meta=np.array("{}"))
    r = run("build", "--embeddings", tmp_path / "e.npz", "--out", tmp_path / "i.spidx")
    assert_one_line_error(r, "dimension d = 1000000000")


def test_out_of_memory_message_names_k(files, monkeypatch):
    def no_memory(*a, **kw):
        raise MemoryError()

    monkeypatch.setattr(SparseIndex, "recommend", no_memory)
    r = run("query", files / "i.spidx", "--histories", files / "hist.csv", "-k", 20)
    assert r.exit_code == 1 and "out of memory" in r.output and "lower -k" in r.output, r.output


# ----------------------------------------------------------------------------- 5. diverging training

@pytest.mark.parametrize("lr, message", [("inf", "positive finite"), ("1e20", "training diverged")])
@pytest.mark.parametrize("model", ["compressed-elsa", "elsa"])
def test_diverging_training_fails_and_keeps_the_existing_output(files, lr, message, model):
    out = files / "good.npz"
    out.write_bytes(b"a good model")
    r = run("train", files / "data.csv", "--out", out, "--model", model, "--lr", lr, *TRAIN)
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and r.output.strip().endswith(errors[0]), r.output
    assert out.read_bytes() == b"a good model"
    assert not [n for n in os.listdir(files) if atomic.TEMP_MARK in n]


def test_library_training_raises_training_diverged(files):
    from spidx.interactions import read_interactions
    from spidx.trainer.pipeline import TrainConfig, train_models

    data = read_interactions(files / "data.csv")
    with pytest.raises(TrainingDiverged, match="training diverged"):
        train_models(data, TrainConfig(dim=8, nnz=2, epochs=1, lr=1e20), progress=False)
    assert issubclass(TrainingDiverged, InputError)


# ---------------------------------------------------------------------------- 6. unwritable outputs

def test_unwritable_output_is_refused_before_any_work(files):
    (files / "afile").write_text("")
    r = run("train", files / "data.csv", "--out", files / "afile" / "m.npz", *TRAIN)
    assert_one_line_error(r, "is not a directory")
    assert "users x" not in r.output  # refused before the data were read
    r = run("bench", "--preset", "tiny", "--out", files / "afile" / "sub", "--quiet")
    assert_one_line_error(r, "is not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only directories")
def test_read_only_directory_is_refused_up_front(files):
    ro = files / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        r = run("build", "--embeddings", files / "emb.npz", "--out", ro / "i.spidx")
        assert_one_line_error(r, "not writable")
    finally:
        os.chmod(ro, 0o755)


def test_read_only_directory_check_uses_access(files, monkeypatch):
    """The up-front check asks os.access (as root every directory is writable, so simulate one that is not)."""
    real = os.access
    monkeypatch.setattr(atomic.os, "access", lambda p, m: False if str(p) == str(files) else real(p, m))
    r = run("build", "--embeddings", files / "emb.npz", "--out", files / "i2.spidx")
    assert_one_line_error(r, "is not writable")
    assert not (files / "i2.spidx").exists()
