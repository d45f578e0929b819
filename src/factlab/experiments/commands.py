"""The experiment subcommands of ``factlab``: ``run``, ``reproduce`` and ``summary``, for every paper.

    factlab run SPEC [--out DIR] [--resume] [--backend local|ray] [--address ADDR] [--no-progress]
    factlab reproduce --list
    factlab reproduce PAPER [--scale quick|paper] [--out DIR] [--backend local|ray] [--address ADDR]
    factlab summary STORE [--export DIR] [--format parquet|csv|both]
    factlab capacity PATH [--mechanisms attention,recall,geometric] [--out DIR] [--json]
    factlab robustness PAPER [--scale quick|paper] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from factlab.errors import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    """``factlab run SPEC``: run a spec file into DIR/results.duckdb (DIR: ``--out``, default the
    spec file's name without suffix, beside it); ``--resume`` continues a stopped run. The
    spec's ``paper`` key names the paper (default ``wong2025``)."""
    from factlab.experiments import registry
    from factlab.experiments.core.config import read_toml
    from factlab.experiments.core.runner import run

    data = read_toml(args.spec)
    paper = registry.paper(data.pop("paper", "wong2025"))
    config = paper.config_from_dict(data, source=str(args.spec))
    out = Path(args.out) if args.out else Path(args.spec).with_suffix("")
    summary = run(paper, config, out, resume=args.resume, backend=args.backend, address=args.address,
                  progress=not args.no_progress)
    print(f"{summary.store}: {summary.units} units run ({summary.rows} rows), {summary.skipped} already done "
          f"({summary.seconds:.0f} s)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``factlab reproduce PAPER``: run, figures, claims.json and report.html under --out."""
    from factlab.experiments import registry
    from factlab.experiments.core.runner import reproduce

    if args.list or args.paper is None:
        if args.paper is None and not args.list:
            raise ConfigError("name a paper to reproduce, or --list them")
        for name, paper in registry.papers().items():
            print(f"{name:<14} {paper.title} (scales: {', '.join(paper.scales)})")
        return 0
    paper = registry.paper(args.paper)
    out = args.out or f"{args.paper}-{args.scale}"
    doc = reproduce(paper, args.scale, out, backend=args.backend, address=args.address,
                    progress=not args.no_progress)
    held = sum(c["holds"] for c in doc["claims"])
    print(f"{held} of {len(doc['claims'])} claims hold (see {out}/claims.json)")
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    """``factlab capacity PATH``: the smallest model of each mechanism that memorizes the database."""
    import json

    from factlab.experiments.core.runner import render, run
    from factlab.experiments.mechanisms import PAPER
    from factlab.experiments.mechanisms.capacity import capacity_report, format_report
    from factlab.experiments.mechanisms.config import capacity_config

    mechanisms = [m.strip() for m in args.mechanisms.split(",") if m.strip()]
    reader = {k: v for k, v in (("format", args.format), ("conflicts", args.conflicts), ("table", args.table),
                                 ("query", args.query)) if v is not None}
    config = capacity_config([args.path], mechanisms, name=f"capacity-{Path(args.path).stem}", steps=args.steps,
                             reader=reader)
    out = Path(args.out or f"{Path(args.path).stem}-capacity")
    quiet = args.json or args.no_progress
    done = run(PAPER, config, out, backend=args.backend, address=args.address, progress=not quiet,
               log=(lambda m: None) if args.json else print)
    render(PAPER, out, out, config=config)
    report = capacity_report(out)
    if args.json:
        print(json.dumps(report))
        return 0
    print("\n".join(format_report(report)))
    print(f"({done.units} units run ({done.rows} models), {done.skipped} already done; store, figures, "
          f"claims.json and report.html in {out}/)")
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    """``factlab robustness PAPER``: the paper's claims under every setting of its open choices."""
    from factlab.experiments.robustness import robustness

    out = Path(args.out or f"{args.paper}-robustness-{args.scale}")
    res = robustness(args.paper, args.scale, out, backend=args.backend, address=args.address,
                     progress=not args.no_progress)
    results, best = res["results"], res["best"]
    n = len(results[best]["claims"])
    held = [sum(r["claims"].values()) for r in results]
    print(f"{len(results)} settings in {res['seconds']:.0f} s; claims held per setting: {min(held)} to {max(held)} of {n}")
    print("most claims hold under " + ", ".join(f"{k} = {v}" for k, v in results[best]["setting"].items()))
    print(f"wrote {out}/robustness.json, {out}/robustness.csv, {out}/figures/robustness.png, {out}/report.html")
    return 0


def summary_table(path: str | Path) -> list[tuple[str, str]]:
    """(label, value) lines summarising any paper's store: the paper, the config, the tables'
    row counts, the units done, then the paper's own lines."""
    from factlab.experiments import registry
    from factlab.experiments.core.config import config_hash
    from factlab.experiments.core.store import Store

    with Store.open(path, read_only=True, papers=registry.papers()) as store:
        lines = [("paper", f"{store.paper.name}: {store.paper.title}"),
                 ("config", f"{getattr(store.config, 'name', '')} (hash {config_hash(store.config)})")]
        lines += [(table, f"{store.count(table)} rows") for table in store.tables]
        if "units" in store._table_names(store.con):
            lines.append(("units done", str(store.count("units"))))
        lines += store.paper.summary_lines(store.config, store)
    return lines


def cmd_summary(args: argparse.Namespace) -> int:
    """``factlab summary STORE``: print a summary table; ``--export DIR`` writes Parquet/CSV."""
    from factlab.experiments import registry
    from factlab.experiments.core.store import Store, store_path

    path = store_path(args.store)
    lines = summary_table(path)
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")
    if args.export:
        formats = ("parquet", "csv") if args.format == "both" else (args.format,)
        with Store.open(path, read_only=True, papers=registry.papers()) as store:
            written = store.export(args.export, formats)
        print(f"wrote {len(written)} files to {args.export}")
    return 0


def add_subcommands(subparsers) -> None:
    """Register ``run``, ``reproduce`` and ``summary`` on an argparse subparsers object."""
    from factlab.experiments import registry

    def backend_options(p):
        p.add_argument("--backend", choices=("local", "ray"), default="local",
                       help="where units of work run (ray needs the 'ray' extra)")
        p.add_argument("--address", default=None, help="Ray cluster address (default: start a local instance)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = subparsers.add_parser("run", help="run an experiment spec (TOML) into a result store",
                              description="Run an experiment spec (TOML) into DIR/results.duckdb. The spec's "
                                          "'paper' key names the paper (default wong2025); its other keys are "
                                          "that paper's config (see docs/).")
    p.add_argument("spec", help="experiment spec file (TOML)")
    p.add_argument("--out", default=None, help="output directory (default: SPEC without suffix)")
    p.add_argument("--resume", action="store_true", help="continue the run stored in --out")
    backend_options(p)
    p.set_defaults(func=cmd_run)

    names = list(registry.PACKAGES)
    p = subparsers.add_parser(
        "reproduce", help="reproduce a paper's experiments: store, figures, claims, report",
        description="Run (or resume) a paper's experiments into --out: results.duckdb, figures/, claims.json, "
                    f"report.html. Papers: {', '.join(names)} (--list describes them).")
    p.add_argument("paper", nargs="?", choices=names, help="the paper to reproduce")
    p.add_argument("--list", action="store_true", help="list the reproducible papers, one line each")
    p.add_argument("--scale", choices=("quick", "paper"), default="quick",
                   help="quick: minutes on 2 cores; paper: the paper's sizes")
    p.add_argument("--out", default=None, help="output directory (default: PAPER-SCALE, e.g. wong2025-quick); "
                   "running again with the same --out resumes")
    backend_options(p)
    p.set_defaults(func=cmd_reproduce)

    p = subparsers.add_parser(
        "capacity", help="the smallest model of each mechanism that memorizes a database",
        description="For a database of facts (any file factlab reads), find the smallest model of each mechanism "
                    "that memorizes every fact (argmax accuracy 1): Wong's attention-only layer, Nichani et al.'s "
                    "recall transformer over frozen random embeddings, Ravfogel et al.'s learned embeddings with an "
                    "MLP selector; beside |D|, Proposition 2.1 and the rank interval. Resumable; see "
                    "docs/mechanisms.md.")
    p.add_argument("path", help="file of facts (CSV/TSV triples or tables, SQLite, N-Triples, Turtle)")
    p.add_argument("--mechanisms", default="attention,recall,geometric",
                   help="comma-separated, among attention, recall, geometric (default: all three)")
    p.add_argument("--out", default=None, help="output directory (default: NAME-capacity); the same --out resumes")
    p.add_argument("--steps", type=int, default=3000, help="training steps of each model (default 3000)")
    p.add_argument("--format", default=None, help="override the reader: csv, tsv, sqlite, nt, turtle")
    p.add_argument("--conflicts", choices=["error", "first", "drop"], default=None,
                   help="what to do with a (subject, predicate) pair given two objects (default: error)")
    p.add_argument("--table", default=None, help="SQLite: the table to read (a file of several tables needs it)")
    p.add_argument("--query", default=None, help="SQLite: a query whose result is the facts")
    p.add_argument("--json", action="store_true", help="print one JSON object: triples, prop21, lower, upper, "
                   "mechanisms (mechanism, params, config, argmax_accuracy, memorized)")
    backend_options(p)
    p.set_defaults(func=cmd_capacity)

    p = subparsers.add_parser(
        "robustness", help="a paper's claims under every setting of the choices it leaves open",
        description="Run a paper's reproduction under a grid of the choices the paper leaves open (wong2025: "
                    "optimizer, learning rate, initialisation scale, early stopping; completions: prefixes of the "
                    "artifacts, random or latent-class databases, density, artifact threshold) and write the table "
                    "claim x setting -> holds, with our values: DIR/robustness.json, robustness.csv, "
                    "robustness-values.csv, robustness.md, figures/, report.html, and each setting's own store under "
                    "DIR/settings/. The same --out resumes; see docs/robustness.md.")
    from factlab.experiments.robustness.grids import GRIDS

    p.add_argument("paper", choices=list(GRIDS), help="the paper")
    p.add_argument("--scale", choices=["quick", "paper"], default="quick",
                   help="the scale of every setting's reproduction (default quick)")
    p.add_argument("--out", default=None, help="output directory (default: PAPER-robustness-SCALE)")
    backend_options(p)
    p.set_defaults(func=cmd_robustness)

    p = subparsers.add_parser("summary", help="print a summary table of any paper's result store")
    p.add_argument("store", help="results.duckdb, or the directory holding it")
    p.add_argument("--export", default=None, metavar="DIR", help="also write every table to DIR")
    p.add_argument("--format", choices=("parquet", "csv", "both"), default="both")
    p.set_defaults(func=cmd_summary)
