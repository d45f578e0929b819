"""Run any paper's experiment into a result store, resumably, and report it.

:func:`run` opens (or creates) the store, lets the paper prepare its static rows, then
loops: ask the paper's plan for the units still to do given what is stored (the plan reads
the store; it alone decides), run them on the backend, commit each unit's rows with its
record (the ``units`` table) in one transaction; stop when the plan asks for nothing. A run
stopped at any point (Ctrl-C, ``kill -9``) is continued by calling it again on the same
store: finished units are never rerun, and since a unit's rows depend only on (config,
unit), the final results are those of an uninterrupted run.

:func:`render` draws the paper's figures and writes ``claims.json`` and ``report.html``;
:func:`reproduce` is run + render for a scale, the ``factlab reproduce`` command.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from factlab.errors import ConfigError
from factlab.experiments.core.backends import make_backend
from factlab.experiments.core.config import config_hash, config_to_toml
from factlab.experiments.core.paper import Paper
from factlab.experiments.core.store import STORE_NAME, Store


@dataclass(frozen=True)
class RunSummary:
    store: Path
    units: int           # units run by this call
    rows: int            # rows inserted by this call
    skipped: int         # units recorded in the store when it started
    rounds: int          # rounds of the plan run by this call
    seconds: float


def provenance() -> dict:
    """What produced a result: factlab, torch, numba and Python versions, and the host."""
    from factlab import __version__
    from factlab._numba import version as numba_version

    return {"factlab_version": __version__, "torch_version": torch.__version__, "numba_version": numba_version(),
            "python": platform.python_version(), "host": platform.node()}


def row_provenance(train_cfg, run_cfg, kernel: str) -> dict:
    """The columns a trained row records of what produced it: ``train_config`` (JSON of the
    engine's two configs, the step that ran and numba's version), factlab's and torch's
    versions and the host."""
    v = provenance()
    engine = {"engine": {**train_cfg.to_dict(), **run_cfg.to_dict()}, "kernel_used": kernel,
              "numba_version": v["numba_version"]}
    return {"train_config": json.dumps(engine, sort_keys=True), "factlab_version": v["factlab_version"],
            "torch_version": v["torch_version"], "host": v["host"]}


def run(paper: Paper, config, path: str | Path, *, resume: bool = True, backend: str = "local",
        address: str | None = None, progress: bool = True, log: Callable[[str], None] = print,
        on_commit: Callable[[int, int], None] | None = None) -> RunSummary:
    """Run ``config`` of ``paper`` into the store at ``path`` (a directory or the file).

    An existing store is continued only with ``resume`` (and only if made for this paper and
    config). ``on_commit(i, n_rows)`` is called after the i-th unit of this call is committed
    (a hook for tests and monitors)."""
    start = time.perf_counter()
    path = Path(path)
    path = path if path.suffix == ".duckdb" else path / STORE_NAME
    if path.exists() and not resume:
        raise ConfigError(f"{path}: a result store already exists; pass --resume to continue it "
                          "or choose a new --out")
    prov = provenance()
    store = Store.open_or_create(path, paper, config, provenance=prov)
    try:
        paper.prepare(config, store, log=log, progress=progress)
        skipped = len(store.done_units())
        be = make_backend(backend, address, threads=paper.threads(config))
        n_units = n_rows = rounds = 0
        last: list[str] = []
        try:
            while True:
                units = paper.plan(config, store)        # the plan reads the store: it alone says what is left
                if not units:
                    break
                ids = [u.id for u in units]
                if ids == last:
                    raise ConfigError(f"{paper.name}: the plan asks again for the units it has just run "
                                      f"({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}); their rows "
                                      "are not what it reads (a bug in the paper package)")
                last = ids
                rounds += 1
                bar = progress_bar(sum(u.size for u in units), progress, f"{getattr(config, 'name', paper.name)}: "
                                                                  f"round {units[0].round}")
                try:
                    for unit, rows, seconds in be.map(paper.run_unit, config, units):
                        now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
                        record = {**prov, "seconds": seconds, "backend": be.name, "finished_at": now}
                        n = store.commit_unit(unit, rows, record)
                        n_units, n_rows = n_units + 1, n_rows + n
                        bar.update(unit.size)
                        if not progress:
                            log(f"{paper.name}: round {unit.round}, unit {unit.id}: {n} rows in {seconds:.1f} s")
                        if on_commit is not None:
                            on_commit(n_units - 1, n)
                finally:
                    bar.close()
        finally:
            be.close()
        return RunSummary(path, n_units, n_rows, skipped, rounds, time.perf_counter() - start)
    finally:
        store.close()


def render(paper: Paper, path: str | Path, out: str | Path, *, config=None) -> dict:
    """Figures, claims.json and report.html under ``out`` from the store at ``path``;
    returns the claims document."""
    from factlab.report.html import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with Store.open(path, paper, config, read_only=True) as store:
        config = store.config
        rendered = paper.render(config, store, out / "figures")
        meta = store.meta()
        units = store.count("units") if "units" in store._table_names(store.con) else None
    provenance_doc = {**{k: v for k, v in meta.items() if k not in ("config", "spec")},
                      "units_done": units, "rendered_with": provenance()}
    doc = {"paper": paper.source, "experiment": paper.name, "config_name": getattr(config, "name", paper.name),
           "config_hash": config_hash(config), **rendered.extra, "claims": rendered.claims,
           "provenance": provenance_doc}
    (out / "claims.json").write_text(json.dumps(doc, indent=2, default=str))
    held = sum(c["holds"] for c in rendered.claims)
    write_report(out / "report.html", title=f"{paper.title} ({getattr(config, 'name', paper.name)})",
                 figures=rendered.figures, claims=rendered.claims, spec_toml=rendered.config_text,
                 provenance=provenance_doc,
                 summary=f"{rendered.summary} {held} of {len(rendered.claims)} claims hold.".strip())
    return doc


def reproduce(paper: Paper, scale: str = "quick", out: str | Path | None = None, *, config=None,
              backend: str = "local", address: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> dict:
    """Run (or resume) a scale of ``paper`` (or ``config``) into ``out/results.duckdb``, then
    :func:`render`. Returns the claims document with ``seconds`` added."""
    start = time.perf_counter()
    if config is None:
        paper.check_scale(scale)
        config = paper.config(scale)
    out = Path(out or f"{paper.name}-{scale}")
    path = out / STORE_NAME
    if path.exists():
        Store.open(path, paper, config).close()      # refuses a foreign store before any work
        log(f"resuming {path}")
    summary = run(paper, config, path, backend=backend, address=address, progress=progress, log=log)
    doc = render(paper, path, out, config=config)
    doc["seconds"] = time.perf_counter() - start
    log(f"{summary.units} units run ({summary.rows} rows), {summary.skipped} already done; wrote "
        f"{out}/figures, {out}/claims.json, {out}/report.html in {doc['seconds']:.0f} s")
    return doc


def config_text(config, why: dict[str, str] | None = None, header: dict | None = None) -> str:
    """The config as TOML with its hash, for the report; ``why`` adds a comment per top-level key."""
    lines = [f"# config hash {config_hash(config)}"]
    for line in config_to_toml(config, header=header).splitlines():
        key = line.split(" = ", 1)[0].strip("[]") if line else ""
        lines.append(f"{line}    # {why[key]}" if why and key in why and " = " in line else line)
        if why and line.startswith("[") and key in why:
            lines[-1] = f"{line}    # {why[key]}"
    return "\n".join(lines)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool, desc: str):
    """A progress bar with ETA (tqdm), or nothing."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True, smoothing=0.1)
