"""Head-to-head compression benchmark: runner, presets and model cache.

Every method runs on the same data, the same strong-generalisation split and the same held-out
users, at matched budgets in bytes per item (paper accounting: 4·r for dense float32, 8·k for k
non-zeros); see bench/README.md for what each method is and how bytes and speed are measured.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from spidx.atomic import atomic_path
from spidx.embeddings import json_default, load_embeddings, save_embeddings
from spidx.errors import InputError
from spidx.interactions import read_interactions
from spidx.trainer.config import TrainConfig
from spidx.evaluation import METRICS, make_split, ranking_metrics
from spidx.sparsify import row_topk

from . import adapters
from .methods import (DenseItemItemServed, exact_dense_topk, flat_served, index_served, seismic_available,
                      seismic_served, sparse_rows_served)

# Paths are taken from the arguments, relative to the working directory (never the source tree, which an
# installed package does not have): the repository ships Gowalla at data/gowalla.npz.
DEFAULT_DATA = Path("data") / "gowalla.npz"
ALL_METHODS = ("dense", "lowdim", "faiss", "posthoc", "compresae", "ease", "celsa", "seismic")
# Seismic is opt-in (`--methods ...,seismic`): on Compressed ELSA embeddings (signed values, queries with
# thousands of active dimensions) it measured ~50 ms/query with overlap@100 of 0.2-0.3 on ML-1M.
# Evaluated rows are cached under the model cache (rows/), keyed by the split, the row's method, configuration and
# parameters, and the timing settings, so an interrupted run resumes at the first row it had not finished; bump
# this when what a row holds or how it is computed changes, so older rows are evaluated again.
ROW_CACHE_VERSION = 1
# CompresSAE (the paper's post-hoc baseline) is on in `--preset paper` and `tiny`, opt-in elsewhere: one
# sparse autoencoder per budget adds minutes to the small default run.
DEFAULT_METHODS = tuple(m for m in ALL_METHODS if m not in ("seismic", "compresae"))
BUDGETS = (1024, 512, 256, 128, 64)


@dataclass
class BenchConfig:
    data: str = str(DEFAULT_DATA)
    preset: str = "default"
    dataset: str = ""
    note: str = ""
    n_test: int = 500
    # validation users, disjoint from the test users: every choice (reference r, EASE λ, FAISS configuration,
    # value type at a stored budget, ELSA epochs) is made on them; the test users only report the choice
    n_val: int = 500
    folds: int = 1
    seed: int = 42
    budgets: tuple = BUDGETS
    methods: tuple = DEFAULT_METHODS
    # dense ELSA (reference candidates, low-dim models, post-hoc source)
    ref_dims: tuple = (256,)
    dense_epochs: int = 2
    dense_batch: int = 128
    lr: float = 0.1
    max_output: int | None = None
    # Compressed ELSA / post-hoc top-k
    sparse_dim: int = 1024
    posthoc_dim: int | None = None  # dense model that post-hoc top-k sparsifies (None: sparse_dim)
    # CompresSAE on the same dense model, codes of dimension sparse_dim (paper: Adam 1e-3, 10 epochs, batch 1024)
    compresae_epochs: int = 10
    compresae_batch: int = 1024
    compresae_lr: float = 1e-3
    celsa_epochs: int = 1          # E: epochs per halving and final epochs
    celsa_final_epochs: int | None = None  # epochs at the final k (None: E)
    celsa_batch: int = 256
    schedule: str = "exponential"
    rewind: bool = True
    celsa_values: tuple = ("f32", "f16", "i8")
    # EASE
    ease_lams: tuple = (100.0,)
    ease_dense_max_items: int = 15000   # above: float32 in-place Cholesky path, pruned rows only
    # FAISS
    faiss_kinds: tuple = ("PQ8", "PQ4", "PQ4fs", "OPQ", "RaBitQ", "SQ8", "SQ4")
    faiss_bases: tuple = ("reference", "lowdim")
    opq_max_dim: int = 1024
    # Seismic
    seismic_params: dict = field(default_factory=lambda: {"centroid_fraction": 0.1, "summary_energy": 0.4,
                                                          "heap_factor": 0.9, "query_cut": 32})
    # timing
    threads: int = 1
    repeats: int = 3
    n_single: int = 200
    n_time_batch: int | None = None  # batch timing on the first N held-out users (None: all)
    # io
    cache_dir: str = str(Path(".cache") / "bench")
    out: str = ""
    progress: bool = True

    def dense_config(self, dim: int) -> TrainConfig:
        """The training configuration of the dense ELSA models (reference, low-dim, post-hoc source)."""
        return TrainConfig(model="elsa", dim=int(dim), nnz=None, epochs=self.dense_epochs, batch_size=self.dense_batch,
                           lr=self.lr, seed=self.seed, max_output=self.max_output)

    def celsa_config(self) -> TrainConfig:
        """The training configuration of Compressed ELSA: every budget's k from one pruning trajectory."""
        ks = sorted(b // 8 for b in self.budgets)
        return TrainConfig(model="compressed-elsa", dim=self.sparse_dim, nnz=ks[0], targets=tuple(ks),
                           schedule=self.schedule, rewind=self.rewind, epochs=self.celsa_epochs,
                           final_epochs=self.celsa_final_epochs, batch_size=self.celsa_batch, lr=self.lr,
                           seed=self.seed, max_output=self.max_output)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


# ---- presets ---------------------------------------------------------------------------------------

def dataset_name(path: str) -> str:
    name = Path(path).name.lower()
    for key in ("ml-100k", "ml-1m", "gowalla"):
        if key in name:
            return key
    return Path(path).stem


def preset_config(preset: str, data: str | None = None, **overrides) -> BenchConfig:
    """`default`: the shipped Gowalla with small settings (< 10 min on 2 cores).
    `paper`: full schedules (d=4096, E=10) on the given data set; `tiny`: seconds, for tests."""
    if data is None:
        if not DEFAULT_DATA.exists():
            raise InputError(f"{DEFAULT_DATA} not found in {os.getcwd()}: give the interactions file (e.g. --data "
                             "data/gowalla.npz from the repository root)")
        data = str(DEFAULT_DATA)
    data = str(data)
    ds = dataset_name(data)
    if preset == "default":
        cfg = BenchConfig(
            data=data, preset=preset, n_test=500, n_val=500, folds=1, ref_dims=(256,), dense_epochs=1, sparse_dim=512,
            celsa_epochs=1, max_output=1000, ease_lams=(200.0,), dense_batch=1024, celsa_batch=256,
            methods=tuple(m for m in DEFAULT_METHODS if m != "ease") if ds == "gowalla" else DEFAULT_METHODS,
            faiss_kinds=("PQ8", "RaBitQ", "SQ8", "SQ4"), opq_max_dim=256, repeats=3, n_single=100,
            note="small settings: d=512 for Compressed ELSA/post-hoc (1 epoch per halving), dense reference "
                 "r=256, 1 epoch, batches of 1024 users (256 for Compressed ELSA), sampled training (max_output=1000), 500 test + 500 validation users, 1 fold"
                 + ("; pruned EASE omitted (its 41k x 41k inverse takes ~7 min and 6.7 GB on 2 cores: add "
                    "--methods ...,ease or use --preset paper)" if ds == "gowalla" else "")
                 + "; not the paper's settings (use --preset paper)")
    elif preset == "paper":
        if ds == "gowalla":
            cfg = BenchConfig(
                data=data, preset=preset, n_test=3000, n_val=1000, folds=1, ref_dims=(4096,), dense_epochs=5, dense_batch=256,
                sparse_dim=4096, celsa_epochs=5, celsa_batch=256, max_output=8192,
                ease_lams=(200.0,), repeats=3, n_single=200, n_time_batch=1000,
                methods=DEFAULT_METHODS + ("compresae",),
                note="paper method and scale on a 2-core budget: d=4096, exponential schedule with rewinding, "
                     "halving every E=5 one-epoch phases (the paper's E=10 doubles the ~45 min of training), "
                     "at most E final epochs at each k (the best on the validation users kept); dense reference "
                     "r=4096, at most 5 epochs (best kept); batches of 256 users with "
                     "sampled output (max_output=8192: the batch's positives plus uniform negatives); "
                     "3000 test + 1000 validation users, 1 fold; batch timing on 1000 test users")
        else:
            cfg = BenchConfig(
                data=data, preset=preset, n_test=1000, n_val=1000, folds=5, ref_dims=(1024, 4096), dense_epochs=10,
                sparse_dim=4096, celsa_epochs=10, max_output=None,
                ease_lams=(100.0, 300.0, 1000.0), repeats=3, n_single=200,
                methods=DEFAULT_METHODS + ("compresae",),
                note="paper settings: d=4096, exponential schedule with rewinding, E=10, at most E final epochs at "
                     "each k, the best on the validation users kept (stopping after 3 without a new best: the final "
                     "phase overfits ML-1M after 2-4 epochs, docs/results/ml1m-trainer.md); dense models at most 10 "
                     "epochs, best kept; dense reference = best of r in {1024, 4096} on the validation users; full "
                     "output; 1000 test + 1000 validation users, 5 folds")
    elif preset == "tiny":
        cfg = BenchConfig(
            data=data, preset=preset, n_test=100, n_val=50, folds=1, budgets=(256, 64), ref_dims=(64,), dense_epochs=1,
            methods=ALL_METHODS,
            sparse_dim=128, celsa_epochs=1, compresae_epochs=1, ease_lams=(50.0,), faiss_kinds=("PQ8", "RaBitQ", "SQ8"),
            opq_max_dim=64, repeats=1, n_single=10,
            note="tiny smoke settings (d=128, 1 epoch): structure only, not meaningful numbers")
    else:
        raise InputError(f"unknown preset '{preset}' (choose from default, paper, tiny)")
    cfg.dataset = ds
    for k, v in overrides.items():
        if v is None:
            continue
        if not hasattr(cfg, k):
            raise InputError(f"unknown benchmark setting '{k}'")
        setattr(cfg, k, tuple(v) if isinstance(v, list) else v)
    bad = set(cfg.methods) - set(ALL_METHODS)
    if bad:
        raise InputError(f"unknown method group(s) {', '.join(sorted(bad))} (choose from {', '.join(ALL_METHODS)})")
    for b in cfg.budgets:
        if b % 8 or b <= 0 or b // 8 > cfg.sparse_dim:
            raise InputError(f"budget {b} B: must be a positive multiple of 8 with k = B/8 <= d = {cfg.sparse_dim}")
    if not cfg.out:
        cfg.out = str(Path("runs") / "bench" / f"{cfg.dataset}-{cfg.preset}")
    return cfg


# ---- threads ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def limited_threads(n: int):
    """Run timed/served code on `n` threads (faiss OpenMP, numba); training keeps its own setting."""
    import faiss
    import numba

    old_f, old_n = faiss.omp_get_max_threads(), numba.get_num_threads()
    faiss.omp_set_num_threads(n)
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old_f)
        numba.set_num_threads(old_n)


