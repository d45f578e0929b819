"""Which claims survive the choices the papers leave open (``factlab robustness PAPER``).

A paper's reproduction is run once per setting of its grid (:mod:`.grids`), each setting a
config of the experiment core with its own result store under ``DIR/settings/<setting>/``
(store, figures, claims.json, report.html; resumable like any reproduction). From the
settings' claims come:

- ``DIR/robustness.json``: a list with one object per setting, ``setting`` (the choices) and
  ``claims`` (claim id -> holds), with ``ours`` (claim id -> our values), ``config_hash``
  and ``store`` (the setting's directory, relative to DIR) beside them;
- ``DIR/robustness.csv``: the same table, one row per setting;
- ``DIR/figures/robustness.png`` (and SVG): the table as a picture;
- ``DIR/report.html``: the table, for each claim the settings it holds under, and the
  setting under which the most claims hold.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from factlab.experiments.core.config import config_hash
from factlab.experiments.core.runner import progress_bar, provenance, render, run
from factlab.experiments.robustness import grids
from factlab.experiments.robustness.report import write_outputs


def robustness(paper_name: str, scale: str = "quick", out: str | Path | None = None, *, backend: str = "local",
               address: str | None = None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every setting of ``paper_name``'s grid at ``scale`` into ``out`` and
    write the robustness table, figure and report. Returns ``{"results": [...], "best": i,
    "seconds": s}`` (``results`` as in robustness.json)."""
    from factlab.experiments import registry

    start = time.perf_counter()
    paper = registry.paper(paper_name)
    paper.check_scale(scale)
    axes = grids.axes(paper_name)
    settings = grids.settings(paper_name, paper.config(scale))
    out = Path(out or f"{paper_name}-robustness-{scale}")
    results, statements = [], {}
    bar = progress_bar(len(settings), progress, f"{paper_name} robustness")
    try:
        for i, s in enumerate(settings):
            where = out / "settings" / s.slug
            t0 = time.perf_counter()
            done = run(paper, s.config, where, backend=backend, address=address, progress=False,
                       log=lambda m: None)
            doc = render(paper, where, where, config=s.config)
            claims = doc["claims"]
            statements.update({c["id"]: c["claim"] for c in claims if c["id"] not in statements})
            results.append({"setting": s.choices, "claims": {c["id"]: c["holds"] for c in claims},
                            "ours": {c["id"]: c["ours"] for c in claims}, "config_hash": config_hash(s.config),
                            "store": str(Path("settings") / s.slug)})
            bar.update(1)
            if not progress:
                log(f"{paper_name} robustness [{i + 1}/{len(settings)}] {s.slug}: "
                    f"{sum(c['holds'] for c in claims)} of {len(claims)} claims hold "
                    f"({done.units} units run, {time.perf_counter() - t0:.0f} s)")
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    best = write_outputs(out, paper, scale, axes, results, seconds=seconds, provenance=provenance(),
                         statements=statements)
    return {"results": results, "best": best, "seconds": seconds}


def read_results(out: str | Path) -> list[dict]:
    """``DIR/robustness.json`` as written."""
    return json.loads((Path(out) / "robustness.json").read_text())
