"""Segments: dominant factors, merging, segment scores, homepage layout, explain, persistence, CLI."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from spidx import segments as S
from spidx.embeddings import save_embeddings
from spidx.errors import InputError
from spidx.ids import IdMap
from spidx.metadata import read_item_metadata

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


def rownorm(M):
    M = np.asarray(M, np.float64)
    return (M / np.linalg.norm(M, axis=1, keepdims=True)).astype(np.float32)


# 8 items, d = 4. Hand-made: dominant factors are (dim, sign) = +0 +0 -1 -1 +2 +2 +3 -0 (item 7 ties
# |0.6| on dims 0 and 3 -> the lowest dim wins, sign negative).
HAND = rownorm([
    [0.9, 0.1, 0.0, 0.0],
    [0.8, 0.0, 0.3, 0.0],
    [0.0, -0.9, 0.2, 0.0],
    [0.1, -0.7, 0.0, 0.0],
    [0.0, 0.0, 0.9, 0.1],
    [0.0, 0.2, -0.7, 0.0],  # |-0.7| on dim 2 -> -2
    [0.0, 0.0, 0.3, 0.8],
    [-0.6, 0.0, 0.0, 0.6],
])
HAND_DIMS = [0, 0, 1, 1, 2, 2, 3, 0]
HAND_SIGNS = [1, 1, -1, -1, 1, -1, 1, -1]


def test_dominant_factors_hand_matrix():
    dims, signs = S.dominant_factors(sp.csr_matrix(HAND))
    assert dims.tolist() == HAND_DIMS
    assert signs.tolist() == HAND_SIGNS
    # dense input and an all-zero row
    Z = np.vstack([HAND, np.zeros((1, 4), np.float32)])
    dims, signs = S.dominant_factors(Z)
    assert dims.tolist() == HAND_DIMS + [-1] and signs.tolist() == HAND_SIGNS + [0]


def test_initial_segments_without_merge_group_by_signed_factor():
    seg = S.build_segments(HAND, np.arange(10, 18), merge=False)
    groups = {}
    for i, (j, g) in enumerate(zip(HAND_DIMS, HAND_SIGNS)):
        groups.setdefault((j, g), set()).add(i)
    got = {tuple(seg.dims_of(s)[0]): set(seg.items_of(s).tolist()) for s in range(seg.n_segments)}
    assert got == groups
    assert seg.n_segments == 6 and sorted(seg.sizes().tolist()) == [1, 1, 1, 1, 2, 2]
    assert (seg.item_segment >= 0).all()


def test_all_zero_rows_still_covered():
    Z = np.vstack([HAND, np.zeros((2, 4), np.float32)])
    seg = S.build_segments(Z)
    assert (seg.item_segment >= 0).all() and seg.sizes().sum() == 10
    assert seg.names[seg.item_segment[8]] == "(no active dimension)"
    assert seg.item_segment[8] == seg.item_segment[9]


def _clustered(n_clusters=6, per=30, d=64, k=4, seed=0):
    """Items in clusters; each cluster owns 2 dims (+a, +b) where half its items peak on a, half on b."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for c in range(n_clusters):
        a, b = 2 * c, 2 * c + 1
        for t in range(per):
            v = np.zeros(d, np.float32)
            main, other = (a, b) if t % 2 == 0 else (b, a)
            v[main] = 1.0 + 0.1 * rng.random()
            v[other] = 0.8
            noise = rng.choice(np.arange(2 * n_clusters, d), size=k - 2, replace=False)
            v[noise] = 0.1 * rng.standard_normal(k - 2)
            rows.append(v)
            truth.append(c)
    return sp.csr_matrix(rownorm(np.array(rows))), np.array(truth)


def test_latent_merge_recovers_clusters_and_threshold_controls_it():
    A, truth = _clustered()
    seg = S.build_segments(A, latent_threshold=0.5)
    assert seg.params["n_initial_groups"] == 12
    assert seg.n_segments == 6
    # every segment is exactly one true cluster
    for s in range(seg.n_segments):
        assert len(set(truth[seg.items_of(s)])) == 1
    # threshold 1.0: nothing merges (the two halves of a cluster have cosine < 1)
    assert S.build_segments(A, latent_threshold=1.0).n_segments == 12
    # threshold -1: everything that shares a dimension ends up together
    assert S.build_segments(A, latent_threshold=-1.0).n_segments < 6


