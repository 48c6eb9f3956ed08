"""Item metadata (titles, genres, free text) for naming segments offline.

Reads the RecBole atomic `.item` TSV (header `name:type`, `token_seq` columns split on spaces, e.g.
ML-100K `item_id:token movie_title:token_seq release_year:token class:token_seq`) and generic
CSV/TSV files with an id column plus text columns (maybe .gz). Genre-like columns (`class`, `genre`,
`genres`, `category`, `categories`, `tags`) become tokens (split on `|`, `;`, `,` or spaces); title
columns (`title`, `name`, `movie_title`, ...) are kept as text and split into words.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .ids import IdMap, normalize_ids

GENRE_COLUMNS = ("class", "genre", "genres", "category", "categories", "tags", "tag", "label", "labels")
TITLE_COLUMNS = ("movie_title", "title", "name", "item_name", "book_title")
ID_COLUMNS = ("item_id", "itemid", "movie_id", "movieid", "id", "item", "book_id")
SKIP_COLUMNS = ("release_year", "year", "timestamp", "url", "imdb_url", "date", "release_date")

# Short English stop list for title words (titles are names; we only want distinctive words).
STOPWORDS = frozenset(
    "a an and the of in on at to for from with by is it its as or vs de la le les el los das der die und"
    " ii iii iv part one two three i my me you your we our his her he she they them this that what who"
    " how when where why not no all about into out up down over again new".split()
)
_WORD = re.compile(r"[a-z][a-z0-9'\-]+")


@dataclass
class ItemMetadata:
    """Metadata rows keyed by external item id."""

    item_ids: np.ndarray
    titles: list  # list[str], "" when unknown
    genres: list  # list[list[str]] (tokens from genre-like columns, original case)
    source: str = ""
    columns: dict = field(default_factory=dict)  # role -> column name, for messages

    def align(self, item_ids) -> "ItemMetadata":
        """Rows reordered to `item_ids` (items without metadata get an empty title and no genres)."""
        pos = IdMap(self.item_ids).lookup(normalize_ids(item_ids))
        titles = [self.titles[p] if p >= 0 else "" for p in pos]
        genres = [self.genres[p] if p >= 0 else [] for p in pos]
        return ItemMetadata(normalize_ids(item_ids), titles, genres, self.source, dict(self.columns))

    def coverage(self, item_ids) -> float:
        pos = IdMap(self.item_ids).lookup(normalize_ids(item_ids))
        return float((pos >= 0).mean()) if len(pos) else 0.0


def title_words(title: str) -> list:
    """Lower-case distinctive words of a title (stop words, numbers and 1-2 letter words dropped)."""
    title = re.sub(r"\(\d{4}\)", " ", title or "")
    # RecBole/ML titles move articles to the end: "Godfather, The" -> drop the article
    return [w.strip("'-") for w in _WORD.findall(title.lower()) if w.strip("'-") not in STOPWORDS and len(w) > 2]


def _open_text(path: str):
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, "r", encoding="utf-8", errors="replace", newline="")


def _split_tokens(value: str, recbole_seq: bool) -> list:
    value = value.strip()
    if not value:
        return []
    if not recbole_seq:
        for sep in ("|", ";", ","):
            if sep in value:
                return [t.strip() for t in value.split(sep) if t.strip()]
    return [t for t in value.split() if t]


def read_item_metadata(path, id_col=None, title_col=None, genre_cols=None, sep=None) -> ItemMetadata:
    """Read item metadata. Columns are found by name (see module doc) unless given explicitly."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: metadata file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a metadata file")
    try:
        with _open_text(path) as f:
            text = f.read()
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read metadata ({type(e).__name__})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise InputError(f"{path}: metadata needs a header row and at least one item row")
    if sep is None:
        lower = path.lower()
        sep = "\t" if (".tsv" in lower or ".item" in lower or "\t" in lines[0]) else ("," if "," in lines[0] else "\t")
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=sep))
    header = [h.strip() for h in rows[0]]
    base = [h.split(":")[0].strip().lower() for h in header]
    types = [h.split(":")[1].strip().lower() if ":" in h else "" for h in header]

    def find(spec, candidates, role):
        if spec is not None:
            if isinstance(spec, int) or str(spec).isdigit():
                j = int(spec)
                if j >= len(header):
                    raise InputError(f"{path}: {role} column {j} out of range ({len(header)} columns)")
                return j
            s = str(spec).lower()
            for names in (base, [h.lower() for h in header]):
                if s in names:
                    return names.index(s)
            raise InputError(f"{path}: no {role} column named '{spec}' (columns: {', '.join(header)})")
        for c in candidates:
            if c in base:
                return base.index(c)
        return None

    ic = find(id_col, ID_COLUMNS, "id")
    if ic is None:
        ic = 0
    tc = find(title_col, TITLE_COLUMNS, "title")
    if genre_cols is not None:
        gcs = [find(g, (), "genre") for g in genre_cols]
    else:
        gcs = [j for j, b in enumerate(base) if b in GENRE_COLUMNS]
        if not gcs:  # generic file: every other text column that is not an id/title/year
            gcs = [j for j, b in enumerate(base) if j not in (ic, tc) and b not in SKIP_COLUMNS]
    ids, titles, genres = [], [], []
    for lineno, r in enumerate(rows[1:], start=2):
        if len(r) <= ic:
            raise InputError(f"{path}: line {lineno} has {len(r)} columns, no id column {ic}")
        ids.append(r[ic].strip())
        titles.append(r[tc].strip() if tc is not None and tc < len(r) else "")
        toks = []
        for g in gcs:
            if g < len(r):
                toks.extend(_split_tokens(r[g], types[g] == "token_seq"))
        genres.append(list(dict.fromkeys(toks)))
    item_ids = normalize_ids(np.asarray(ids, dtype=str))
    if len(np.unique(item_ids)) != len(item_ids):
        raise InputError(f"{path}: duplicate item ids in the metadata")
    cols = {"id": header[ic], "title": header[tc] if tc is not None else None, "genres": [header[g] for g in gcs]}
    return ItemMetadata(item_ids, titles, genres, path, cols)
