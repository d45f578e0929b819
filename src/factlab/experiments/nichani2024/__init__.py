"""Nichani, Lee and Bietti (2024), "Understanding Factual Recall in Transformers via Associative
Memories", reproduced: memory capacities (Figures 1, 6), facts against parameters and the
attention-MLP trade-off of the recall transformer (Figure 4), sequential learning (Figure 5).

The authors train one configuration at a time and search capacities one binary-search step
after another; here every round of the plan trains, as stacks, all the probes every search
asks for, and the searches resume from the store (:mod:`.plan`). Our choices:
:mod:`.config` and docs/nichani2024.md.

Store tables (beside the core's ``meta`` and ``units``)::

    probes   search, size, lr: one trained model of a capacity search (accuracy, best,
             steps, status, ok = stored its facts), with its model and training config
    grid     n_heads, width: Figure 4 (right)'s cells
    curves   step: Figure 5's total, relation-only and subject-only losses
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from factlab.experiments.core.paper import Paper, Rendered, Table, Unit
from factlab.experiments.core.runner import config_text
from factlab.experiments.nichani2024 import figures as F
from factlab.experiments.nichani2024 import plan
from factlab.experiments.nichani2024.claims import boundary, nichani_claims
from factlab.experiments.nichani2024.config import SCALES, NichaniConfig, scale_config
from factlab.experiments.nichani2024.unit import (train_capacity_probes, train_memories, train_sequential,
                                                  train_tradeoff)
from factlab.report.figures import save

PROVENANCE = {"train_config": "TEXT", "factlab_version": "TEXT", "torch_version": "TEXT", "host": "TEXT"}
RESULT = {"accuracy": "DOUBLE", "best_accuracy": "DOUBLE", "loss": "DOUBLE", "steps": "INTEGER", "status": "TEXT",
          "ok": "BOOLEAN"}


class Nichani2024(Paper):
    name = "nichani2024"
    title = "Nichani, Lee and Bietti (2024): associative memories and factual recall"
    source = "Nichani, Lee, Bietti 2024, Understanding Factual Recall in Transformers via Associative Memories"
    scales = SCALES
    config_class = NichaniConfig

    def config(self, scale: str) -> NichaniConfig:
        return scale_config(scale)

    def tables(self, config: NichaniConfig) -> dict[str, Table]:
        return {
            "probes": Table({"search": "TEXT", "size": "INTEGER", "lr": "DOUBLE", "experiment": "TEXT", "d": "INTEGER",
                             "alpha": "DOUBLE", "beta": "DOUBLE", "seed": "INTEGER", "params": "INTEGER",
                             "facts": "INTEGER", **RESULT, "model_json": "TEXT", **PROVENANCE},
                            ("search", "size", "lr")),
            "grid": Table({"n_heads": "INTEGER", "width": "INTEGER", "attention_params": "INTEGER",
                           "mlp_params": "INTEGER", "params": "INTEGER", **RESULT, **PROVENANCE},
                          ("n_heads", "width")),
            "curves": Table({"step": "INTEGER", "loss": "DOUBLE", "relation_loss": "DOUBLE", "subject_loss": "DOUBLE",
                             "accuracy": "DOUBLE", **PROVENANCE}, ("step",)),
        }

    def plan(self, config: NichaniConfig, store) -> list[Unit]:
        grid = {(int(h), int(m)) for h, m in store.con.execute("SELECT n_heads, width FROM grid").fetchall()}
        return plan.units(config, store.frame("probes"), grid, store.count("curves") > 0)

    @staticmethod
    def run_unit(config: NichaniConfig, unit: Unit) -> dict[str, list[dict]]:
        kind = unit.id.split(":")[0]
        if kind in plan.MEMORY_EXPERIMENTS:
            return {"probes": train_memories(config, unit.payload)}
        if kind == "capacity":
            return {"probes": train_capacity_probes(config, unit.payload)}
        if kind == "tradeoff":
            return {"grid": train_tradeoff(config, unit.payload)}
        return {"curves": train_sequential(config)}

    def frames(self, store) -> dict[str, pd.DataFrame]:
        return {"capacities": plan.capacities(store.config, store.frame("probes"))}

    def render(self, config: NichaniConfig, store, figdir: Path) -> Rendered:
        caps = plan.capacities(config, store.frame("probes"))
        grid, curves = store.frame("grid"), store.frame("curves")
        q = config.sequential
        pngs = [save(F.figure_1_linear(caps), figdir, "fig1_linear")[0],
                save(F.figure_mlp(caps, "mlp", "Figure 1 (right): MLP associative memory", "nlogn"), figdir,
                     "fig1_mlp")[0],
                save(F.figure_mlp(caps, "mlp_classes", "Figure 6: MLP memory, 32 output classes", "linear"), figdir,
                     "fig6")[0],
                save(F.figure_4_left(caps), figdir, "fig4_left")[0]]
        if not grid.empty:
            pngs.append(save(F.figure_4_right(grid, boundary(grid)), figdir, "fig4_right")[0])
        if not curves.empty:
            pngs.append(save(F.figure_5(curves, q.n_answers, q.n_relations), figdir, "fig5")[0])
        claims = nichani_claims(caps, grid, curves, q.n_answers, q.n_relations)
        done = int(caps["done"].sum()) if len(caps) else 0
        summary = (f"{len(caps)} capacity searches ({done} finished, {store.count('probes')} models trained), "
                   f"{len(grid)} trade-off cells, {len(curves)} points of Figure 5's curves.")
        return Rendered(pngs, claims, summary, config_text(config, header={"paper": self.name}))

    def summary_lines(self, config: NichaniConfig, store) -> list[tuple[str, str]]:
        caps = plan.capacities(config, store.frame("probes"))
        lines = []
        for experiment, g in caps.groupby("experiment", sort=False):
            found = g.dropna(subset=["capacity"])
            lines.append((f"{experiment} searches", f"{int(g['done'].sum())} / {len(g)} done; capacities "
                          + ", ".join(f"d={int(r.d)}: {int(r.capacity)}" for r in found.head(6).itertuples())))
        return lines


PAPER = Nichani2024()
