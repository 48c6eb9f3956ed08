"""Batch scoring of many users' histories on Ray Data (the `[ray]` extra): `spidx score`.

Pipeline: read (user, item) pairs as a Ray Dataset (Parquet, CSV with a header, or JSONL; one file
or a folder of files) -> hash-partition the pairs by user, so that every user's pairs land in one
block whatever file or block they came from (the shuffle Ray's own `groupby().map_groups` does;
a whole block is then scored in one call instead of one call per user) -> `map_batches` with
`HistoryScorer`, an actor class that memory-maps the index once per worker and calls
`SparseIndex.recommend` (the one scoring path, shared with `spidx query --histories`) -> Parquet or
JSONL files, one row per user: user, items, scores, unknown (history ids not in the index).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile

import numpy as np

from .errors import InputError
from .index import SparseIndex

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv", ".jsonl": "json",
           ".json": "json", ".jsonl.gz": "json"}


class HistoryScorer:
    """Scores one block of (user, item) pairs (every pair of each user in the block) -> one row per user.

    Built once per Ray worker (actor): the index is memory-mapped, so workers on one machine share
    its pages.
    """

    def __init__(self, index_path: str, k: int = 20, exclude_seen: bool = True, user_col: str = "user",
                 item_col: str = "item", batch_size: int = 1024):
        self.index = SparseIndex.load(index_path, mmap=True)
        self.k, self.exclude_seen, self.batch_size = k, exclude_seen, batch_size
        self.user_col, self.item_col = user_col, item_col

    def __call__(self, table):
        import pyarrow as pa
        import scipy.sparse as sp

        users = table.column(self.user_col).to_numpy(zero_copy_only=False)
        items = table.column(self.item_col).to_numpy(zero_copy_only=False)
        user_ids, row = np.unique(users, return_inverse=True)
        pos = self.index.lookup(items)
        known = pos >= 0
        H = sp.csr_matrix((np.ones(int(known.sum()), np.float32), (row[known], pos[known])),
                          shape=(len(user_ids), self.index.n_items))
        rec = self.index.recommend(H, k=self.k, exclude_seen=self.exclude_seen, batch_size=self.batch_size)
        valid = rec.positions >= 0  # a prefix of every row
        unknown_ids, code = np.unique(items[~known], return_inverse=True)
        pairs = np.unique(row[~known].astype(np.int64) * max(len(unknown_ids), 1) + code)  # each id once a user
        unknown_rows, unknown_codes = np.divmod(pairs, max(len(unknown_ids), 1))
        return pa.table({
            "user": user_ids,
            "items": _lists(rec.items[valid], valid.sum(1)),
            "scores": _lists(rec.scores[valid].astype(np.float32), valid.sum(1)),
            "unknown": _lists(unknown_ids[unknown_codes], np.bincount(unknown_rows, minlength=len(user_ids))),
        })


def _lists(values: np.ndarray, counts: np.ndarray):
    import pyarrow as pa

    offsets = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def input_format(path: str) -> str:
    """parquet / csv / json from the file name, or from the files of a folder (which must agree)."""
    names = [path] if not os.path.isdir(path) else [f for f in sorted(os.listdir(path)) if not f.startswith((".", "_"))]
    kinds = set()
    for name in names:
        ext = next((e for e in sorted(FORMATS, key=len, reverse=True) if name.lower().endswith(e)), None)
        if ext is None:
            raise InputError(f"{path}: cannot tell the format of '{os.path.basename(name)}' "
                             f"(use {', '.join(sorted(FORMATS))})")
        kinds.add(FORMATS[ext])
    if len(kinds) != 1:
        raise InputError(f"{path}: " + ("no input files" if not kinds else f"mixed formats {sorted(kinds)}"))
    return kinds.pop()


def score_on_ray(index_path: str, histories: str, output: str, *, address: str | None = None, workers: int = 1,
                 k: int = 20, exclude_seen: bool = True, user_col: str = "user", item_col: str = "item",
                 output_format: str = "parquet", partitions: int | None = None, batch_size: int = 1024,
                 cpus_per_worker: float = 1.0) -> None:
    """Score every user in `histories` with Ray Data; writes a folder of Parquet or JSONL files to `output`.

    `address`: None starts a local Ray with workers * cpus_per_worker + 1 CPUs (the extra one reads
    and shuffles: actors holding every CPU would starve those tasks); "auto" or "ray://host:port"
    joins a cluster. `workers`: scoring actors (each memory-maps the index), each reserving
    `cpus_per_worker` CPUs. `partitions`: blocks after the shuffle by user (default 4 per worker).
    The folder appears only when complete (written beside, then renamed).
    """
    try:
        import ray
    except ImportError:
        raise InputError("Ray scoring needs the ray extra: pip install 'spidx[ray]'") from None
    if output_format not in ("parquet", "jsonl"):
        raise InputError(f"unknown output format '{output_format}' (parquet or jsonl)")
    if workers <= 0 or k <= 0 or cpus_per_worker <= 0 or (partitions is not None and partitions <= 0):
        raise InputError("workers, k, cpus per worker and partitions must be positive")
    if not os.path.exists(histories):
        raise InputError(f"{histories}: file not found")
    if os.path.exists(output):
        raise InputError(f"{output} exists: remove it or choose another --output")
    SparseIndex.load(index_path, mmap=True)  # fail early, in this process, on a bad index
    kind = input_format(histories)
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=math.ceil(workers * cpus_per_worker) + 1, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    reader = {"parquet": ray.data.read_parquet, "csv": ray.data.read_csv, "json": ray.data.read_json}[kind]
    ds = reader(histories)
    missing = [c for c in (user_col, item_col) if c not in ds.schema().names]
    if missing:
        raise InputError(f"{histories}: no column(s) {', '.join(missing)} (found {', '.join(ds.schema().names)}); "
                         "set --user-col / --item-col")
    ds = ds.select_columns([user_col, item_col]).repartition(partitions or 4 * workers, keys=[user_col])
    scored = ds.map_batches(HistoryScorer, batch_size=None, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
                            fn_constructor_kwargs={"index_path": os.path.abspath(index_path), "k": k,
                                                   "exclude_seen": exclude_seen, "user_col": user_col,
                                                   "item_col": item_col, "batch_size": batch_size})
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(output) + ".", dir=parent)
    try:
        if output_format == "parquet":
            scored.write_parquet(tmp)
        else:
            scored.write_json(tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