def test_average_rule_is_mean_item_item_weight_by_hand():
    # 4 items, 3 initial groups: {0, 1} on +0, {2} on +1, {3} on +2
    A = rownorm([[1.0, 0.5, 0.0], [1.0, 0.0, 0.2], [0.3, 1.0, 0.0], [0.0, 0.1, 1.0]])
    W = A.astype(np.float64) @ A.T.astype(np.float64)
    mean_01 = W[np.ix_([0, 1], [2])].mean()  # group {0,1} vs {2}
    mean_02 = W[np.ix_([0, 1], [3])].mean()
    mean_12 = W[2, 3]
    assert mean_01 > max(mean_02, mean_12)
    # just below the best pair's mean weight: exactly that pair merges (later pairs are below it)
    t = mean_01 - 1e-6
    assert max(mean_02, mean_12, W[np.ix_([0, 1, 2], [3])].mean()) < t
    seg = S.build_segments(A, latent_rule="average", latent_threshold=t)
    assert seg.n_segments == 2 and seg.item_segment[0] == seg.item_segment[1] == seg.item_segment[2] != seg.item_segment[3]
    assert S.build_segments(A, latent_rule="average", latent_threshold=mean_01 + 1e-6).n_segments == 3
    assert seg.params["latent_rule"] == "average" and S.build_segments(A).params["latent_threshold"] == 0.1
    # the centroid rule compares cosines of summed rows instead
    sig = lambda m: A[m].astype(np.float64).sum(0)
    cos = lambda u, v: float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))
    c01 = cos(sig([0, 1]), sig([2]))
    assert S.build_segments(A, latent_rule="centroid", latent_threshold=c01 + 1e-6).n_segments == 3
    with pytest.raises(InputError):
        S.build_segments(A, latent_rule="nope")


def test_merging_is_deterministic_and_permutation_invariant():
    A, truth = _clustered(seed=3)
    s1 = S.build_segments(A, latent_threshold=0.5)
    s2 = S.build_segments(A, latent_threshold=0.5)
    assert np.array_equal(s1.item_segment, s2.item_segment) and s1.names == s2.names
    assert np.array_equal(s1.sig_dims, s2.sig_dims) and np.array_equal(s1.sig_signs, s2.sig_signs)
    perm = np.random.default_rng(1).permutation(A.shape[0])
    s3 = S.build_segments(A[perm], np.arange(A.shape[0])[perm], latent_threshold=0.5)
    # same partition of item ids
    part = lambda seg, ids: sorted(sorted(ids[seg.items_of(s)].tolist()) for s in range(seg.n_segments))
    assert part(s1, np.arange(A.shape[0])) == part(s3, np.arange(A.shape[0])[perm])


def test_segment_vector_and_scores_equal_u_dot_s_by_hand():
    seg = S.build_segments(HAND, merge=False)
    Smat = seg.matrix().toarray()
    for s in range(seg.n_segments):
        dims = seg.dims_of(s)
        expect = np.zeros(4)
        for j, g in dims:
            expect[j] = g / np.sqrt(len(dims))
        assert np.allclose(Smat[s], expect)
        assert np.isclose(np.linalg.norm(Smat[s]), 1.0)
    X = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 0, 1, 0], [0, 1, 0, 0, 1, 1, 0, 1]], np.float32))
    U = S.user_vectors(HAND, X)
    scores = S.segment_scores(U, seg)
    for r in range(2):
        u = HAND[X[r].indices].sum(axis=0)
        for s in range(seg.n_segments):
            by_hand = sum(u[j] * g for j, g in seg.dims_of(s)) / np.sqrt(len(seg.dims_of(s)))
            assert np.isclose(scores[r, s], by_hand, atol=1e-6)


def test_merged_segment_signs_follow_majority():
    # +0 carried by 2 items, -0 by 1, forced into one segment with threshold -1
    A = rownorm([[1, 0.1], [1, 0.2], [-1, 0.3]])
    seg = S.build_segments(A, latent_threshold=-1.0)
    assert seg.n_segments == 1 and seg.dims_of(0) == [(0, 1)]
    assert sorted(seg.factors[0]) == ["+0", "-0"]


def _check_layout(A, seg, hist, rows, items):
    out = S.homepage_rows(A, seg, hist, rows=rows, items=items)
    shown = [i for r in out for i in r["items"]]
    assert len(shown) == len(set(shown)), "an item is repeated"
    assert not set(shown) & set(np.asarray(hist).tolist()), "a seen item is shown"
    assert len(out) <= rows and all(len(r["items"]) <= items for r in out)
    assert out[0]["title"] == S.FIRST_ROW_TITLE
    sc = [r["segment_score"] for r in out[1:]]
    assert all(x > 0 for x in sc) and sc == sorted(sc, reverse=True)
    for r in out[1:]:
        assert all(seg.item_segment[i] == r["segment"] for i in r["items"])
    return out


