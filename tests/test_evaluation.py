"""Metrics against hand-computed values; the split's determinism and disjointness."""
import numpy as np
import pytest
import scipy.sparse as sp

from spidx.evaluation import make_split, rank_dense, ranking_metrics


def _targets(rows, n_items=200):
    r = [i for i, t in enumerate(rows) for _ in t]
    c = [x for t in rows for x in t]
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def _ranked(lists, depth=100):
    out = np.full((len(lists), depth), -1)
    for i, l in enumerate(lists):
        out[i, : len(l)] = l
    return out


def test_recall_hand_computed():
    # user 0: targets {1, 2, 3}; hits at ranks 1 and 25 -> R@20 = 1/3, R@50 = 2/3
    ranking = [1] + list(range(100, 123)) + [2]
    m = ranking_metrics(_ranked([ranking]), _targets([[1, 2, 3]]))
    assert m["recall@20"] == pytest.approx(1 / 3)
    assert m["recall@50"] == pytest.approx(2 / 3)


def test_recall_denominator_is_min_k_targets():
    # 30 targets, 20 of them in the top 20: recall@20 = 20 / min(20, 30) = 1
    targets = list(range(30))
    m = ranking_metrics(_ranked([targets[:20] + list(range(100, 180))]), _targets([targets]))
    assert m["recall@20"] == pytest.approx(1.0)
    assert m["recall@50"] == pytest.approx(20 / 30)


def test_ndcg_hand_computed():
    # targets {5, 7}; hits at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    m = ranking_metrics(_ranked([[9, 5, 8, 7]]), _targets([[5, 7]]))
    assert m["ndcg@100"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))


def test_ndcg_ideal_is_capped_at_100_targets():
    targets = list(range(150))
    m = ranking_metrics(_ranked([list(range(100))]), _targets([targets]))
    assert m["ndcg@100"] == pytest.approx(1.0)


def test_metrics_average_over_users_with_targets_only():
    m = ranking_metrics(_ranked([[1], [2]]), _targets([[1], []]))
    assert m["recall@20"] == pytest.approx(1.0)


def test_per_user_metrics_are_the_values_behind_the_mean():
    ranked, targets = _ranked([[1, 2], [3, 4], [5, 6]]), _targets([[2], [], [9, 5]])
    per = ranking_metrics(ranked, targets, per_user=True)
    assert per["ndcg@100"] == pytest.approx([1 / np.log2(3), 1 / (1 + 1 / np.log2(3))])  # empty target dropped
    assert per["recall@20"] == pytest.approx([1.0, 0.5])
    mean = ranking_metrics(ranked, targets)
    assert mean["ndcg@100"] == pytest.approx(per["ndcg@100"].mean())


def test_paired_difference_interval_by_hand():
    from spidx.bench.compression import paired_diff_ci

    a, b = np.array([0.5, 0.7, 0.2, 0.4]), np.array([0.4, 0.4, 0.3, 0.2])
    d = a - b  # 0.1, 0.3, -0.1, 0.2: mean 0.125, sample sd 0.17078
    mean, lo, hi = paired_diff_ci(a, b)
    half = 1.96 * np.sqrt(((d - 0.125) ** 2).sum() / 3) / 2
    assert (mean, lo, hi) == pytest.approx((0.125, 0.125 - half, 0.125 + half))


def test_rank_dense_never_returns_seen_items():
    history = sp.csr_matrix(np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0]], dtype=np.float32))
    scores = np.array([[9, 8, 7, 6, 5], [1, 2, 3, 4, 5]], dtype=np.float32)
    ranked = rank_dense(lambda h: scores[: h.shape[0]], history, depth=3)
    assert ranked.tolist() == [[1, 3, 4], [4, 3, 2]]


def test_split_is_deterministic_and_disjoint():
    from conftest import synthetic_interactions

    X = synthetic_interactions(n_users=400, n_items=60, seed=5)
    a = make_split(X, 100, 50, seed=7, folds=5)
    b = make_split(X, 100, 50, seed=7, folds=5)
    c = make_split(X, 100, 50, seed=8, folds=5)
    assert np.array_equal(a.train_users, b.train_users)
    assert not np.array_equal(a.train_users, c.train_users)
    held = set(a.test[0].users) | set(a.validation[0].users)
    assert held.isdisjoint(a.train_users) and set(a.test[0].users).isdisjoint(a.validation[0].users)
    assert len(a.train_users) + 150 == X.shape[0]
    for fa, fb in zip(a.test, b.test):
        assert (fa.history != fb.history).nnz == 0 and (fa.targets != fb.targets).nnz == 0
        # fold-in and targets are disjoint and together are the user's items
        assert fa.history.multiply(fa.targets).nnz == 0
        assert ((fa.history + fa.targets) != X[fa.users]).nnz == 0
        sizes = np.diff(X[fa.users].indptr)
        assert np.array_equal(np.diff(fa.targets.indptr), np.maximum(1, np.floor(0.2 * sizes)).astype(int))
    # the 5 folds hold out disjoint fifths of each user's items
    total = sum(f.targets for f in a.test)
    assert total.max() == 1
