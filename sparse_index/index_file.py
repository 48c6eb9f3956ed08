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
import re
import struct

import numpy as np

from .atomic import atomic_path
from .errors import InputError

MAGIC = b"SPIDXIDX"
FORMAT = "spidx-index"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIIQ32s")
_ALIGN = 64
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
    """Open an index file; anything wrong raises InputError with a one-line reason.

    Checksums (`verify`) detect accidents; the structural checks (`_check_header`,
    `_validate_structure`) always run, so a crafted file with valid checksums cannot make the
    kernels read out of bounds or score silently wrong.
    """
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
    except (ValueError, RecursionError):
        raise InputError(f"{path}: corrupt index (header is not valid JSON)") from None
    _check_header(path, header, size)
    arrays, covered = {}, [(0, _PREFIX.size + header_len)]
    for name in _ARRAY_RULES:
        spec = header["arrays"][name]
        start, nbytes = spec["offset_abs"], spec["nbytes"]
        raw = buf[start:start + nbytes]
        if verify and _sha256(raw) != spec["sha256"]:
            raise InputError(f"{path}: corrupt index (checksum mismatch in array '{name}')")
        arrays[name] = raw.view(np.dtype(spec["dtype"])).reshape(spec["shape"])
        covered.append((start, start + nbytes))
    if verify:
        covered.sort()
        for (_, end), (nxt, _) in zip(covered, covered[1:] + [(size, size)]):
            if nxt < end:
                raise InputError(f"{path}: corrupt index (arrays overlap at byte {nxt})")
            if np.any(buf[end:nxt]):
                raise InputError(f"{path}: corrupt index (non-zero padding between bytes {end} and {nxt})")
    _validate_structure(path, arrays, header)
    return cls(**arrays, values=header["values"], build=header["build"],
               taat_cost_ratio=float(header["taat_cost_ratio"]))


# ---- structural validation ---------------------------------------------------------------------
# Header fields and their JSON types (bool is refused where an int is expected).
_HEADER_TYPES = {"format": str, "format_version": int, "n_items": int, "d": int, "nnz": int, "k": int,
                 "values": str, "taat_cost_ratio": (int, float), "build": dict, "file_size": int, "arrays": dict}
_SPEC_TYPES = {"dtype": str, "shape": list, "offset_abs": int, "nbytes": int, "sha256": str}
_MAX_ID_CHARS = 65536  # longest string item id (the '<U' dtype's length) a file may declare


def _json_type_ok(value, types) -> bool:
    return isinstance(value, types) and not (isinstance(value, bool) and types in (int, (int, float)))


def _check_header(path, header, size: int) -> None:
    """Check the header's field types and every array's declared dtype, shape and extent against the
    file size, before any of them is used to view or allocate memory."""
    def bad(why):
        raise InputError(f"{path}: corrupt index header ({why})")

    if not isinstance(header, dict):
        raise InputError(f"{path}: not a spidx index (header is a JSON {type(header).__name__}, not an object)")
    if header.get("format") != FORMAT:
        raise InputError(f"{path}: not a spidx index (format {header.get('format')!r})")
    for name, types in _HEADER_TYPES.items():
        if name not in header:
            bad(f"field '{name}' missing")
        if not _json_type_ok(header[name], types):
            bad(f"field '{name}' is a JSON {type(header[name]).__name__}")
    if header["file_size"] != size:
        raise InputError(f"{path}: truncated or extended index ({size} bytes, header says {header['file_size']})")
    for name in ("n_items", "d", "nnz", "k"):
        if not 0 <= header[name] < 2**62:
            bad(f"'{name}' = {header[name]} out of range")
    ratio = float(header["taat_cost_ratio"])
    if not (np.isfinite(ratio) and ratio > 0):
        bad(f"taat_cost_ratio = {ratio} must be a positive finite number")
    if header["values"] not in _VALUE_DTYPE:
        bad(f"unknown value type {header['values']!r}")
    for name, (allowed, length, _) in _ARRAY_RULES.items():
        spec = header["arrays"].get(name)
        if spec is None:
            raise InputError(f"{path}: corrupt index (array '{name}' missing)")
        if not isinstance(spec, dict):
            bad(f"array '{name}' description is not an object")
        for field, types in _SPEC_TYPES.items():
            if not _json_type_ok(spec.get(field), types):
                bad(f"array '{name}' field '{field}' missing or of the wrong type")
        itemsize = _itemsize(spec["dtype"], allowed)
        if itemsize is None:
            raise InputError(f"{path}: corrupt index (array '{name}' has unexpected dtype {spec['dtype'][:20]!r})")
        shape = spec["shape"]
        if len(shape) != 1 or not _json_type_ok(shape[0], int) or shape[0] != length(header):
            bad(f"array '{name}' has shape {str(shape)[:40]}, expected [{length(header)}]")
        start, nbytes = spec["offset_abs"], spec["nbytes"]
        if nbytes != shape[0] * itemsize or not 0 <= start <= size - nbytes:
            raise InputError(f"{path}: corrupt index (array '{name}' extent does not fit the file)")


