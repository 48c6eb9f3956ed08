"""Reading untrusted `.npz` files: sizes are checked before anything is decompressed or allocated.

`NpzReader` opens the zip, refuses members whose declared uncompressed size is implausible for
their compressed size (decompression bombs), reads every member's .npy header (dtype and shape, no
data) so callers can check shapes against each other before reading, and never unpickles.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from .errors import InputError

# A deflated member may expand this many times its compressed size, or to MIN_BOUND, whichever is larger.
# Real arrays (ids, CSR indices, floats) compress a few times to ~100x; long constant runs could do
# more, which is why small members are always allowed.
MAX_EXPANSION = 256
MIN_BOUND = 64 << 20


class NpzReader:
    """Context manager over an .npz file; `what` names the file kind in error messages."""

    def __init__(self, path, what: str):
        self.path, self.what = os.fspath(path), what
        self.headers = {}
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise InputError(f"{self.path}: not an npz/zip file, or truncated ({type(e).__name__}); "
                             f"expected a spidx {what} file") from None
        try:
            self._scan()
        except BaseException:
            self.zip.close()
            raise

    def _scan(self) -> None:
        for info in self.zip.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            bound = max(MIN_BOUND, MAX_EXPANSION * info.compress_size)
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > bound:
                raise InputError(f"{self.path}: member '{name}' declares {info.file_size:,} bytes from "
                                 f"{info.compress_size:,} compressed (over {MAX_EXPANSION}x: refused as a "
                                 f"decompression bomb)")
            try:
                with self.zip.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    reader = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if reader is None:
                        raise ValueError(f"npy version {version}")
                    shape, fortran, dtype = reader(f, max_header_size=10000)
                    header_len = f.tell()
            except InputError:
                raise
            except Exception as e:
                raise InputError(f"{self.path}: corrupt {self.what} file (member '{name}': "
                                 f"{type(e).__name__})") from None
            if dtype.hasobject:
                raise InputError(f"{self.path}: member '{name}' holds pickled (object) data, which spidx never loads")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if header_len + nbytes != info.file_size:
                raise InputError(f"{self.path}: corrupt {self.what} file (member '{name}' declares shape "
                                 f"{shape} but holds {info.file_size - header_len:,} bytes)")
            self.headers[name] = (tuple(shape), dtype)

    @property
    def names(self) -> set:
        return set(self.headers)

    def shape(self, name: str) -> tuple:
        return self.headers[name][0]

    def dtype(self, name: str) -> np.dtype:
        return self.headers[name][1]

    def read(self, name: str) -> np.ndarray:
        """The array `name` (its size was checked when the file was opened)."""
        try:
            with self.zip.open(name + ".npy") as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except Exception as e:
            raise InputError(f"{self.path}: corrupt {self.what} file (member '{name}': {type(e).__name__})") \
                from None

    def close(self) -> None:
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
