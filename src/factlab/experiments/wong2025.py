"""Reproduce Wong (2025, sec. 4) end to end: run, figures 2-4, claims.json and report.html.

``reproduce("paper", out)`` uses the paper's sizes (548 databases, 364 layers, 3,947 pairs,
up to 2,000 epochs); ``reproduce("quick", out)`` keeps the 548 databases (with their rank
intervals) and the 364 layers (Figures 2a and 2b are the paper's) but trains fewer pairs for
fewer epochs, so that it finishes in a few minutes on 2 CPU cores.
Calling it again with the same ``out`` resumes the run; a different scale refuses.

Output layout::

    out/results.duckdb        the result store (factlab.experiments.store)
    out/figures/fig2a.png|svg, fig2b, fig3a_argmax, fig3b_tau0.75, fig3c_tau0.95, fig3d_tau0.99, fig4
    out/claims.json           every quantitative claim of SPEC sec. 6: paper, ours, holds
    out/report.html           the figures, the claims table, the spec and provenance
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from factlab.errors import ConfigError
from factlab.experiments.claims import wong2025_claims
from factlab.experiments.runner import run_experiment
from factlab.experiments.spec import (DatabasesSpec, ExperimentSpec, PairingSpec, RunnerSpec,
                                      TrainingSpec)
from factlab.experiments.store import ResultStore, tau_column
from factlab.report import figures as F
from factlab.report.html import write_report

SCALES = ("quick", "paper")


def scale_spec(scale: str) -> ExperimentSpec:
    """The spec of a scale: ``paper`` is :class:`ExperimentSpec`'s defaults (the paper's sizes)."""
    if scale == "paper":
        return ExperimentSpec(name="wong2025-paper")
    if scale == "quick":
        # Fewer pairs and epochs, and a larger learning rate so that they still converge.
        return ExperimentSpec(
            name="wong2025-quick",
            pairing=PairingSpec(n_pairs=768),
            training=TrainingSpec(max_epochs=500, lr=0.03),
            runner=RunnerSpec(shard_size=128),
        )
    raise ConfigError(f"unknown scale {scale!r}; use one of {list(SCALES)}")


def figure_panels(spec: ExperimentSpec) -> list[tuple[str, str, str]]:
    """(file stem, metric column, title) of Figure 3's panels present in the spec's thresholds."""
    panels = [("fig3a_argmax", "accuracy", "Figure 3(a): argmax")]
    for letter, tau in zip("bcd", (0.75, 0.95, 0.99)):
        if tau in spec.thresholds.taus:
            panels.append((f"fig3{letter}_tau{tau:g}", tau_column(tau), f"Figure 3({letter}): softmax ≥ {tau:g}"))
    return panels


def render(store_path: str | Path, out: str | Path, *, spec: ExperimentSpec | None = None) -> dict:
    """Draw the figures, test the claims and write claims.json and report.html from a store."""
    out = Path(out)
    with ResultStore.open(store_path, spec) as store:
        spec = store.spec
        dbs, layers, results, meta = store.frame("databases"), store.frame("layers"), store.results(), store.meta()
    figdir = out / "figures"
    pngs = []
    pngs.append(F.save(F.figure_2a(dbs), figdir, "fig2a")[0])
    pngs.append(F.save(F.figure_2b(layers), figdir, "fig2b")[0])
    if not results.empty:
        for stem, metric, title in figure_panels(spec):
            pngs.append(F.save(F.figure_3(results, metric, title), figdir, stem)[0])
        if 0.95 in spec.thresholds.taus:
            pngs.append(F.save(F.figure_4(results, tau_column(0.95)), figdir, "fig4")[0])
    claims = wong2025_claims(spec, dbs, layers, results)
    provenance = {**{k: v for k, v in meta.items() if k != "spec"}, "pairs_trained": len(results),
                  "python": platform.python_version(), "torch": torch.__version__, "host": platform.node()}
    doc = {"paper": "Wong 2025, Section 4", "spec_name": spec.name, "spec_hash": spec.hash,
           "memorized_threshold": spec.thresholds.memorized, "claims": claims, "provenance": provenance}
    (out / "claims.json").write_text(json.dumps(doc, indent=2, default=str))
    held = sum(c["holds"] for c in claims)
    write_report(out / "report.html", title=f"Wong (2025) section 4 reproduced: {spec.name}", figures=pngs,
                 claims=claims, spec_toml=spec.to_toml(), provenance=provenance,
                 summary=f"{len(dbs)} databases, {len(layers)} layers, {len(results)} trained pairs; "
                         f"{held} of {len(claims)} claims hold. {rank_summary(dbs)}")
    return doc


def rank_summary(dbs) -> str:
    """One sentence on the databases' rank intervals (empty when none were computed)."""
    if "rank_upper" not in dbs or dbs["rank_upper"].isna().all():
        return ""
    d = dbs.dropna(subset=["rank_upper"])
    below = int((d["rank_upper"] < d["prop21"]).sum())
    return (f"Rank intervals of {len(d)} databases: {int(d['rank_certified'].sum())} certified, "
            f"mean width {(d['rank_upper'] - d['rank_lower']).mean():.2f}; an exact CP decomposition "
            f"beat Proposition 2.1 on {below}.")


def reproduce(scale: str = "quick", out: str | Path = "wong2025", *, backend: str = "local",
              address: str | None = None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the scale's experiment into ``out/results.duckdb``, then :func:`render`.
    Returns the claims document with ``seconds`` added."""
    start = time.perf_counter()
    spec = scale_spec(scale)
    out = Path(out)
    store_path = out / "results.duckdb"
    if store_path.exists():
        ResultStore.open(store_path, spec).close()  # refuses a store of another spec, before any work
        log(f"resuming {store_path}")
    summary = run_experiment(spec, store_path, resume=True, backend=backend, address=address,
                             progress=progress, log=log)
    doc = render(store_path, out, spec=spec)
    doc["seconds"] = time.perf_counter() - start
    log(f"{summary.trained} pairs trained, {summary.skipped} already done; wrote {out}/figures, "
        f"{out}/claims.json, {out}/report.html in {doc['seconds']:.0f} s")
    return doc


def with_runner(spec: ExperimentSpec, **changes) -> ExperimentSpec:
    """The spec with runner settings changed (does not change its hash)."""
    return replace(spec, runner=replace(spec.runner, **changes))
