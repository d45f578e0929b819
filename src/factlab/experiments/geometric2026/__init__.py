"""Ravfogel, Yehudai, Bruna and Bietti (2026), "Geometric Factual Recall in Transformers", with
our protocol: the memorization threshold against N with learned and frozen embeddings, the
superposition probe, linear readouts, the selector intervention, freeze-and-swap transfer,
and multi-hop recall with and without chain of thought.

The paper's experimental details are not available to us: every size and training choice is
ours and a field of :mod:`.config` (docs/geometric2026.md).

Store tables (beside the core's ``meta`` and ``units``)::

    probes    search, d: one trained model of a threshold search (accuracy, best, steps,
              status, ok = memorized) with its training config
    analyses  replicate: a trained model's superposition R² and readouts (and its
              initialisation's; readouts per relation, as JSON lists), the intervention's rates
              (moved, kept, and joint: both in the same intervention), the transfer against scratch
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from factlab.experiments.core.paper import Paper, Rendered, Table, Unit
from factlab.experiments.core.runner import config_text
from factlab.experiments.geometric2026 import figures as F
from factlab.experiments.geometric2026 import plan
from factlab.experiments.geometric2026.claims import geometric_claims
from factlab.experiments.geometric2026.config import SCALES, GeometricConfig, scale_config
from factlab.experiments.geometric2026.unit import analyse, train_probes
from factlab.report.figures import save

PROVENANCE = {"train_config": "TEXT", "factlab_version": "TEXT", "torch_version": "TEXT", "host": "TEXT"}


class Geometric2026(Paper):
    name = "geometric2026"
    title = "Ravfogel et al. (2026): geometric factual recall (our protocol)"
    source = "Ravfogel, Yehudai, Bruna, Bietti 2026, Geometric Factual Recall in Transformers"
    scales = SCALES
    config_class = GeometricConfig

    def config(self, scale: str) -> GeometricConfig:
        return scale_config(scale)

    def tables(self, config: GeometricConfig) -> dict[str, Table]:
        return {
            "probes": Table({"search": "TEXT", "d": "INTEGER", "experiment": "TEXT", "n_subjects": "INTEGER",
                             "n_relations": "INTEGER", "embed": "TEXT", "hops": "INTEGER", "cot": "BOOLEAN",
                             "params": "INTEGER", "accuracy": "DOUBLE", "best_accuracy": "DOUBLE", "loss": "DOUBLE",
                             "steps": "INTEGER", "status": "TEXT", "ok": "BOOLEAN", **PROVENANCE}, ("search", "d")),
            "analyses": Table({"replicate": "INTEGER", "n_subjects": "INTEGER", "n_relations": "INTEGER",
                               "d": "INTEGER", "trained_accuracy": "DOUBLE", "trained_steps": "INTEGER",
                               "r2_init": "DOUBLE", "r2_fit_init": "DOUBLE", "readout_init": "TEXT",
                               "r2_trained": "DOUBLE", "r2_fit_trained": "DOUBLE", "readout_trained": "TEXT",
                               "moved": "DOUBLE", "kept": "DOUBLE", "joint": "DOUBLE", "swap_accuracy": "DOUBLE", "swap_steps": "INTEGER",
                               "swap_status": "TEXT", "scratch_accuracy": "DOUBLE", "scratch_steps": "INTEGER",
                               "scratch_status": "TEXT", "factlab_version": "TEXT", "torch_version": "TEXT",
                               "host": "TEXT"}, ("replicate",)),
        }

    def plan(self, config: GeometricConfig, store) -> list[Unit]:
        return plan.units(config, store.frame("probes"), store.ids("analyses", "replicate"))

    @staticmethod
    def run_unit(config: GeometricConfig, unit: Unit) -> dict[str, list[dict]]:
        if unit.id.startswith("analysis:"):
            return {"analyses": [analyse(config, unit.payload)]}
        return {"probes": train_probes(config, unit.payload)}

    def frames(self, store) -> dict[str, pd.DataFrame]:
        return {"thresholds": plan.thresholds(store.config, store.frame("probes"))}

    def render(self, config: GeometricConfig, store, figdir: Path) -> Rendered:
        th, an = plan.thresholds(config, store.frame("probes")), store.frame("analyses")
        pngs = [save(F.figure_threshold(th), figdir, "threshold")[0], save(F.figure_multihop(th), figdir, "multihop")[0]]
        if not an.empty:
            pngs += [save(F.figure_analysis(an), figdir, "analysis")[0], save(F.figure_transfer(an), figdir,
                                                                                "transfer")[0]]
        summary = (f"{len(th)} threshold searches ({int(th['done'].sum())} finished, {store.count('probes')} models "
                   f"trained) and {len(an)} analysed replicates.")
        return Rendered(pngs, geometric_claims(th, an), summary, config_text(config, header={"paper": self.name}))

    def summary_lines(self, config: GeometricConfig, store) -> list[tuple[str, str]]:
        th = plan.thresholds(config, store.frame("probes"))
        return [(r.search, "running" if not r.done else ("none in range" if pd.isna(r.threshold) else
                                                          f"d = {int(r.threshold)}")) for r in th.itertuples()]


PAPER = Geometric2026()
