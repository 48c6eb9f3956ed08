"""What value quantisation costs: nDCG@100 of f16 / i8 indexes against f32 on MovieLens-1M.

Embeddings: post-hoc top-32 (d = 4096) of a quick dense model (randomized SVD, rank 256, lifted by a
fixed Gaussian map) trained on the non-test users; 1,000 held-out users, one fold. Threshold: float16
moves nDCG@100 by less than 0.002 (issue 3); int8 (per-dimension scale) by less than 0.005.
"""
from __future__ import annotations


import pytest

from conftest import data_file
from spidx.index import SparseIndex
from spidx.interactions import read_interactions
from spidx.evaluation import make_split, ranking_metrics



def ndcg_by_value_type(d=4096, nnz=32, rank=256):
    from spidx.bench.quick_embeddings import lifted_embeddings, svd_item_factors

    data = read_interactions(data_file("ml-1m-implicit", "ml-1m-implicit.npz"))
    split = make_split(data.matrix, n_test=1000, seed=42, folds=1)
    dense = lifted_embeddings(svd_item_factors(split.train, rank, power_iters=2), d)
    fold = split.test[0]
    out = {}
    for values in ("f32", "f16", "i8"):
        idx = SparseIndex.from_embeddings(dense, data.item_ids, nnz=nnz, values=values)
        rec = idx.recommend(fold.history, k=100)
        out[values] = ranking_metrics(rec.positions, fold.targets)["ndcg@100"]
    return out


@pytest.mark.slow
def test_value_quantisation_cost_on_movielens_1m():
    ndcg = ndcg_by_value_type()
    print({k: round(v, 5) for k, v in ndcg.items()})
    assert ndcg["f32"] > 0.2  # the model is real, not noise
    assert abs(ndcg["f16"] - ndcg["f32"]) < 0.002
    assert abs(ndcg["i8"] - ndcg["f32"]) < 0.005


if __name__ == "__main__":
    print(ndcg_by_value_type())
