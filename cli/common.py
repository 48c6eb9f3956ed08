"""Options shared by several commands."""
from __future__ import annotations

import functools

import click

from spidx.interactions import read_interactions


def interaction_options(f):
    """--user-col/--item-col/--rating-col/--min-rating/--sep for reading interaction files."""
    options = [
        click.option("--user-col", default="0", show_default=True, help="User column: position or header name."),
        click.option("--item-col", default="1", show_default=True, help="Item column: position or header name."),
        click.option("--rating-col", default=None, help="Rating column (position or name), for --min-rating."),
        click.option("--min-rating", type=float, default=None, help="Keep pairs with rating >= this (binarise)."),
        click.option("--sep", default=None, help="Field separator (default: guessed from the file)."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _col(spec):
    return int(spec) if spec is not None and str(spec).isdigit() else spec


def load_interactions(path, user_col="0", item_col="1", rating_col=None, min_rating=None, sep=None):
    """Read interactions with the values of `interaction_options`."""
    return read_interactions(path, user_col=_col(user_col), item_col=_col(item_col), rating_col=_col(rating_col),
                             min_rating=min_rating, sep=sep)


def pop_interaction_options(kwargs: dict) -> dict:
    """Remove and return the interaction options from a command's kwargs."""
    return {k: kwargs.pop(k) for k in ("user_col", "item_col", "rating_col", "min_rating", "sep")}


def positive(name):
    """A click callback rejecting values <= 0."""
    @functools.wraps(positive)
    def check(ctx, param, value):
        if value is not None and value <= 0:
            raise click.BadParameter(f"{name} must be positive, got {value}")
        return value
    return check
