"""The model classes (spidx.ELSA, CompressedELSA, EASE): implicit-shaped API against brute-force oracles."""
import io
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

import spidx
from spidx.evaluation import make_split


def oracle_topk(scores, k, banned=()):
    """Brute force: sort by (-score, item) over the allowed items; pad with -1 / -inf."""
    allowed = [j for j in range(len(scores)) if j not in set(banned)]
    order = sorted(allowed, key=lambda j: (-scores[j], j))[:k]
    ids = order + [-1] * (k - len(order))
    return np.array(ids), np.array([scores[j] for j in order] + [-np.inf] * (k - len(order)), np.float32)


@pytest.fixture(scope="module")
def models(small_interactions):
    X = small_interactions
    out = {
        "elsa": spidx.ELSA(dim=16, epochs=3, batch_size=32),
        "compressed": spidx.CompressedELSA(dim=32, nnz=4, epochs=1, batch_size=32),
        "ease": spidx.EASE(lam=10.0),
        "pruned-ease": spidx.EASE(lam=10.0, nnz=6),
    }
    for m in out.values():
        m.fit(X, show_progress=False)
    return out


def dense_scores(model, H):
    A = model.embeddings
    if isinstance(model, spidx.EASE):
        s = H @ A
    else:
        s = (H @ A) @ A.T
    return np.asarray(s.toarray() if sp.issparse(s) else s, np.float64)


@pytest.mark.parametrize("name", ["elsa", "compressed", "ease", "pruned-ease"])
def test_recommend_matches_the_oracle_with_filters(models, small_interactions, name):
    model, X = models[name], small_interactions
    users = np.array([0, 5, 17])
    H = X[users]
    S = dense_scores(model, H)
    ids, scores = model.recommend(users, H, N=7, filter_items=[1, 2])
    assert ids.shape == scores.shape == (3, 7)
    for r in range(3):
        banned = set(H[r].indices) | {1, 2}
        exp_ids, exp_scores = oracle_topk(S[r], 7, banned)
        np.testing.assert_allclose(scores[r], exp_scores, rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(scores[r]) <= 0)
        assert not banned & set(ids[r].tolist())
        # the same items up to float ties at the boundary
        assert np.mean(ids[r] == exp_ids) >= 6 / 7
    one_ids, one_scores = model.recommend(5, X[5], N=7, filter_items=[1, 2])
    np.testing.assert_array_equal(one_ids, ids[1])
    # `items` restricts the candidates; liked items may come back when not filtered
    cand = sorted({0, 3, 4, 9, int(H[0].indices[0])})
    got, got_scores = model.recommend(0, X[0], N=10, items=cand, filter_already_liked_items=False)
    _, exp_scores = oracle_topk(S[0], 10, banned=set(range(X.shape[1])) - set(cand))
    assert len(got) == len(cand) and set(got.tolist()) == set(cand)  # N capped at len(items), as implicit
    np.testing.assert_allclose(got_scores, exp_scores[:len(cand)], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["elsa", "compressed", "ease"])
def test_similar_items_are_one_item_histories(models, small_interactions, name):
    model = models[name]
    S = dense_scores(model, sp.identity(small_interactions.shape[1], format="csr", dtype=np.float32)[[3, 8]])
    ids, scores = model.similar_items(np.array([3, 8]), N=5, filter_items=[0])
    for r in range(2):
        _, exp_scores = oracle_topk(S[r], 5, banned={0})
        np.testing.assert_allclose(scores[r], exp_scores, rtol=1e-4, atol=1e-5)
    single, _ = model.similar_items(3, N=5, filter_items=[0])
    np.testing.assert_array_equal(single, ids[0])
    if name != "ease":  # unit rows: the item itself is its own best match (cosine 1)
        assert single[0] == 3


def test_bad_input(models, small_interactions):
    model, X = models["elsa"], small_interactions
    with pytest.raises(ValueError, match="CSR"):
        model.recommend(0, X[0].toarray())
    with pytest.raises(ValueError, match="1 row for every user"):
        model.recommend([0, 1], X[0])
    with pytest.raises(ValueError, match="both items and filter_items"):
        model.recommend(0, X[0], items=[1], filter_items=[2])
    with pytest.raises(spidx.InputError, match="N must be"):
        model.recommend(0, X[0], N=0)
    with pytest.raises(spidx.InputError, match="CSR"):
        spidx.ELSA(dim=4).fit(X.toarray())
    with pytest.raises(spidx.InputError, match="CSR"):
        spidx.EASE().fit(X.tocoo())
    with pytest.raises(spidx.InputError, match="not fitted"):
        spidx.EASE().recommend(0, X[0])
    with pytest.raises(NotImplementedError):
        model.similar_users(0)
    with pytest.raises(NotImplementedError):
        model.similar_items(0, recalculate_item=True)
    with pytest.raises(spidx.InputError):
        spidx.CompressedELSA(dim=8, nnz=16)
    with pytest.raises(spidx.InputError, match="several EASE lambdas"):
        spidx.EASE(lam=[1.0, 2.0]).fit(X)


