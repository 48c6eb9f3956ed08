"""`spidx` command line: train, evaluate, build, query, score, info, segments, explain, bench."""
from __future__ import annotations

import sys

import click

from spidx.errors import InputError


class SpidxGroup(click.Group):
    """Turns expected failures (bad input) into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except FileNotFoundError as e:
            click.echo(f"error: {e.filename or e}: file not found", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except MemoryError as e:
            click.echo(f"error: out of memory; {e or 'try a smaller --batch-size or --dim'}", err=True)
            sys.exit(1)


@click.group(cls=SpidxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="spidx")
def main():
    """Sparse item embeddings (Compressed ELSA) served from an exact inverted index."""


def _register():
    from . import bench_commands, index_commands, score_commands, segment_commands, train_commands

    for module in (train_commands, index_commands, score_commands, segment_commands, bench_commands):
        module.register(main)


_register()

if __name__ == "__main__":
    main()
