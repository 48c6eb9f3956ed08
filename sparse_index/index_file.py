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
from .embeddings import json_default
from .errors import InputError

MAGIC = b"SPIDXIDX"
FORMAT = "spidx-index"
FORMAT_VERSION = 2
_PREFIX = struct.Struct("<8sIIQ32s")
_ALIGN = 64
# version 2: forward rows in block order + block summaries (row_ptr only when rows vary in length);
# when d <= 4096, dimension arrays are stored as 12-bit pairs (3 bytes per 2 entries) and widened on load
_PACKED = {"row_dims": "row_dims_12bit", "summary_dims": "summary_dims_12bit"}
_PACKED_MAX_D = 4096
_VALUE_DTYPE = {"f32": "<f4", "f16": "<u2", "i8": "|i1"}


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _sha256(buf) -> str:
    return hashlib.sha256(memoryview(buf).cast("B")).hexdigest()


def _write_array(f, a: np.ndarray) -> None:
    f.write(memoryview(np.ascontiguousarray(a)).cast("B"))


def _stored_arrays(index):
    """(file name, in-memory array, packed?) for each array a file of `index` holds: row_ptr only when
    rows vary in length, item_ids only when they are not the positions 0..n-1 (faiss's default ids),
    dimensions as 12-bit pairs when d <= 4096."""
    pack = FORMAT_VERSION >= 2 and index.d <= _PACKED_MAX_D
    for name, a in index.arrays().items():
        if name == "row_ptr" and FORMAT_VERSION >= 2 and index.fixed_k:
            continue
        if name == "item_ids" and FORMAT_VERSION >= 2 and _positional(a):
            continue
        yield (_PACKED[name], a, True) if pack and name in _PACKED else (name, a, False)


def _positional(ids) -> bool:
    """True when the item ids are the integers 0..n-1 in order (then the file need not store them)."""
    ids = np.asarray(ids)
    return ids.dtype.kind in "iu" and bool(np.array_equal(ids, np.arange(len(ids))))


