"""Reading interaction files: formats, id mapping, binarisation and clear errors."""

import numpy as np
import pytest

from spidx.embeddings import load_embeddings, save_embeddings
from spidx.errors import InputError
from spidx.ids import IdMap
from spidx.interactions import read_interactions


def test_csv_with_header_string_ids_and_duplicates(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("user,item,rating\nalice,m1,5\nalice,m1,4\nbob,m2,3\nbob,m1,1\n")
    data = read_interactions(p, user_col="user", item_col="item")
    assert data.user_ids.tolist() == ["alice", "bob"]
    assert data.item_ids.tolist() == ["m1", "m2"]
    assert data.matrix.toarray().tolist() == [[1, 0], [1, 1]]  # duplicate merged, binary
    assert data.matrix.dtype == np.float32


def test_tsv_without_header_by_position_and_min_rating(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("5\t10\t4\n5\t11\t2\n6\t10\t5\n")
    data = read_interactions(p, user_col=0, item_col=1, rating_col=2, min_rating=4)
    assert data.user_ids.tolist() == [5, 6]
    assert data.item_ids.tolist() == [10]
    assert data.matrix.nnz == 2


@pytest.mark.slow
def test_recbole_gz_with_typed_header(ml100k_path):
    inter = ml100k_path.parent / "ml-100k.inter.gz"
    data = read_interactions(inter, user_col="user_id", item_col="item_id", rating_col="rating", min_rating=4)
    npz = np.load(ml100k_path)
    keep = npz["rating"] >= 4
    assert data.matrix.nnz == len(set(zip(npz["user"][keep], npz["item"][keep])))


@pytest.mark.slow
def test_npz_as_in_shared_data(ml100k):
    assert ml100k.matrix.shape == (943, 1682)
    assert ml100k.matrix.nnz == 100000


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("user,item,rating\n", "no data rows"),
    ("user,item,rating\na,b,good\n", "non-numeric rating 'good'"),
    ("1,2\n3\n", "line 2 has 1 columns"),
])
def test_bad_text_files(tmp_path, content, message):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError, match=message) as e:
        read_interactions(p, rating_col=2 if "rating" in content else None,
                          min_rating=1 if "rating" in content else None)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_wrong_columns(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_interactions(tmp_path / "nope.csv")
    p = tmp_path / "x.csv"
    p.write_text("u,i\n1,2\n")
    with pytest.raises(InputError, match="no user column named 'user'"):
        read_interactions(p, user_col="user")


def test_corrupt_and_foreign_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(InputError, match="not an npz/zip file"):
        read_interactions(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(InputError, match="must hold arrays 'user' and 'item'"):
        read_interactions(foreign)


def test_id_map_reports_unknown_ids():
    m = IdMap(np.array([30, 10, 20]))
    assert m.lookup(["10", 30, 99, "x"]).tolist() == [1, 0, -1, -1]
    s = IdMap(np.array(["b", "a"]))
    assert s.lookup(["a", "zz"]).tolist() == [1, -1]


def test_embeddings_round_trip_and_atomic_write(tmp_path):
    import scipy.sparse as sp

    m = sp.random(5, 8, density=0.5, format="csr", random_state=0, dtype=np.float32)
    p = tmp_path / "e.npz"
    save_embeddings(p, m, ["a", "b", "c", "d", "e"], {"model": "test"})
    e = load_embeddings(p)
    assert (e.matrix != m).nnz == 0 and e.item_ids.tolist() == list("abcde") and e.meta["model"] == "test"
    before = p.read_bytes()
    with pytest.raises(ValueError):
        save_embeddings(p, m, ["only-one-id"], {})
    assert p.read_bytes() == before  # a failed save leaves the old file intact
    p.write_bytes(before[:100])
    with pytest.raises(InputError, match="not an npz/zip file"):
        load_embeddings(p)