def test_save_load_file_object_and_pickle(models, small_interactions, tmp_path):
    X = small_interactions
    for name, model in models.items():
        path = tmp_path / f"{name}.npz"
        model.save(path)
        buf = io.BytesIO()
        model.save(buf)
        buf.seek(0)
        for loaded in (type(model).load(path), type(model).load(buf),
                       pickle.loads(pickle.dumps(model))):
            assert type(loaded) is type(model)
            a, b = model.embeddings, loaded.embeddings
            np.testing.assert_array_equal(a.toarray() if sp.issparse(a) else a, b.toarray() if sp.issparse(b) else b)
            np.testing.assert_array_equal(loaded.recommend(np.arange(4), X[:4], N=5)[0],
                                          model.recommend(np.arange(4), X[:4], N=5)[0])
    with pytest.raises(spidx.InputError, match="not a ELSA|not a EASE|holds a"):
        spidx.EASE.load(tmp_path / "elsa.npz")


def test_to_index_serves_the_compressed_model(models, small_interactions):
    model, X = models["compressed"], small_interactions
    index = model.to_index(values="f32")
    assert index.n_items == X.shape[1] and index.k == 4
    D, I = index.search(index.query_vectors(X[:6]), 5, exclude=X[:6])
    ids, scores = model.recommend(np.arange(6), X[:6], N=5)
    np.testing.assert_array_equal(I, ids)
    np.testing.assert_allclose(D, scores)
    with pytest.raises(spidx.InputError, match="cannot be served"):
        models["ease"].to_index()


def test_fit_callback_and_validation_selection(small_interactions):
    calls = []
    split = make_split(small_interactions, n_test=0, n_val=20, seed=1)
    model = spidx.ELSA(dim=8, epochs=3, batch_size=32)
    model.fit(split.train, show_progress=False, callback=lambda e, s, loss: calls.append((e, loss)),
              validation=split.validation)
    assert [e for e, _ in calls] == [1, 2, 3] and all(np.isfinite(loss) for _, loss in calls)
    best = max(model.meta["validation"], key=lambda v: v["ndcg@100"])
    assert model.meta["best_epoch"] == best["epoch"]
    ease = spidx.EASE(lam=[1.0, 1000.0]).fit(split.train, validation=split.validation)
    assert ease.meta["lam"] == max(ease.meta["validation"], key=lambda v: v["ndcg@100"])["lambda"]


def test_implicit_evaluation_accepts_the_models(models, small_interactions):
    evaluation = pytest.importorskip("implicit.evaluation")
    X = small_interactions
    split = make_split(X, n_test=30, seed=3)
    test = split.test[0]
    train, test_items = X.tolil(copy=True), sp.lil_matrix(X.shape, dtype=np.float32)
    train[test.users] = test.history
    test_items[test.users] = test.targets
    m = evaluation.ranking_metrics_at_k(models["compressed"], train.tocsr(), test_items.tocsr(), K=10,
                                        show_progress=False)
    assert 0 < m["precision"] <= 1 and 0 < m["ndcg"] <= 1



def test_several_nnz_at_once(small_interactions):
    from spidx.sparsify import row_topk

    X = small_interactions
    full = spidx.EASE(lam=10.0).fit(X).embeddings
    pruned = spidx.EASE(lam=10.0, nnz=[6, 3]).fit(X)
    for k in (6, 3):
        np.testing.assert_array_equal(pruned.at(k).embeddings.toarray(), row_topk(full, k).toarray())
        assert pruned.at(k).config.nnz == k and pruned.at(k).meta["k"] == k
    ce = spidx.CompressedELSA(dim=32, nnz=[8, 4], epochs=1, batch_size=32).fit(X, show_progress=False)
    assert [int(np.diff(ce.at(k).embeddings.indptr).max()) for k in (8, 4)] == [8, 4]
    with pytest.raises(spidx.InputError, match="no trained embeddings"):
        ce.at(5)