def stored_nbytes(index) -> dict:
    """Bytes of each array in the file `write_index` would write (without writing it)."""
    return {stored: 3 * ((len(a) + 1) // 2) if packed else int(a.nbytes) for stored, a, packed in _stored_arrays(index)}


def write_index(path, index) -> None:
    """Serialise `index` to `path` atomically (temp file beside it, fsync, rename)."""
    arrays = {stored: pack_12bit(a) if packed else np.ascontiguousarray(a)
              for stored, a, packed in _stored_arrays(index)}
    meta = {}
    offset = 0  # relative to the start of the array area; fixed up below
    for name, a in arrays.items():
        meta[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "offset": offset, "nbytes": int(a.nbytes),
                      "sha256": _sha256(a)}
        offset = _aligned(offset + a.nbytes)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_items": index.n_items, "d": index.d,
              "nnz": index.nnz, "k": index.k, "fixed_k": index.fixed_k, "n_blocks": index.n_blocks,
              "n_listed": len(index.summary_dims),
              "values": index.values, "build": index.build, "arrays": meta}
    # the header length depends on the absolute offsets, so iterate until it is stable
    base = 0
    while True:
        for name, a in arrays.items():
            meta[name]["offset_abs"] = base + meta[name]["offset"]
        header["file_size"] = base + meta[name]["offset"] + arrays[name].nbytes
        text = json.dumps(header, sort_keys=True, default=json_default).encode()
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


def _open(path, mmap: bool):
    """Map the file and check its prefix and header; returns (buf, size, version, header_len, header)."""
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
    if version not in (1, FORMAT_VERSION):
        raise InputError(f"{path}: unsupported index format version {version} (this spidx reads 1 and "
                         f"{FORMAT_VERSION}; rebuild it with `spidx build`)")
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
    _check_header(path, header, size, version)
    return buf, size, version, header_len, header


def read_header(path) -> dict:
    """The checked JSON header of an index file (format version, shape, arrays)."""
    return _open(os.fspath(path), mmap=True)[4]


def read_index(cls, path, mmap: bool = True, verify: bool = True):
    """Open an index file; anything wrong raises InputError with a one-line reason.

    Checksums (`verify`) detect accidents; the structural checks always run (`_check_header`: field
    types, array dtypes, shapes and extents before anything is viewed; `_check_values` and
    `validate_layout`: ranges, pointers, permutation, finite values), and the block bound summaries
    are recomputed from the rows (`_derive_summaries`), so a crafted file with valid checksums can
    neither make the unchecked kernels read out of bounds nor make the pruned engine skip a block
    that holds a top-k item.
    """
    path = os.fspath(path)
    buf, size, version, header_len, header = _open(path, mmap)
    arrays, covered = {}, [(0, _PREFIX.size + header_len)]
    for name in _array_rules(version, header):
        spec = header["arrays"][name]
        dtype = np.dtype(spec["dtype"])
        start, nbytes = spec["offset_abs"], spec["nbytes"]
        raw = buf[start:start + nbytes]
        if verify and _sha256(raw) != spec["sha256"]:
            raise InputError(f"{path}: corrupt index (checksum mismatch in array '{name}')")
        arrays[name] = raw.view(dtype).reshape(spec["shape"])
        covered.append((start, start + nbytes))
    if "item_ids" not in arrays:
        arrays["item_ids"] = np.arange(header["n_items"], dtype=np.int64)
    if verify:
        covered.sort()
        for (_, end), (nxt, _) in zip(covered, covered[1:] + [(size, size)]):
            if nxt < end:
                raise InputError(f"{path}: corrupt index (arrays overlap at byte {nxt})")
            if np.any(buf[end:nxt]):
                raise InputError(f"{path}: corrupt index (non-zero padding between bytes {end} and {nxt})")
    _check_values(path, arrays, header, version)
    if version == 1:
        _check_v1_copies(path, arrays, header)
        return _convert_v1(cls, path, arrays, header)
    for name, packed_name in _PACKED.items():
        if packed_name in arrays:
            length = header.get("nnz") if name == "row_dims" else header.get("n_listed")
            if not isinstance(length, int) or length < 0 or len(arrays[packed_name]) != 3 * ((length + 1) // 2):
                raise InputError(f"{path}: inconsistent index ('{packed_name}' does not hold {length} entries)")
            arrays[name] = unpack_12bit(arrays.pop(packed_name), length)
    if "row_ptr" not in arrays:
        n, k = header.get("n_items"), header.get("k")
        if not isinstance(n, int) or not isinstance(k, int) or n < 0 or k < 0:
            raise InputError(f"{path}: corrupt index (header n_items/k are not non-negative integers)")
        arrays["row_ptr"] = np.arange(n + 1, dtype=np.int64) * k
    if header.get("values") not in _VALUE_DTYPE or not isinstance(header.get("build"), dict):
        raise InputError(f"{path}: corrupt index (header values/build fields are invalid)")
    index = cls(**arrays, values=header["values"], build=header["build"])
    validate_layout(path, index, header)
    if header["k"] != index.k:
        raise InputError(f"{path}: inconsistent index (header k = {header['k']} but the longest row has "
                         f"{index.k} entries)")
    _derive_summaries(path, index)
    return index


def _convert_v1(cls, path, arrays, header):
    """A version-1 index (posting lists + forward rows) laid out in blocks on load (a clustering pass:
    seconds per million items); save it again to keep the version-2 file."""
    n, d, nnz = header.get("n_items"), header.get("d"), header.get("nnz")
    row_ptr, row_dims = arrays["row_ptr"].astype(np.int64), arrays["row_dims"]
    values = header.get("values")
    problems = []
    if values not in _VALUE_DTYPE or arrays["row_values"].dtype.str != _VALUE_DTYPE[values]:
        problems.append(f"value type {values!r} does not match stored dtype {arrays['row_values'].dtype}")
    elif len(row_ptr) != n + 1 or len(arrays["item_ids"]) != n or len(arrays["dim_scale"]) != d:
        problems.append("array lengths disagree with n_items/d")
    elif len(row_dims) != nnz or len(arrays["row_values"]) != nnz or row_ptr[0] != 0 or row_ptr[-1] != nnz \
            or np.any(np.diff(row_ptr) < 0):
        problems.append("row pointers are not monotone from 0 to nnz")
    elif nnz and int(row_dims.max()) >= d:
        problems.append("a row dimension is out of range")
    if problems:
        raise InputError(f"{path}: inconsistent index ({problems[0]})")
    return cls.from_quantised(row_ptr, np.asarray(row_dims), np.asarray(arrays["row_values"]),
                              np.asarray(arrays["dim_scale"]), np.asarray(arrays["item_ids"]), values,
                              dict(header.get("build") or {}, converted_from_format_version=1))


def validate_layout(path, index, header) -> None:
    """Structural checks of a version-2 index, so that no crafted file can make the unchecked kernels
    read out of bounds: lengths agree with the header, pointers are monotone and end where their
    arrays end, dimensions are < d, `order` is a permutation of 0..n_items-1, summary sizes agree.
    Raises InputError naming the first violation."""
    n, d, nnz, n_blocks = header.get("n_items"), header.get("d"), header.get("nnz"), header.get("n_blocks")
    if not all(isinstance(x, int) and x >= 0 for x in (n, d, nnz, n_blocks)):
        raise InputError(f"{path}: corrupt index (header n_items/d/nnz/n_blocks are not non-negative integers)")
    i = index
    n_listed = len(i.summary_dims)

    def monotone(ptr, length, end):
        return len(ptr) == length and (length == 0 or (ptr[0] == 0 and ptr[-1] == end)) and \
            not np.any(np.diff(ptr) < 0)

    checks = [
        (lambda: i.row_values.dtype.str == _VALUE_DTYPE[i.values],
         f"value type {i.values!r} does not match stored dtype"),
        (lambda: len(i.dim_scale) == d and len(i.item_ids) == n and len(i.order) == n,
         "array lengths disagree with n_items/d"),
        (lambda: len(i.row_dims) == nnz and len(i.row_values) == nnz, "forward rows disagree with nnz"),
        (lambda: monotone(i.row_ptr, n + 1, nnz), "row pointers are not monotone from 0 to nnz"),
        (lambda: nnz == 0 or int(np.max(i.row_dims)) < d, "a row dimension is out of range"),
        (lambda: monotone(i.block_ptr, n_blocks + 1, n), "block pointers are not monotone from 0 to n_items"),
        (lambda: monotone(i.summary_ptr, n_blocks + 1, n_listed), "summary pointers are not monotone"),
        (lambda: len(i.summary_pos) == n_listed and len(i.summary_neg) == n_listed, "summary arrays differ in length"),
        (lambda: n_listed == 0 or int(np.max(i.summary_dims)) < d, "a summary dimension is out of range"),
        (lambda: all(len(getattr(i, f)) == n_blocks for f in ("block_unit", "block_row_norm", "block_rest_max",
                                                      "block_rest_count", "block_rest_norm")),
         "per-block arrays disagree with n_blocks"),
        (lambda: n_blocks == 0 or int(np.min(i.block_rest_count)) >= 0, "a block's rest count is negative"),
        (lambda: all(np.all(np.isfinite(getattr(i, f))) for f in ("dim_scale", "block_unit", "block_row_norm",
                                                          "block_rest_max", "block_rest_norm")),
         "scales or bounds are not finite"),
        (lambda: _is_permutation(i.order, n), "order is not a permutation of the item positions"),
    ]
    for ok, problem in checks:  # in order: a later check may rely on an earlier one
        if not ok():
            raise InputError(f"{path}: inconsistent index ({problem})")


def pack_12bit(dims: np.ndarray) -> np.ndarray:
    """Dimensions < 4096 as 12-bit pairs: entries 2t, 2t+1 become 3 bytes (low byte of the first;
    its high nibble | the second's low nibble << 4; the second's high byte)."""
    d = np.asarray(dims, np.uint16)
    if len(d) % 2:
        d = np.concatenate([d, np.zeros(1, np.uint16)])
    a, b = d[0::2], d[1::2]
    out = np.empty((len(a), 3), np.uint8)
    out[:, 0] = a & 0xFF
    out[:, 1] = (a >> 8) | ((b & 0xF) << 4)
    out[:, 2] = b >> 4
    return out.ravel()


def unpack_12bit(packed: np.ndarray, length: int) -> np.ndarray:
    """Inverse of pack_12bit: `length` uint16 dimensions."""
    p = np.asarray(packed).reshape(-1, 3).astype(np.uint16)
    out = np.empty(2 * len(p), np.uint16)
    out[0::2] = p[:, 0] | ((p[:, 1] & 0xF) << 8)
    out[1::2] = (p[:, 1] >> 4) | (p[:, 2] << 4)
    return out[:length]


def _is_permutation(order, n) -> bool:
    if len(order) != n:
        return False
    if n == 0:
        return True
    if int(np.min(order)) < 0 or int(np.max(order)) >= n:
        return False
    seen = np.zeros(n, np.bool_)
    seen[order] = True
    return bool(seen.all())


# ---- structural validation ---------------------------------------------------------------------
# Header fields and their JSON types (bool is refused where an int is expected), per format version.
_HEADER_TYPES = {"format": str, "format_version": int, "n_items": int, "d": int, "nnz": int, "k": int,
                 "values": str, "build": dict, "file_size": int, "arrays": dict}
_HEADER_TYPES_BY_VERSION = {1: {}, 2: {"fixed_k": bool, "n_blocks": int, "n_listed": int}}
_SPEC_TYPES = {"dtype": str, "shape": list, "offset_abs": int, "nbytes": int, "sha256": str}
_MAX_ID_CHARS = 65536  # longest string item id (the '<U' dtype's length) a file may declare
_VALUES = ("<f4", "<u2", "|i1")


def _json_type_ok(value, types) -> bool:
    if isinstance(value, bool):
        return types is bool
    return isinstance(value, types)


def _array_rules(version: int, header: dict) -> dict:
    """{array name: (allowed dtypes, expected length)} of every array a file of this version and
    header holds (the header's fields are checked before this is called)."""
    n, d, nnz = header["n_items"], header["d"], header["nnz"]
    if version == 1:
        return {"col_ptr": (("<i4", "<i8"), d + 1), "col_items": (("<i4",), nnz), "col_values": (_VALUES, nnz),
                "row_ptr": (("<i4", "<i8"), n + 1), "row_dims": (("<u2", "<i4"), nnz), "row_values": (_VALUES, nnz),
                "dim_scale": (("<f4",), d), "item_ids": (("<i8", "<U"), n)}
    nb, nl = header["n_blocks"], header["n_listed"]
    listed = header["arrays"]
    rules = {}
    if not header["fixed_k"] or "row_ptr" in listed:
        rules["row_ptr"] = (("<i8",), n + 1)
    rules.update({
        "row_dims_12bit" if "row_dims_12bit" in listed else "row_dims":
            (("|u1",), 3 * ((nnz + 1) // 2)) if "row_dims_12bit" in listed else (("<u2", "<i4"), nnz),
        "row_values": (_VALUES, nnz), "dim_scale": (("<f4",), d), "order": (("<i4", "<i8"), n),
        "block_ptr": (("<i8",), nb + 1), "summary_ptr": (("<i8",), nb + 1),
        "summary_dims_12bit" if "summary_dims_12bit" in listed else "summary_dims":
            (("|u1",), 3 * ((nl + 1) // 2)) if "summary_dims_12bit" in listed else (("<u2", "<i4"), nl),
        "summary_pos": (("|u1",), nl), "summary_neg": (("|u1",), nl),
        "block_unit": (("<f4",), nb), "block_row_norm": (("<f4",), nb), "block_rest_max": (("<f4",), nb),
        "block_rest_count": (("<i4",), nb), "block_rest_norm": (("<f4",), nb)})
    if "item_ids" in listed:  # absent: the ids are the positions 0..n-1
        rules["item_ids"] = (("<i8", "<U"), n)
    return rules


def _check_header(path, header, size: int, version: int) -> None:
    """Check the header's field types and every array's declared dtype, shape and extent against the
    file size, before any of them is used to view or allocate memory."""
    def bad(why):
        raise InputError(f"{path}: corrupt index header ({why})")

    if not isinstance(header, dict):
        raise InputError(f"{path}: not a spidx index (header is a JSON {type(header).__name__}, not an object)")
    if header.get("format") != FORMAT:
        raise InputError(f"{path}: not a spidx index (format {header.get('format')!r})")
    for name, types in {**_HEADER_TYPES, **_HEADER_TYPES_BY_VERSION[version]}.items():
        if name not in header:
            bad(f"field '{name}' missing")
        if not _json_type_ok(header[name], types):
            bad(f"field '{name}' is a JSON {type(header[name]).__name__}")
    if header["format_version"] != version:
        raise InputError(f"{path}: corrupt index (header version disagrees with the prefix)")
    if header["file_size"] != size:
        raise InputError(f"{path}: truncated or extended index ({size} bytes, header says {header['file_size']})")
    for name in ("n_items", "d", "nnz", "k") + (("n_blocks", "n_listed") if version >= 2 else ()):
        if not 0 <= header[name] < 2**40:
            bad(f"'{name}' = {header[name]} out of range")
    if version == 1 and "taat_cost_ratio" in header:  # version 1's engine choice (not used since)
        ratio = header["taat_cost_ratio"]
        if not _json_type_ok(ratio, (int, float)) or not (np.isfinite(ratio) and ratio > 0):
            bad(f"taat_cost_ratio = {str(ratio)[:20]} must be a positive finite number")
    if header["values"] not in _VALUE_DTYPE:
        bad(f"unknown value type {header['values']!r}")
    for name, (allowed, length) in _array_rules(version, header).items():
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
        if len(shape) != 1 or not _json_type_ok(shape[0], int) or shape[0] != length:
            bad(f"array '{name}' has shape {str(shape)[:40]}, expected [{length}]")
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


def _pointer_problem(ptr, end: int):
    if ptr[0] != 0 or ptr[-1] != end:
        return f"does not run from 0 to {end}"
    if len(ptr) > 1 and np.any(ptr[1:] < ptr[:-1]):
        return "is not monotone (non-decreasing)"
    return None


def _finite_problem(a):
    if a.dtype == np.uint16:  # float16 bits: exponent all ones is inf or NaN
        finite = not np.any((a & 0x7C00) == 0x7C00)
    elif a.dtype.kind == "f":
        finite = bool(np.isfinite(a).all())
    else:
        finite = True
    return None if finite else "holds NaN or infinite values"


def _check_values(path, arrays: dict, header: dict, version: int) -> None:
    """Value checks shared by both versions (vectorised): value dtype matches the header, values and
    scales finite, scales positive, item ids unique; version 1 also pointers and ranges of both copies."""
    def fail(why):
        raise InputError(f"{path}: inconsistent index ({why})")

    value_dtype = _VALUE_DTYPE[header["values"]]
    for name in ("col_values", "row_values"):
        if name in arrays and arrays[name].dtype.str != value_dtype:
            fail(f"value type {header['values']!r} does not match the dtype {arrays[name].dtype} of '{name}'")
        if name in arrays and _finite_problem(arrays[name]):
            fail(f"array '{name}' holds NaN or infinite values")
    scale = arrays["dim_scale"]
    if not bool(np.all(np.isfinite(scale) & (scale > 0))):
        fail("array 'dim_scale' holds non-positive or non-finite scales")
    ids = np.sort(np.asarray(arrays["item_ids"]))
    if len(ids) > 1 and np.any(ids[1:] == ids[:-1]):
        fail("array 'item_ids' holds duplicate item ids")
    if version != 1:
        return
    n, d, nnz = header["n_items"], header["d"], header["nnz"]
    for name, end in (("col_ptr", nnz), ("row_ptr", nnz)):
        problem = _pointer_problem(arrays[name], end)
        if problem:
            fail(f"array '{name}' {problem}")
    for name, bound in (("col_items", n), ("row_dims", d)):
        a = arrays[name]
        if len(a) and (int(a.min()) < 0 or int(a.max()) >= bound):
            fail(f"array '{name}' holds values outside 0..{bound - 1}")
    row_lengths = np.diff(arrays["row_ptr"])
    if header["k"] != int(row_lengths.max(initial=0)):
        fail(f"header k = {header['k']} but the longest row has {int(row_lengths.max(initial=0))} entries")


def _check_v1_copies(path, arrays: dict, header: dict) -> None:
    """A version-1 file holds the matrix twice (posting lists and forward rows): both must hold the
    same entries (an order-independent digest, one O(nnz) pass each)."""
    if _entries_digest(arrays["row_ptr"], arrays["row_dims"], arrays["row_values"], by_row=True) != \
            _entries_digest(arrays["col_ptr"], arrays["col_items"], arrays["col_values"], by_row=False):
        raise InputError(f"{path}: inconsistent index (posting lists and forward rows hold different entries)")


def _entries_digest(ptr, inner, values, by_row: bool) -> int:
    """Order-independent digest of the (item, dimension, value bits) entries of one copy of the matrix."""
    from .validate_kernels import entries_digest

    bits = values.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[values.itemsize])
    return int(entries_digest(np.asarray(ptr), np.asarray(inner), np.asarray(bits), by_row))


def _derive_summaries(path, index) -> None:
    """Recompute the block bound summaries from the (validated) rows instead of trusting the stored
    ones: a crafted summary below a block's true maximum would make the pruned engine skip items
    silently. One O(nnz) pass; the recomputed bounds are as tight as a fresh build's."""
    from .layout import default_summary_dims, summarise

    listed = index.build.get("summary_dims") if isinstance(index.build, dict) else None
    if not isinstance(listed, int) or isinstance(listed, bool) or listed <= 0:
        sizes = np.diff(np.asarray(index.block_ptr))
        listed = default_summary_dims(int(sizes.max(initial=1)), index.k)
    summaries = summarise(index.block_ptr, index.row_ptr, index.row_dims, index.row_values, index.dim_scale,
                          min(listed, max(index.d, 1)), index.row_dims.dtype)
    for name, a in summaries.items():
        setattr(index, name, a)
