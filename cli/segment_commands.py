"""`spidx segments`, `spidx explain`, and the 2D homepage behind `spidx query --layout` (`run_layout`;
`spidx homepage` is a short alias of it). The logic lives in `spidx.segments`; this module parses and prints.

register(group) adds the commands to the `spidx` click group.
"""
from __future__ import annotations

import json
import os

import click
import numpy as np

from spidx import segments as S
from spidx.errors import InputError


# ------------------------------------------------------------------------------------------ helpers

def parse_items(spec) -> list:
    """'1,2 3' or '@file' (one id per line / comma separated) -> list of id strings."""
    if spec is None:
        return []
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(s) for s in spec)
    spec = str(spec).strip()
    if spec.startswith("@"):
        path = spec[1:]
        if not os.path.exists(path):
            raise InputError(f"{path}: items file not found")
        with open(path, encoding="utf-8") as f:
            spec = f.read()
    out = [t for t in spec.replace(",", " ").split() if t]
    return out


def load_context(index_path, need_segments: bool = True, metadata=None):
    """(A, item_ids, segments) for an index or embeddings file; segments from the sidecar, or built
    on the fly (not saved) when there is none."""
    A, ids = S.load_item_matrix(index_path)
    seg = None
    if need_segments:
        side = S.segments_path(index_path)
        fp = S.matrix_fingerprint(A, ids)
        if os.path.exists(side):
            seg = S.load_segments(side, fingerprint=fp)
        else:
            click.echo(f"note: no {side}; using segments built on the fly without metadata "
                       f"(run `spidx segments {index_path} --metadata FILE` to save named ones)", err=True)
            seg = S.build_segments(A, ids, metadata)
    return A, ids, seg


def resolve_history(ids, values) -> tuple:
    from spidx.ids import IdMap

    if not values:
        raise InputError("--items: give at least one item id")
    pos = IdMap(ids).lookup(np.asarray(values))
    unknown = [v for v, p in zip(values, pos) if p < 0]
    known = np.unique(pos[pos >= 0])
    if len(known) == 0:
        raise InputError(f"none of the --items ids is in the index (unknown: {', '.join(unknown[:5])})")
    return known, unknown


def _id(ids, i):
    v = ids[int(i)]
    return v.item() if isinstance(v, np.generic) else v


def _title(seg, i) -> str:
    if seg is not None and seg.titles is not None:
        return seg.titles[int(i)]
    return ""


def print_layout(data: dict) -> None:
    if data["unknown"]:
        click.echo(f"note: ignored {len(data['unknown'])} unknown item id(s): {', '.join(map(str, data['unknown'][:10]))}",
                   err=True)
    for r in data["rows"]:
        head = r["title"] if r["kind"] == "top" else f"{r['title']}  [segment {r['segment']}, score {r['segment_score']:.3f}]"
        click.echo(head)
        for n, it in enumerate(r["items"], 1):
            t = f"  {it['title']}" if it.get("title") else ""
            click.echo(f"  {n:2d}. {it['id']!s:>8}  {it['score']:.4f}{t}")


def run_layout(index_path, items_spec, layout_spec, as_json: bool) -> None:
    """Entry point for `spidx query INDEX --items ... --layout ...` and `spidx homepage`."""
    layout = S.parse_layout(layout_spec)
    A, ids, seg = load_context(index_path)
    history, unknown = resolve_history(ids, parse_items(items_spec))
    data = S.layout_data(A, ids, seg, history, layout, unknown)
    if as_json:
        click.echo(json.dumps(data))
    else:
        print_layout(data)


# ----------------------------------------------------------------------------------------- commands

def register(group) -> None:
    group.add_command(segments_cmd)
    group.add_command(explain_cmd)
    group.add_command(homepage_cmd)


@click.command("segments")
@click.argument("index", type=click.Path())
@click.option("--metadata", type=click.Path(), default=None,
              help="Item metadata: RecBole .item TSV (ML-100K) or CSV/TSV with an id column + text columns.")
