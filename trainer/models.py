"""The model classes: `ELSA`, `CompressedELSA` and `EASE`, shaped like implicit's recommenders.

Every training run (`spidx train`, `spidx build --interactions`, the benchmark) goes through these
classes. A model is fitted on a users x items CSR matrix and then

- holds its item matrix in `embeddings` (CSR items x d for Compressed ELSA, a dense array for ELSA, the
  item-item matrix B for EASE),
- saves and loads it in the spidx embeddings format (`save` / `load`; numpy only, no pickle),
- builds the inverted index that serves it (`to_index`),
- recommends with implicit's conventions: ``recommend(userid, user_items, N, ...)`` ranks from the
  users' rows of `user_items` (these models have no per-user state, so the user ids only fix the output
  shape) and ``similar_items(itemid, N, ...)``.

Rankings are exact and ties break as everywhere in spidx (higher score, then smaller item position):
dense models rank through `spidx.ranking.topk`, Compressed ELSA through its `SparseIndex`.
When `implicit` is installed (extra ``spidx[implicit]``) the classes subclass its `RecommenderBase`, so
implicit's tools (e.g. ``implicit.evaluation.ranking_metrics_at_k``) accept them.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict

import numpy as np
import scipy.sparse as sp

from spidx.embeddings import Embeddings, load_embeddings, save_embeddings
from spidx.errors import InputError
from spidx.evaluation import evaluate_scorer
from spidx.ranking import topk

from .config import TrainConfig

try:  # optional: implicit's abstract base, so implicit's evaluation tools accept our models
    from implicit.recommender_base import RecommenderBase as _RecommenderBase
except ImportError:  # pragma: no cover - exercised when implicit is not installed
    _RecommenderBase = object


def check_user_items(user_items, name: str = "user_items") -> sp.csr_matrix:
    """Validate a users x items CSR matrix (as implicit requires) and return it binarised as float32."""
    if not sp.isspmatrix_csr(user_items) and not isinstance(user_items, sp.csr_array):
        raise InputError(f"{name} must be a scipy.sparse CSR matrix (users x items), got {type(user_items).__name__}")
    X = sp.csr_matrix(user_items, dtype=np.float32, copy=True)
    if X.nnz and not np.all(np.isfinite(X.data)):
        raise InputError(f"{name} contains NaN or infinite values")
    X.sum_duplicates()
    X.eliminate_zeros()
    X.data[:] = 1.0
    X.sort_indices()
    return X


class _ItemModel(_RecommenderBase):
    """What the three models share: the item matrix, persistence, serving and implicit's API."""

    name = ""

    def __init__(self, config: TrainConfig):
        self.config = config.validate()
        self.embeddings = None
        self.item_ids = None
        self.meta: dict = {}
        self.embeddings_per_k: dict = {}  # several nnz trained at once: {k: (matrix, meta)}
        self._index = None

    # ---- fitting ------------------------------------------------------------------------------

    def fit(self, user_items, show_progress: bool = True, callback=None, validation=None, *, device: str = "auto",
            distributed: bool = False, checkpoint: str | None = None, resume: bool = False):
        """Train on a users x items CSR matrix of interactions (non-zeros = consumed; values ignored).

        Parameters
        ----------
        user_items : scipy.sparse.csr_matrix, shape (n_users, n_items)
            Training interactions.
        show_progress : bool
            Progress bars.
        callback : callable, optional
            ``callback(epoch, seconds, loss)`` after every training epoch (ELSA, Compressed ELSA).
        validation : list of spidx.evaluation.FoldIn, optional
            Held-out users for model selection (best epoch, best λ); their metrics land in `meta`.
        device : str
            ELSA models: "auto" (CUDA when torch sees a GPU), "cpu", "cuda" or "cuda:N".
        distributed : bool
            ELSA models: data-parallel over an initialised torch.distributed group (torchrun; see
            `spidx.trainer.distributed`); every process calls `fit` on the same data.
        checkpoint, resume : str or None, bool
            ELSA models: a checkpoint file rewritten atomically after every epoch / pruning phase, and
            whether to continue from it (the result equals an uninterrupted run).

        Returns
        -------
        self
        """
        X = check_user_items(user_items)
        if X.nnz == 0:
            raise InputError("user_items holds no interactions")
        t0 = time.perf_counter()
        self._index = None
        runtime = {"device": device, "distributed": distributed, "checkpoint": checkpoint, "resume": resume}
        if self.name == "ease" and (distributed or checkpoint):
            raise InputError("EASE is solved in closed form: distributed training and checkpoints apply to the "
                             "ELSA models")
        if self.name == "elsa" and resume and validation:
            raise InputError("resuming dense ELSA with validation users is not supported: the best-epoch choice "
                             "would forget the epochs before the checkpoint")
        self._fit(X, show_progress, callback, validation or [], **runtime)
        self.meta.update(model=self.name, config=asdict(self.config), train_seconds=round(time.perf_counter() - t0, 2))
        if self.item_ids is None or len(self.item_ids) != X.shape[1]:
            self.item_ids = np.arange(X.shape[1])
        return self

    def _fit(self, X, show_progress, callback, validation, **runtime):  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_fitted(self):
        if self.embeddings is None:
            raise InputError(f"this {type(self).__name__} is not fitted: call fit() or load() first")

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return int(self.embeddings.shape[0])

    def at(self, k: int) -> "_ItemModel":
        """The model for one of several `nnz` values trained at once (Compressed ELSA, pruned EASE)."""
        if int(k) not in self.embeddings_per_k:
            raise InputError(f"no trained embeddings for nnz={k} (trained: {sorted(self.embeddings_per_k)})")
        matrix, extra = self.embeddings_per_k[int(k)]
        model = type(self).__new__(type(self))
        final = self.config.final_epochs
        _ItemModel.__init__(model, TrainConfig(**{**asdict(self.config), "nnz": int(k), "targets": (),
                                                  "final_epochs": final[str(k)] if isinstance(final, dict) else final}))
        model.embeddings, model.item_ids = matrix, self.item_ids
        model.meta = {**self.meta, **extra}
        model.embeddings_per_k = {int(k): (matrix, extra)}
        return model

    # ---- scoring ------------------------------------------------------------------------------

    def score(self, histories) -> np.ndarray:
        """Dense scores (users x items) of binary histories: x Â Âᵀ (ELSA models) or x B (EASE)."""
        self._check_fitted()
        H = sp.csr_matrix(histories, dtype=np.float32)
        s = self._dense_scores(H)
        return np.asarray(s.toarray() if sp.issparse(s) else s, dtype=np.float32)

    def _dense_scores(self, H):  # pragma: no cover - abstract
        raise NotImplementedError

    def _rank(self, queries, N: int, exclude: sp.csr_matrix, batch_size: int = 1024):
        """Top-N of `_query_scores` rows with exclusions, in batches (dense models)."""
        ids, scores = [], []
        for s in range(0, queries.shape[0], batch_size):
            i, v = topk(self._query_scores(queries[s:s + batch_size]), N, exclude[s:s + batch_size])
            ids.append(i)
            scores.append(v)
        return np.vstack(ids), np.vstack(scores)

    def _query_scores(self, queries):
        return self.score(queries)

    # ---- implicit's API -----------------------------------------------------------------------

    def recommend(self, userid, user_items, N: int = 10, filter_already_liked_items: bool = True,
                  filter_items=None, recalculate_user: bool = False, items=None):
        """Top-N items for one user or a batch of users, from their rows of `user_items`.

        Parameters
        ----------
        userid : int or array_like
            One user id or an array of them; only the output shape depends on it (the models have no
            per-user state: every recommendation is computed from `user_items`).
        user_items : scipy.sparse.csr_matrix, shape (len(userid) or 1, n_items)
            The users' interactions, one row per user id, in the same order.
        N : int
            Items per user.
        filter_already_liked_items : bool
            Never return the items of the user's row.
        filter_items : array_like, optional
            Item ids never returned for any user.
        recalculate_user : bool
            Accepted for compatibility; users are always computed from `user_items`.
        items : array_like, optional
            Rank only these item ids (cannot be combined with `filter_items`); N is capped at their number.

        Returns
        -------
        ids, scores : ndarray
            Item ids (int32, as implicit) and scores (float32), best first (ties: smaller id); shape (N,) for one
            user, (n_users, N) for several. Rows with fewer than N rankable items are padded with id -1
            and score -inf.
        """
        self._check_fitted()
        if not sp.isspmatrix_csr(user_items) and not isinstance(user_items, sp.csr_array):
            raise ValueError("user_items needs to be a CSR sparse matrix")
        n_users = 1 if np.isscalar(userid) else len(userid)
        if user_items.shape[0] != n_users:
            raise ValueError("user_items must contain 1 row for every user in userid")
        H = check_user_items(user_items)
        if H.shape[1] != self.n_items:
            raise InputError(f"user_items has {H.shape[1]} columns, the model has {self.n_items} items")
        N = self._check_n(N, items)
        exclude = self._exclusions(n_users, H if filter_already_liked_items else None, filter_items, items)
        ids, scores = self._rank_users(H, N, exclude)
        ids = ids.astype(np.int32)  # implicit's id type (its evaluation code requires it)
        return (ids[0], scores[0]) if np.isscalar(userid) else (ids, scores)

    def _rank_users(self, H, N, exclude):
        return self._rank(H, N, exclude)

    def similar_items(self, itemid, N: int = 10, recalculate_item: bool = False, item_users=None,
                      filter_items=None, items=None):
        """The N items most similar to one item or to each of an array of items.

        Similarity is the score a one-item history gives: Â_i·Â_j (the cosine, ELSA rows having unit
        norm; the item itself comes first) for ELSA models, B_ij for EASE.

        Parameters
        ----------
        itemid : int or array_like
            Item id(s).
        N : int
            Similar items per item.
        recalculate_item, item_users
            Not supported (the item matrix is the model); `recalculate_item=True` raises.
        filter_items : array_like, optional
            Item ids never returned.
        items : array_like, optional
            Only these item ids are candidates (cannot be combined with `filter_items`).

        Returns
        -------
        ids, scores : ndarray
            As `recommend`: shape (N,) for one item, (len(itemid), N) for several.
        """
        if recalculate_item:
            raise NotImplementedError("recalculate_item is not supported: the item matrix is the model")
        self._check_fitted()
        rows = np.atleast_1d(np.asarray(itemid))
        if rows.dtype.kind not in "iu" or rows.ndim != 1:
            raise InputError("itemid must be an integer item id or a 1-D array of them")
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_items):
            raise InputError(f"item ids must be in 0..{self.n_items - 1}")
        N = self._check_n(N, items)
        one_hot = sp.csr_matrix((np.ones(len(rows), np.float32), (np.arange(len(rows)), rows)),
                                shape=(len(rows), self.n_items))
        ids, scores = self._rank_users(one_hot, N, self._exclusions(len(rows), None, filter_items, items))
        ids = ids.astype(np.int32)
        return (ids[0], scores[0]) if np.isscalar(itemid) else (ids, scores)

    def similar_users(self, userid, N: int = 10, filter_users=None, users=None):
        """Not available: the models hold item matrices only, no user factors."""
        raise NotImplementedError(f"{type(self).__name__} has no user factors: similar_users is not available")

    def _check_n(self, N, items) -> int:
        """A positive N; with `items`, at most len(items) (implicit's convention)."""
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N <= 0:
            raise InputError(f"N must be a positive integer, got {N!r}")
        return int(N) if items is None else min(int(N), max(1, len(np.unique(np.asarray(items).ravel()))))

    def _exclusions(self, n_rows: int, liked, filter_items, items) -> sp.csr_matrix:
        """One CSR (n_rows x n_items) of never-returned items: liked rows, filter_items, items' complement."""
        n = self.n_items
        if filter_items is not None and items is not None:
            raise ValueError("Can't set both items and filter_items")
        E = sp.csr_matrix((n_rows, n), dtype=np.float32) if liked is None else sp.csr_matrix(liked)
        banned = None
        if filter_items is not None:
            banned = self._item_array(filter_items, "filter_items")
        elif items is not None:
            keep = np.zeros(n, bool)
            keep[self._item_array(items, "items")] = True
            banned = np.flatnonzero(~keep)
        if banned is not None and len(banned):
            F = sp.csr_matrix((np.ones(n_rows * len(banned), np.float32),
                               (np.repeat(np.arange(n_rows), len(banned)), np.tile(banned, n_rows))), shape=(n_rows, n))
            E = E + F
        E = sp.csr_matrix(E)
        E.sum_duplicates()
        E.sort_indices()
        return E

    def _item_array(self, values, name: str) -> np.ndarray:
        a = np.unique(np.asarray(values).ravel())
        if a.size and (a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= self.n_items):
            raise IndexError(f"{name} holds item ids outside 0..{self.n_items - 1}")
        return a.astype(np.int64)

    # ---- persistence and serving --------------------------------------------------------------

    def to_embeddings(self) -> Embeddings:
        """The trained item matrix with its item ids and metadata (what `save` writes)."""
        self._check_fitted()
        return Embeddings(self.embeddings, np.asarray(self.item_ids), {**self.meta, "model": self.name,
                                                                        "config": asdict(self.config)})

    def save(self, file) -> None:
        """Write the model as a spidx embeddings file (`.npz`, no pickle; atomic for paths).

        Parameters
        ----------
        file : str, os.PathLike or binary file object
        """
        emb = self.to_embeddings()
        if hasattr(file, "write"):
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.npz")
                save_embeddings(path, emb.matrix, emb.item_ids, emb.meta)
                with open(path, "rb") as f:
                    file.write(f.read())
            return
        save_embeddings(file, emb.matrix, emb.item_ids, emb.meta)

    @classmethod
    def load(cls, file) -> "_ItemModel":
        """Read a model written by `save` (or `spidx train`).

        Called on `ELSA`, `CompressedELSA` or `EASE`, the file must hold that model; the class of the
        returned object follows the file's `model` field.
        """
        if hasattr(file, "read"):
            data = file.read()
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.npz")
                with open(path, "wb") as f:
                    f.write(data)
                return cls.from_embeddings(load_embeddings(path))
        return cls.from_embeddings(load_embeddings(file))

    @classmethod
    def from_embeddings(cls, emb: Embeddings) -> "_ItemModel":
        """A fitted model around an embeddings file's matrix, ids and metadata."""
        name = emb.meta.get("model")
        target = MODEL_CLASSES.get(name)
        if target is None:
            raise InputError(f"the embeddings were written by model {name!r}, not one of "
                             f"{', '.join(MODEL_CLASSES)}")
        if cls is not _ItemModel and not issubclass(target, cls):
            raise InputError(f"the file holds a {target.__name__} model, not a {cls.__name__}")
        config = {k: v for k, v in dict(emb.meta.get("config") or {}).items() if k in TrainConfig.__dataclass_fields__}
        config["model"] = name
        if "lam" in config and not isinstance(config["lam"], list):
            config["lam"] = [config["lam"]]
        config["targets"] = tuple(config.get("targets") or ())
        model = target.__new__(target)
        _ItemModel.__init__(model, TrainConfig(**config))
        model.embeddings = emb.matrix
        model.item_ids = emb.item_ids
        model.meta = dict(emb.meta)
        return model

    def to_index(self, values: str = "f16", nnz: int | None = None):
        """The inverted index serving this model (`spidx.SparseIndex`).

        Parameters
        ----------
        values : {'f32', 'f16', 'i8'}
            Stored value type.
        nnz : int, optional
            Keep each row's nnz largest entries (needed for dense ELSA: post-hoc sparsification).
        """
        from spidx.index import SparseIndex

        emb = self.to_embeddings()
        build = {"model": self.name, **{k: v for k, v in asdict(self.config).items()
                                        if isinstance(v, (int, float, str, bool))}}
        return SparseIndex.from_embeddings(emb.matrix, emb.item_ids, nnz=nnz, values=values, build=build)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_index"] = None  # rebuilt on demand
        return state

    def __repr__(self) -> str:
        fitted = "fitted" if self.embeddings is not None else "not fitted"
        return f"{type(self).__name__}({fitted}, {self.config})"


