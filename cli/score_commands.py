"""`spidx score`: batch recommendations for many users on Ray Data (the `[ray]` extra)."""
from __future__ import annotations

import time

import click

from spidx.errors import InputError


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise InputError(f"--{param.name.replace('_', '-')} must be positive, got {value}")
    return value


@click.command()
@click.argument("index_path", metavar="INDEX", type=click.Path(dir_okay=False))
@click.option("--histories", required=True, type=click.Path(),
              help="(user, item) pairs: a Parquet, CSV (with header) or JSONL file, or a folder of them.")
@click.option("--output", required=True, type=click.Path(),
              help="Folder to write (one row per user: user, items, scores, unknown); must not exist.")
@click.option("--ray", "address", is_flag=False, flag_value="auto", default=None, metavar="[ADDRESS]",
              help="Join a Ray cluster (bare --ray: the running one, RAY_ADDRESS or 'auto'; or ray://host:port). "
                   "Default: a local Ray with --workers CPUs.")
@click.option("--workers", type=int, default=1, show_default=True, callback=_positive,
              help="Scoring actors; each memory-maps the index once.")
@click.option("--cpus-per-worker", type=float, default=1.0, show_default=True, callback=_positive,
              help="CPUs each scoring actor reserves (a local Ray gets workers x this + 1 CPUs).")
@click.option("-k", "k", type=int, default=20, show_default=True, callback=_positive, help="Items per user.")
@click.option("--include-seen", is_flag=True, help="Allow items from the history in the results.")
@click.option("--format", "output_format", type=click.Choice(["parquet", "jsonl"]), default="parquet",
              show_default=True)
@click.option("--user-col", default="user", show_default=True, help="User column name.")
@click.option("--item-col", default="item", show_default=True, help="Item column name.")
@click.option("--partitions", type=int, default=None, callback=_positive,
              help="Blocks after the shuffle by user (default: 4 per worker).")
def score(index_path, histories, output, address, workers, cpus_per_worker, k, include_seen, output_format, user_col, item_col,
          partitions):
    """Recommend the top-k items for every user in --histories with Ray Data; same results as
    `spidx query --histories`."""
    from spidx.batch_scoring import score_on_ray

    t0 = time.perf_counter()
    score_on_ray(index_path, histories, output, address=address, workers=workers, k=k,
                 exclude_seen=not include_seen, user_col=user_col, item_col=item_col, output_format=output_format,
                 partitions=partitions, cpus_per_worker=cpus_per_worker)
    click.echo(f"wrote {output} ({output_format}) in {time.perf_counter() - t0:.1f}s", err=True)


def register(group):
    group.add_command(score)
