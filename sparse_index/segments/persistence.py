"""Reading item matrices for segmentation, and the segments file (versioned, checksummed, atomic, no pickle)."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..ids import normalize_ids
from ..npz import NpzReader
from .factors import as_csr
from .partition import Segments

FORMAT = "spidx-segments"
FORMAT_VERSION = 1


def load_item_matrix(path) -> tuple:
    """(Â as float32 CSR, item_ids) from a spidx index file (`spidx build`) or an embeddings .npz."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: index file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an index or embeddings file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == b"SPIDXIDX":
        from ..index import SparseIndex

        idx = SparseIndex.load(path)
        return as_csr(idx.to_csr()), normalize_ids(np.asarray(idx.item_ids))
    if magic[:2] == b"PK":
        from ..embeddings import load_embeddings

        emb = load_embeddings(path)
        return as_csr(emb.matrix), emb.item_ids
    raise InputError(f"{path}: neither a spidx index nor a spidx embeddings file")


def segments_path(index_path) -> str:
    """Sidecar path of the segments of an index: INDEX.segments.npz (INDEX/segments.npz for a folder)."""
    p = os.fspath(index_path)
    if os.path.isdir(p):
        return os.path.join(p, "segments.npz")
    return p + ".segments.npz"


def _checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_segments(path, seg: Segments) -> None:
    """Atomic, versioned, pickle-free .npz (a checksum over all arrays is stored and verified)."""
    ids = seg.item_ids
    arrays = {
        "item_segment": seg.item_segment.astype(np.int64),
        "sig_indptr": seg.sig_indptr.astype(np.int64),
        "sig_dims": seg.sig_dims.astype(np.int64),
        "sig_signs": seg.sig_signs.astype(np.int8),
        "item_ids": ids if ids.dtype.kind in "iu" else ids.astype(str),
        "header": np.array(json.dumps({
            "format": FORMAT, "format_version": FORMAT_VERSION, "d": int(seg.d), "fingerprint": seg.fingerprint,
            "names": list(seg.names), "descriptions": list(seg.descriptions),
            "factors": [list(f) for f in seg.factors], "params": seg.params,
        })),
    }
    if seg.titles is not None:
        arrays["titles"] = np.asarray([str(t) for t in seg.titles], dtype=str)
    arrays["checksum"] = np.array(_checksum(arrays))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def load_segments(path, fingerprint: str | None = None) -> Segments:
    """Read a segments file; wrong format/version, corruption or (with `fingerprint`) a segments
    file built on a different index raise InputError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: segments file not found (run `spidx segments INDEX` first)")
    with NpzReader(path, "segments") as z:
        arrays = {k: z.read(k) for k in z.names}
    need = {"item_segment", "sig_indptr", "sig_dims", "sig_signs", "item_ids", "header", "checksum"}
    if not need <= set(arrays):
        raise InputError(f"{path}: not a spidx segments file (missing {', '.join(sorted(need - set(arrays)))})")
    stored = str(arrays.pop("checksum"))
    if _checksum(arrays) != stored:
        raise InputError(f"{path}: segments file checksum mismatch (corrupt or edited)")
    try:
        head = json.loads(str(arrays["header"]))
    except ValueError:
        raise InputError(f"{path}: segments header is not valid JSON") from None
    if head.get("format") != FORMAT:
        raise InputError(f"{path}: not a spidx segments file (format {head.get('format')!r})")
    if head.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: segments format version {head.get('format_version')} is not supported "
                         f"(expected {FORMAT_VERSION}); rebuild with `spidx segments`")
    if fingerprint is not None and head.get("fingerprint") != fingerprint:
        raise InputError(f"{path}: segments were built on a different index (fingerprint "
                         f"{head.get('fingerprint')} != {fingerprint}); rebuild with `spidx segments`")
    seg = Segments(arrays["item_segment"].astype(np.int64), arrays["sig_indptr"].astype(np.int64),
                   arrays["sig_dims"].astype(np.int64), arrays["sig_signs"].astype(np.int8),
                   list(head["names"]), list(head["descriptions"]), [list(f) for f in head["factors"]],
                   normalize_ids(arrays["item_ids"]), int(head["d"]), str(head["fingerprint"]),
                   dict(head.get("params", {})),
                   [str(t) for t in arrays["titles"]] if "titles" in arrays else None)
    k = seg.n_segments
    if (len(seg.descriptions) != k or len(seg.factors) != k or len(seg.sig_indptr) != k + 1
            or seg.item_segment.min(initial=0) < 0 or seg.item_segment.max(initial=-1) >= k
            or len(seg.item_ids) != len(seg.item_segment)):
        raise InputError(f"{path}: inconsistent segments file")
    return seg
