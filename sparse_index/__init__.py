"""spidx: sparse item embeddings (Compressed ELSA) served from an exact inverted index.

The public surface, in the style of faiss and implicit::

    import spidx

    model = spidx.CompressedELSA(dim=1024, nnz=32, epochs=5)   # or spidx.ELSA(...), spidx.EASE(...)
    model.fit(user_items)                                       # users x items scipy CSR
    ids, scores = model.recommend(0, user_items[0], N=10)       # implicit's conventions
    index = model.to_index(values="f16")                        # a spidx.SparseIndex
    D, I = index.search(index.query_vectors(user_items[:5]), 10)
    spidx.write_index(index, "items.spidx")
    index = spidx.read_index("items.spidx")                     # memory-mapped

Serving needs numpy, scipy and numba only: the model classes live in `spidx.trainer` (torch) and are
imported on first use of `spidx.ELSA`, `spidx.CompressedELSA`, `spidx.EASE` or `spidx.TrainConfig`.
"""
from __future__ import annotations

import os

from .embeddings import Embeddings, load_embeddings, save_embeddings
from .errors import InputError
from .evaluation import evaluate_ranker, make_split, ranking_metrics
from .index import SparseIndex
from .interactions import Interactions, read_interactions

_LAZY = {"ELSA": "models", "CompressedELSA": "models", "EASE": "models", "TrainConfig": "config"}

__all__ = ["CompressedELSA", "EASE", "ELSA", "Embeddings", "InputError", "Interactions", "SparseIndex",
           "TrainConfig", "evaluate_ranker", "load_embeddings", "make_split", "ranking_metrics", "read_index",
           "read_interactions", "save_embeddings", "write_index"]


def write_index(index: SparseIndex, path) -> None:
    """Write an index to `path` atomically (argument order as faiss.write_index).

    Parameters
    ----------
    index : SparseIndex
    path : str or os.PathLike
    """
    if not isinstance(index, SparseIndex):
        raise InputError(f"write_index needs a SparseIndex, got {type(index).__name__}")
    index.save(os.fspath(path))


def read_index(path, mmap: bool = True) -> SparseIndex:
    """Open an index written by `write_index` or `spidx build`; checksums are verified.

    Parameters
    ----------
    path : str or os.PathLike
    mmap : bool
        Memory-map the arrays (the file is paged in on demand) instead of reading them into memory.
    """
    return SparseIndex.load(os.fspath(path), mmap=mmap)


def __getattr__(name: str):
    """Import the model classes (and torch) only when first used."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"spidx.trainer.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spidx' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