class ELSA(_ItemModel):
    """Dense ELSA (Vančura et al., RecSys'22): scores x Â Âᵀ with Â items x dim, unit rows.

    Parameters
    ----------
    dim, epochs, batch_size, lr, seed, max_output, patience
        See `TrainConfig` (with `validation` users given to `fit`, `epochs` is a maximum: training stops after
        `patience` epochs without a new best validation nDCG@100 and keeps the best epoch).
    """

    name = "elsa"

    def __init__(self, dim: int = 4096, epochs: int = 10, batch_size: int = 256, lr: float = 0.1, seed: int = 42,
                 max_output: int | None = None, patience: int = 3):
        super().__init__(TrainConfig(model=self.name, dim=dim, nnz=None, epochs=epochs, batch_size=batch_size,
                                     lr=lr, seed=seed, max_output=max_output, patience=patience))

    def _fit(self, X, show_progress, callback, validation, **runtime):
        from .elsa import elsa_scores, patience_exhausted, train_elsa

        history, best = [], {"ndcg@100": -1.0, "epoch": self.config.epochs}

        def on_epoch(engine, log):
            if callback is not None:
                callback(log.epoch, log.seconds, log.loss)
            if not validation:
                return {}
            a = engine.embeddings()
            m = evaluate_scorer(lambda h: elsa_scores(a, h), validation)
            history.append({"epoch": log.epoch, "loss": log.loss, **m})
            if m["ndcg@100"] > best["ndcg@100"]:
                best.update(m, epoch=log.epoch, embeddings=a.copy())
            return m

        def stalled(epoch_logs):
            return patience_exhausted([h["ndcg@100"] for h in history], c.patience)

        c, logs = self.config, []
        A = train_elsa(X, c.dim, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=c.seed,
                       max_output=c.max_output, progress=show_progress, on_epoch=on_epoch, logs=logs,
                       stop=stalled if validation else None, **runtime)
        self.embeddings = best.pop("embeddings") if validation else A
        self.meta.update(d=c.dim, k=None, best_epoch=best["epoch"], epochs_trained=len(logs), validation=history,
                         selected=history[best["epoch"] - 1] if validation else {},
                         epoch_seconds=[round(log.seconds, 3) for log in logs])

    def _dense_scores(self, H):
        from .elsa import elsa_scores

        return elsa_scores(self.embeddings, H)


