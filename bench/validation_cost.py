"""Cost of the structural validation of index files on load (issue 9).

Writes a synthetic index (random rows of exactly k dimensions out of d, f32 values), then times
`SparseIndex.load` with and without the structural checks (`index_file._check_values`,
`validate_layout` and the recomputed bound summaries `_derive_summaries`), with and without checksums
(median of `--repeats`, in one process, page cache warm). Prints the ratios.

    python -m spidx.bench.validation_cost --items 1000000 --dim 4096 --nnz 32
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import scipy.sparse as sp

from spidx import index_file
from spidx.index import SparseIndex


def synthetic_index(n: int, d: int, k: int, seed: int = 0) -> SparseIndex:
    """Random k-sparse unit rows (f32), laid out in blocks as `spidx build` does."""
    rng = np.random.default_rng(seed)
    dims = np.sort(rng.integers(0, d, (n, k)), axis=1)
    while True:  # k distinct dims per row: redraw the rows that drew a dimension twice
        dup = np.flatnonzero((np.diff(dims, axis=1) == 0).any(axis=1))
        if not len(dup):
            break
        dims[dup] = np.sort(rng.integers(0, d, (len(dup), k)), axis=1)
    vals = rng.standard_normal((n, k), dtype=np.float32)
    vals /= np.linalg.norm(vals, axis=1, keepdims=True)
    A = sp.csr_matrix((vals.ravel(), dims.ravel().astype(np.int32), np.arange(n + 1, dtype=np.int64) * k),
                      shape=(n, d))
    return SparseIndex.from_embeddings(A, values="f32", build={"synthetic": True})


def median_load_seconds(path, repeats: int, verify: bool) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        SparseIndex.load(path, verify=verify)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--nnz", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "synthetic.spidx")
        synthetic_index(args.items, args.dim, args.nnz).save(path)
        print(f"{args.items:,} items x d={args.dim}, k={args.nnz}: file {os.path.getsize(path) / 2**20:.0f} MiB")
        SparseIndex.load(path)  # warm the page cache
        checks = ("_check_values", "validate_layout", "_derive_summaries")
        saved = {name: getattr(index_file, name) for name in checks}
        results = {}
        for verify in (False, True):
            with_checks = median_load_seconds(path, args.repeats, verify)
            for name in checks:
                setattr(index_file, name, lambda *a: None)
            try:
                without = median_load_seconds(path, args.repeats, verify)
            finally:
                for name, fn in saved.items():
                    setattr(index_file, name, fn)
            results[verify] = (with_checks, without)
            print(f"load (checksums {'on' if verify else 'off'}): {with_checks:.3f} s with structural validation, "
                  f"{without:.3f} s without (x{with_checks / max(without, 1e-9):.1f}; "
                  f"validation {with_checks - without:.3f} s), median of {args.repeats}")


if __name__ == "__main__":
    main()
