"""The experiment subcommands of ``factlab``: ``run``, ``reproduce`` and ``summary``.

Wire them into the main parser with::

    from factlab.experiments.commands import add_subcommands
    add_subcommands(subparsers)   # each subparser sets func=<command>(args) -> exit status

    factlab run SPEC [--out DIR] [--resume] [--backend local|ray] [--address ADDR] [--no-progress]
    factlab reproduce wong2025 [--scale quick|paper] [--out DIR] [--backend local|ray] [--address ADDR]
    factlab reproduce completions [--scale quick|paper] [--out DIR]
    factlab summary STORE [--export DIR] [--format parquet|csv|both]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from factlab.errors import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    """``factlab run SPEC``: run a spec file into DIR/results.duckdb (DIR: ``--out``, default
    the spec file's name without suffix, beside it); ``--resume`` continues a stopped run."""
    from factlab.experiments.runner import run_experiment
    from factlab.experiments.spec import load_spec

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path(args.spec).with_suffix("")
    summary = run_experiment(spec, out / "results.duckdb", resume=args.resume, backend=args.backend,
                             address=args.address, progress=not args.no_progress)
    print(f"{summary.store}: {summary.trained} pairs trained, {summary.skipped} already done, "
          f"{summary.pairs} planned ({summary.seconds:.0f} s)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``factlab reproduce wong2025|completions``: run, figures, claims.json and report.html under --out."""
    if args.paper == "completions":
        from factlab.experiments.completions import reproduce as reproduce_completions

        if args.backend != "local":
            raise ConfigError("reproduce completions runs locally only; drop --backend")
        out = args.out or f"completions-{args.scale}"
        doc = reproduce_completions(args.scale, out)
        held = sum(c["holds"] for c in doc["claims"])
        print(f"{held} of {len(doc['claims'])} claims hold (see {out}/claims.json)")
        return 0
    from factlab.experiments.wong2025 import reproduce

    if args.paper != "wong2025":
        raise ConfigError(f"unknown paper {args.paper!r}; reproducible: wong2025, completions")
    out = args.out or f"wong2025-{args.scale}"
    doc = reproduce(args.scale, out, backend=args.backend, address=args.address, progress=not args.no_progress)
    held = sum(c["holds"] for c in doc["claims"])
    print(f"{held} of {len(doc['claims'])} claims hold (see {out}/claims.json)")
    return 0


def summary_table(store_path: str | Path) -> list[tuple[str, str]]:
    """(label, value) lines summarising a store: counts, statuses, mean accuracies by layer bound."""
    from factlab.experiments.store import ResultStore, tau_column

    with ResultStore.open(store_path, read_only=True) as store:
        spec, res = store.spec, store.results()
        lines = [("spec", f"{spec.name} (hash {spec.hash})"),
                 ("databases", str(store.count("databases"))), ("layers", str(store.count("layers"))),
                 ("pairs trained / planned", f"{store.count('runs')} / {store.count('pairs')}")]
    if res.empty:
        return lines
    lines.append(("status", ", ".join(f"{k} {v}" for k, v in res["status"].value_counts().items())))
    lines.append(("mean epochs", f"{res['epochs'].mean():.0f}"))
    metrics = [("argmax", "accuracy")] + [(f"tau={t:g}", tau_column(t)) for t in spec.thresholds.taus]
    for label, col in metrics:
        lines.append((f"mean accuracy {label}", f"{res[col].mean():.3f}"))
    bins = (res["layer_bound"] - 1) // 5 * 5 + 5
    for b, group in res.groupby(bins):
        accs = "  ".join(f"{label} {group[col].mean():.2f}" for label, col in metrics)
        lines.append((f"layer bound ({b - 5}, {b}]", f"{len(group):4d} pairs  {accs}"))
    return lines


def cmd_summary(args: argparse.Namespace) -> int:
    """``factlab summary STORE``: print a summary table; ``--export DIR`` writes Parquet/CSV."""
    from factlab.experiments.store import ResultStore

    path = Path(args.store)
    if path.is_dir():
        path = path / "results.duckdb"
    lines = summary_table(path)
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=str(path))
        table.add_column("")
        table.add_column("")
        for k, v in lines:
            table.add_row(k, v)
        Console().print(table)
    except ImportError:
        width = max(len(k) for k, _ in lines)
        for k, v in lines:
            print(f"{k:<{width}}  {v}")
    if args.export:
        formats = ("parquet", "csv") if args.format == "both" else (args.format,)
        with ResultStore.open(path, read_only=True) as store:
            written = store.export(args.export, formats)
        print(f"wrote {len(written)} files to {args.export}")
    return 0


def add_subcommands(subparsers) -> None:
    """Register ``run``, ``reproduce`` and ``summary`` on an argparse subparsers object."""
    def backend_options(p):
        p.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="where shards are trained (ray needs the 'ray' extra)")
        p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = subparsers.add_parser("run", help="run an experiment spec (TOML) into a result store")
    p.add_argument("spec", help="experiment spec file (TOML)")
    p.add_argument("--out", default=None, help="output directory (default: SPEC without suffix)")
    p.add_argument("--resume", action="store_true", help="continue the run stored in --out")
    backend_options(p)
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("reproduce", help="reproduce a paper's experiments: store, figures, claims, report")
    p.add_argument("paper", choices=("wong2025", "completions"),
                   help="wong2025: Wong (2025) sec. 4; completions: artifacts, generalization and hallucination "
                        "(Wong 2025b, SPEC sec. 9)")
    p.add_argument("--scale", choices=("quick", "paper"), default="quick")
    p.add_argument("--out", default=None, help="output directory (default: PAPER-SCALE, e.g. wong2025-quick); "
                   "running again with the same --out resumes")
    backend_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = subparsers.add_parser("summary", help="print a summary table of a result store")
    p.add_argument("store", help="results.duckdb, or the directory holding it")
    p.add_argument("--export", default=None, metavar="DIR", help="also write every table to DIR")
    p.add_argument("--format", choices=("parquet", "csv", "both"), default="both")
    p.set_defaults(func=cmd_summary)
