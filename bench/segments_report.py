"""Segments report on MovieLens-100K: genre purity vs random segments, and homepage hit rate.

    spidx train ml-100k.inter.gz --rating-col 2 --min-rating 4 --test-users 200 --val-users 0 --seed 42 \
        --dim 256 --nnz 32,16 --out ce_d256_k{k}.npz            # likewise --dim 512, 1024
    python -m spidx.bench.segments_report --embeddings ce_d1024_k16.npz ce_d256_k16.npz ... \
        --interactions ml-100k.inter.gz --metadata ml-100k.item.gz [--n-test 200 --seed 42 --min-rating 4] [--layout rows=5,items=10]

`--embeddings` are spidx embeddings files or indexes trained on the *training users* of
`make_split(X, n_test, seed)` (`spidx train --test-users N --seed S` makes the same split; the
held-out users below were never trained on). The first file is the one the homepage hit rate is
measured on; purity is reported for every file. `--train` trains Compressed ELSA here instead
(`spidx.CompressedELSA`, --dim/--nnz); `--proxy` builds a torch-free
development stand-in (truncated SVD, varimax-rotated, row-wise top-k).

Purity = share of items carrying their segment's most common genre (item-weighted); the random
baseline shuffles items over segments of exactly the same sizes (`--draws` draws, mean ± sd).
Variants: initial dominant-factor groups; the two embeddings-only merge rules (centroid: cosine of
summed rows >= 0.5; average: mean ELSA item-item weight >= 0.1, the default); the metadata merge on
top (genres + title words: partly circular, it merges on the genres purity is scored on); and the
metadata merge with *title words only* (genres held out, so its genre purity is not by construction);
the metadata merges start from the initial groups (no latent merge first).
Homepage hit rate: for each held-out user (fold-in history -> 20 % held-out targets), the items shown
by the layout (first row + segment rows) vs the plain top-M list with M = the number of items the
layout showed for that user (same total).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

from spidx import segments as S
from spidx.evaluation import make_split
from spidx.ids import IdMap
from spidx.interactions import read_interactions
from spidx.metadata import read_item_metadata
from spidx.sparsify import row_topk

def varimax(Phi: np.ndarray, iters: int = 50, tol: float = 1e-6) -> np.ndarray:
    p, k = Phi.shape
    R = np.eye(k)
    d = 0.0
    for _ in range(iters):
        L = Phi @ R
        u, s, vh = np.linalg.svd(Phi.T @ (L ** 3 - L @ np.diag(np.diag(L.T @ L)) / p))
        R = u @ vh
        d_old, d = d, s.sum()
        if d_old and d / d_old < 1 + tol:
            break
    return Phi @ R


def proxy_embeddings(X_train: sp.csr_matrix, rank: int = 128, k: int = 16, seed: int = 0) -> sp.csr_matrix:
    """Torch-free stand-in for Compressed ELSA: SVD + varimax + row top-k, unit rows."""
    import scipy.sparse.linalg as sla

    n = np.sqrt(np.asarray(X_train.sum(0)).ravel()) + 1e-9
    Xn = (X_train @ sp.diags(1.0 / n)).astype(np.float64)
    _, s, vt = sla.svds(Xn, k=rank, random_state=seed)
    V = varimax(vt.T * np.sqrt(s)).astype(np.float32)
    return row_topk(V, k, renormalise=True)


def _titles_only(meta):
    """The metadata with genres removed: merging and naming see title words only."""
    from spidx.metadata import ItemMetadata

    return ItemMetadata(meta.item_ids, meta.titles, [[] for _ in meta.titles], meta.source + " (titles only)")


def variants(args, meta) -> list:
    """(label, build_segments kwargs, metadata) of every reported variant."""
    return [
        ("initial groups (no merge)", dict(merge=False), None),
        ("centroid merge (cos of summed rows >= 0.5)", dict(latent_rule="centroid", latent_threshold=0.5), None),
        (f"average merge (mean Â_i·Â_j >= {args.latent_threshold:g}; default)",
         dict(latent_rule="average", latent_threshold=args.latent_threshold), None),
        (f"metadata merge of the initial groups, genres + titles (desc cos >= {args.metadata_threshold:g}; circular)",
         dict(latent_threshold=args.latent_threshold, metadata_threshold=args.metadata_threshold), meta),
        ("metadata merge of the initial groups, titles only (genres held out)",
         dict(latent_threshold=args.latent_threshold, metadata_threshold=args.metadata_threshold), _titles_only(meta)),
    ]


def purity_rows(A, ids, genres, meta, args) -> list:
    out = []
    for label, kw, md in variants(args, meta):
        seg = S.build_segments(A, ids, md, **kw)
        sizes = seg.sizes()
        p = S.genre_purity(seg.item_segment, genres)
        r = S.random_purity(seg.item_segment, genres, draws=args.draws, seed=args.seed)
        out.append(dict(label=label, seg=seg, n=seg.n_segments, covered=int((seg.item_segment >= 0).sum()),
                        max=int(sizes.max()), median=float(np.median(sizes)), singletons=int((sizes == 1).sum()),
                        purity=p, rand_mean=float(r.mean()), rand_sd=float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                        ratio=p / float(r.mean())))
    return out


def hit_rates(A, seg, folds, layout) -> dict:
    users = 0
    tot = {"layout_hits": 0.0, "plain_hits": 0.0, "layout_hr": 0.0, "plain_hr": 0.0, "layout_recall": 0.0,
           "plain_recall": 0.0, "shown": 0.0, "seg_rows": 0.0}
    lay_items, plain_items = set(), set()
    for fold in folds:
        H, T = fold.history, fold.targets
        for r in range(H.shape[0]):
            hist = H.indices[H.indptr[r]:H.indptr[r + 1]]
            tgt = set(T.indices[T.indptr[r]:T.indptr[r + 1]].tolist())
            if not tgt or not len(hist):
                continue
            rows = S.homepage_rows(A, seg, hist, rows=layout["rows"], items=layout["items"],
                                   min_items=layout["min_items"])
            shown = [i for row in rows for i in row["items"]]
            m = len(shown)
            plain = S.homepage_rows(A, seg, hist, rows=1, items=m)[0]["items"]
            hl = len(tgt & set(shown))
            hp = len(tgt & set(plain))
            denom = min(m, len(tgt))
            users += 1
            tot["layout_hits"] += hl
            tot["plain_hits"] += hp
            tot["layout_hr"] += hl > 0
            tot["plain_hr"] += hp > 0
            tot["layout_recall"] += hl / denom
            tot["plain_recall"] += hp / denom
            tot["shown"] += m
            tot["seg_rows"] += len(rows) - 1
            lay_items.update(shown)
            plain_items.update(plain)
    out = {k: v / max(users, 1) for k, v in tot.items()}
    out.update(users=users, layout_coverage=len(lay_items), plain_coverage=len(plain_items))
    return out


def load_sources(args, inter, split) -> list:
    """[(label, A aligned to the interaction columns, source text)] for every embeddings source."""
    out = []
    if args.embeddings:
        for path in args.embeddings:
            A, ids = S.load_item_matrix(path)
            info = ""
            if path.endswith(".npz"):
                from spidx.embeddings import load_embeddings

                m = load_embeddings(path).meta
                cfg = m.get("config", {})
                info = (f" ({m.get('model')}, d={m.get('d', cfg.get('dim'))}, k={m.get('k', cfg.get('nnz'))}, "
                        f"test_users={cfg.get('test_users')}, seed={cfg.get('seed')}, "
                        f"train users={m.get('data', {}).get('train_users')})")
            out.append((f"d={A.shape[1]}, k={int(round(S.as_csr(A).nnz / max(A.shape[0], 1)))}", A, ids, path + info))
    elif args.train:
        from spidx.trainer.models import CompressedELSA

        t1 = time.time()
        model = CompressedELSA(dim=args.dim, nnz=args.nnz, epochs=10, batch_size=256, lr=0.1, seed=args.seed)
        A = S.as_csr(model.fit(split.train, show_progress=False).embeddings)
        src = (f"Compressed ELSA trained here on the {split.train.shape[0]} training users (d={args.dim}, k={args.nnz}, "
               f"exponential schedule with restarting, 10 epochs, batch 256, lr 0.1, seed {args.seed}; {time.time() - t1:.0f} s)")
        if args.save_embeddings:
            from spidx.embeddings import save_embeddings

            save_embeddings(args.save_embeddings, A, inter.item_ids, {"model": "compressed-elsa", "dim": args.dim, "k": args.nnz,
                                                                      "train_users": f"make_split(n_test={args.n_test}, seed={args.seed}).train"})
        out.append((f"d={args.dim}, k={args.nnz}", A, inter.item_ids, src))
    else:
        A = S.as_csr(proxy_embeddings(split.train, args.proxy_rank, args.proxy_k))
        out.append((f"proxy r={args.proxy_rank}, k={args.proxy_k}", A, inter.item_ids,
                    f"proxy: SVD rank {args.proxy_rank} + varimax, row top-{args.proxy_k} (training users)"))
    aligned = []
    for label, A, ids, src in out:
        pos = IdMap(ids).lookup(inter.item_ids)
        missing = int((pos < 0).sum())
        if missing:
            print(f"warning: {label}: {missing} interaction items have no embedding row; they get empty rows", file=sys.stderr)
        A_al = S.as_csr(S.as_csr(A)[np.where(pos >= 0, pos, 0)])
        if missing:
            A_al = S.as_csr(sp.diags((pos >= 0).astype(np.float32)) @ A_al)
        aligned.append((label, A_al, src))
    return aligned


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", nargs="+", help="spidx embeddings .npz / index files trained on the training users "
                                                    "(the first one is used for the homepage hit rate)")
    ap.add_argument("--proxy", action="store_true", help="no --embeddings: build the SVD+varimax top-k stand-in")
    ap.add_argument("--train", action="store_true",
                    help="no --embeddings: train Compressed ELSA (spidx.CompressedELSA, exponential + restarting, "
                         "10 epochs, batch 256, lr 0.1) on the split's training users first")
    ap.add_argument("--dim", type=int, default=1024, help="--train: d")
    ap.add_argument("--nnz", type=int, default=16, help="--train: k")
    ap.add_argument("--save-embeddings", help="--train: also save the trained embeddings here")
    ap.add_argument("--proxy-rank", type=int, default=128)
    ap.add_argument("--proxy-k", type=int, default=16)
    ap.add_argument("--interactions", required=True, help="ML-100K interactions, e.g. ml-100k.inter.gz")
    ap.add_argument("--metadata", required=True, help="ML-100K item metadata, e.g. ml-100k.item.gz")
    ap.add_argument("--rating-col", default="2")
    ap.add_argument("--min-rating", type=float, default=4.0)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--layout", default="rows=5,items=10")
    ap.add_argument("--latent-threshold", type=float, default=S.DEFAULT_LATENT_THRESHOLD["average"])
    ap.add_argument("--metadata-threshold", type=float, default=0.8)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--out", help="write the markdown report here")
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args(argv)
    if not args.embeddings and not args.proxy and not args.train:
        ap.error("give --embeddings EMB.npz ..., or --train, or --proxy (development stand-in)")
    t0 = time.time()
    inter = read_interactions(args.interactions, rating_col=int(args.rating_col) if args.rating_col.isdigit() else args.rating_col,
                              min_rating=args.min_rating)
    split = make_split(inter.matrix, n_test=args.n_test, n_val=0, seed=args.seed)
    sources = load_sources(args, inter, split)
    meta = read_item_metadata(args.metadata)
    genres = meta.align(inter.item_ids).genres
    layout = S.parse_layout(args.layout)

    pur = {label: purity_rows(A, inter.item_ids, genres, meta, args) for label, A, _ in sources}
    main_label, A_main, _ = sources[0]
    hits = {p["label"]: hit_rates(A_main, p["seg"], split.test, layout) for p in pur[main_label][2:4]}
    elapsed = time.time() - t0

    cmd = "python -m spidx.bench.segments_report " + " ".join(a if " " not in a else repr(a) for a in (argv or sys.argv[1:]))
    n_total = layout["rows"] * layout["items"]
    lines = [
        "# Segments on MovieLens-100K: genre purity and homepage hit rate", "",
        f"Command: `{cmd}`", "",
        "- Embeddings: " + "; ".join(f"**{label}**: {src}" for label, _, src in sources),
        f"- Data: {args.interactions}, ratings >= {args.min_rating:g} as positives: {inter.n_users} users x {inter.n_items} items, "
        f"{inter.matrix.nnz} interactions",
        f"- Split: make_split(n_test={args.n_test}, seed={args.seed}); purity random baseline: {args.draws} draws",
        f"- Metadata: {args.metadata} (genres from `class`, words from titles)", "",
        "## Genre purity", "",
        "Purity = share of items that carry their segment's most common genre (item-weighted). Random = the same "
        "segment sizes with items shuffled (mean ± sd over the draws). Every item is in exactly one segment "
        "(covered column). *circular*: the merge used the genres purity is scored on.", "",
        "| embeddings | segments | n | covered | largest | median size | singletons | purity | random | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in pur.items():
        for p in rows:
            lines.append(f"| {label} | {p['label']} | {p['n']} | {p['covered']}/{inter.n_items} | {p['max']} | {p['median']:g} | "
                         f"{p['singletons']} | {p['purity']:.3f} | {p['rand_mean']:.3f} ± {p['rand_sd']:.3f} | **{p['ratio']:.2f}x** |")
    lines += ["", f"## Homepage hit rate ({main_label}; layout {args.layout}: up to {n_total} items)", "",
              "Held-out users (never trained on), fold-in history -> 20 % held-out targets. Layout = first row "
              "'Recommended for you' + segment rows (no repeats, no seen items); plain = top-M list with M = the "
              "number of items the layout showed to that user.", "",
              "| segments | users | items shown (mean) | segment rows (mean) | hits/user layout | hits/user plain | HR layout | HR plain | recall layout | recall plain | distinct items shown layout | plain |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, h in hits.items():
        lines.append(f"| {label} | {h['users']} | {h['shown']:.1f} | {h['seg_rows']:.2f} | {h['layout_hits']:.3f} | {h['plain_hits']:.3f} | "
                     f"{h['layout_hr']:.3f} | {h['plain_hr']:.3f} | {h['layout_recall']:.3f} | {h['plain_recall']:.3f} | "
                     f"{h['layout_coverage']} | {h['plain_coverage']} |")
    titles = meta.align(inter.item_ids).titles
    for k, head in ((2, "average merge, no metadata"), (3, "metadata merge, genres + titles")):
        seg_m = pur[main_label][k]["seg"]
        lines += ["", f"## Largest segments ({main_label}, {head})", "",
                  "| # | size | name | description | examples |", "|---|---|---|---|---|"]
        for r in seg_m.to_rows(examples=4, A=A_main)[:10]:
            ex = "; ".join(titles[i] for i in IdMap(inter.item_ids).lookup(np.asarray(r["examples"])) if i >= 0)
            lines.append(f"| {r['segment']} | {r['size']} | {r['name']} | {r['description']} | {ex} |")
    lines += ["", f"_Generated in {elapsed:.0f} s._", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"purity": {label: [{k: v for k, v in p.items() if k != "seg"} for p in rows]
                                  for label, rows in pur.items()}, "hits": hits}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