class CompressedELSA(_ItemModel):
    """Compressed ELSA: ELSA whose item rows keep exactly `nnz` non-zeros, pruned gradually in training.

    Served from the inverted index (`to_index`); `recommend` and `similar_items` rank through it.

    Parameters
    ----------
    dim : int
        Latent dimension d.
    nnz : int or sequence of int
        Non-zeros per item row k. Several values train one pruning trajectory for all of them; the
        model then holds the first, `at(k)` returns the others.
    schedule, rewind, epochs, final_epochs, batch_size, lr, seed, max_output, patience
        See `TrainConfig` (with `validation` users given to `fit`, each target's final phase keeps its best
        validation epoch and stops after `patience` epochs without a new best: `final_epochs` is a maximum).
    """

    name = "compressed-elsa"

    def __init__(self, dim: int = 4096, nnz=32, schedule: str = "exponential", rewind: bool = True, epochs: int = 10,
                 final_epochs: int | None = None, batch_size: int = 256, lr: float = 0.1, seed: int = 42,
                 max_output: int | None = None, patience: int = 3):
        ks = [int(k) for k in np.atleast_1d(nnz)]
        super().__init__(TrainConfig(model=self.name, dim=dim, nnz=ks[0], targets=tuple(ks) if len(ks) > 1 else (),
                                     schedule=schedule, rewind=rewind, epochs=epochs, final_epochs=final_epochs,
                                     batch_size=batch_size, lr=lr, seed=seed, max_output=max_output,
                                     patience=patience))

    def _fit(self, X, show_progress, callback, validation, **runtime):
        from .compressed import train_compressed_elsa
        from .elsa import elsa_scores

        c = self.config
        targets = tuple(c.targets) or (c.nnz,)
        select = (lambda a: evaluate_scorer(lambda h: elsa_scores(a, h), validation)) if validation else None
        phases = []
        result = train_compressed_elsa(X, dim=c.dim, targets=targets, schedule_name=c.schedule, rewind=c.rewind,
                                       epochs=c.epochs, batch_size=c.batch_size, lr=c.lr, seed=c.seed,
                                       max_output=c.max_output, progress=show_progress, phase_log=phases,
                                       select=select, patience=c.patience, final_epochs=c.final_epochs,
                                       callback=callback, **runtime)
        self.meta.update(d=c.dim, schedule=c.schedule, rewind=c.rewind,
                         phases=[{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in p.items()
                                  if k != "validation"} for p in phases])
        final = {p["nnz"]: p for p in phases if p["phase"].startswith("final")}
        self.embeddings_per_k = {}
        for k, matrix in result.items():
            # with validation users: the final phase's curve, and the kept (best) epoch's metrics
            curve = final[k]["validation"] if validation else []
            best = {"best_epoch": final[k]["best_epoch"], "selected": curve[final[k]["best_epoch"] - 1]} \
                if validation else {"selected": {}}
            self.embeddings_per_k[k] = (matrix, {"k": k, "validation": curve, **best})
        self.embeddings, extra = self.embeddings_per_k[c.nnz]
        self.meta.update(extra)

    def _dense_scores(self, H):
        from .elsa import elsa_scores

        return elsa_scores(self.embeddings, H)

    def serving_index(self):
        """The float32 inverted index `recommend` ranks with (built once, dropped when pickling)."""
        self._check_fitted()
        if self._index is None:
            self._index = self.to_index(values="f32")
        return self._index

    def _rank_users(self, H, N, exclude):
        index = self.serving_index()
        scores, ids = index.search(index.query_vectors(H), N, exclude=exclude)
        return ids, scores

    def to_index(self, values: str = "f16", nnz: int | None = None):
        return super().to_index(values, nnz)

    to_index.__doc__ = _ItemModel.to_index.__doc__


