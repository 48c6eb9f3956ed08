"""Read user-item interaction files (CSV/TSV/.npz) into a binary user x item CSR matrix."""
from __future__ import annotations

import csv
import gzip
import io
import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .errors import InputError
from .ids import normalize_ids
from .npz import NpzReader


@dataclass
class Interactions:
    """A binary user x item matrix plus the external ids of its rows and columns."""

    matrix: sp.csr_matrix  # float32, values 1.0, duplicates merged
    user_ids: np.ndarray
    item_ids: np.ndarray
    source: str = ""

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    def fingerprint(self) -> str:
        """A short hash of the matrix structure and ids, to tie trained models to their data."""
        import hashlib

        h = hashlib.sha256()
        h.update(np.asarray(self.matrix.shape, np.int64).tobytes())
        h.update(self.matrix.indptr.astype(np.int64).tobytes())
        h.update(self.matrix.indices.astype(np.int64).tobytes())
        h.update(self.item_ids.astype(str).tobytes() if self.item_ids.dtype.kind not in "iu" else self.item_ids.tobytes())
        return h.hexdigest()[:16]


def from_pairs(users, items, source: str = "") -> Interactions:
    """Build binary interactions from parallel arrays of external user and item ids."""
    try:
        users = normalize_ids(users)
        items = normalize_ids(items)
    except InputError as e:
        raise InputError(f"{source or 'interactions'}: {e}") from None
    if len(users) != len(items):
        raise InputError(f"{source or 'interactions'}: user and item columns differ in length")
    if len(users) == 0:
        raise InputError(f"{source or 'interactions'}: no interactions")
    user_ids, u = np.unique(users, return_inverse=True)
    item_ids, i = np.unique(items, return_inverse=True)
    m = sp.csr_matrix(
        (np.ones(len(u), np.float32), (u.ravel(), i.ravel())), shape=(len(user_ids), len(item_ids))
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return Interactions(m, user_ids, item_ids, source)


def _open_text(path: str):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _resolve_column(spec, header, name: str, path: str):
    if spec is None:
        return None
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return int(spec)
    if header is None:
        raise InputError(f"{path}: column '{spec}' given by name but the file has no header row")
    names = [h.strip() for h in header]
    short = [h.split(":")[0] for h in names]
    for candidates in (names, short):
        if spec in candidates:
            return candidates.index(spec)
    raise InputError(f"{path}: no {name} column named '{spec}' (columns: {', '.join(names)})")


def read_interactions(
    path: str,
    user_col=0,
    item_col=1,
    rating_col=None,
    min_rating: float | None = None,
    sep: str | None = None,
    header: bool | None = None,
) -> Interactions:
    """Read interactions from `.npz` (arrays `user`, `item`, optional `rating`) or CSV/TSV (maybe .gz).

    Columns are chosen by position (int) or header name; `header=None` detects a header row.
    With `min_rating`, only pairs whose rating is >= min_rating are kept (binarisation).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected an interactions file")
    if path.endswith(".npz"):
        return _read_npz(path, min_rating)
    return _read_text(path, user_col, item_col, rating_col, min_rating, sep, header)


def _read_npz(path: str, min_rating) -> Interactions:
    with NpzReader(path, "interactions") as z:
        if "user" not in z.names or "item" not in z.names:
            raise InputError(f"{path}: .npz must hold arrays 'user' and 'item' (found: {', '.join(sorted(z.names))})")
        columns = ["user", "item"] + (["rating"] if "rating" in z.names else [])
        lengths = {z.shape(c) for c in columns}
        if len(lengths) != 1 or len(lengths.pop()) != 1:
            raise InputError(f"{path}: {', '.join(repr(c) for c in columns)} must be 1-D arrays of equal length")
        for c in columns:
            if z.dtype(c).kind not in ("fiu" if c == "rating" else "fiuSU"):
                raise InputError(f"{path}: '{c}' has unsupported dtype {z.dtype(c)}")
        users, items = z.read("user"), z.read("item")
        ratings = z.read("rating") if "rating" in z.names else None
    if ratings is not None and not np.all(np.isfinite(ratings)):
        raise InputError(f"{path}: NaN or infinite values in 'rating'")
    if min_rating is not None:
        if ratings is None:
            raise InputError(f"{path}: --min-rating given but the file has no 'rating' array")
        keep = ratings >= min_rating
        users, items = users[keep], items[keep]
    if len(users) == 0:
        raise InputError(f"{path}: no interactions" + (" at or above the minimum rating" if min_rating is not None else ""))
    return from_pairs(users, items, path)


def _read_text(path, user_col, item_col, rating_col, min_rating, sep, header) -> Interactions:
    try:
        with _open_text(path) as f:
            text = f.read()
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read as text ({type(e).__name__})") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    if not first:
        raise InputError(f"{path}: file is empty")
    if sep is None:
        lower = path.lower()
        if ".tsv" in lower or ".inter" in lower or "\t" in first:
            sep = "\t"
        elif "," in first:
            sep = ","
        elif ";" in first:
            sep = ";"
        else:
            sep = " "
    if sep == " ":
        rows = [line.split() for line in text.splitlines() if line.strip()]
    else:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=sep) if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: file is empty")
    names_given = any(isinstance(c, str) and not c.isdigit() for c in (user_col, item_col, rating_col) if c is not None)
    if header is None:
        header = names_given or _looks_like_header(rows, user_col, item_col, rating_col)
    head = rows[0] if header else None
    body = rows[1:] if header else rows
    if not body:
        raise InputError(f"{path}: no data rows")
    uc = _resolve_column(user_col, head, "user", path)
    ic = _resolve_column(item_col, head, "item", path)
    rc = _resolve_column(rating_col, head, "rating", path)
    if min_rating is not None and rc is None:
        raise InputError(f"{path}: --min-rating needs a rating column (--rating-col)")
    need = max(c for c in (uc, ic, rc) if c is not None)
    users, items, ratings = [], [], []
    for lineno, r in enumerate(body, start=2 if header else 1):
        if len(r) <= need:
            raise InputError(f"{path}: line {lineno} has {len(r)} columns, expected at least {need + 1}")
        users.append(r[uc].strip())
        items.append(r[ic].strip())
        if rc is not None:
            ratings.append(r[rc].strip())
    if rc is not None:
        try:
            rat = np.asarray(ratings, dtype=np.float64)
        except ValueError:
            bad = next(x for x in ratings if not _is_number(x))
            raise InputError(f"{path}: non-numeric rating '{bad}' in the rating column") from None
        if not np.all(np.isfinite(rat)):
            raise InputError(f"{path}: NaN or infinite value in the rating column")
        if min_rating is not None:
            keep = rat >= min_rating
            users = np.asarray(users, dtype=object)[keep]
            items = np.asarray(items, dtype=object)[keep]
    if len(users) == 0:
        raise InputError(f"{path}: no interactions at or above the minimum rating")
    return from_pairs(np.asarray(users, dtype=str), np.asarray(items, dtype=str), path)


HEADER_NAMES = {"user", "item", "user_id", "item_id", "userid", "itemid", "rating", "timestamp", "score", "uid", "iid"}


def _looks_like_header(rows, user_col, item_col, rating_col) -> bool:
    """Row 1 is a header when it names typical columns, holds a non-number in the rating column,
    or holds a non-number where row 2 has a number."""
    first = rows[0]
    if any(c.strip().lower().split(":")[0] in HEADER_NAMES for c in first):
        return True
    if isinstance(rating_col, int) and rating_col < len(first) and not _is_number(first[rating_col]):
        return True
    if len(rows) < 2:
        return False
    second = rows[1]
    return any(_is_number(second[j]) and not _is_number(first[j]) for j in range(min(len(first), len(second))))
