"""`spidx bench`: the head-to-head compression benchmark (see bench/README.md)."""
from __future__ import annotations

import os
import shlex
import sys

import click


def _ints(s):
    return tuple(int(x) for x in s.split(",") if x.strip()) if s else None


def _floats(s):
    return tuple(float(x) for x in s.split(",") if x.strip()) if s else None


def _strs(s):
    return tuple(x.strip() for x in s.split(",") if x.strip()) if s else None


def register(group: click.Group) -> None:
    @group.command("bench")
    @click.option("--preset", type=click.Choice(["default", "paper", "tiny"]), default="default", show_default=True,
                  help="default: shipped Gowalla, small settings (<10 min on 2 cores); paper: full schedules.")
    @click.option("--data", type=click.Path(dir_okay=False), default=None,
                  help="Interactions file (.npz/CSV); default: data/gowalla.npz.")
    @click.option("--out", type=click.Path(file_okay=False), default=None,
                  help="Folder for results.json/.csv, report.md and the plot (default runs/bench/<data>-<preset>).")
    @click.option("--methods", default=None,
                  help="Comma list of method groups: dense,lowdim,faiss,posthoc,compresae,ease,celsa,seismic (default: all but seismic and compresae; paper: all but seismic). "
                       "The dense reference always runs.")
    @click.option("--budgets", default=None, help="Comma list of bytes per item (default 1024,512,256,128,64).")
    @click.option("--n-test", type=int, default=None, help="Held-out test users (they only report figures).")
    @click.option("--n-val", type=int, default=None,
                  help="Validation users, disjoint from the test users: every choice (reference r, EASE λ, FAISS "
                       "configuration, ELSA epochs) is made on them (default: 500; paper preset 1000; tiny 50).")
    @click.option("--folds", type=int, default=None, help="Folds of 20%% targets per held-out user (1-5).")
    @click.option("--seed", type=int, default=None)
    @click.option("--dim", "sparse_dim", type=int, default=None, help="d of Compressed ELSA and post-hoc top-k.")
    @click.option("--posthoc-dim", type=int, default=None,
                  help="Dense ELSA dimension that post-hoc top-k sparsifies (default: --dim).")
    @click.option("--ref-dims", default=None, help="Comma list of candidate dims for the dense reference.")
    @click.option("--epochs", "celsa_epochs", type=int, default=None,
                  help="Compressed ELSA: epochs per halving and at the target (E).")
    @click.option("--final-epochs", "celsa_final_epochs", type=int, default=None,
                  help="Compressed ELSA: epochs at each target k (default: --epochs).")
    @click.option("--dense-epochs", type=int, default=None)
    @click.option("--max-output", type=int, default=None, help="Sampled training: output columns per batch.")
    @click.option("--ease-lambda", "ease_lams", default=None, help="Comma list of EASE λ (best on the validation users is kept).")
    @click.option("--values", "celsa_values", default=None, help="Index value types for Compressed ELSA (f32,f16,i8).")
    @click.option("--threads", type=int, default=None, help="Threads for serving/timing (default 1).")
    @click.option("--repeats", type=int, default=None, help="Batch timing repeats (median).")
    @click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
                  help="Trained-model cache (default .cache/bench); keyed by data fingerprint + parameters.")
    @click.option("--no-plot", is_flag=True, help="Skip the PNG plot.")
    @click.option("--quiet", is_flag=True, help="No progress bars or log lines (the table is still printed).")
    def bench(preset, data, out, methods, budgets, n_test, n_val, folds, seed, sparse_dim, posthoc_dim, ref_dims, celsa_epochs,
              celsa_final_epochs, dense_epochs, max_output, ease_lams, celsa_values, threads, repeats, cache_dir, no_plot, quiet):
        """Compressed ELSA + inverted index vs dense ELSA/FAISS codes, post-hoc top-k and pruned EASE at
        matched bytes per item. Prints a Markdown table; writes JSON, CSV and a PNG plot to --out."""
        from spidx.bench.compression import preset_config, run_benchmark
        from spidx.bench.report import markdown, output_names, write_outputs

        cfg = preset_config(
            preset, data, out=out, methods=_strs(methods), budgets=_ints(budgets), n_test=n_test, n_val=n_val, folds=folds,
            seed=seed, sparse_dim=sparse_dim, posthoc_dim=posthoc_dim, ref_dims=_ints(ref_dims), celsa_epochs=celsa_epochs,
            celsa_final_epochs=celsa_final_epochs, dense_epochs=dense_epochs, max_output=max_output, ease_lams=_floats(ease_lams),
            celsa_values=_strs(celsa_values), threads=threads, repeats=repeats, cache_dir=cache_dir,
            progress=not quiet)
        from spidx.atomic import check_outputs

        names = [n for key, n in output_names().items() if not (no_plot and key in ("png", "curves_png"))]
        check_outputs([os.path.join(cfg.out, name) for name in names], [cfg.data])
        log = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
        result = run_benchmark(cfg, log=log)
        args = sys.argv[1:]
        args = args[args.index("bench") + 1:] if "bench" in args else args
        command = " ".join(["spidx bench"] + [shlex.quote(a) for a in args])
        paths = write_outputs(result, cfg.out, command=command, plot=not no_plot)
        click.echo(markdown(result, command))
        log("wrote " + ", ".join(paths.values()))
