"""Fuzz-style robustness: corrupted and crafted index, embeddings, interactions and histories files.

Each case must end in a clean one-line `InputError` (library) / exit 2 with one `error:` line and no
traceback (CLI), or load and give exactly the right results for what was loaded; never a crash.
Index files are re-serialised with recomputed checksums, so the structural checks (not the
checksums) are what must catch the damage. CLI runs on crafted indexes go through a subprocess,
where a segfault would show as a negative return code instead of killing the test run.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from spidx import index_file as F
from spidx.cli.main import main
from spidx.embeddings import load_embeddings, save_embeddings
from spidx.errors import InputError
from spidx.index import SparseIndex
from spidx.interactions import read_interactions

N_ITEMS, D, K = 40, 48, 4


def small_index(values="f32", string_ids=False) -> SparseIndex:
    rng = np.random.default_rng(1)
    cols = np.sort(np.argsort(rng.random((N_ITEMS, D)), axis=1)[:, :K], axis=1)
    vals = rng.standard_normal((N_ITEMS, K)).astype(np.float32)
    vals /= np.linalg.norm(vals, axis=1, keepdims=True)
    A = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(N_ITEMS + 1) * K), shape=(N_ITEMS, D))
    ids = [f"i{j}" for j in range(N_ITEMS)] if string_ids else np.arange(100, 100 + N_ITEMS)
    return SparseIndex.from_embeddings(A, ids, values=values)


def index_parts(index: SparseIndex):
    """The arrays and header fields of a version-2 file of `index` (dimensions unpacked, row_ptr kept:
    both are allowed forms)."""
    arrays = {name: np.array(a) for name, a in index.arrays().items()}
    header = {"format": F.FORMAT, "format_version": F.FORMAT_VERSION, "n_items": index.n_items, "d": index.d,
              "nnz": index.nnz, "k": index.k, "values": index.values, "fixed_k": index.fixed_k,
              "n_blocks": index.n_blocks, "n_listed": len(index.summary_dims), "build": dict(index.build)}
    return arrays, header


def write_raw_index(path, arrays: dict, header: dict, transform=None) -> None:
    """Serialise like `write_index`, with checksums recomputed, from arbitrary arrays and header fields;
    `transform(header) -> any JSON value` edits the final header (offsets are kept consistent)."""
    header = dict(header)
    meta, offset = {}, 0
    for name, a in arrays.items():
        meta[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": int(a.nbytes),
                      "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()}
        offset = F._aligned(offset + a.nbytes)
    header["arrays"] = meta
    base = 0
    for _ in range(20):
        for name in arrays:
            meta[name]["offset_abs"] = base + meta[name]["offset"]
        header["file_size"] = base + offset
        final = transform(json.loads(json.dumps(header))) if transform else header
        text = json.dumps(final).encode()
        new_base = F._aligned(F._PREFIX.size + len(text))
        if new_base == base:
            break
        base = new_base
    with open(path, "wb") as f:
        f.write(F._PREFIX.pack(F.MAGIC, F.FORMAT_VERSION, 0, len(text), hashlib.sha256(text).digest()))
        f.write(text)
        for name, a in arrays.items():
            f.write(b"\0" * (base + meta[name]["offset"] - f.tell()))
            f.write(np.ascontiguousarray(a).tobytes())
        f.write(b"\0" * (base + offset - f.tell()))


def oracle_check(index: SparseIndex, seed: int) -> None:
    """Every engine's top-k equals brute force on the matrix the loaded index holds."""
    rng = np.random.default_rng(seed)
    A = index.to_csr().astype(np.float64)
    Q = rng.standard_normal((5, index.d)).astype(np.float32) * (rng.random((5, index.d)) < 0.3)
    S = (A @ Q.T.astype(np.float64)).T
    k = 7
    if not np.all(np.abs(S) < 1e30):  # values so large that float32 scores overflow: no exact answer
        for engine in ("auto", "pruned", "scan"):
            scores, ids = index.search(Q, k, engine=engine)
            assert ids.shape == (5, min(k, index.n_items)) and np.all(ids < index.n_items)
        return
    for engine in ("auto", "pruned", "scan"):
        scores, ids = index.search(Q, k, engine=engine)
        kk = min(k, index.n_items)
        assert scores.shape == ids.shape == (5, kk)
        for r in range(5):
            expected = np.sort(S[r])[::-1][:kk]
            np.testing.assert_allclose(scores[r], expected, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(S[r, ids[r]], scores[r], rtol=1e-4, atol=1e-5)


def load_or_input_error(path, **kw):
    try:
        return SparseIndex.load(path, **kw)
    except InputError as e:
        assert "\n" not in str(e)
        return None


# ------------------------------------------------------------------------------------------ index

def _swap(name, i, j):
    def f(a):
        a[name][[i, j]] = a[name][[j, i]]
    return f


def _set(name, pos, value):
    def f(a):
        a[name][pos] = value
    return f


def _duplicate(name):
    def f(a):
        a[name][1] = a[name][0]
    return f


ARRAY_CORRUPTIONS = {
    "row_dims out of range": _set("row_dims", 5, D),
    "row_ptr unordered": _swap("row_ptr", 1, 20),
    "row_ptr not from 0": _set("row_ptr", 0, 1),
    "row_values inf": _set("row_values", 2, np.inf),
    "dim_scale zero": _set("dim_scale", 0, 0.0),
    "duplicate item ids": _set("item_ids", 1, 100),
    "order not a permutation": _duplicate("order"),
    "order out of range": _set("order", 0, N_ITEMS),
    "order negative": _set("order", 0, -1),
    "block_ptr past the items": _set("block_ptr", 1, N_ITEMS + 5),
    "summary_ptr past the summaries": _set("summary_ptr", 1, 10**6),
    "summary_dims out of range": _set("summary_dims", 0, D),
    "block bound NaN": _set("block_unit", 0, np.nan),
    "block rest count negative": _set("block_rest_count", 0, -1),
}

HEADER_CORRUPTIONS = {
    "header is a list": lambda h: [h],
    "file_size missing": lambda h: {k: v for k, v in h.items() if k != "file_size"},
    "arrays missing": lambda h: {k: v for k, v in h.items() if k != "arrays"},
    "arrays is a list": lambda h: {**h, "arrays": list(h["arrays"])},
    "n_items a string": lambda h: {**h, "n_items": "40"},
    "n_items a bool": lambda h: {**h, "d": True},
    "n_blocks a string": lambda h: {**h, "n_blocks": "1"},
    "fixed_k an int": lambda h: {**h, "fixed_k": 1},
    "n_listed huge": lambda h: {**h, "n_listed": 2**50},
    "huge unicode dtype": lambda h: _spec(h, "item_ids", dtype="<U99999999999"),
    "object dtype": lambda h: _spec(h, "row_values", dtype="|O"),
    "shape overflow": lambda h: _spec(h, "row_dims", shape=[2**62, 2**62]),
    "shape wrong": lambda h: _spec(h, "row_dims", shape=[3]),
    "shape a string": lambda h: _spec(h, "row_dims", shape="160"),
    "offset past the end": lambda h: _spec(h, "row_dims", offset_abs=10**12),
    "negative offset": lambda h: _spec(h, "row_dims", offset_abs=-64),
    "nbytes lies": lambda h: _spec(h, "row_dims", nbytes=8),
    "k wrong": lambda h: {**h, "k": 3},
    "nnz wrong": lambda h: {**h, "nnz": 159},
    "values mismatch": lambda h: {**h, "values": "f16"},
    "values unknown": lambda h: {**h, "values": "f64"},
    "build a list": lambda h: {**h, "build": []},
    "format wrong": lambda h: {**h, "format": "other"},
    "version disagrees": lambda h: {**h, "format_version": 1},
}


def _spec(h, name, **fields):
    h["arrays"][name].update(fields)
    return h


@pytest.fixture(scope="module")
def good_index():
    return small_index()


@pytest.mark.parametrize("case", sorted(ARRAY_CORRUPTIONS))
@pytest.mark.parametrize("verify", [True, False])
def test_crafted_index_arrays_are_refused(tmp_path, good_index, case, verify):
    arrays, header = index_parts(good_index)
    ARRAY_CORRUPTIONS[case](arrays)
    write_raw_index(tmp_path / "x.spidx", arrays, header)
    with pytest.raises(InputError, match="inconsistent index"):
        SparseIndex.load(tmp_path / "x.spidx", verify=verify)


@pytest.mark.parametrize("case", sorted(HEADER_CORRUPTIONS))
def test_crafted_index_headers_are_refused(tmp_path, good_index, case):
    arrays, header = index_parts(good_index)
    write_raw_index(tmp_path / "x.spidx", arrays, header, HEADER_CORRUPTIONS[case])
    with pytest.raises(InputError) as e:
        SparseIndex.load(tmp_path / "x.spidx")
    assert "\n" not in str(e.value)


def test_untouched_rewrite_loads_and_is_exact(tmp_path, good_index):
    arrays, header = index_parts(good_index)
    write_raw_index(tmp_path / "x.spidx", arrays, header)
    oracle_check(SparseIndex.load(tmp_path / "x.spidx"), 0)


@pytest.mark.parametrize("values,string_ids", [("f32", False), ("f16", True), ("i8", False)])
def test_random_byte_flips_with_checksums_recomputed(tmp_path, values, string_ids):
    index = small_index(values, string_ids)
    rng = np.random.default_rng(7)
    outcomes = {"refused": 0, "exact": 0}
    for trial in range(30):
        arrays, header = index_parts(index)
        name = list(arrays)[trial % len(arrays)]
        raw = arrays[name].view(np.uint8).reshape(-1)
        for _ in range(int(rng.integers(1, 4))):
            raw[rng.integers(len(raw))] ^= np.uint8(1 << int(rng.integers(8)))
        write_raw_index(tmp_path / "x.spidx", arrays, header)
        loaded = load_or_input_error(tmp_path / "x.spidx")
        if loaded is None:
            outcomes["refused"] += 1
        else:
            oracle_check(loaded, trial)
            outcomes["exact"] += 1
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == 30


def test_truncated_and_extended_index_files(tmp_path, good_index):
    good_index.save(tmp_path / "g.spidx")
    raw = (tmp_path / "g.spidx").read_bytes()
    for cut in (0, 7, F._PREFIX.size, F._PREFIX.size + 10, len(raw) // 2, len(raw) - 1):
        (tmp_path / "t.spidx").write_bytes(raw[:cut])
        for verify in (True, False):
            with pytest.raises(InputError):
                SparseIndex.load(tmp_path / "t.spidx", verify=verify)
    (tmp_path / "t.spidx").write_bytes(raw + b"\0" * 64)
    with pytest.raises(InputError, match="truncated or extended"):
        SparseIndex.load(tmp_path / "t.spidx")


CLI_SCRIPT = r"""
import json, sys
from click.testing import CliRunner
from spidx.cli.main import main
results = []
for args in json.loads(sys.argv[1]):
    print(args, file=sys.stderr, flush=True)  # the last line names the culprit if the process dies
    r = CliRunner().invoke(main, args)
    results.append([r.exit_code, r.output])
print(json.dumps(results))
"""


def run_cli_batch(arg_lists):
    """Run several CLI invocations in one child process (a segfault fails the test, not the run)."""
    p = subprocess.run([sys.executable, "-c", CLI_SCRIPT, json.dumps(arg_lists)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, f"child crashed (rc {p.returncode}) on: {p.stderr.strip().splitlines()[-1:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def assert_one_line_error(code, output):
    assert code == 2, output
    assert output.startswith("error:") and len(output.strip().splitlines()) == 1, output
    assert "Traceback" not in output


def test_cli_on_crafted_indexes_never_crashes(tmp_path, good_index):
    (tmp_path / "h.csv").write_text("user,item\nu1,100\nu1,101\nu2,105\n")
    args = []
    cases = {**{f"a{n}": ("a", c) for n, c in enumerate(sorted(ARRAY_CORRUPTIONS))},
             **{f"h{n}": ("h", c) for n, c in enumerate(sorted(HEADER_CORRUPTIONS))}}
    for tag, (kind, case) in cases.items():
        arrays, header = index_parts(good_index)
        if kind == "a":
            ARRAY_CORRUPTIONS[case](arrays)
            write_raw_index(tmp_path / f"{tag}.spidx", arrays, header)
        else:
            write_raw_index(tmp_path / f"{tag}.spidx", arrays, header, HEADER_CORRUPTIONS[case])
        path = str(tmp_path / f"{tag}.spidx")
        args += [["query", path, "--items", "100,101"], ["query", path, "--histories", str(tmp_path / "h.csv")],
                 ["info", path]]
    for (code, output), a in zip(run_cli_batch(args), args):
        assert_one_line_error(code, output)


# ------------------------------------------------------------------------------------- embeddings

def good_embedding_arrays():
    rng = np.random.default_rng(2)
    m = sp.random(20, 16, density=0.25, format="csr", random_state=3, dtype=np.float32)
    m.data = rng.standard_normal(m.nnz).astype(np.float32)
    return {"data": m.data, "indices": m.indices.astype(np.int32), "indptr": m.indptr.astype(np.int64),
            "shape": np.array(m.shape, np.int64), "item_ids": np.arange(20),
            "meta": np.array(json.dumps({"format": "spidx-embeddings", "model": "t"}))}


def _emb(**changes):
    def make():
        a = good_embedding_arrays()
        for k, v in changes.items():
            if v is None:
                a.pop(k)
            else:
                a[k] = v
        return a
    return make


EMBEDDING_CORRUPTIONS = {
    "meta a JSON list": (_emb(meta=np.array("[1, 2]")), "JSON object"),
    "meta not JSON": (_emb(meta=np.array("{oops")), "not valid JSON"),
    "meta a number array": (_emb(meta=np.arange(3)), "JSON string"),
    "no item_ids": (_emb(item_ids=None), "needs 'item_ids'"),
    "d = 10**9": (_emb(shape=np.array([20, 10**9])), "dimension"),
    "rows disagree": (_emb(shape=np.array([21, 16])), "item ids"),
    "indptr unordered": (lambda: {**good_embedding_arrays(),
                                  "indptr": good_embedding_arrays()["indptr"][::-1].copy()}, "indptr"),
    "indices out of range": (lambda: {**good_embedding_arrays(),
                                      "indices": good_embedding_arrays()["indices"] + 16}, "outside"),
    "data NaN": (lambda: {**good_embedding_arrays(), "data": np.full(80, np.nan, np.float32)}, "NaN"),
    "NaN float ids": (_emb(item_ids=np.r_[np.nan, np.arange(19.0)]), "NaN or infinite"),
    "inf float ids": (_emb(item_ids=np.r_[np.inf, np.arange(19.0)]), "NaN or infinite"),
    "ids 2-D": (_emb(item_ids=np.arange(20).reshape(4, 5)), "1-D"),
    "shape 3 values": (_emb(shape=np.array([20, 16, 1])), "two integers"),
    "dense 3-D": (_emb(data=None, dense=np.zeros((20, 2, 2), np.float32)), "2-D"),
}


@pytest.mark.parametrize("case", sorted(EMBEDDING_CORRUPTIONS))
def test_crafted_embeddings_are_refused(tmp_path, case):
    make, message = EMBEDDING_CORRUPTIONS[case]
    np.savez(tmp_path / "e.npz", **make())
    with pytest.raises(InputError, match=message):
        load_embeddings(tmp_path / "e.npz")


def test_pickled_member_is_refused_not_loaded(tmp_path):
    a = good_embedding_arrays()
    a["item_ids"] = np.array([object()] * 20, dtype=object)
    np.savez(tmp_path / "e.npz", **a)
    with pytest.raises(InputError, match="pickled"):
        load_embeddings(tmp_path / "e.npz")


def test_not_a_zip_says_so(tmp_path):
    (tmp_path / "e.npz").write_bytes(b"\x93NUMPY just some bytes")
    with pytest.raises(InputError, match="not an npz/zip file"):
        load_embeddings(tmp_path / "e.npz")


def write_bomb(path, name="data", nbytes=80 << 20):
    """An .npz whose member declares `nbytes` of zeros (deflated to ~nbytes/1000), streamed."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False, "shape": (nbytes // 4,)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for other, arr in good_embedding_arrays().items():
            if other != name:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, arr)
                z.writestr(other + ".npy", buf.getvalue())
        with z.open(name + ".npy", "w", force_zip64=True) as f:
            f.write(head.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(nbytes >> 20):
                f.write(chunk)


def test_decompression_bomb_is_refused_before_reading(tmp_path):
    write_bomb(tmp_path / "bomb.npz")
    assert os.path.getsize(tmp_path / "bomb.npz") < 1 << 20
    with pytest.raises(InputError, match="decompression bomb"):
        load_embeddings(tmp_path / "bomb.npz")
    with pytest.raises(InputError, match="decompression bomb"):
        read_interactions(tmp_path / "bomb.npz")


def test_random_byte_flips_and_truncations_of_embeddings(tmp_path):
    save_embeddings(tmp_path / "g.npz", sp.csr_matrix(good_embedding_arrays()["data"][:16].reshape(4, 4)),
                    np.arange(4), {"model": "t"})
    good = load_embeddings(tmp_path / "g.npz")
    raw = (tmp_path / "g.npz").read_bytes()
    rng = np.random.default_rng(11)
    for trial in range(40):
        b = bytearray(raw)
        if trial % 4 == 3:
            b = b[:int(rng.integers(len(b)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        (tmp_path / "x.npz").write_bytes(bytes(b))
        try:
            emb = load_embeddings(tmp_path / "x.npz")
        except InputError as e:
            assert "\n" not in str(e)
            continue
        # a flip the zip CRC cannot see (it only covers the data) must leave the content intact
        assert (emb.matrix != good.matrix).nnz == 0 and np.array_equal(emb.item_ids, good.item_ids)


# ------------------------------------------------------------------------------ interactions, histories

INTERACTION_NPZ = {
    "lengths differ": ({"user": np.arange(5), "item": np.arange(4)}, "equal length"),
    "2-D users": ({"user": np.zeros((2, 2)), "item": np.zeros((2, 2))}, "1-D"),
    "NaN float ids": ({"user": np.array([1.0, np.nan]), "item": np.array([1.0, 2.0])}, "NaN or infinite"),
    "inf float ids": ({"user": np.array([1.0, 2.0]), "item": np.array([np.inf, 2.0])}, "NaN or infinite"),
    "inf rating": ({"user": np.arange(3), "item": np.arange(3), "rating": np.array([1, np.inf, 2])}, "infinite"),
    "NaN rating": ({"user": np.arange(3), "item": np.arange(3), "rating": np.array([1, np.nan, 2])}, "NaN"),
    "complex ids": ({"user": np.arange(3) + 1j, "item": np.arange(3)}, "dtype"),
    "rating length": ({"user": np.arange(3), "item": np.arange(3), "rating": np.ones(2)}, "equal length"),
}

INTERACTION_TEXT = {
    "inf rating": ("u,i,r\n1,2,5\n1,3,inf\n", "infinite"),
    "-inf rating": ("u,i,r\n1,2,5\n1,3,-inf\n", "infinite"),
    "NaN rating": ("u,i,r\n1,2,5\n1,3,nan\n", "NaN"),
    "non-numeric rating": ("u,i,r\n1,2,5\n1,3,x\n", "non-numeric"),
    "short row": ("u,i,r\n1,2,5\n1\n", "columns"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("case", sorted(INTERACTION_NPZ))
def test_crafted_interactions_npz(tmp_path, case):
    arrays, message = INTERACTION_NPZ[case]
    np.savez(tmp_path / "x.npz", **arrays)
    with pytest.raises(InputError, match=message):
        read_interactions(tmp_path / "x.npz", min_rating=0.0 if "rating" in arrays else None)


@pytest.mark.parametrize("case", sorted(INTERACTION_TEXT))
def test_crafted_interactions_text(tmp_path, case):
    text, message = INTERACTION_TEXT[case]
    (tmp_path / "x.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        read_interactions(tmp_path / "x.csv", rating_col=2, min_rating=1.0)


def test_random_byte_flips_of_interaction_files(tmp_path):
    rng = np.random.default_rng(5)
    users, items = rng.integers(0, 30, 200), rng.integers(0, 50, 200)
    np.savez(tmp_path / "g.npz", user=users, item=items)
    (tmp_path / "g.csv").write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items)))
    for name in ("g.npz", "g.csv"):
        raw = (tmp_path / name).read_bytes()
        good = read_interactions(tmp_path / name)
        for trial in range(30):
            b = bytearray(raw)
            if trial % 5 == 4:
                b = b[:int(rng.integers(len(b)))]
            else:
                b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
            path = tmp_path / ("x" + name[1:])
            path.write_bytes(bytes(b))
            try:
                got = read_interactions(path)
            except InputError as e:
                assert "\n" not in str(e)
                continue
            assert got.matrix.shape[0] >= 1 and got.matrix.nnz >= 1
            if name.endswith(".npz"):  # CRC-checked: anything that loads is the original
                assert (got.matrix != good.matrix).nnz == 0


def test_cli_histories_fuzz(tmp_path, good_index):
    good_index.save(tmp_path / "i.spidx")
    rng = np.random.default_rng(9)
    good = "user,item\n" + "".join(f"u{u},{100 + i}\n" for u, i in zip(rng.integers(0, 8, 40),
                                                                         rng.integers(0, N_ITEMS, 40)))
    crafted = {"binary.csv": bytes(range(256)), "empty.csv": b"", "header-only.csv": b"user,item\n",
               "unknown.csv": b"user,item\nu1,zzz\n", "short.csv": b"user,item\nu1\n"}
    np.savez(tmp_path / "nan.npz", user=np.array([1.0, np.nan]), item=np.array([100.0, 101.0]))
    np.savez(tmp_path / "obj.npz", user=np.array([object()] * 2), item=np.arange(2))
    (tmp_path / "notzip.npz").write_bytes(b"hello")
    names = ["nan.npz", "obj.npz", "notzip.npz"]
    for name, data in crafted.items():
        (tmp_path / name).write_bytes(data)
        names.append(name)
    for trial in range(12):
        b = bytearray(good.encode())
        b[rng.integers(len(b))] = int(rng.integers(256))
        (tmp_path / f"flip{trial}.csv").write_bytes(bytes(b))
        names.append(f"flip{trial}.csv")
    runner = CliRunner()
    for name in names:
        r = runner.invoke(main, ["query", str(tmp_path / "i.spidx"), "--histories", str(tmp_path / name), "-k", "3"])
        if name in crafted or name in ("nan.npz", "obj.npz", "notzip.npz"):
            assert_one_line_error(r.exit_code, r.output)
        else:
            assert r.exit_code in (0, 2) and "Traceback" not in r.output, r.output
            assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