# ---- context: data, split, cache -------------------------------------------------------------------

class Context:
    def __init__(self, cfg: BenchConfig, log=None):
        self.cfg = cfg
        self.log = log or (lambda msg: None)
        data = read_interactions(cfg.data)
        self.data = data
        self.X = data.matrix
        self.fingerprint = data.fingerprint()
        if cfg.n_val <= 0:
            raise InputError(f"n_val={cfg.n_val}: the benchmark needs validation users (disjoint from the test users) "
                             "to choose every configuration on; give --n-val N with N >= 1")
        self.split = make_split(self.X, n_test=cfg.n_test, n_val=cfg.n_val, seed=cfg.seed, folds=cfg.folds)
        self.train = self.split.train
        self.n_items = self.X.shape[1]
        self.cache = Path(cfg.cache_dir)
        self.models: dict = {}
        self.exact_cache: dict = {}
        self.curves: dict = {}  # model label -> validation curve (models whose epoch the validation users chose)

    # cache ------------------------------------------------------------------------------------------
    def _key(self, kind: str, params: dict) -> str:
        blob = json.dumps({"kind": kind, "data": self.fingerprint, "n_test": self.cfg.n_test, "n_val": self.cfg.n_val,
                           "seed_split": self.cfg.seed,
                           "params": params}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cached_matrix(self, kind: str, params: dict, train_fn, label: str | None = None):
        """Return (matrix, train_seconds, cached) for one model; trains and saves on a miss.

        `train_fn` returns the matrix, or (matrix, validation curve) for a model whose epoch is chosen on the
        validation users: the curve is kept in the cached file and, under `label`, in `self.curves`."""
        path = self.cache / f"{kind}-{self._key(kind, params)}.npz"
        if path.exists():
            try:
                emb = load_embeddings(path)
                self._keep_curve(label, emb.meta.get("validation_curve"))
                return emb.matrix, float(emb.meta.get("train_seconds", float("nan"))), True
            except InputError:
                pass
        t0 = time.perf_counter()
        m, curve = _with_curve(train_fn())
        secs = time.perf_counter() - t0
        save_embeddings(path, m, np.arange(m.shape[0]), {"model": kind, "params": params, "train_seconds": secs,
                                                          "data_fingerprint": self.fingerprint,
                                                          **({"validation_curve": curve} if curve else {})})
        self._keep_curve(label, curve)
        return m, secs, False

    def _keep_curve(self, label, curve) -> None:
        if label is not None and curve:
            self.curves[label] = curve

    def cached_dict(self, kind: str, params: dict, keys, train_fn, label: str | None = None):
        """Like cached_matrix for a model that yields {k: matrix} (one trajectory, several outputs); `train_fn`
        may also return ({k: matrix}, {k: validation curve}), kept under f"{label} k={k}"."""
        key = self._key(kind, params)
        paths = {k: self.cache / f"{kind}-{key}-k{k}.npz" for k in keys}
        if all(p.exists() for p in paths.values()):
            try:
                out, secs, curves = {}, float("nan"), {}
                for k, p in paths.items():
                    emb = load_embeddings(p)
                    out[k] = sp.csr_matrix(emb.matrix)
                    secs = float(emb.meta.get("train_seconds", secs))
                    curves[k] = emb.meta.get("validation_curve")
                for k, curve in curves.items():
                    self._keep_curve(label and f"{label} k={k}", curve)
                return out, secs, True
            except InputError:
                pass
        t0 = time.perf_counter()
        out, curves = _with_curve(train_fn())
        curves = curves or {}
        secs = time.perf_counter() - t0
        for k, p in paths.items():
            save_embeddings(p, out[k], np.arange(out[k].shape[0]), {"model": kind, "params": params, "k": k,
                                                                    "train_seconds": secs,
                                                                    "data_fingerprint": self.fingerprint,
                                                                    **({"validation_curve": curves[k]}
                                                                       if curves.get(k) else {})})
            self._keep_curve(label and f"{label} k={k}", curves.get(k))
        return out, secs, False

    # models -----------------------------------------------------------------------------------------
    def dense_params(self, dim: int) -> dict:
        """The dense model's training parameters (its cache key), read from its `TrainConfig`."""
        t = self.cfg.dense_config(dim)
        return {"model": "elsa", **{k: getattr(t, k) for k in ("dim", "epochs", "batch_size", "lr", "seed", "max_output")}}

    def dense(self, dim: int):
        if ("dense", dim) not in self.models:
            p = self.dense_params(dim)
            A, secs, cached = self.cached_matrix(
                "elsa", p, lambda: adapters.train_dense(self.train, self.cfg.dense_config(dim), self.split.validation,
                                                        self.cfg.progress), label=f"dense ELSA r={dim}")
            self.models[("dense", dim)] = (np.ascontiguousarray(A, np.float32), secs, cached, p)
        return self.models[("dense", dim)]

    def celsa_params(self) -> dict:
        """Compressed ELSA's training parameters (its cache key), read from its `TrainConfig`."""
        t = self.cfg.celsa_config()
        return {"model": "compressed_elsa", "dim": t.dim, "targets": list(t.targets),
                **{k: getattr(t, k) for k in ("schedule", "rewind", "epochs", "batch_size", "lr", "seed", "max_output")},
                **({"final_epochs": t.final_epochs} if t.final_epochs is not None else {})}

    def celsa(self):
        if "celsa" not in self.models:
            c = self.cfg
            p = self.celsa_params()
            ks = p["targets"]
            out, secs, cached = self.cached_dict(
                "celsa", p, ks, lambda: adapters.train_compressed(self.train, c.celsa_config(), self.split.validation, c.progress),
                label=f"Compressed ELSA d={c.sparse_dim}")
            self.models["celsa"] = (out, secs, cached, p)
        return self.models["celsa"]

    def compresae(self, pdim: int, k: int):
        """CompresSAE codes with k non-zeros per row fitted on the dense ELSA of dimension `pdim` (the paper's
        post-hoc baseline): (codes, seconds of both fits, cached, parameters). Fitted on the default device."""
        c = self.cfg
        A, secs, cached, p = self.dense(pdim)
        params = dict(p, compresae_dim=c.sparse_dim, k=k, sae_epochs=c.compresae_epochs, sae_batch=c.compresae_batch,
                      sae_lr=c.compresae_lr)
        codes, sae_secs, sae_cached = self.cached_matrix(
            "compresae", params,
            lambda: adapters.fit_compressae(A, c.sparse_dim, k, c.compresae_epochs, c.compresae_batch,
                                            c.compresae_lr, c.seed, c.progress))
        return codes, secs + sae_secs, cached and sae_cached, params

    # evaluated rows: a long run resumes where it stopped ------------------------------------------------
    def _row_path(self, identity: dict) -> Path:
        return self.cache / "rows" / f"row-{self._key('row', dict(identity, version=ROW_CACHE_VERSION))}.json"

    def load_row(self, identity: dict):
        """(row, per-user test nDCG@100) evaluated earlier for `identity` with this split, or None."""
        path = self._row_path(identity)
        if not path.exists():
            return None
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
            return rec["row"], np.asarray(rec["per_user_ndcg"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable or partial: evaluate again

    def save_row(self, identity: dict, row: dict, per_user_ndcg) -> None:
        """Keep an evaluated row for a later run; a row that cannot be kept is only logged (the run goes on, it
        would merely evaluate that row again after an interruption)."""
        rec = {"identity": identity, "row": row, "per_user_ndcg": [float(v) for v in per_user_ndcg]}
        try:
            text = json.dumps(rec, default=json_default)
            path = self._row_path(identity)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
        except (TypeError, ValueError, OSError) as e:
            self.log(f"row cache: not kept ({e})")

    # evaluation -------------------------------------------------------------------------------------
    def exact_rankings(self, key: str, A, folds: str = "test") -> list:
        """Exact top-100 of uncompressed embeddings A for every fold of the test (overlap@100 reference) or
        the validation users."""
        if (key, folds) not in self.exact_cache:
            self.exact_cache[(key, folds)] = [exact_dense_topk(A, f.history, 100)
                                              for f in getattr(self.split, folds)]
        return self.exact_cache[(key, folds)]


def _with_curve(trained) -> tuple:
    """(model, curve) from a training function that returns either the model alone or (model, curve)."""
    return trained if isinstance(trained, tuple) else (trained, None)


def per_user_metrics(rankings: list, folds: list) -> dict:
    """Every metric for every evaluation row with a non-empty target, all folds in order."""
    per_fold = [ranking_metrics(r, f.targets, per_user=True) for r, f in zip(rankings, folds)]
    return {m: np.concatenate([pf[m] for pf in per_fold]) for m in METRICS}


def mean_metrics(per_user: dict) -> dict:
    return {m: float(v.mean()) if len(v) else float("nan") for m, v in per_user.items()}


def evaluate_rankings(rankings: list, folds: list) -> dict:
    """Mean metrics over all evaluation rows (folds weighted by their rows with targets)."""
    return mean_metrics(per_user_metrics(rankings, folds))


def paired_diff_ci(a: np.ndarray, b: np.ndarray, z: float = 1.96) -> tuple:
    """Mean of a - b over the same evaluation rows and its normal-approximation 95% interval."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return float(d.mean()), float(d.mean() - z * se), float(d.mean() + z * se)


def overlap_at(approx: list, exact: list, k: int = 100) -> float:
    tot, n = 0.0, 0
    for a, e in zip(approx, exact):
        for ra, re in zip(a[:, :k], e[:, :k]):
            re = re[re >= 0]
            if len(re) == 0:
                continue
            tot += len(np.intersect1d(ra[ra >= 0], re)) / len(re)
            n += 1
    return tot / max(n, 1)


TIMING_FIELDS = ("qps_batch", "batch_seconds", "qps_single", "p50_ms", "p99_ms", "n_batch_queries", "n_single_queries")


def time_served(served, H: sp.csr_matrix, k: int, repeats: int, n_single: int, seed: int) -> dict:
    """Batch: all test users at once, median over repeats. Single: one user at a time, p50/p99."""
    batch = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        served.recommend(H, k)
        batch.append(time.perf_counter() - t0)
    t_batch = float(np.median(batch))
    rng = np.random.default_rng(seed)
    rows = rng.choice(H.shape[0], size=min(n_single, H.shape[0]), replace=False)
    hs = [H[int(r)] for r in rows]
    served.recommend_one(hs[0], k)  # warm-up (JIT, caches)
    lat = []
    for h in hs:
        t0 = time.perf_counter()
        served.recommend_one(h, k)
        lat.append(time.perf_counter() - t0)
    lat = np.asarray(lat)
    return {"qps_batch": H.shape[0] / t_batch, "batch_seconds": t_batch, "qps_single": 1.0 / lat.mean(),
            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "n_batch_queries": int(H.shape[0]), "n_single_queries": int(len(lat))}


# ---- runner ----------------------------------------------------------------------------------------

def run_benchmark(cfg: BenchConfig, log=print) -> dict:
    t_start = time.perf_counter()
    ctx = Context(cfg, log)
    c = cfg
    log(f"data {c.data}: {ctx.X.shape[0]} users x {ctx.n_items} items, {ctx.X.nnz} interactions "
        f"(fingerprint {ctx.fingerprint}); {c.n_test} test users, {c.n_val} validation users (every choice is made on "
        f"them), {c.folds} fold(s), train users {ctx.train.shape[0]}")
    rows: list[dict] = []
    folds = ctx.split.test
    val_folds = ctx.split.validation
    H0 = folds[0].history
    H_time = H0[: c.n_time_batch] if c.n_time_batch else H0
    budgets = sorted(c.budgets, reverse=True)

    def time_row(served):
        with limited_threads(c.threads):
            # warm-up so numba/faiss one-off costs are not in the timed numbers
            served.recommend(H0[: min(8, H0.shape[0])], 100)
            return time_served(served, H_time, 100, c.repeats, c.n_single, c.seed)

    timing_settings = {"threads": c.threads, "repeats": c.repeats, "n_single": c.n_single,
                       "n_time_batch": c.n_time_batch, "seed": c.seed}

    def row_identity(identity: dict, timed: bool) -> dict:
        # what makes a cached row valid: the served method as named, its evaluation and, when timed, the timing
        return dict(identity, timed=timed, timing=timing_settings if timed else None, folds=c.folds)

    def add_cached_row(hit, group_bar=None) -> dict:
        cached_row, users = hit
        per_user[len(rows)] = users
        row = dict(cached_row, row_cached=True, cached=True)  # its training seconds are an earlier run's
        rows.append(row)
        log(f"  {row['method']:<34} {row['config']:<40} nDCG@100 {row['ndcg@100']:.4f}  "
            f"(validation {row['val_ndcg@100']:.4f})  from the row cache of an earlier run")
        if group_bar is not None:
            group_bar.update(1)
        return row

    def evaluate(served, group_bar=None, timed=True):
        # rankings on every core (results do not depend on threads); timing on c.threads. Untimed rows (FAISS
        # configurations not chosen on the validation users) get no speed figures. A row evaluated by an earlier
        # run with the same split, identity and timing settings is taken from the cache.
        identity = row_identity({"method": served.method, "group": served.group, "budget": served.budget,
                                 "config": served.config, "params": served.params, "base": served.base,
                                 "exact": served.exact}, timed)
        hit = ctx.load_row(identity)
        if hit is not None:
            return add_cached_row(hit, group_bar)
        rankings = [served.recommend(f.history, 100) for f in folds]
        timing = time_row(served) if timed else dict.fromkeys(TIMING_FIELDS)
        user_metrics = per_user_metrics(rankings, folds)
        metrics = mean_metrics(user_metrics)
        val_ndcg = evaluate_rankings([served.recommend(f.history, 100) for f in val_folds], val_folds)["ndcg@100"]
        per_user[len(rows)] = user_metrics["ndcg@100"]
        ov = None
        if not served.exact and served.base is not None and served.base in base_store:
            ov = overlap_at(rankings, ctx.exact_rankings(served.base, base_store[served.base]))
        row = {
            "method": served.method, "group": served.group, "budget": served.budget, "config": served.config,
            **metrics, "val_ndcg@100": val_ndcg,
            "paper_bytes_per_item": served.paper_bytes_per_item,
            "stored_bytes_per_item": served.stored_bytes_per_item,
            "code_bytes_per_item": served.code_bytes_per_item,
            "fixed_bytes": served.fixed_bytes,
            "total_serving_bytes": served.stored_bytes,
            "train_seconds": served.train_seconds, "build_seconds": served.build_seconds, "cached": served.cached,
            **timing, "exact": served.exact, "overlap@100": ov,
            "params": served.params, "seed": served.params.get("seed", c.seed), "extra": served.extra,
        }
        ctx.save_row(identity, row, user_metrics["ndcg@100"])
        row["row_cached"] = False
        rows.append(row)
        log(f"  {served.method:<34} {served.config:<40} nDCG@100 {metrics['ndcg@100']:.4f}  "
            f"(validation {val_ndcg:.4f})  R@20 {metrics['recall@20']:.4f}  {served.paper_bytes_per_item:8.1f} B/item  "
            + (f"{timing['qps_batch']:9.1f} q/s" if timed else "  (untimed)")
            + (f"  overlap {ov:.3f}" if ov is not None else ""))
        if group_bar is not None:
            group_bar.update(1)
        return row

    base_store: dict = {}
    per_user: dict = {}  # row position -> per-evaluation-row nDCG@100 (for paired intervals vs the reference)

    def bar(total, desc):
        return tqdm(total=total, desc=desc, disable=not c.progress, leave=True, unit="step")

    # 1. dense reference: the dimension with the best nDCG@100 on the validation users (test figures recorded
    # for every candidate, reported after the choice)
    b = bar(len(c.ref_dims) + 1, "dense reference")
    selection = {"validation": {}, "test": {}}
    for dim in c.ref_dims:
        A, secs, cached, p = ctx.dense(dim)
        selection["validation"][int(dim)] = evaluate_rankings(
            ctx.exact_rankings(f"dense{dim}", A, "validation"), val_folds)["ndcg@100"]
        selection["test"][int(dim)] = evaluate_rankings(ctx.exact_rankings(f"dense{dim}", A), folds)["ndcg@100"]
        base_store[f"dense{dim}"] = A
        b.update(1)
    ref_dim = max(selection["validation"], key=selection["validation"].get)
    A_ref, secs, cached, p = ctx.dense(ref_dim)
    ref_row = evaluate(flat_served(A_ref, "Dense ELSA reference (FlatIP)", "dense", None, f"ELSA r={ref_dim} f32, IndexFlatIP",
                                   p, train_seconds=secs, cached=cached, base=f"dense{ref_dim}"), b)
    b.close()
    log(f"dense reference: r={ref_dim} (validation nDCG@100 by r: {selection['validation']})")

    # 2. low-dimensional dense ELSA at the budget
    lowdim = {}
    if "lowdim" in c.methods or ("faiss" in c.methods and "lowdim" in c.faiss_bases):
        b = bar(len(budgets), "low-dim dense ELSA")
        for B in budgets:
            r = B // 4
            A, secs, cached, p = ctx.dense(r)
            lowdim[r] = (A, secs, cached, p)
            base_store[f"dense{r}"] = A
            if "lowdim" in c.methods:
                evaluate(flat_served(A, "Low-dim dense ELSA (FlatIP)", "lowdim", B, f"ELSA r={r} f32, IndexFlatIP", p,
                                     train_seconds=secs, cached=cached, base=f"dense{r}"), b)
            else:
                b.update(1)
        b.close()

    # 3. FAISS codes on the reference and on the low-dim models
    if "faiss" in c.methods:
        from .faiss_methods import build_faiss, candidate_configs, faiss_identity

        bases = []
        if "reference" in c.faiss_bases:
            bases.append((A_ref, f"ELSA r={ref_dim}", f"dense{ref_dim}", ctx.dense(ref_dim)[3], ctx.dense(ref_dim)[1]))
        if "lowdim" in c.faiss_bases:
            for r, (A, secs, cached, p) in lowdim.items():
                if r != ref_dim:
                    bases.append((A, f"ELSA r={r}", f"dense{r}", p, secs))
        jobs = [(base, cfgf) for base in bases
                for cfgf in candidate_configs(base[0].shape[1], budgets, c.faiss_kinds, c.opq_max_dim, ctx.n_items)]
        b = bar(len(jobs), "FAISS codes")
        # every configuration ranks the test and validation users; only each budget's choice on the validation
        # users (the main table's FAISS row) is timed, so the slow codes of the grid cost one ranking pass
        # budget -> (row, its position, served or None when the row came from the cache, how to build it) with the
        # best validation nDCG@100 so far; a cached row's quantiser is looked up before it is trained
        chosen: dict = {}
        for (A, label, key, p, secs), fc in jobs:
            hit = ctx.load_row(row_identity(faiss_identity(fc, label, key, p), timed=False))
            if hit is not None:
                row, served = add_cached_row(hit, b), None
            else:
                served = build_faiss(A, fc, label, key, p)  # built on every core; build_seconds say so
                served.train_seconds = secs
                row = evaluate(served, b, timed=False)
            if row["budget"] not in chosen or row["val_ndcg@100"] > chosen[row["budget"]][0]["val_ndcg@100"]:
                chosen[row["budget"]] = (row, len(rows) - 1, served, (A, fc, label, key, p, secs))
            del served
        for row, pos, served, (A, fc, label, key, p, secs) in chosen.values():
            identity = row_identity(faiss_identity(fc, label, key, p), timed=True)
            hit = ctx.load_row(identity)
            if hit is not None:
                timing = {f: hit[0][f] for f in TIMING_FIELDS}
            else:
                if served is None:
                    served = build_faiss(A, fc, label, key, p)
                timing = time_row(served)
                ctx.save_row(identity, {**{f: v for f, v in row.items() if f != "row_cached"}, **timing},
                             per_user[pos])
            row.update(timing)
        del chosen
        b.close()

    # 4. post-hoc top-k of a dense d-dimensional ELSA
    if "posthoc" in c.methods:
        pdim = c.posthoc_dim or c.sparse_dim
        A, secs, cached, p = ctx.dense(pdim)
        base_store[f"dense{pdim}"] = A
        b = bar(len(budgets), "post-hoc top-k")
        for B in budgets:
            k = B // 8
            t0 = time.perf_counter()
            Ak = row_topk(A, k, renormalise=True)
            served = index_served(Ak, "f32", "Post-hoc top-k ELSA (our index)", "posthoc", B,
                                  f"ELSA r={pdim} -> top-{k}/row, f32", dict(p, k=k), train_seconds=secs,
                                  cached=cached)
            served.build_seconds += time.perf_counter() - t0
            evaluate(served, b)
        b.close()

    # 4b. CompresSAE (the paper's "sparse projection post training") on the same dense model, codes served
    if "compresae" in c.methods:
        pdim = c.posthoc_dim or c.sparse_dim
        base_store[f"dense{pdim}"] = ctx.dense(pdim)[0]
        b = bar(len(budgets), "CompresSAE")
        for B in budgets:
            k = B // 8
            codes, train_secs, codes_cached, sp_params = ctx.compresae(pdim, k)
            served = index_served(sp.csr_matrix(codes), "f32", "ELSA + CompresSAE (our index)", "compresae", B,
                                  f"ELSA r={pdim} -> CompresSAE d={c.sparse_dim}, k={k}, f32", sp_params,
                                  train_seconds=train_secs, cached=codes_cached)
            evaluate(served, b)
        b.close()

    # 5. pruned EASE
    ease_info = {"validation": {}, "test": {}}
    if "ease" in c.methods:
        ks = [B // 8 for B in budgets]
        b = bar(len(budgets) + (len(c.ease_lams) if ctx.n_items <= c.ease_dense_max_items else 0), "pruned EASE")
        if ctx.n_items <= c.ease_dense_max_items:
            best = None
            for lam in c.ease_lams:
                t0 = time.perf_counter()
                Bm = adapters.fit_ease(ctx.train, lam)
                secs = time.perf_counter() - t0
                full = DenseItemItemServed(method="EASE full (reference)", group="ease", budget=None,
                                           config=f"EASE lambda={lam:g}, dense {ctx.n_items}x{ctx.n_items}",
                                           params={"model": "ease", "lam": lam, "seed": c.seed},
                                           paper_bytes_per_item=4.0 * ctx.n_items, stored_bytes=int(Bm.nbytes),
                                           n_items=ctx.n_items, train_seconds=secs, B=Bm)
                nd = evaluate_rankings([full.recommend(f.history, 100) for f in val_folds], val_folds)["ndcg@100"]
                ease_info["validation"][float(lam)] = nd
                ease_info["test"][float(lam)] = evaluate_rankings(
                    [full.recommend(f.history, 100) for f in folds], folds)["ndcg@100"]
                if best is None or nd > best[0]:
                    best = (nd, lam, Bm, secs, full)
                b.update(1)
            _, lam, Bm, secs, full = best
            evaluate(full)
            pruned = {k: adapters.prune_rows(Bm, k) for k in ks}
            cached = False
            del Bm
        else:
            lam = c.ease_lams[0]
            p = {"model": "ease_lean", "lam": lam, "ks": ks}

            def fit():
                log(f"EASE on {ctx.n_items} items: float32 in-place Cholesky inverse "
                    f"({ctx.n_items ** 2 * 4 / 1e9:.1f} GB); this takes a while")
                return adapters.fit_pruned_ease(ctx.train, lam, ks)

            pruned, secs, cached = ctx.cached_dict("ease", p, ks, fit)
        for B in budgets:
            k = B // 8
            evaluate(sparse_rows_served(pruned[k], "Pruned EASE (exact)", "ease", B, f"EASE lambda={lam:g}, top-{k}/row",
                                        {"model": "ease", "lam": lam, "k": k, "seed": c.seed}, train_seconds=secs,
                                        cached=cached), b)
        b.close()

    # 6. Compressed ELSA, served by our index
    if "celsa" in c.methods or "seismic" in c.methods:
        models, secs, cached, p = ctx.celsa()
        if "celsa" in c.methods:
            b = bar(len(budgets) * len(c.celsa_values), "Compressed ELSA")
            for B in budgets:
                k = B // 8
                for vt in c.celsa_values:
                    evaluate(index_served(models[k], vt, f"Compressed ELSA {vt} (our index)", "celsa", B,
                                          f"d={c.sparse_dim}, k={k}, {c.schedule}+{'rewind' if c.rewind else 'no rewind'}, {vt}",
                                          dict(p, k=k, values=vt), train_seconds=secs, cached=cached), b)
            b.close()

        # 7. Seismic over the same Compressed ELSA embeddings
        if "seismic" in c.methods:
            if not seismic_available():
                log("seismic: pyseismic-lsr is not installed; skipped")
            else:
                b = bar(len(budgets), "Seismic")
                for B in budgets:
                    k = B // 8
                    base_store[f"celsa{k}"] = models[k]
                    with limited_threads(c.threads):
                        served = seismic_served(models[k], "Seismic over Compressed ELSA", "seismic", B,
                                                f"d={c.sparse_dim}, k={k}, approximate",
                                                dict(p, k=k, **c.seismic_params), threads=c.threads,
                                                train_seconds=secs, cached=cached, base=f"celsa{k}")
                    evaluate(served, b)
                b.close()

    # speed ratios against the dense reference (same process, same threads); paired nDCG difference
    ref_pos = next(i for i, r in enumerate(rows) if r is ref_row)
    for i, r in enumerate(rows):
        r["ndcg_diff_vs_ref"], lo, hi = paired_diff_ci(per_user[i], per_user[ref_pos])
        r["ndcg_diff_ci95"] = [lo, hi]
        timed = r["qps_batch"] is not None
        r["speedup_batch_vs_ref"] = r["qps_batch"] / ref_row["qps_batch"] if timed else None
        r["speedup_single_vs_ref"] = r["qps_single"] / ref_row["qps_single"] if timed else None
        r["ndcg_vs_ref"] = r["ndcg@100"] / ref_row["ndcg@100"] if ref_row["ndcg@100"] > 0 else float("nan")
    meta = {
        "config": c.to_dict(), "dataset": c.dataset, "data_fingerprint": ctx.fingerprint,
        "n_users": int(ctx.X.shape[0]), "n_items": int(ctx.n_items), "n_interactions": int(ctx.X.nnz),
        "n_train_users": int(ctx.train.shape[0]), "n_test_users": int(c.n_test), "n_val_users": int(c.n_val),
        "n_eval_rows": int(sum(f.history.shape[0] for f in folds)),
        "n_val_rows": int(sum(f.history.shape[0] for f in val_folds)),
        "selection_users": "validation",
        "reference_dim": int(ref_dim), "reference_selection_ndcg": selection,
        "ease_lambda_selection_ndcg": ease_info if ease_info["validation"] else {},
        "seconds": time.perf_counter() - t_start, "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "threads": c.threads,
        "seismic_available": seismic_available(),
        "rows_from_cache": sum(bool(r.get("row_cached")) for r in rows),
    }
    # per evaluation row nDCG@100 of every result row (same order): the claims' paired intervals between methods
    per_user_ndcg = [[round(float(v), 5) for v in per_user[i]] for i in range(len(rows))]
    return {"meta": meta, "rows": rows, "curves": ctx.curves, "per_user_ndcg": per_user_ndcg}


def _check_recorded_split(path, meta: dict, cfg: BenchConfig, fingerprint: str) -> None:
    """Refuse a model trained on another split: its training users could be the benchmark's test users."""
    recorded = meta.get("config", {})
    retrain = f"spidx train --test-users {cfg.n_test} --val-users {cfg.n_val} --seed {cfg.seed} --no-refit"
    if meta.get("refit"):
        raise InputError(f"{path}: was retrained on its validation users (--refit), which are the benchmark's "
                         f"validation users; retrain with the benchmark's split ({retrain})")
    expected = {"test_users": cfg.n_test, "val_users": cfg.n_val, "seed": cfg.seed}
    for name, want in expected.items():
        if name not in recorded:
            raise InputError(f"{path}: records no {name}, so its held-out split cannot be checked against the "
                             f"benchmark's ({name}={want})")
        if int(recorded[name]) != int(want):
            raise InputError(f"{path}: trained with {name}={recorded[name]}, the benchmark holds out {name}={want}; "
                             f"retrain with the benchmark's split ({retrain})")
    fp = meta.get("data", {}).get("fingerprint")
    if fp != fingerprint:
        raise InputError(f"{path}: trained on data with fingerprint {fp}, the benchmark's is {fingerprint}")


def import_compressed(cfg: BenchConfig, files: dict, source: str = "") -> list:
    """Seed the cache with Compressed ELSA matrices trained elsewhere (e.g. by `spidx train --model
    compressed-elsa` with the same split and parameters), so the benchmark does not train them again.

    `files` maps k -> spidx embeddings file. The files must cover every target of `cfg`, hold exactly k
    non-zeros per row and the data set's items in the same order, and record the benchmark's split (the same
    data fingerprint, test users, validation users and seed: `spidx train --test-users N --val-users M
    --seed S` draws the same users as the benchmark's `n_test`, `n_val` and `seed`). Returns the cache paths written.
    """
    ctx = Context(cfg)
    p = ctx.celsa_params()
    missing = sorted(set(p["targets"]) - set(int(k) for k in files))
    if missing:
        raise InputError(f"no file for target(s) {missing}")
    key = ctx._key("celsa", p)
    written = []
    for k in p["targets"]:
        emb = load_embeddings(files[k])
        m = sp.csr_matrix(emb.matrix)
        if m.shape != (ctx.n_items, p["dim"]):
            raise InputError(f"{files[k]}: shape {m.shape}, expected {(ctx.n_items, p['dim'])}")
        if not np.array_equal(np.asarray(emb.item_ids).astype(str), np.asarray(ctx.data.item_ids).astype(str)):
            raise InputError(f"{files[k]}: item ids differ from the data set's")
        if not np.all(np.diff(m.indptr) == k):
            raise InputError(f"{files[k]}: rows do not all have {k} non-zeros")
        meta = emb.meta
        _check_recorded_split(files[k], meta, cfg, ctx.fingerprint)
        secs = float(meta.get("train_seconds", float("nan")))
        path = ctx.cache / f"celsa-{key}-k{k}.npz"
        save_embeddings(path, m, np.arange(m.shape[0]), {
            "model": "celsa", "params": p, "k": k, "train_seconds": secs, "data_fingerprint": ctx.fingerprint,
            "imported_from": os.path.abspath(files[k]), "source": source,
            "source_meta": {a: b for a, b in meta.items() if isinstance(b, (str, int, float, bool))}})
        written.append(str(path))
    return written
