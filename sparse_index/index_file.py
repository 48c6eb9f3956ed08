"""The `.spidx` index file: a fixed prefix, a JSON header, then raw arrays (mmap-able, no pickle).

Layout (little-endian):
    8 bytes   magic b"SPIDXIDX"
    4 bytes   format version (uint32)
    4 bytes   reserved, zero
    8 bytes   header length in bytes (uint64)
    32 bytes  sha256 of the header
    header    UTF-8 JSON: shape, k, value type, build parameters, and for every array its dtype,
              shape, offset, length and sha256
    arrays    each at a 64-byte aligned offset; the gaps are zero bytes; the file ends after the last.

Every byte is covered: the prefix by its own checks, the header by its checksum, arrays by theirs,
the gaps by the all-zero rule, the length by `file_size`.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np

from .atomic import atomic_path
from .errors import InputError

MAGIC = b"SPIDXIDX"
FORMAT = "spidx-index"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIQ32s")
_ALIGN = 64
_ARRAY_DTYPES = {
    "col_ptr": ("<i4", "<i8"), "row_ptr": ("<i4", "<i8"), "col_items": ("<i4",),
    "row_dims": ("<u2", "<i4"), "col_values": ("<f4", "<u2", "|i1"), "row_values": ("<f4", "<u2", "|i1"),
    "dim_scale": ("<f4",), "item_ids": ("<i8", "<U"),
}
_VALUE_DTYPE = {"f32": "<f4", "f16": "<u2", "i8": "|i1"}


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _sha256(buf) -> str:
    return hashlib.sha256(memoryview(buf).cast("B")).hexdigest()


def _write_array(f, a: np.ndarray) -> None:
    f.write(memoryview(np.ascontiguousarray(a)).cast("B"))


def write_index(path, index) -> None:
    """Serialise `index` to `path` atomically (temp file beside it, fsync, rename)."""
    arrays = {name: np.ascontiguousarray(a) for name, a in index.arrays().items()}
    meta = {}
    offset = 0  # relative to the start of the array area; fixed up below
    for name, a in arrays.items():
        meta[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": int(a.nbytes),
                      "sha256": _sha256(a)}
        offset = _aligned(offset + a.nbytes)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_items": index.n_items, "d": index.d,
              "nnz": index.nnz, "k": index.k, "values": index.values, "taat_cost_ratio": index.taat_cost_ratio,
              "build": index.build, "arrays": meta}
    # the header length depends on the absolute offsets, so iterate until it is stable
    base = 0
    while True:
        for name, a in arrays.items():
            meta[name]["offset_abs"] = base + meta[name]["offset"]
        header["file_size"] = base + meta[name]["offset"] + arrays[name].nbytes
        text = json.dumps(header, sort_keys=True, default=_json_default).encode()
        new_base = _aligned(_PREFIX.size + len(text))
        if new_base == base:
            break
        base = new_base
    with atomic_path(path, suffix=".spidx") as tmp:
        with open(tmp, "wb") as f:
            f.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(text), hashlib.sha256(text).digest()))
            f.write(text)
            for name, a in arrays.items():
                f.write(b"\0" * (meta[name]["offset_abs"] - f.tell()))
                _write_array(f, a)


def read_index(cls, path, mmap: bool = True, verify: bool = True):
    """Open an index file; anything wrong raises InputError with a one-line reason."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: index file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an index file")
    size = os.path.getsize(path)
    if size < _PREFIX.size:
        raise InputError(f"{path}: not a spidx index (only {size} bytes)")
    try:
        buf = np.memmap(path, dtype=np.uint8, mode="r") if mmap else np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read index file ({type(e).__name__}: {e})") from None
    magic, version, reserved, header_len, header_sha = _PREFIX.unpack(bytes(buf[:_PREFIX.size]))
    if magic != MAGIC:
        raise InputError(f"{path}: not a spidx index (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise InputError(f"{path}: unsupported index format version {version} (this spidx reads {FORMAT_VERSION})")
    if reserved != 0:
        raise InputError(f"{path}: corrupt index (reserved prefix bytes are not zero)")
    if _PREFIX.size + header_len > size:
        raise InputError(f"{path}: truncated or corrupt index (header length {header_len} beyond end of file)")
    text = bytes(buf[_PREFIX.size:_PREFIX.size + header_len])
    if hashlib.sha256(text).digest() != header_sha:
        raise InputError(f"{path}: corrupt index (header checksum mismatch)")
    try:
        header = json.loads(text)
    except ValueError:
        raise InputError(f"{path}: corrupt index (header is not valid JSON)") from None
    if header.get("format") != FORMAT:
        raise InputError(f"{path}: not a spidx index (format {header.get('format')!r})")
    if header["file_size"] != size:
        raise InputError(f"{path}: truncated or extended index ({size} bytes, header says {header['file_size']})")
    arrays, covered = {}, [(0, _PREFIX.size + header_len)]
    for name, allowed in _ARRAY_DTYPES.items():
        spec = header["arrays"].get(name)
        if spec is None:
            raise InputError(f"{path}: corrupt index (array '{name}' missing)")
        dtype = np.dtype(spec["dtype"])
        if not any(spec["dtype"].startswith(a) for a in allowed):
            raise InputError(f"{path}: corrupt index (array '{name}' has unexpected dtype {spec['dtype']})")
        start, nbytes = spec["offset_abs"], spec["nbytes"]
        if nbytes != int(np.prod(spec["shape"])) * dtype.itemsize or start + nbytes > size:
            raise InputError(f"{path}: corrupt index (array '{name}' extent does not fit the file)")
        raw = buf[start:start + nbytes]
        if verify and _sha256(raw) != spec["sha256"]:
            raise InputError(f"{path}: corrupt index (checksum mismatch in array '{name}')")
        arrays[name] = raw.view(dtype).reshape(spec["shape"])
        covered.append((start, start + nbytes))
    if verify:
        covered.sort()
        for (_, end), (nxt, _) in zip(covered, covered[1:] + [(size, size)]):
            if nxt < end:
                raise InputError(f"{path}: corrupt index (arrays overlap at byte {nxt})")
            if np.any(buf[end:nxt]):
                raise InputError(f"{path}: corrupt index (non-zero padding between bytes {end} and {nxt})")
    index = cls(**arrays, values=header["values"], build=header["build"],
                taat_cost_ratio=float(header["taat_cost_ratio"]))
    _check_consistent(path, index, header)
    return index


def _check_consistent(path, index, header) -> None:
    n, d, nnz = header["n_items"], header["d"], header["nnz"]
    problems = []
    if index.values not in _VALUE_DTYPE or index.col_values.dtype.str != _VALUE_DTYPE[index.values]:
        problems.append(f"value type {index.values!r} does not match stored dtype {index.col_values.dtype}")
    if index.n_items != n or len(index.item_ids) != n or index.d != d or len(index.dim_scale) != d:
        problems.append("array lengths disagree with n_items/d")
    for name in ("col_items", "col_values", "row_dims", "row_values"):
        if len(getattr(index, name)) != nnz:
            problems.append(f"'{name}' has {len(getattr(index, name))} entries, expected {nnz}")
    if not problems and (index.col_ptr[-1] != nnz or index.row_ptr[-1] != nnz):
        problems.append("pointer arrays do not end at nnz")
    if problems:
        raise InputError(f"{path}: inconsistent index ({problems[0]})")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
