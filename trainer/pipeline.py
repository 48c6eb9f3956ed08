"""Train a model on an interactions file and evaluate it with the strong-generalisation protocol."""
from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np

from spidx.embeddings import Embeddings
from spidx.errors import InputError
from spidx.evaluation import evaluate_ranker, evaluate_scorer, make_split
from spidx.interactions import Interactions

from .config import TrainConfig
from .models import _ItemModel, model_from_config


def train_models(data: Interactions, cfg: TrainConfig, progress: bool = True, *, device: str = "cpu",
                 distributed: bool = False, checkpoint: str | None = None, resume: bool = False) -> dict:
    """Train `cfg.model` on every user except the held-out test/validation users.

    Returns {k: fitted model} (one entry; Compressed ELSA with several `cfg.targets`: one per k). Each
    model's `meta` records the config, the data's fingerprint and the held-out split. With validation users and
    `cfg.refit`, the models are then retrained on every non-test user with what validation chose (`_refit`). The runtime
    options of the ELSA models (they do not change the model) are those of `_ItemModel.fit`.
    """
    cfg.validate()
    split = make_split(data.matrix, cfg.test_users, cfg.val_users, cfg.seed) if cfg.test_users or cfg.val_users \
        else None
    train = split.train if split else data.matrix
    model = model_from_config(cfg)
    model.item_ids = data.item_ids
    model.meta["data"] = {"source": data.source, "fingerprint": data.fingerprint(), "users": data.n_users,
                          "items": data.n_items, "interactions": int(data.matrix.nnz),
                          "train_users": int(train.shape[0])}
    model.fit(train, show_progress=progress, validation=split.validation if split else [], device=device,
              distributed=distributed, checkpoint=checkpoint, resume=resume)
    if cfg.refit and split is not None and split.validation:
        if checkpoint:
            raise InputError("--refit trains twice and cannot share one --checkpoint: give --no-refit")
        model = _refit(model, data, cfg, progress, device=device, distributed=distributed)
    if model.embeddings_per_k:
        return {k: model.at(k) for k in (tuple(cfg.targets) or (cfg.nnz,))}
    return {model.meta.get("k"): model}


def _refit(validated: _ItemModel, data: Interactions, cfg: TrainConfig, progress: bool, **runtime) -> _ItemModel:
    """Retrain on every non-test user (the validation users too) with what validation chose.

    ELSA: the best epoch's count; Compressed ELSA: each k's best final epoch; EASE: the best λ. The result keeps
    the validation curves and choices of `validated` in its metadata, and `refit` records both runs' users.
    """
    targets = tuple(cfg.targets) or (cfg.nnz,)
    if cfg.model == "elsa":
        chosen = {"epochs": validated.meta["best_epoch"]}
    elif cfg.model == "compressed-elsa":
        chosen = {"final_epochs": {str(k): validated.at(k).meta["best_epoch"] for k in targets}}
    else:
        chosen = {"lam": [validated.meta["lam"]]}
    final_cfg = replace(cfg, **chosen)
    model = model_from_config(replace(final_cfg, val_users=0, refit=False))
    model.item_ids = validated.item_ids
    full = make_split(data.matrix, cfg.test_users, 0, cfg.seed).train if cfg.test_users else data.matrix
    model.meta["data"] = {**validated.meta["data"], "train_users": int(full.shape[0])}
    model.fit(full, show_progress=progress, validation=[], **runtime)
    model.config = final_cfg.validate()
    model.meta["refit"] = {"validation_train_users": validated.meta["data"]["train_users"],
                           "validation_train_seconds": validated.meta["train_seconds"],
                           "train_users": int(full.shape[0]), "chosen": chosen}
    model.meta["train_seconds"] = round(model.meta["train_seconds"] + validated.meta["train_seconds"], 2)
    model.meta["config"] = asdict(final_cfg)
    kept = ("validation", "best_epoch", "selected", "lam")
    for k, (matrix, extra) in model.embeddings_per_k.items():
        source = validated.embeddings_per_k[k][1] if validated.embeddings_per_k else validated.meta
        model.embeddings_per_k[k] = (matrix, {**extra, **{m: v for m, v in source.items() if m in kept}})
    model.meta.update({m: validated.meta[m] for m in kept if m in validated.meta})
    return model


def evaluate_embeddings(emb: Embeddings, data: Interactions, test_users: int | None = None,
                        seed: int | None = None, folds: int = 1, served_values: str | None = None) -> dict:
    """Held-out metrics of a trained model on the test users it was trained without.

    `test_users` and `seed` default to the model's recorded split and must equal it when the model records
    one (InputError otherwise).

    With `served_values` (f32/f16/i8) a sparse model is ranked by the inverted index built with those
    values, i.e. the accuracy actually served.
    """
    cfg = emb.meta.get("config", {})
    # a split other than the recorded one would evaluate on users the model was trained on
    for name, given, flag in (("test_users", test_users, "--test-users"), ("seed", seed, "--seed")):
        if given is not None and name in cfg and int(given) != int(cfg[name]):
            raise InputError(f"{flag} {given} differs from the model's recorded split ({name}={cfg[name]}): "
                             f"other held-out users would include training users; omit {flag} or retrain")
    test_users = cfg.get("test_users", 0) if test_users is None else test_users
    seed = cfg.get("seed", 42) if seed is None else seed
    if test_users <= 0:
        raise InputError("the model was trained on every user; retrain with --test-users N to evaluate it")
    if len(emb.item_ids) != data.n_items or not np.array_equal(emb.item_ids.astype(str), data.item_ids.astype(str)):
        raise InputError("the embeddings were trained on other items than this interactions file holds")
    fp = emb.meta.get("data", {}).get("fingerprint")
    if fp and fp != data.fingerprint():
        raise InputError("this interactions file differs from the one the model was trained on "
                         "(its held-out users would not be held out)")
    trained_val = cfg.get("val_users", 0)
    split = make_split(data.matrix, test_users, trained_val, seed, folds=folds)
    if served_values is None:
        return evaluate_scorer(_ItemModel.from_embeddings(emb).score, split.test)
    if emb.meta.get("model") == "ease" or not emb.is_sparse:
        raise InputError("--values evaluates the inverted index: it needs sparse ELSA embeddings")
    from spidx.index import SparseIndex

    index = SparseIndex.from_embeddings(emb.matrix, emb.item_ids, values=served_values)
    return evaluate_ranker(lambda h: index.recommend(h, k=100).positions, split.test)