@click.option("--latent-rule", type=click.Choice(S.LATENT_RULES), default="average", show_default=True,
              help="Merge rule without metadata: 'average' = mean ELSA item-item weight Â_i·Â_j between the two "
                   "segments' items; 'centroid' = cosine of their summed embeddings.")
@click.option("--latent-threshold", type=float, default=None,
              help="Merge while the rule's similarity is >= this (default: 0.1 average, 0.5 centroid).")
@click.option("--metadata-threshold", type=float, default=0.8, show_default=True,
              help="With --metadata: merge segments whose TF-IDF genre/title descriptions have cosine >= this.")
@click.option("--no-merge", is_flag=True, help="Keep one segment per signed dominant factor.")
@click.option("--show", is_flag=True, help="List the saved segments instead of rebuilding them.")
@click.option("--no-save", is_flag=True, help="Do not write INDEX.segments.npz.")
@click.option("--examples", type=int, default=5, show_default=True, help="Example items per segment.")
@click.option("--limit", type=int, default=20, show_default=True, help="Segments to list (0 = all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def segments_cmd(index, metadata, latent_rule, latent_threshold, metadata_threshold, no_merge, show, no_save, examples, limit,
                 as_json):
    """Build (and save next to INDEX) the item segments, then list them with size, name and examples."""
    from spidx.metadata import read_item_metadata

    if examples < 0 or limit < 0:
        raise InputError("--examples and --limit must be >= 0")
    side = S.segments_path(index)
    if not (show or no_save):
        from spidx.atomic import check_outputs

        check_outputs([side], [index, metadata])
    A, ids = S.load_item_matrix(index)
    if show:
        seg = S.load_segments(side, fingerprint=S.matrix_fingerprint(A, ids))
        saved = None
    else:
        meta = read_item_metadata(metadata) if metadata else None
        if meta is not None and meta.coverage(ids) == 0:
            raise InputError(f"{metadata}: none of its item ids is in the index")
        seg = S.build_segments(A, ids, meta, latent_rule=latent_rule, latent_threshold=latent_threshold,
                               metadata_threshold=metadata_threshold, merge=not no_merge)
        saved = None if no_save else side
        if saved:
            S.save_segments(side, seg)
    rows = seg.to_rows(examples=examples, A=A)
    sizes = seg.sizes()
    summary = {"index": os.fspath(index), "segments_file": saved if not show else side, "n_items": seg.n_items,
               "n_segments": seg.n_segments, "n_initial_groups": seg.params.get("n_initial_groups"),
               "size_max": int(sizes.max(initial=0)), "size_median": float(np.median(sizes)) if len(sizes) else 0.0,
               "params": seg.params}
    shown = rows if limit == 0 else rows[:limit]
    if as_json:
        click.echo(json.dumps({**summary, "segments": _with_titles(shown, seg, ids)}))
        return
    click.echo(f"{seg.n_segments} segments over {seg.n_items} items "
               f"(from {summary['n_initial_groups']} dominant factors; largest {summary['size_max']}, "
               f"median {summary['size_median']:g})" + (f"; saved {saved}" if saved else ""))
    for r in _with_titles(shown, seg, ids):
        ex = r.get("example_titles") or [str(e) for e in r["examples"]]
        click.echo(f"{r['segment']:4d}  {r['size']:5d}  {r['name']}")
        click.echo(f"            {r['description']}")
        if ex:
            click.echo(f"            e.g. {'; '.join(ex)}")
    if limit and seg.n_segments > limit:
        click.echo(f"... {seg.n_segments - limit} more (--limit 0 lists all)")


def _with_titles(rows, seg, ids):
    if seg.titles is None:
        return rows
    from spidx.ids import IdMap

    m = IdMap(ids)
    for r in rows:
        pos = m.lookup(np.asarray(r["examples"])) if r["examples"] else np.empty(0, np.int64)
        r["example_titles"] = [seg.titles[p] if p >= 0 else "" for p in pos]
    return rows