def test_layout_never_repeats_or_shows_seen_items():
    A, _ = _clustered(n_clusters=6, per=12)
    seg = S.build_segments(A, latent_threshold=0.5)
    rng = np.random.default_rng(0)
    for _ in range(40):
        hist = rng.choice(A.shape[0], size=rng.integers(1, 20), replace=False)
        _check_layout(A, seg, hist, rows=int(rng.integers(1, 8)), items=int(rng.integers(1, 15)))


def test_layout_rows_are_personal_top_items_of_top_segments():
    A, truth = _clustered(n_clusters=4, per=10)
    seg = S.build_segments(A, latent_threshold=0.5)
    hist = np.flatnonzero(truth == 2)[:3]
    out = _check_layout(A, seg, hist, rows=3, items=4)
    scores = A @ np.asarray(A[hist].sum(axis=0)).ravel()
    # first row = plain top-4 unseen
    cand = np.setdiff1d(np.arange(A.shape[0]), hist)
    assert out[0]["items"] == cand[np.lexsort((cand, -scores[cand]))][:4].tolist()
    # best segment = the user's cluster; its row = its best unseen, not-yet-shown items
    s = out[1]["segment"]
    assert set(truth[seg.items_of(s)]) == {2}
    rest = np.setdiff1d(seg.items_of(s), np.concatenate([hist, out[0]["items"]]))
    assert out[1]["items"] == rest[np.lexsort((rest, -scores[rest]))][:4].tolist()


def test_layout_only_positive_segment_scores():
    # user's vector has only dim 0 positive: segments whose dims are orthogonal/negative are skipped
    seg = S.build_segments(HAND, merge=False)
    out = S.homepage_rows(HAND, seg, [0], rows=10, items=10)
    u = HAND[0]
    for r in out[1:]:
        assert sum(u[j] * g for j, g in seg.dims_of(r["segment"])) > 0


def test_parse_layout():
    assert S.parse_layout("rows=5,items=10") == {"rows": 5, "items": 10, "min_items": 1}
    assert S.parse_layout(" rows = 2 , min-items=3 ")["min_items"] == 3
    for bad in ("rows=0", "rows=x", "cols=3", "rows"):
        with pytest.raises(InputError):
            S.parse_layout(bad)


def test_explain_item_and_user():
    seg = S.build_segments(HAND, merge=False)
    e = S.explain_item(HAND, seg, 5)
    assert e["dominant"] == "-2" and e["dims"][0]["dim"] == 2 and e["dims"][0]["weight"] < 0
    assert e["segment"] == seg.item_segment[5] and e["dims"][0]["segment"] == seg.item_segment[5]
    assert np.isclose(e["norm"], 1.0)
    u = S.explain_user(HAND, seg, [0, 1], n=3, top_dims=100)
    uvec = HAND[[0, 1]].sum(axis=0)
    top = u["top_items"]
    contrib = uvec * HAND[top].sum(axis=0)
    # contributions over all active dims add up to the total score of the top items
    assert np.isclose(sum(d["contribution"] for d in u["dims"]), sum(u["top_scores"]), atol=1e-5)
    assert [d["dim"] for d in u["dims"]] == [int(j) for j in np.argsort(-contrib) if contrib[j] != 0]
    # dim 0 is fed by both history items, largest weight first
    d0 = next(d for d in u["dims"] if d["dim"] == 0)
    assert [f["item"] for f in d0["feeders"]] == [0, 1]
    assert not set(top) & {0, 1}


def test_save_load_roundtrip_and_corruption(tmp_path):
    A, _ = _clustered()
    ids = np.arange(100, 100 + A.shape[0])
    seg = S.build_segments(A, ids)
    p = tmp_path / "idx.segments.npz"
    S.save_segments(p, seg)
    back = S.load_segments(p, fingerprint=S.matrix_fingerprint(A, ids))
    assert np.array_equal(back.item_segment, seg.item_segment) and back.names == seg.names
    assert (back.matrix() != seg.matrix()).nnz == 0 and back.factors == seg.factors
    with np.load(p, allow_pickle=False) as z:  # no pickled objects in the file
        assert all(z[k].dtype != object for k in z.files)
    with pytest.raises(InputError, match="different index"):
        S.load_segments(p, fingerprint="0" * 16)
    # tamper with one array -> checksum mismatch
    with np.load(p, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["item_segment"] = arrays["item_segment"][::-1].copy()
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InputError, match="checksum"):
        S.load_segments(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError):
        S.load_segments(tmp_path / "junk.npz")


