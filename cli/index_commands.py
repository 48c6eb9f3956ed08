"""`spidx build`, `spidx query`, `spidx info`: build, query and describe an inverted index."""
from __future__ import annotations

import json
import os
import sys

import click
import numpy as np

from spidx.atomic import STDOUT, atomic_path, check_outputs
from spidx.errors import InputError
from spidx.index import VALUE_TYPES, SparseIndex


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise InputError(f"--{param.name.replace('_', '-')} must be positive, got {value}")
    return value


def _col(spec):
    return int(spec) if spec is not None and str(spec).isdigit() else spec


@click.command()
@click.option("--embeddings", type=click.Path(dir_okay=False), help="Item embeddings file (sparse or dense).")
@click.option("--interactions", type=click.Path(dir_okay=False),
              help="Interactions (CSV/TSV/npz): train Compressed ELSA first, then build.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Index file to write.")
@click.option("--nnz", type=int, callback=_positive,
              help="Non-zeros per item: post-hoc top-k for dense embeddings, the training target with --interactions.")
@click.option("--values", type=click.Choice(VALUE_TYPES), default="f32", show_default=True,
              help="Stored value type (i8 uses a per-dimension scale).")
@click.option("--dim", type=int, default=4096, show_default=True, callback=_positive, help="Training: latent dimensions d.")
@click.option("--epochs", type=int, default=10, show_default=True, callback=_positive, help="Training: epochs per phase.")
@click.option("--batch-size", type=int, default=256, show_default=True, callback=_positive, help="Training: users per step.")
@click.option("--seed", type=int, default=42, show_default=True, help="Training: random seed.")
@click.option("--user-col", default="0", show_default=True, help="Interactions: user column (position or name).")
@click.option("--item-col", default="1", show_default=True, help="Interactions: item column (position or name).")
@click.option("--sep", default=None, help="Interactions: field separator (default: guessed).")
def build(embeddings, interactions, out, nnz, values, dim, epochs, batch_size, seed, user_col, item_col, sep):
    """Build an inverted index from item embeddings, or train on interactions and build."""
    if (embeddings is None) == (interactions is None):
        raise InputError("give exactly one of --embeddings EMB or --interactions DATA")
    check_outputs([out], [embeddings, interactions])
    if embeddings is not None:
        index = SparseIndex.from_file(embeddings, nnz=nnz, values=values)
    else:
        from spidx.interactions import read_interactions

        data = read_interactions(interactions, user_col=_col(user_col), item_col=_col(item_col), sep=sep)
        try:
            from spidx.trainer.models import CompressedELSA
        except ImportError as e:
            raise InputError(f"--interactions needs the trainer and torch, which cannot be imported ({e})") from None
        model = CompressedELSA(dim=dim, nnz=32 if nnz is None else nnz, epochs=epochs, batch_size=batch_size,
                               seed=seed)
        model.item_ids = data.item_ids
        model.fit(data.matrix)
        index = model.to_index(values=values)
        index.build.update(interactions=os.path.abspath(interactions), data_fingerprint=data.fingerprint())
    index.save(out)
    rep = index.memory_report()
    click.echo(f"wrote {out}: {index.n_items:,} items x d={index.d}, k={index.k}, values {index.values}, "
               f"{rep['total_bytes'] / 2**20:.1f} MiB ({rep['bytes_per_item']:.0f} B/item; "
               f"paper accounting {rep['paper_bytes_per_item']:.0f} B/item)")


def _json_id(x):
    return x.item() if isinstance(x, np.generic) else x


@click.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(dir_okay=False))
@click.option("--items", help='One history: comma-separated item ids, e.g. "id1,id2".')
@click.option("--histories", type=click.Path(dir_okay=False), help="Many histories: user-item pairs (CSV/TSV/npz).")
@click.option("-k", "k", type=int, default=20, show_default=True, callback=_positive, help="Items per user.")
@click.option("--output", type=click.Path(dir_okay=False, allow_dash=True),
              help="JSONL output for --histories (default or '-': stdout).")