@click.command("explain")
@click.argument("index", type=click.Path())
@click.option("--item", "item", default=None, help="Explain one item: its active dimensions and segment.")
@click.option("--items", "items", default=None, help="Explain a user given by history ids (comma/space separated, or @file).")
@click.option("-n", "--n", "n", type=int, default=10, show_default=True, help="Top items whose scores are explained.")
@click.option("--top-dims", type=int, default=8, show_default=True, help="Dimensions to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def explain_cmd(index, item, items, n, top_dims, as_json):
    """Explain an item (--item ID) or a user's ranking (--items ID,ID,...)."""
    if (item is None) == (items is None):
        raise InputError("give exactly one of --item ID or --items ID,ID,...")
    if n < 1 or top_dims < 1:
        raise InputError("-n and --top-dims must be >= 1")
    A, ids, seg = load_context(index)
    if item is not None:
        pos, _ = resolve_history(ids, [item])
        out = S.explain_item(A, seg, int(pos[0]), top=top_dims)
        out["item"] = _id(ids, out["item"])
        if seg.titles:
            out["title"] = _title(seg, pos[0])
        if as_json:
            click.echo(json.dumps(out))
            return
        click.echo(f"item {out['item']}" + (f"  {out['title']}" if out.get("title") else ""))
        click.echo(f"  {out['nnz']} active dims, norm {out['norm']:.3f}, dominant factor {out['dominant']}")
        click.echo(f"  segment {out['segment']}: {out['segment_name']} ({out['segment_size']} items)")
        for dm in out["dims"]:
            lead = f"  leads segment {dm['segment']}: {dm['segment_name']}" if dm["segment"] is not None else ""
            click.echo(f"    dim {dm['dim']:5d}  {dm['weight']:+.4f}{lead}")
        return
    history, unknown = resolve_history(ids, parse_items(items))
    out = S.explain_user(A, seg, history, n=n, top_dims=top_dims)
    title = (lambda i: _title(seg, i))
    if as_json:
        out["history"] = [_id(ids, i) for i in out["history"]]
        out["top_items"] = [_id(ids, i) for i in out["top_items"]]
        for dm in out["dims"]:
            for f in dm["feeders"]:
                f["item"] = _id(ids, f["item"])
        out["unknown"] = unknown
        click.echo(json.dumps(out))
        return
    if unknown:
        click.echo(f"note: ignored {len(unknown)} unknown item id(s)", err=True)
    click.echo(f"history: {len(history)} items; user vector has {out['user_nnz']} active dims")
    click.echo(f"top {n}: " + ", ".join(f"{_id(ids, i)}" + (f" {title(i)}" if title(i) else "")
                                       for i in out["top_items"]))
    click.echo("dimensions driving these scores (share of the top items' total score):")
    for dm in out["dims"]:
        seg_txt = f"  -> {dm['segment_name']}" if dm["segment"] is not None else ""
        share = f"{dm['share']:.0%}" if dm["share"] is not None else "n/a"
        click.echo(f"  dim {dm['dim']:5d}  u={dm['u']:+.3f}  share {share}{seg_txt}")
        fed = ", ".join(f"{_id(ids, f['item'])}" + (f" {title(f['item'])}" if title(f['item']) else "")
                        + f" ({f['weight']:+.2f})" for f in dm["feeders"])
        click.echo(f"      fed by: {fed}")
    if out.get("top_segments"):
        click.echo("top segments: " + "; ".join(f"{t['name']} ({t['score']:.3f})" for t in out["top_segments"]))


@click.command("homepage")
@click.argument("index", type=click.Path())
@click.option("--items", "items", required=True, help="History item ids (comma/space separated, or @file).")
@click.option("--layout", "layout", default="rows=5,items=10", show_default=True,
              help="rows=R (total rows, the first is 'Recommended for you'),items=N per row[,min_items=M].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def homepage_cmd(index, items, layout, as_json):
    """Alias of `spidx query INDEX --items ... --layout rows=5,items=10 [--json]`."""
    run_layout(index, items, layout, as_json)