def test_metadata_reader_recbole_and_csv(tmp_path):
    p = tmp_path / "x.item"
    p.write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                 "1\tToy Story\t1995\tAnimation Children's Comedy\n2\tHeat\t1995\tAction Crime Thriller\n")
    m = read_item_metadata(p)
    assert m.item_ids.tolist() == [1, 2] and m.genres[0] == ["Animation", "Children's", "Comedy"]
    assert m.titles[1] == "Heat"
    c = tmp_path / "movies.csv"
    c.write_text("movieId,title,genres\n10,GoldenEye (1995),Action|Adventure|Thriller\n11,Casino,Crime|Drama\n")
    m = read_item_metadata(c)
    assert m.genres[0] == ["Action", "Adventure", "Thriller"] and m.titles[1] == "Casino"
    al = m.align([11, 99])
    assert al.titles == ["Casino", ""] and al.genres[1] == []
    with pytest.raises(InputError):
        read_item_metadata(tmp_path / "missing.csv")


def test_metadata_naming_and_merge_deterministic():
    # two latent clusters, each split in two dominant-factor groups with the same genres; a third
    # cluster of westerns. Descriptions merge same-genre groups that share a dim.
    A, truth = _clustered(n_clusters=3, per=20)

    class M:
        source = "mem"

        def align(self, ids):
            out = M()
            out.titles = [f"Star Thing {i}" if truth[i] == 0 else f"Film {i}" for i in ids]
            out.genres = [["Sci-Fi"] if truth[i] == 0 else (["Western"] if truth[i] == 1 else ["Drama"]) for i in ids]
            return out

    seg = S.build_segments(A, np.arange(A.shape[0]), M(), latent_threshold=1.0, metadata_threshold=0.8)
    assert seg.n_segments == 3
    names = {seg.names[seg.item_segment[np.flatnonzero(truth == c)[0]]] for c in range(3)}
    assert names == {"Star: Sci-Fi", "Western", "Drama"} or names == {"Thing: Sci-Fi", "Western", "Drama"}
    seg2 = S.build_segments(A, np.arange(A.shape[0]), M(), latent_threshold=1.0, metadata_threshold=0.8)
    assert seg2.names == seg.names and np.array_equal(seg2.item_segment, seg.item_segment)


def test_purity_helpers():
    genres = [["A"], ["A"], ["B"], ["B"]]
    assert S.genre_purity(np.array([0, 0, 1, 1]), genres) == 1.0
    assert S.genre_purity(np.array([0, 1, 0, 1]), genres) == 0.5
    r = S.random_purity(np.array([0, 0, 1, 1]), genres, draws=20, seed=0)
    assert len(r) == 20 and ((r == 0.5) | (r == 1.0)).all()


# ----------------------------------------------------------------------------------------------- CLI

def _cli():
    from spidx.cli.main import main

    return main