def _itemsize(dtype: str, allowed) -> int | None:
    """Bytes per element of an allowed dtype string, None when it is not allowed (parsed without numpy,
    so absurd strings such as '<U99999999999' never reach np.dtype)."""
    if dtype in allowed:
        return np.dtype(dtype).itemsize
    m = re.fullmatch(r"<U([0-9]{1,6})", dtype)
    if "<U" in allowed and m and 1 <= int(m.group(1)) <= _MAX_ID_CHARS:
        return 4 * int(m.group(1))
    return None


def _check_pointers(ptr, end: int):
    if ptr[0] != 0 or ptr[-1] != end:
        return f"does not run from 0 to {end}"
    if len(ptr) > 1 and np.any(ptr[1:] < ptr[:-1]):
        return "is not monotone (non-decreasing)"
    return None


def _check_below(bound_name: str):
    def check(a, header):
        bound = header[bound_name]
        if len(a) and (int(a.min()) < 0 or int(a.max()) >= bound):
            return f"holds values outside 0..{bound - 1}"
        return None
    return check


def _check_values(a, header):
    if a.dtype == np.uint16:  # float16 bits: exponent all ones is inf or NaN
        finite = not np.any((a & 0x7C00) == 0x7C00)
    elif a.dtype.kind == "f":
        finite = bool(np.isfinite(a).all())
    else:
        finite = True
    return None if finite else "holds NaN or infinite values"


def _check_scale(a, header):
    return None if bool(np.all(np.isfinite(a) & (a > 0))) else "holds non-positive or non-finite scales"


def _check_unique(a, header):
    s = np.sort(np.asarray(a))
    return "holds duplicate item ids" if len(s) > 1 and np.any(s[1:] == s[:-1]) else None


# Every array of the file: allowed dtypes, expected length from the header, and a vectorised value
# check returning a problem (or None). New arrays are added here.
_ARRAY_RULES = {
    "col_ptr": (("<i4", "<i8"), lambda h: h["d"] + 1, lambda a, h: _check_pointers(a, h["nnz"])),
    "col_items": (("<i4",), lambda h: h["nnz"], _check_below("n_items")),
    "col_values": (("<f4", "<u2", "|i1"), lambda h: h["nnz"], _check_values),
    "row_ptr": (("<i4", "<i8"), lambda h: h["n_items"] + 1, lambda a, h: _check_pointers(a, h["nnz"])),
    "row_dims": (("<u2", "<i4"), lambda h: h["nnz"], _check_below("d")),
    "row_values": (("<f4", "<u2", "|i1"), lambda h: h["nnz"], _check_values),
    "dim_scale": (("<f4",), lambda h: h["d"], _check_scale),
    "item_ids": (("<i8", "<U"), lambda h: h["n_items"], _check_unique),
}


def _validate_structure(path, arrays: dict, header: dict) -> None:
    """Refuse (InputError) an index whose arrays are inconsistent, whatever their checksums say:
    lengths from the header, pointers monotone from 0 to nnz, item positions and dimensions in range,
    finite values, unique ids, and both copies of the matrix (posting lists and forward rows) holding
    the same entries. Vectorised: O(nnz) numpy passes."""
    def fail(why):
        raise InputError(f"{path}: inconsistent index ({why})")

    value_dtype = _VALUE_DTYPE[header["values"]]
    for name in ("col_values", "row_values"):
        if arrays[name].dtype.str != value_dtype:
            fail(f"value type {header['values']!r} does not match the dtype {arrays[name].dtype} of '{name}'")
    for name, (_, _, check) in _ARRAY_RULES.items():
        problem = check(arrays[name], header)
        if problem:
            fail(f"array '{name}' {problem}")
    row_lengths = np.diff(arrays["row_ptr"])
    if header["k"] != int(row_lengths.max(initial=0)):
        fail(f"header k = {header['k']} but the longest row has {int(row_lengths.max(initial=0))} entries")
    if _entries_digest(arrays["row_ptr"], arrays["row_dims"], arrays["row_values"], by_row=True) != \
            _entries_digest(arrays["col_ptr"], arrays["col_items"], arrays["col_values"], by_row=False):
        fail("posting lists and forward rows hold different entries")


def _entries_digest(ptr, inner, values, by_row: bool) -> int:
    """Order-independent digest of the (item, dimension, value bits) entries of one copy of the matrix."""
    from .validate_kernels import entries_digest

    bits = values.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[values.itemsize])
    return int(entries_digest(np.asarray(ptr), np.asarray(inner), np.asarray(bits), by_row))


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
