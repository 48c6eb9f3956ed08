"""`spidx score` on Ray Data equals local `spidx query --histories` (skipped without the [ray] extra)."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

from spidx.cli.main import main  # noqa: E402
from spidx.errors import InputError  # noqa: E402
from spidx.index import SparseIndex  # noqa: E402

N_ITEMS, D, K = 120, 32, 4


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    """An index over items 1000.. and 300 users' pairs, with unknown items and one all-unknown user."""
    tmp = tmp_path_factory.mktemp("ray")
    rng = np.random.default_rng(0)
    cols = np.sort(np.stack([rng.choice(D, K, replace=False) for _ in range(N_ITEMS)]), axis=1)
    emb = sp.csr_matrix((rng.random(N_ITEMS * K).astype(np.float32) + 0.1, cols.ravel(),
                         np.arange(0, N_ITEMS * K + 1, K)), shape=(N_ITEMS, D))
    index_path = str(tmp / "items.idx")
    SparseIndex.from_embeddings(emb, np.arange(1000, 1000 + N_ITEMS)).save(index_path)
    users = np.repeat(np.arange(300), rng.integers(1, 12, 300))
    items = 1000 + rng.integers(0, N_ITEMS + 15, len(users))  # ids >= 1120 are not in the index
    users, items = np.append(users, [7777, 7777]), np.append(items, [5000, 5001])
    order = rng.permutation(len(users))  # a user's pairs are spread over both files
    users, items = users[order], items[order]
    folder = tmp / "histories"
    folder.mkdir()
    half = len(users) // 2
    for part, sl in (("a", slice(0, half)), ("b", slice(half, None))):
        pq.write_table(pa.table({"user": users[sl], "item": items[sl]}), folder / f"part-{part}.parquet")
    csv = tmp / "histories.csv"
    csv.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items)))
    jsonl = tmp / "histories.jsonl"
    jsonl.write_text("".join(json.dumps({"user": int(u), "item": int(i)}) + "\n" for u, i in zip(users, items)))
    reference = tmp / "local.jsonl"
    done = CliRunner().invoke(main, ["query", index_path, "--histories", str(csv), "--user-col", "user",
                                     "--item-col", "item", "--output", str(reference), "-k", "10"])
    assert done.exit_code == 0, done.output
    local = {}
    for line in reference.read_text().splitlines():
        row = json.loads(line)
        local[str(row["user"])] = (row["items"], row["scores"], sorted(map(str, row.get("unknown", []))))
    return {"index": index_path, "parquet": str(folder), "csv": str(csv), "jsonl": str(jsonl), "local": local,
            "tmp": tmp}


def _rows(folder, fmt):
    if fmt == "parquet":
        table = pq.read_table(folder).to_pydict()
        rows = [dict(zip(table, values)) for values in zip(*table.values())]
    else:
        rows = [json.loads(line) for f in sorted(folder.iterdir()) for line in f.read_text().splitlines()]
    return {str(r["user"]): (r["items"], r["scores"], sorted(map(str, r["unknown"]))) for r in rows}


def _assert_same(got, local):
    assert sorted(got) == sorted(local)  # every user exactly once (a dict would hide duplicates: count too)
    for user, (items, scores, unknown) in local.items():
        g_items, g_scores, g_unknown = got[user]
        assert g_items == items, user
        assert np.allclose(g_scores, scores, atol=1e-6), user
        assert g_unknown == unknown, user
    assert local["7777"][0] == [] and local["7777"][2] == ["5000", "5001"]


@pytest.mark.parametrize("source,fmt", [("parquet", "parquet"), ("jsonl", "jsonl")])
def test_ray_scoring_equals_local_query(local_ray, fixture, source, fmt):
    from spidx.batch_scoring import score_on_ray

    out = fixture["tmp"] / f"out-{source}-{fmt}"
    score_on_ray(fixture["index"], fixture[source], str(out), workers=2, cpus_per_worker=0.5, k=10,
                 output_format=fmt, partitions=3)
    got = _rows(out, fmt)
    n_rows = pq.read_table(out).num_rows if fmt == "parquet" else \
        sum(len(f.read_text().splitlines()) for f in out.iterdir())
    assert n_rows == len(fixture["local"])
    _assert_same(got, fixture["local"])


def test_score_command_and_bad_input(local_ray, fixture):
    out = fixture["tmp"] / "cli-out"
    done = CliRunner().invoke(main, ["score", fixture["index"], "--histories", fixture["csv"], "--output",
                                     str(out), "-k", "10", "--workers", "1", "--cpus-per-worker", "0.5"])
    assert done.exit_code == 0, done.output
    _assert_same(_rows(out, "parquet"), fixture["local"])
    again = CliRunner().invoke(main, ["score", fixture["index"], "--histories", fixture["parquet"], "--output",
                                      str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    wrong = CliRunner().invoke(main, ["score", fixture["index"], "--histories", fixture["csv"], "--output",
                                      str(fixture["tmp"] / "x"), "--user-col", "uid"])
    assert wrong.exit_code == 2 and "no column(s) uid" in wrong.output
    from spidx.batch_scoring import input_format

    with pytest.raises(InputError, match="cannot tell the format"):
        input_format(fixture["index"])
