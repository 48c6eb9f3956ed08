"""`spidx train` and `spidx evaluate`."""
from __future__ import annotations

import json

import click

from spidx.atomic import STDOUT, atomic_path, check_outputs
from spidx.embeddings import load_embeddings
from spidx.errors import InputError
from spidx.evaluation import METRICS

from .common import interaction_options, load_interactions, pop_interaction_options, positive


def _lambdas(ctx, param, value):
    try:
        lams = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got '{value}'") from None
    if not lams or any(lam <= 0 for lam in lams):
        raise click.BadParameter("lambdas must be positive")
    return lams


def _nnz_list(ctx, param, value):
    if value is None:
        return None
    try:
        ks = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected an integer or a comma list, got '{value}'") from None
    if not ks or any(k <= 0 for k in ks):
        raise click.BadParameter(f"nnz must be positive, got {value}")
    return ks


@click.command()
@click.argument("interactions", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Embeddings file to write (.npz).")
@click.option("--model", type=click.Choice(["compressed-elsa", "elsa", "ease"]), default="compressed-elsa",
              show_default=True)
@click.option("--dim", type=int, default=4096, show_default=True, callback=positive("dim"),
              help="Embedding dimension d (ELSA, Compressed ELSA).")
@click.option("--nnz", default=None, callback=_nnz_list,
              help="Non-zeros per item row k (Compressed ELSA: default 32; EASE: prune rows to k). "
                   "A list, e.g. 128,64,32, trains every k at once (Compressed ELSA: one pruning trajectory; "
                   "EASE: one inverse), one file per k (--out must contain {k}).")
@click.option("--schedule", type=click.Choice(["exponential", "linear", "step", "constant"]),
              default="exponential", show_default=True, help="Gradual pruning schedule.")
@click.option("--rewind/--no-rewind", default=True, show_default=True,
              help="Reset surviving weights to their initial values at each pruning phase.")
@click.option("--epochs", type=int, default=10, show_default=True, callback=positive("epochs"),
              help="ELSA epochs; Compressed ELSA epochs per halving and at the final k. With validation users "
                   "the ELSA epochs are a maximum (see --patience).")
@click.option("--final-epochs", type=int, default=None, callback=positive("final-epochs"),
              help="Compressed ELSA: epochs at the final k (default: --epochs); with validation users a maximum, "
                   "the best validation epoch is kept.")
@click.option("--batch-size", type=int, default=256, show_default=True, callback=positive("batch size"))
@click.option("--lr", type=float, default=0.1, show_default=True, callback=positive("lr"))
@click.option("--max-output", type=int, default=None, callback=positive("max-output"),
              help="Sampled training: output columns per batch (batch items + negatives). Default: all items.")
@click.option("--lam", default="500", show_default=True, callback=_lambdas,
              help="EASE L2 strength; a comma list is searched on --val-users.")
@click.option("--test-users", type=int, default=0, show_default=True,
              help="Hold out this many seeded users (never trained on) for `spidx evaluate`.")
@click.option("--val-users", type=int, default=None,
              help="Hold out users (never trained on, disjoint from the test users) for model selection: ELSA "
                   "and each Compressed ELSA final phase keep their best epoch by validation nDCG@100 and stop "
                   "early; EASE picks its best lambda. Default: 5 % of the non-test users, at least 100, at most "
                   "1000 and at most a fifth of them (none below 10; EASE: only with several --lam). 0: no "
                   "validation, every epoch is trained and the last one kept.")
@click.option("--patience", type=int, default=3, show_default=True, callback=positive("patience"),
              help="With validation users: stop a training phase after this many epochs without a new best "
                   "validation nDCG@100.")
@click.option("--refit/--no-refit", default=None,
              help="After validation, retrain on every non-test user (validation users included) with what it "
                   "chose (epochs, each k's final epochs, lambda); trains twice. Default: only when the validation "
                   "users are more than 5 % of the non-test users (small data sets) and no --checkpoint is given.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--device", default="auto", show_default=True,
              help="ELSA models: auto (cuda when torch sees a GPU), cpu, cuda or cuda:N.")
@click.option("--distributed", is_flag=True,
              help="Data-parallel over torchrun's processes: torchrun --nproc_per_node=N $(which spidx) train ... "
                   "--distributed (gloo on CPU, nccl on GPU; rank 0 writes).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="ELSA models: checkpoint file rewritten atomically after every epoch / pruning phase.")
@click.option("--resume", is_flag=True, help="Continue from --checkpoint when it exists.")
@interaction_options
def train(interactions, out, quiet, device, distributed, checkpoint, resume, **kw):
    """Train item embeddings on an INTERACTIONS file (CSV/TSV/.npz) and write them to --out."""
    from spidx.trainer.config import TrainConfig, default_refit, default_val_users
    from spidx.trainer.pipeline import train_models  # torch is imported only here

    nnz = kw.pop("nnz") or ([32] if kw["model"] == "compressed-elsa" else [None])
    if len(nnz) > 1 and "{k}" not in out:
        raise click.BadParameter("several --nnz values write one file each: put {k} in --out", param_hint="--out")
    read_options = pop_interaction_options(kw)
    auto_val, auto_refit = kw["val_users"] is None, kw["refit"] is None
    cfg = TrainConfig(nnz=nnz[0], targets=tuple(nnz) if len(nnz) > 1 else (),
                      **{**kw, "val_users": kw["val_users"] or 0, "refit": bool(kw["refit"])})
    cfg.validate()
    check_outputs([out.replace("{k}", str(k)) for k in nnz], [interactions])
    if resume and checkpoint is None:
        raise InputError("--resume needs --checkpoint PATH")
    from spidx.trainer.distributed import init_from_env, is_main_process

    if distributed:
        device = init_from_env(device)[2]
    main = is_main_process()
    data = load_interactions(interactions, **read_options)
    if auto_val and (cfg.model != "ease" or len(cfg.lam) > 1):  # one EASE lambda: nothing to select
        cfg.val_users = default_val_users(data.n_users, cfg.test_users)
    if auto_refit:
        cfg.refit = checkpoint is None and default_refit(data.n_users, cfg.test_users, cfg.val_users)
    if main:
        click.echo(f"{data.n_users} users x {data.n_items} items, {data.matrix.nnz} interactions; held out: "
                   f"{cfg.test_users} test, {cfg.val_users} validation users"
                   + (" (default rule, --val-users 0 for none)" if auto_val and cfg.val_users else "")
                   + ("; then refit on every non-test user" if cfg.refit and cfg.val_users else ""), err=True)
    models = train_models(data, cfg, progress=not quiet and main, device=device, distributed=distributed,
                          checkpoint=checkpoint, resume=resume)
    for k, model in models.items() if main else ():  # under torchrun only rank 0 writes
        path = out.replace("{k}", str(k))
        model.save(path)
        emb = model.to_embeddings()
        shape = "x".join(map(str, emb.shape))
        per_row = f", {emb.matrix.nnz / emb.shape[0]:.0f} nnz/row" if emb.is_sparse else ""
        refit = emb.meta.get("refit")
        click.echo(f"wrote {path}: {cfg.model} {shape}{per_row}, trained in {emb.meta['train_seconds']:.1f}s"
                   + (f" (validated on {refit['validation_train_users']} training users, then refit on "
                      f"{refit['train_users']})" if refit else ""))
        selected = emb.meta.get("selected") or {}
        if selected:
            chosen = ", ".join(f"{p}={selected[p]}" for p in ("lambda", "epoch") if p in selected)
            click.echo(f"validation{' (' + chosen + ')' if chosen else ''}: "
                       + ", ".join(f"{m}={selected[m]:.4f}" for m in METRICS))


@click.command()
@click.argument("embeddings", type=click.Path(dir_okay=False))
@click.argument("interactions", type=click.Path(dir_okay=False))
@click.option("--test-users", type=int, default=None,
              help="Default: as the model was trained; any other value is refused (it would test training users).")
@click.option("--seed", type=int, default=None,
              help="Default: as the model was trained; any other value is refused (it would test training users).")
@click.option("--folds", type=click.IntRange(1, 5), default=1, show_default=True,
              help="Rotate the held-out fifth of each test user's items over this many folds.")
@click.option("--values", type=click.Choice(["f32", "f16", "i8"]), default=None,
              help="Rank with the inverted index built with these values (the accuracy actually served).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Also write metrics as JSON to this file ('-': stdout, after the table).")
@interaction_options
def evaluate(embeddings, interactions, test_users, seed, folds, values, json_out, **kw):
    """Held-out Recall@20, Recall@50 and nDCG@100 of trained EMBEDDINGS on INTERACTIONS."""
    from spidx.trainer.pipeline import evaluate_embeddings

    check_outputs([json_out], [embeddings, interactions])
    emb = load_embeddings(embeddings)
    data = load_interactions(interactions, **pop_interaction_options(kw))
    metrics = evaluate_embeddings(emb, data, test_users, seed, folds, values)
    meta = emb.meta
    label = f"{meta.get('model', '?')} d={meta.get('d')}" + (f" k={meta['k']}" if meta.get("k") else "")
    label += f" (index, {values} values)" if values else ""
    click.echo("| model | " + " | ".join(METRICS) + " |")
    click.echo("|---|" + "---|" * len(METRICS))
    click.echo(f"| {label} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    report = {"embeddings": embeddings, "interactions": interactions, "folds": folds, "values": values, "model": label,
              "metrics": metrics}
    if json_out == STDOUT:
        click.echo(json.dumps(report, indent=2))
    elif json_out:
        with atomic_path(json_out) as tmp, open(tmp, "w") as f:
            json.dump(report, f, indent=2)


def register(group):
    group.add_command(train)
    group.add_command(evaluate)