class EASE(_ItemModel):
    """EASE (Steck, WWW'19): scores x B with the closed-form item-item matrix B, optionally row-pruned.

    Parameters
    ----------
    lam : float or sequence of float
        L2 strength λ; several are chosen between on the `validation` users given to `fit`.
    nnz : int or sequence of int, optional
        Keep each row's nnz largest |B_ij| (pruned EASE, a sparse B); None keeps the dense B. Several values
        are pruned from one inverse (one λ): the model holds the first, `at(k)` returns the others.
    """

    name = "ease"

    def __init__(self, lam=500.0, nnz=None):
        ks = [] if nnz is None else [int(k) for k in np.atleast_1d(nnz)]
        super().__init__(TrainConfig(model=self.name, nnz=ks[0] if ks else None,
                                     targets=tuple(ks) if len(ks) > 1 else (),
                                     lam=[float(x) for x in np.atleast_1d(lam)]))

    def _fit(self, X, show_progress, callback, validation, **runtime):
        from .ease import fit_ease, fit_pruned_ease, prune_rows

        c = self.config
        ks = tuple(c.targets) or ((c.nnz,) if c.nnz is not None else ())
        if any(k > X.shape[1] for k in ks):
            raise InputError(f"nnz must be in 1..{X.shape[1]} (the items)")
        if len(c.lam) > 1 and not validation:
            raise InputError("several EASE lambdas need validation users (--val-users) to choose between them")
        if len(c.lam) == 1 and not validation and ks:
            pruned = fit_pruned_ease(X, c.lam[0], ks)  # never holds the dense B
            self.embeddings_per_k = {k: (pruned[k], {"k": k}) for k in ks}
            self.embeddings = pruned[ks[0]]
            self.meta.update(d=int(X.shape[1]), k=ks[0], lam=c.lam[0], validation=[], selected={})
            return
        if len(ks) > 1:
            raise InputError("several EASE nnz values are trained with one lambda and no validation users")
        history, best = [], None
        for lam in c.lam:
            B = fit_ease(X, lam)
            entry = {"lambda": lam}
            if validation:
                entry.update(evaluate_scorer(lambda h: h @ B, validation))
            history.append(entry)
            if best is None or entry.get("ndcg@100", 0) > best[0].get("ndcg@100", 0):
                best = (entry, B)
        self.embeddings = best[1] if c.nnz is None else prune_rows(best[1], c.nnz)
        self.meta.update(d=int(X.shape[1]), k=c.nnz, lam=best[0]["lambda"], validation=history,
                         selected=best[0] if validation else {})

    def _dense_scores(self, H):
        return H @ self.embeddings

    def to_index(self, values: str = "f16", nnz: int | None = None):
        """Not available: EASE scores x·B, while the inverted index scores x·Â·Âᵀ."""
        raise InputError("EASE scores x·B, the inverted index scores x·Â·Âᵀ: EASE cannot be served by it "
                         "(use recommend(), or train CompressedELSA)")


MODEL_CLASSES = {cls.name: cls for cls in (ELSA, CompressedELSA, EASE)}


def model_from_config(cfg: TrainConfig) -> _ItemModel:
    """The model class instance a `TrainConfig` describes (the CLI and the benchmark configure models so)."""
    cfg.validate()
    model = MODEL_CLASSES[cfg.model].__new__(MODEL_CLASSES[cfg.model])
    _ItemModel.__init__(model, cfg)
    return model
