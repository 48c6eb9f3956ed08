"""Trainer mechanics (kernels, schedules, pruning, rewinding) and accuracy on MovieLens-100K."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spidx.evaluation import evaluate_scorer, make_split
from spidx.trainer.compressed import make_engine, restart_phase, topk_support, train_compressed_elsa
from spidx.trainer.ease import fit_ease

from spidx.trainer.elsa import BatchSampler, DenseEngine, batch_loss, elsa_scores, train_elsa, xavier_uniform
from spidx.trainer.fixed_k import elsa_raw_scores
from spidx.trainer.schedules import schedule

def _random_rows(n_items, dim, k, seed=0):
    rng = np.random.default_rng(seed)
    cols = np.sort(np.stack([rng.choice(dim, k, replace=False) for _ in range(n_items)]), axis=1).astype(np.int32)
    vals = torch.tensor(rng.standard_normal((n_items, k)), dtype=torch.float32)
    return cols, vals

def _dense(cols, vals, dim):
    n, k = cols.shape
    return torch.zeros(n, dim).index_put((torch.arange(n)[:, None].expand(n, k), torch.from_numpy(cols).long()), vals)

@pytest.mark.parametrize("out_rows", [None, np.array([3, 7, 7, 10, 49])])
def test_fixed_k_scores_and_gradient_match_dense_oracle(out_rows):
    n, dim, k = 50, 20, 4
    cols, vals = _random_rows(n, dim, k)
    vals.requires_grad_(True)
    X = sp.random(7, n, density=0.2, format="csr", random_state=1, dtype=np.float32)
    X.data[:] = 1
    y = elsa_raw_scores(vals, cols, X, dim, out_rows)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    got_grad = vals.grad.clone()
    vals.grad = None
    a = _dense(cols, vals, dim)
    a_out = a if out_rows is None else a[torch.from_numpy(out_rows)]
    y_ref = torch.from_numpy(X.toarray()) @ a @ a_out.T
    (y_ref * w).sum().backward()
    assert torch.allclose(y, y_ref, atol=1e-5)
    assert torch.allclose(got_grad, vals.grad, atol=1e-4)

@pytest.mark.parametrize("max_output", [None, 30])
def test_sparse_and_dense_engines_agree(max_output):
    """The fixed-k engine computes the same loss and gradient as the masked dense engine."""
    n, dim, k = 60, 48, 6
    cols, vals = _random_rows(n, dim, k, seed=3)
    X = sp.random(16, n, density=0.15, format="csr", random_state=2, dtype=np.float32)
    X.data[:] = 1
    batch = next(BatchSampler(sp.csr_matrix(X), 16, max_output, np.random.default_rng(0)).epoch())
    sparse = make_engine(cols, vals, dim=dim)  # k * 6 <= dim: fixed-k engine
    dense = DenseEngine(_dense(cols, vals, dim), _dense(cols, torch.ones_like(vals), dim))
    ls, ld = batch_loss(sparse, batch), batch_loss(dense, batch)
    ls.backward()
    ld.backward()
    assert type(sparse).__name__ == "SparseEngine"
    assert torch.allclose(ls, ld, rtol=1e-5)
    dense_grad_at_support = torch.gather(dense.weight.grad, 1, torch.from_numpy(cols).long())
    assert torch.allclose(sparse.vals.grad, dense_grad_at_support, atol=1e-6)
    assert torch.all(dense.weight.grad * (1 - dense.mask) == 0)  # pruned entries get no gradient

def test_sampled_batches_hold_batch_items_then_negatives():
    X = sp.csr_matrix(np.eye(40, dtype=np.float32)[:10] + np.eye(40, k=5, dtype=np.float32)[:10])
    batch = next(BatchSampler(X, 4, 12, np.random.default_rng(0)).epoch())
    pos = np.unique(batch.rows.indices)
    assert np.array_equal(batch.out_items[: batch.n_positive], pos)
    assert len(batch.out_items) == 12 and len(set(batch.out_items)) == 12
    assert np.array_equal(batch.target.numpy()[:, : batch.n_positive], batch.rows[:, pos].toarray())
    assert batch.target.numpy()[:, batch.n_positive:].sum() == 0

def test_exponential_schedule_matches_authors_sequence():
    phases = schedule("exponential", 4096, 16, epochs=10)
    nnz = [p.nnz for p in phases]
    assert len(phases) == 71 and sum(p.epochs for p in phases) == 80
    assert nnz[:11] == [4096, 1910, 1782, 1663, 1552, 1448, 1351, 1260, 1176, 1097, 1024]
    assert nnz[20] == 512 and nnz[-3:] == [18, 17, 16] and phases[-1].epochs == 10
    assert all(p.epochs == 1 for p in phases[:-1])
    assert len(schedule("exponential", 4096, 128, 10)) == 41  # 40 phases (..., 137), then k=128
    assert schedule("exponential", 4096, 128, 10)[-2].nnz == 137
    assert len(schedule("exponential", 4096, 8, 10)) == 81
    assert schedule("exponential", 4096, 32, 10, final_epochs=2)[-1] == schedule("step", 4096, 32, 10, 2)[-1]
    assert schedule("exponential", 4096, 32, 10, final_epochs=2)[-1].epochs == 2

def test_other_schedules():
    lin = schedule("linear", 4096, 16, 10)
    assert [p.nnz for p in lin[:3]] == [4096, 4038, 3980] and len(lin) == 72 and lin[-1].nnz == 16
    assert all(a.nnz > b.nnz for a, b in zip(lin, lin[1:]))
    step = schedule("step", 4096, 16, 10)
    assert [p.nnz for p in step] == [4096, 1024, 512, 256, 128, 64, 32, 16] and {p.epochs for p in step} == {10}
    assert [(p.nnz, p.epochs) for p in schedule("constant", 4096, 16, 10)] == [(16, 10)]

def test_rewinding_restores_initial_values_on_the_surviving_support():
    torch.manual_seed(0)
    init = xavier_uniform(30, 64, torch.Generator().manual_seed(1))
    trained = DenseEngine(init + 0.05 * torch.randn(30, 64))
    expected_support = np.sort(torch.topk(trained.weight.detach().abs(), 8, dim=1).indices.numpy(), axis=1)
    nxt = restart_phase(trained, init, 8, rewind=True, dim=64)
    assert np.array_equal(nxt.cols, expected_support)
    assert torch.equal(nxt.vals.detach(), torch.gather(init, 1, torch.from_numpy(expected_support).long()))
    kept = restart_phase(trained, init, 8, rewind=False, dim=64)
    a = torch.nn.functional.normalize(trained.weight.detach(), dim=1)
    assert torch.allclose(kept.vals.detach(), torch.gather(a, 1, torch.from_numpy(expected_support).long()))
    # pruning further from a sparse engine keeps a subset of its support
    deeper = restart_phase(nxt, init, 3, rewind=True, dim=64)
    assert all(set(r) <= set(s) for r, s in zip(deeper.cols, nxt.cols))
    assert np.array_equal(topk_support(deeper, 3), deeper.cols)

def _compressed(split):
    log = []
    res = train_compressed_elsa(split.train, dim=256, targets=(32, 8), epochs=3, batch_size=128,
                                seed=1, progress=False, phase_log=log)
    return res, log

@pytest.fixture(scope="module")
def split_small():
    from conftest import synthetic_interactions

    return make_split(synthetic_interactions(n_users=400, n_items=60, seed=2), 50, 0, seed=42)

@pytest.fixture(scope="module")
def compressed_small(split_small):
    return _compressed(split_small)

@pytest.fixture(scope="module")
def split100k(ml100k):
    return make_split(ml100k.matrix, 200, 0, seed=42)

@pytest.fixture(scope="module")
def compressed100k(split100k):
    return _compressed(split100k)

def test_pruned_rows_have_exactly_k_nonzeros_and_unit_norm(compressed_small):
    res, log = compressed_small
    for k, a in res.items():
        assert np.all(np.diff(a.indptr) == k)
        assert np.allclose(np.sqrt(np.asarray(a.multiply(a).sum(1)).ravel()), 1.0, atol=1e-5)
    finals = [e for e in log if e["phase"].startswith("final")]
    assert [e["nnz"] for e in finals] == [32, 8] and all(e["epochs"] == 3 for e in finals)
    assert any(e["engine"] == "sparse" for e in log) and log[0]["engine"] == "dense"

def test_one_trajectory_equals_a_separate_run_for_the_first_target(split_small, compressed_small):
    alone = train_compressed_elsa(split_small.train, dim=256, targets=(32,), epochs=3, batch_size=128, seed=1,
                                  progress=False)
    a, b = alone[32], compressed_small[0][32]
    assert np.array_equal(a.indices, b.indices) and np.allclose(a.data, b.data, atol=1e-6)

def test_training_is_seeded(split_small):
    a = train_elsa(split_small.train, 32, epochs=1, batch_size=256, seed=5, progress=False)
    b = train_elsa(split_small.train, 32, epochs=1, batch_size=256, seed=5, progress=False)
    assert np.array_equal(a, b)

@pytest.mark.slow
def test_accuracy_on_movielens_100k(split100k, compressed100k):
    """Held-out nDCG@100 on ML-100K: EASE and dense ELSA are strong; Compressed ELSA keeps most of it."""
    B = fit_ease(split100k.train, 300.0)
    ease = evaluate_scorer(lambda h: h @ B, split100k.test)["ndcg@100"]
    a = train_elsa(split100k.train, 256, epochs=4, batch_size=128, seed=1, progress=False)
    dense = evaluate_scorer(lambda h: elsa_scores(a, h), split100k.test)["ndcg@100"]
    k32 = evaluate_scorer(lambda h: elsa_scores(compressed100k[0][32], h), split100k.test)["ndcg@100"]
    k8 = evaluate_scorer(lambda h: elsa_scores(compressed100k[0][8], h), split100k.test)["ndcg@100"]
    print(f"ML-100K nDCG@100: EASE {ease:.4f}, ELSA {dense:.4f}, Compressed ELSA k=32 {k32:.4f}, k=8 {k8:.4f}")
    assert ease > 0.50 and dense > 0.48
    assert k32 >= 0.95 * dense and k8 >= 0.88 * dense

@pytest.mark.parametrize("name", ["linear", "step", "constant"])
@pytest.mark.parametrize("rewind", [True, False])
def test_every_schedule_trains_to_exactly_k(name, rewind):
    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((120, 80)) < 0.1).astype(np.float32))
    log = []
    res = train_compressed_elsa(X, dim=64, targets=(8,), schedule_name=name, rewind=rewind, epochs=1,
                                batch_size=32, progress=False, phase_log=log)
    assert [e["nnz"] for e in log] == [p.nnz for p in schedule(name, 64, 8, 1)]
    assert log[-1]["phase"] == "final k=8"
    a = res[8]
    assert np.all(np.diff(a.indptr) == 8)
    assert np.allclose(np.sqrt(np.asarray(a.multiply(a).sum(1)).ravel()), 1.0, atol=1e-5)


def test_selection_keeps_the_best_final_epoch():
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((100, 60)) < 0.1).astype(np.float32))
    seen = []

    def select(a):  # scores the final epochs 1, 2, 3 as 0.1, 0.9, 0.5
        seen.append(a.copy())
        return {"ndcg@100": [0.1, 0.9, 0.5][len(seen) - 1], "recall@20": 0.25}

    log = []
    res = train_compressed_elsa(X, dim=32, targets=(4,), schedule_name="constant", epochs=3, progress=False,
                                phase_log=log, select=select)
    assert log[-1]["best_epoch"] == 2 and log[-1]["scores"] == [0.1, 0.9, 0.5]
    assert log[-1]["validation"] == [{"epoch": e, "ndcg@100": v, "recall@20": 0.25} for e, v in
                                     ((1, 0.1), (2, 0.9), (3, 0.5))]
    assert (res[4] != seen[1]).nnz == 0


@pytest.mark.parametrize("patience, trained, kept", [(2, 4, 2), (3, 5, 2), (None, 6, 6)])
def test_patience_stops_the_final_phase_after_epochs_without_a_new_best(patience, trained, kept):
    """Validation nDCG 0.1, 0.9, 0.5, 0.9 (a tie is no new best), 0.3, 0.95 over at most 6 final epochs."""
    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((100, 60)) < 0.1).astype(np.float32))
    seen = []

    def select(a):
        seen.append(a.copy())
        return {"ndcg@100": [0.1, 0.9, 0.5, 0.9, 0.3, 0.95][len(seen) - 1]}

    log = []
    res = train_compressed_elsa(X, dim=32, targets=(4,), schedule_name="constant", epochs=6, progress=False,
                                phase_log=log, select=select, patience=patience)
    assert len(seen) == trained and log[-1]["epochs"] == trained and log[-1]["max_epochs"] == 6
    assert log[-1]["best_epoch"] == kept and (res[4] != seen[kept - 1]).nnz == 0


@pytest.mark.parametrize("scores, patience, expected", [
    ([], 1, False), ([0.5], 1, False), ([0.5, 0.4], 1, True), ([0.5, 0.4], 2, False),
    ([0.1, 0.5, 0.5, 0.5], 2, True), ([0.1, 0.5, 0.4, 0.6], 2, False)])
def test_patience_exhausted(scores, patience, expected):
    from spidx.trainer.elsa import patience_exhausted

    assert patience_exhausted(scores, patience) is expected


def test_targets_branching_at_the_same_phase_are_all_trained():
    """One epoch per phase: the k=16 and k=8 final phases branch off the same trajectory position."""
    import numpy as np
    import scipy.sparse as sp

    from spidx.trainer.compressed import train_compressed_elsa

    rng = np.random.default_rng(0)
    X = sp.csr_matrix((rng.random((300, 80)) < 0.1).astype(np.float32))
    result = train_compressed_elsa(X, dim=32, targets=(16, 8), epochs=1, progress=False)
    assert sorted(result) == [8, 16]
    for k, m in result.items():
        assert m.shape == (80, 32) and np.all(np.diff(m.indptr) == k)