@click.option("--include-seen", is_flag=True, help="Allow items from the history in the results.")
@click.option("--approx", type=float, default=None,
              help="Approximate search: keep the query's heaviest dimensions holding this share of its L1 "
                   "mass, then rescore the best 2k candidates exactly; in (0, 1], higher is more accurate, 1 is "
                   "exact (default: exact). Gowalla: 0.5 gives recall@100 ~0.99 (bench/README.md, Scale).")
@click.option("--batch-size", type=int, default=1024, show_default=True, callback=_positive, help="Users per batch.")
@click.option("--user-col", default="0", show_default=True, help="--histories: user column (position or name).")
@click.option("--item-col", default="1", show_default=True, help="--histories: item column (position or name).")
@click.option("--sep", default=None, help="--histories: field separator (default: guessed).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--layout", default=None,
              help="With --items: 2D homepage, e.g. rows=5,items=10 (row 1 'Recommended for you', then one row "
                   "per top segment, from INDEX.segments.npz or built on the fly).")
@click.option("--json", "as_json", is_flag=True, help="With --items: print JSON.")
def query(index_path, items, histories, k, output, include_seen, approx, batch_size, user_col, item_col, sep, progress,
          layout, as_json):
    """Recommend the top-k items for one history (--items) or for many users (--histories)."""
    if (items is None) == (histories is None):
        raise InputError("give exactly one of --items or --histories")
    if histories is not None and (layout is not None or as_json):
        raise InputError("--layout and --json go with --items (--histories always writes JSONL)")
    if layout is not None:
        if include_seen:
            raise InputError("--layout never shows seen items; drop --include-seen")
        from .segment_commands import run_layout

        return run_layout(index_path, items, layout, as_json)
    if output is not None and histories is None:
        raise InputError("--output goes with --histories (--items prints to stdout)")
    check_outputs([output], [index_path, histories])
    index = SparseIndex.load(index_path)
    if k > index.n_items:
        click.echo(f"note: -k {k} capped at the {index.n_items} items in the index", err=True)
        k = index.n_items
    if items is not None:
        ids = [x.strip() for x in items.split(",") if x.strip()]
        if not ids:
            raise InputError("--items: empty history")
        rec = index.recommend([ids], k=k, exclude_seen=not include_seen, approx=approx)
        if rec.empty[0]:
            raise InputError(f"--items: none of the given item ids are in the index ({', '.join(ids[:5])})")
        if rec.unknown[0]:
            click.echo(f"warning: {len(rec.unknown[0])} item id(s) not in the index: "
                       f"{', '.join(map(str, rec.unknown[0][:10]))}", err=True)
        n = int((rec.positions[0] >= 0).sum())
        if as_json:
            click.echo(json.dumps({"items": [_json_id(x) for x in rec.items[0, :n]],
                                   "scores": [round(float(s), 6) for s in rec.scores[0, :n]],
                                   "unknown": [_json_id(x) for x in rec.unknown[0]]}))
            return
        width = max([len("item")] + [len(str(x)) for x in rec.items[0, :n]])
        click.echo(f"{'rank':>4}  {'item':<{width}}  score")
        for r in range(n):
            click.echo(f"{r + 1:>4}  {str(rec.items[0, r]):<{width}}  {rec.scores[0, r]:.6f}")
        return
    from tqdm import tqdm

    from spidx.interactions import read_interactions

    data = read_interactions(histories, user_col=_col(user_col), item_col=_col(item_col), sep=sep)
    pos = index.lookup(data.item_ids)
    known = pos >= 0
    H = data.matrix.tocsc()[:, np.flatnonzero(known)].tocsr()
    H.indices = pos[known][H.indices].astype(H.indices.dtype)
    H = type(H)((H.data, H.indices, H.indptr), shape=(H.shape[0], index.n_items))
    unknown_per_user = data.matrix[:, np.flatnonzero(~known)].tocsr()
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with tqdm(total=H.shape[0], unit="user", desc="query", disable=not show) as bar:
            rec = index.recommend(H, k=k, exclude_seen=not include_seen, approx=approx, batch_size=batch_size,
                                  progress=bar.update)
    except MemoryError:
        raise MemoryError(f"{H.shape[0]:,} users x -k {k} results need about "
                          f"{H.shape[0] * k * 24 / 2**30:.1f} GiB; lower -k or split the histories") from None
    unknown_ids = data.item_ids[~known]
    n_empty = int(rec.empty.sum())
    if n_empty == H.shape[0]:
        raise InputError(f"{histories}: none of the history item ids are in the index")
    lines = []
    for u in range(H.shape[0]):
        n = int((rec.positions[u] >= 0).sum())
        row = {"user": _json_id(data.user_ids[u]), "items": [_json_id(x) for x in rec.items[u, :n]],
               "scores": [round(float(s), 6) for s in rec.scores[u, :n]]}
        unk = unknown_per_user.indices[unknown_per_user.indptr[u]:unknown_per_user.indptr[u + 1]]
        if len(unk):
            row["unknown"] = [_json_id(x) for x in unknown_ids[unk]]
        lines.append(json.dumps(row))
    text = "\n".join(lines) + "\n"
    to_file = output not in (None, STDOUT)
    if to_file:
        with atomic_path(output, suffix=".jsonl") as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
    else:
        click.echo(text, nl=False)
    if len(unknown_ids):
        click.echo(f"warning: {len(unknown_ids)} history item id(s) are not in the index and were ignored", err=True)
    if n_empty:
        click.echo(f"warning: {n_empty} user(s) had no known history item and got no recommendations", err=True)
    if to_file:
        click.echo(f"wrote {H.shape[0]:,} users to {output}", err=True)


