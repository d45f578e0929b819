"""The ``factlab`` command.

    factlab rank PATH [--json]            sizes, |D|, Proposition 2.1, the rank interval, effective rank
    factlab layer-bounds --d-model D ...  parameter count, Proposition 3.5 and the lower estimate (9)
    factlab run SPEC [--resume]           run an experiment spec (TOML) into a result store
    factlab reproduce --list              the papers factlab reproduces, one line each
    factlab reproduce PAPER [--scale S]   a paper's experiments: store, figures, claims, report
    factlab summary STORE                 a summary table of any paper's result store
    factlab capacity PATH                 the smallest model of each mechanism that memorizes a database
    factlab robustness PAPER              the claims under every setting of the choices a paper leaves open

Every subcommand's ``--help`` says more. Errors in the user's input (a bad file, a bad
value) print one line naming the file, line or value at fault and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from factlab.errors import FactlabError


def _cmd_rank(args: argparse.Namespace) -> int:
    from factlab.databases.sources import read
    from factlab.tensors.database_tensor import proposition_2_1
    from factlab.tensors.rank import CPSearchConfig, effective_rank, rank_interval

    options = {}
    if args.conflicts:
        options["conflicts"] = args.conflicts
    db = read(args.path, format=args.format, **options)
    config = CPSearchConfig(kernel=args.kernel, **({} if args.restarts is None else {"restarts": args.restarts}))
    interval = rank_interval(db, config=config, seed=args.seed)
    effective = effective_rank(db, config=config, seed=args.seed)
    k, q, v = db.shape
    out = {
        "triples": len(db), "subjects": k, "predicates": q, "objects": v,
        "prop21": proposition_2_1(db),
        "lower": interval.lower.value, "upper": interval.upper.value, "certified": interval.certified,
        "effective_upper": effective.upper.value,
    }
    if args.json:
        out["lower_method"] = interval.lower.method
        out["upper_method"] = interval.upper.method
        out["effective_lower"] = effective.lower.value
        print(json.dumps(out))
        return 0
    report = db.report
    print(f"{args.path}: {len(db)} facts over |K| = {k} subjects, |Q| = {q} predicates, |V| = {v} objects "
          f"(|T| = {db.n_tokens} tokens)")
    if report.duplicates or report.facts_removed:
        print(f"  input rows {report.input_rows}: {report.duplicates} duplicate(s) merged; conflict policy "
              f"{report.policy!r} removed {report.facts_removed} fact(s) of {report.conflicting_pairs} conflicting pair(s)")
    print(f"  |D|                     {len(db)}")
    print(f"  Proposition 2.1         {out['prop21']}")
    status = "certified" if interval.certified else "not certified"
    print(f"  rank(D)                 [{interval.lower.value}, {interval.upper.value}]  {status}")
    print(f"    lower: {interval.lower.method}")
    print(f"    upper: {interval.upper.method}")
    print(f"  effective rank          [{effective.lower.value}, {effective.upper.value}]"
          f"  (upper: {effective.upper.method})")
    return 0


def _cmd_layer_bounds(args: argparse.Namespace) -> int:
    from factlab.models.bounds import layer_bounds

    out = layer_bounds(args.d_model, args.n_heads, args.d_head_qk, args.d_head_vo, args.predicates)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"attention layer: d_model = {args.d_model}, n_heads = {args.n_heads}, "
          f"d_head_qk = {args.d_head_qk}, d_head_vo = {args.d_head_vo}; |Q| = {args.predicates}")
    print(f"  non-embedding parameters        {out['params']}")
    print(f"  Proposition 3.5 (upper bound)   {out['prop35']}")
    print(f"  lower estimate (9)              {out['lower_estimate']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="factlab",
        description="How transformers store facts, through tensors (Wong 2025 and companions).")
    from factlab import __version__

    parser.add_argument("--version", action="version", version=f"factlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rank = sub.add_parser(
        "rank", help="rank interval of a database's tensor",
        description="Read a database (CSV/TSV triples or Figure-1 tables, SQLite, N-Triples, Turtle) and "
                    "print its sizes, |D|, the Proposition 2.1 bound, the certified rank interval of its "
                    "tensor D and an effective-rank estimate (Wong 2025, sec. 2).")
    rank.add_argument("path", help="file of facts; the reader is chosen from the extension")
    rank.add_argument("--format", help="override the reader: csv, tsv, sqlite, nt, turtle")
    rank.add_argument("--conflicts", choices=["error", "first", "drop"],
                      help="what to do with (subject, predicate) pairs that have several objects (default: error)")
    rank.add_argument("--restarts", type=int, help="random restarts per rank tried by the exact-CP search")
    rank.add_argument("--seed", type=int, default=0, help="seed of the CP search (default 0)")
    rank.add_argument("--kernel", choices=["auto", "compiled", "torch"], default="auto",
                      help="how the exact-CP search iterates: compiled per problem (numba) or batched torch; "
                           "auto (default): compiled where numba is installed")
    rank.add_argument("--json", action="store_true",
                      help="print one JSON object with keys triples, subjects, predicates, objects, prop21, "
                           "lower, upper, certified, effective_upper (and the methods)")
    rank.set_defaults(func=_cmd_rank)

    lb = sub.add_parser(
        "layer-bounds", help="parameter count and rank bounds of an attention layer",
        description="Non-embedding parameter count 2·n_heads·d_model·(d_head_vo + d_head_qk), "
                    "Proposition 3.5 d_model + n_heads·d_head_vo·|Q| and the lower estimate (9) "
                    "d_model + n_heads·d_head_vo (Wong 2025, sec. 3).")
    lb.add_argument("--d-model", type=int, required=True)
    lb.add_argument("--n-heads", type=int, required=True)
    lb.add_argument("--d-head-qk", type=int, required=True)
    lb.add_argument("--d-head-vo", type=int, required=True)
    lb.add_argument("--predicates", type=int, required=True, help="|Q|, the number of predicates")
    lb.add_argument("--json", action="store_true", help="print JSON with keys params, prop35, lower_estimate")
    lb.set_defaults(func=_cmd_layer_bounds)

    from factlab.experiments.commands import add_subcommands

    add_subcommands(sub)  # run, reproduce, summary
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FactlabError as e:
        print(f"factlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:                 # the reader went away (`factlab summary DIR | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
