"""Segments report on MovieLens-100K: genre purity vs random segments, and homepage hit rate.

    python -m bench.segments_report --embeddings EMB.npz [--metadata ml-100k.item.gz] \
        [--interactions ml-100k.inter.gz --min-rating 4 --n-test 200 --seed 42] [--layout rows=5,items=10]

`--embeddings` is a spidx embeddings file or index trained on the *training users* of
`make_split(X, n_test, seed)` (strong generalisation: the held-out users below were never trained on;
pass the same --n-test/--seed/--min-rating as the training run). Without --embeddings, `--proxy`
builds a torch-free stand-in on the training users (rank-r truncated SVD, varimax-rotated, row-wise
top-k, renormalised) -- for development only.

Purity = share of items carrying their segment's most common genre (item-weighted); the random
baseline shuffles items over segments of exactly the same sizes (`--draws` draws, mean ± sd).
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
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sparse_index import segments as S
from sparse_index.interactions import read_interactions
from sparse_index.metadata import read_item_metadata
from sparse_index.protocol import make_split

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"


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
    idx = np.argpartition(-np.abs(V), k - 1, axis=1)[:, :k]
    M = np.zeros_like(V)
    np.put_along_axis(M, idx, np.take_along_axis(V, idx, 1), 1)
    M /= np.linalg.norm(M, axis=1, keepdims=True) + 1e-12
    return sp.csr_matrix(M)


def purity_rows(A, ids, genres, meta, args) -> list:
    configs = [
        ("initial groups (no merge)", dict(merge=False), None),
        (f"latent merge (cos >= {args.latent_threshold})", dict(latent_threshold=args.latent_threshold), None),
        (f"latent + metadata merge (desc cos >= {args.metadata_threshold})",
         dict(latent_threshold=args.latent_threshold, metadata_threshold=args.metadata_threshold), meta),
    ]
    out = []
    for label, kw, md in configs:
        seg = S.build_segments(A, ids, md, **kw)
        sizes = seg.sizes()
        p = S.genre_purity(seg.item_segment, genres)
        r = S.random_purity(seg.item_segment, genres, draws=args.draws, seed=args.seed)
        big = np.isin(seg.item_segment, np.flatnonzero(sizes >= 5))
        sub = seg.item_segment[big]
        g_sub = [genres[i] for i in np.flatnonzero(big)]
        p5 = S.genre_purity(sub, g_sub) if big.any() else float("nan")
        r5 = S.random_purity(sub, g_sub, draws=args.draws, seed=args.seed) if big.any() else np.array([np.nan, np.nan])
        out.append(dict(label=label, seg=seg, n=seg.n_segments, covered=int((seg.item_segment >= 0).sum()),
                        max=int(sizes.max()), median=float(np.median(sizes)), singletons=int((sizes == 1).sum()),
                        purity=p, rand_mean=float(r.mean()), rand_sd=float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                        ratio=p / float(r.mean()), p5=p5, r5=float(r5.mean()), r5sd=float(r5.std(ddof=1)),
                        items5=int(big.sum())))
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embeddings", help="spidx embeddings .npz or index file trained on the training users")
    ap.add_argument("--proxy", action="store_true", help="no --embeddings: build the SVD+varimax top-k stand-in")
    ap.add_argument("--train", action="store_true",
                    help="no --embeddings: train Compressed ELSA (trainer.compressed, exponential + restarting, "
                         "10 epochs, batch 256, lr 0.1) on the split's training users first")
    ap.add_argument("--dim", type=int, default=4096, help="--train: d")
    ap.add_argument("--nnz", type=int, default=32, help="--train: k")
    ap.add_argument("--save-embeddings", help="--train: also save the trained embeddings here")
    ap.add_argument("--proxy-rank", type=int, default=128)
    ap.add_argument("--proxy-k", type=int, default=16)
    ap.add_argument("--interactions", default=str(DATA / "ml-100k.inter.gz"))
    ap.add_argument("--metadata", default=str(DATA / "ml-100k.item.gz"))
    ap.add_argument("--rating-col", default="2")
    ap.add_argument("--min-rating", type=float, default=4.0)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--layout", default="rows=5,items=10")
    ap.add_argument("--latent-threshold", type=float, default=0.5)
    ap.add_argument("--metadata-threshold", type=float, default=0.8)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--out", help="write the markdown report here")
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args(argv)
    if not args.embeddings and not args.proxy and not args.train:
        ap.error("give --embeddings EMB.npz, or --train, or --proxy (development stand-in)")
    t0 = time.time()
    inter = read_interactions(args.interactions, rating_col=int(args.rating_col) if args.rating_col.isdigit() else args.rating_col,
                              min_rating=args.min_rating)
    split = make_split(inter.matrix, n_test=args.n_test, n_val=0, seed=args.seed)
    emb_meta = {}
    if args.embeddings:
        A, ids = S.load_item_matrix(args.embeddings)
        if args.embeddings.endswith(".npz"):
            from sparse_index.embeddings import load_embeddings

            emb_meta = load_embeddings(args.embeddings).meta
        source = args.embeddings
    elif args.train:
        from trainer.compressed import train_compressed_elsa

        t1 = time.time()
        A = S.as_csr(train_compressed_elsa(split.train, dim=args.dim, targets=(args.nnz,), epochs=10, batch_size=256,
                                           lr=0.1, seed=args.seed, progress=False)[args.nnz])
        ids = inter.item_ids
        source = (f"Compressed ELSA trained here on the {split.train.shape[0]} training users (d={args.dim}, k={args.nnz}, "
                  f"exponential schedule with restarting, 10 epochs, batch 256, lr 0.1, seed {args.seed}; {time.time() - t1:.0f} s)")
        if args.save_embeddings:
            from sparse_index.embeddings import save_embeddings

            save_embeddings(args.save_embeddings, A, ids, {"model": "compressed-elsa", "dim": args.dim, "k": args.nnz,
                                                           "train_users": f"make_split(n_test={args.n_test}, seed={args.seed}).train"})
    else:
        A = S.as_csr(proxy_embeddings(split.train, args.proxy_rank, args.proxy_k))
        ids = inter.item_ids
        source = f"proxy: SVD rank {args.proxy_rank} + varimax, row top-{args.proxy_k} (trained on the split's training users)"
    # align the embedding rows to the interaction columns
    from sparse_index.ids import IdMap

    pos = IdMap(ids).lookup(inter.item_ids)
    missing = int((pos < 0).sum())
    if missing:
        print(f"warning: {missing} interaction items have no embedding row; they get empty rows", file=sys.stderr)
    rows_idx = np.where(pos >= 0, pos, 0)
    A_al = S.as_csr(A[rows_idx])
    if missing:
        A_al = S.as_csr(sp.diags((pos >= 0).astype(np.float32)) @ A_al)
    meta = read_item_metadata(args.metadata)
    genres = meta.align(inter.item_ids).genres
    layout = S.parse_layout(args.layout)

    pur = purity_rows(A_al, inter.item_ids, genres, meta, args)
    hits = {p["label"]: hit_rates(A_al, p["seg"], split.test, layout) for p in pur[1:]}
    elapsed = time.time() - t0

    cmd = "python -m bench.segments_report " + " ".join(a if " " not in a else repr(a) for a in (argv or sys.argv[1:]))
    n_total = layout["rows"] * layout["items"]
    lines = [
        "# Segments on MovieLens-100K: genre purity and homepage hit rate", "",
        f"Command: `{cmd}`", "",
        f"- Embeddings: {source}" + (f" (meta: {json.dumps({k: v for k, v in emb_meta.items() if isinstance(v, (str, int, float))})})" if emb_meta else ""),
        f"- Data: {args.interactions}, ratings >= {args.min_rating:g} as positives: {inter.n_users} users x {inter.n_items} items, "
        f"{inter.matrix.nnz} interactions; item matrix {A_al.shape[0]} x {A_al.shape[1]}, "
        f"{A_al.nnz / max(A_al.shape[0], 1):.1f} nnz/row",
        f"- Split: make_split(n_test={args.n_test}, seed={args.seed}); purity random baseline: {args.draws} draws",
        f"- Metadata: {args.metadata} (genres from `class`, words from titles)", "",
        "## Genre purity", "",
        "Purity = share of items that carry their segment's most common genre (item-weighted). Random = the same "
        "segment sizes with items shuffled (mean ± sd). Every item is in exactly one segment (covered column).", "",
        "| segments | n | covered | largest | median size | singletons | purity | random | ratio | purity, segments >= 5 items | random (>= 5) | ratio (>= 5) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pur:
        lines.append(f"| {p['label']} | {p['n']} | {p['covered']}/{A_al.shape[0]} | {p['max']} | {p['median']:g} | {p['singletons']} | "
                     f"{p['purity']:.3f} | {p['rand_mean']:.3f} ± {p['rand_sd']:.3f} | **{p['ratio']:.2f}x** | "
                     f"{p['p5']:.3f} ({p['items5']} items) | {p['r5']:.3f} ± {p['r5sd']:.3f} | {p['p5'] / p['r5']:.2f}x |")
    lines += ["", f"## Homepage hit rate (layout {args.layout}: up to {n_total} items)", "",
              "Held-out users (never trained on), fold-in history -> 20 % held-out targets. Layout = first row "
              "'Recommended for you' + segment rows (no repeats, no seen items); plain = top-M list with M = the "
              "number of items the layout showed to that user.", "",
              "| segments | users | items shown (mean) | segment rows (mean) | hits/user layout | hits/user plain | HR layout | HR plain | recall layout | recall plain | distinct items shown layout | plain |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, h in hits.items():
        lines.append(f"| {label} | {h['users']} | {h['shown']:.1f} | {h['seg_rows']:.2f} | {h['layout_hits']:.3f} | {h['plain_hits']:.3f} | "
                     f"{h['layout_hr']:.3f} | {h['plain_hr']:.3f} | {h['layout_recall']:.3f} | {h['plain_recall']:.3f} | "
                     f"{h['layout_coverage']} | {h['plain_coverage']} |")
    seg_m = pur[2]["seg"]
    lines += ["", "## Largest segments (latent + metadata merge)", "", "| # | size | name | description | examples |", "|---|---|---|---|---|"]
    titles = meta.align(inter.item_ids).titles
    for r in seg_m.to_rows(examples=4, A=A_al)[:15]:
        ex = "; ".join(titles[i] for i in S.IdMap(inter.item_ids).lookup(np.asarray(r["examples"])) if i >= 0)
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
            json.dump({"purity": [{k: v for k, v in p.items() if k != "seg"} for p in pur], "hits": hits}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