def test_cli_segments_homepage_explain(tmp_path):
    A, truth = _clustered(n_clusters=4, per=10)
    ids = np.arange(1, A.shape[0] + 1)
    emb = tmp_path / "emb.npz"
    save_embeddings(emb, A, ids, {"model": "test"})
    meta = tmp_path / "m.tsv"
    meta.write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n" + "".join(
        f"{i}\tMovie {i}\t{['Comedy', 'Drama', 'Horror', 'War'][truth[i - 1]]}\n" for i in ids))
    cli, r = _cli(), CliRunner()
    res = r.invoke(cli, ["segments", str(emb), "--metadata", str(meta), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n_segments"] == 4 and sum(s["size"] for s in out["segments"]) == 40
    assert {s["name"] for s in out["segments"]} == {"Comedy", "Drama", "Horror", "War"}
    assert Path(str(emb) + ".segments.npz").exists()
    res = r.invoke(cli, ["segments", str(emb), "--show"])
    assert res.exit_code == 0 and "4 segments over 40 items" in res.output
    res = r.invoke(cli, ["homepage", str(emb), "--items", "1,3,5", "--layout", "rows=3,items=4", "--json"])
    assert res.exit_code == 0, res.output
    page = json.loads(res.output)
    assert page["rows"][0]["title"] == "Recommended for you"
    assert page["rows"][1]["title"] == "Comedy"
    shown = [it["id"] for row in page["rows"] for it in row["items"]]
    assert len(shown) == len(set(shown)) and not {1, 3, 5} & set(shown)
    res = r.invoke(cli, ["homepage", str(emb), "--items", "1,3", "--layout", "rows=2,items=3"])
    assert res.exit_code == 0 and "Recommended for you" in res.output and "Movie" in res.output
    res = r.invoke(cli, ["explain", str(emb), "--item", "2", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["segment_name"] == "Comedy"
    res = r.invoke(cli, ["explain", str(emb), "--items", "1,3,5"])
    assert res.exit_code == 0 and "fed by" in res.output
    # errors: one line, exit 2
    for args in (["explain", str(emb), "--item", "999"], ["homepage", str(emb), "--items", "1", "--layout", "rows=0"],
                 ["segments", str(tmp_path / "nope.npz")], ["explain", str(emb)]):
        res = r.invoke(cli, args)
        assert res.exit_code == 2 and res.output.strip().startswith("error:"), (args, res.output)


def test_cli_query_layout_dispatches_to_homepage(tmp_path):
    """`spidx query INDEX --items ... --layout ... --json` (the real group) = the homepage layout code."""
    from spidx.cli.main import main as spidx

    A, truth = _clustered(n_clusters=4, per=10)
    ids = np.arange(1, A.shape[0] + 1)
    emb, idx = tmp_path / "emb.npz", tmp_path / "i.spidx"
    save_embeddings(emb, A, ids, {"model": "test"})
    meta = tmp_path / "m.tsv"
    meta.write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n" + "".join(
        f"{i}\tMovie {i}\t{['Comedy', 'Drama', 'Horror', 'War'][truth[i - 1]]}\n" for i in ids))
    r = CliRunner()
    assert r.invoke(spidx, ["build", "--embeddings", str(emb), "--out", str(idx)]).exit_code == 0
    assert r.invoke(spidx, ["segments", str(idx), "--metadata", str(meta)]).exit_code == 0
    res = r.invoke(spidx, ["query", str(idx), "--items", "1,3,5,12", "--layout", "rows=3,items=4", "--json"])
    assert res.exit_code == 0, res.output
    page = json.loads(res.stdout)
    assert [row["title"] for row in page["rows"]][:2] == ["Recommended for you", "Comedy"] and len(page["rows"]) == 3
    assert len(page["rows"][0]["items"]) == 4 and all(1 <= len(row["items"]) <= 4 for row in page["rows"])
    shown = [it["id"] for row in page["rows"] for it in row["items"]]
    assert len(shown) == len(set(shown)) and not {1, 3, 5, 12} & set(shown)
    scores = [row["segment_score"] for row in page["rows"][1:]]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0
    # same data as the layout code called directly, and as the `homepage` alias
    A2, ids2 = S.load_item_matrix(idx)
    seg = S.load_segments(S.segments_path(idx))
    hist = IdMap(ids2).lookup(np.array([1, 3, 5, 12]))
    direct = S.layout_data(A2, ids2, seg, np.sort(hist), S.parse_layout("rows=3,items=4"))
    assert page["rows"] == json.loads(json.dumps(direct["rows"]))
    alias = r.invoke(spidx, ["homepage", str(idx), "--items", "1,3,5,12", "--layout", "rows=3,items=4", "--json"])
    assert json.loads(alias.stdout) == page
    text = r.invoke(spidx, ["query", str(idx), "--items", "1,3", "--layout", "rows=2,items=3"])
    assert text.exit_code == 0 and text.stdout.splitlines()[0] == "Recommended for you" and "Movie" in text.stdout
    plain = r.invoke(spidx, ["query", str(idx), "--items", "1,3", "-k", "5", "--json"])
    assert plain.exit_code == 0 and len(json.loads(plain.stdout)["items"]) == 5
    for args in (["--items", "1", "--layout", "rows=0"], ["--items", "1", "--layout", "rows=2", "--include-seen"],
                 ["--histories", str(meta), "--layout", "rows=2"]):
        res = r.invoke(spidx, ["query", str(idx), *args])
        assert res.exit_code == 2 and res.output.strip().startswith("error:"), (args, res.output)


# ------------------------------------------------------------------------------------------ ML-100K

@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "ml-100k.item.gz").exists(), reason="ML-100K not available")
def test_ml100k_metadata_reader():
    m = read_item_metadata(DATA / "ml-100k.item.gz")
    assert len(m.item_ids) == 1682 and m.titles[0] == "Toy Story"
    assert m.genres[0] == ["Animation", "Children's", "Comedy"]
    with gzip.open(DATA / "ml-100k.item.gz", "rt") as f:
        assert f.readline().startswith("item_id:token")