@click.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def info(index_path, as_json):
    """Shape, k, dtypes, memory breakdown and block statistics of an index."""
    index = SparseIndex.load(index_path)
    arrays = {name: {"dtype": str(a.dtype), "bytes": int(a.nbytes)} for name, a in index.arrays().items()}
    report = {"path": index_path, "file_bytes": os.path.getsize(index_path), "n_items": index.n_items, "d": index.d,
              "k": index.k, "nnz": index.nnz, "values": index.values, "arrays": arrays,
              "memory": index.memory_report(), "blocks": index.block_stats(), "build": index.build}
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    m, b = report["memory"], report["blocks"]
    click.echo(f"{index_path}: {index.n_items:,} items x d={index.d}, k={index.k} "
               f"(nnz {index.nnz:,}), values {index.values}")
    click.echo(f"{'array':<16} {'dtype':<8} {'bytes':>14}")
    for name, a in arrays.items():
        click.echo(f"{name:<16} {a['dtype']:<8} {a['bytes']:>14,}")
    click.echo(f"{'total':<16} {'':<8} {m['total_bytes']:>14,}")
    click.echo(f"bytes/item: {m['bytes_per_item']:.1f} total, {m['search_bytes_per_item']:.1f} for search; "
               f"per non-zero {m['search_bytes_per_nnz']:.2f} for search (forward rows "
               f"{m['forward_bytes_per_nnz']:.2f} + block summaries {m['summary_bytes_per_nnz']:.2f}), "
               f"{m['serving_bytes_per_nnz']:.2f} serving (+ posting lists derived in memory "
               f"{m['postings_bytes_per_nnz']:.2f}); "
               f"paper accounting (8 B/non-zero) {m['paper_bytes_per_item']:.1f} B/item; in the file "
               f"{m['file_search_bytes_per_nnz']:.2f} B per non-zero ({m['file_bytes_per_nnz']:.2f} with item ids)")
    click.echo(f"blocks: {b['blocks']:,}, size min {b['size_min']}, mean {b['size_mean']:.1f}, max {b['size_max']}; "
               f"listed dimensions per summary mean {b['listed_mean']:.1f}, max {b['listed_max']}")


def register(group):
    group.add_command(build)
    group.add_command(query)
    group.add_command(info)
