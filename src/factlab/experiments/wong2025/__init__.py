"""Wong (2025), section 4, reproduced: attention layers of many sizes memorizing random databases.

``factlab reproduce wong2025 [--scale quick|paper]`` runs :data:`PAPER` through the
experiment core. The ``paper`` scale uses the paper's sizes (548 databases, 364 layers, 3,947
pairs, up to 2,000 epochs); ``quick`` keeps the 548 databases (with their rank intervals) and
the 364 layers but trains 768 pairs for at most 500 epochs (:func:`config.scale_spec`).

Store tables (``results.duckdb``, beside the core's ``meta`` and ``units``)::

    databases  db_id, name, triples, subjects, predicates, objects, n_tokens, prop21
               (Proposition 2.1), rank_lower, rank_upper, rank_certified, rank_json, generator_json
    layers     layer_id, d_model, n_heads, d_head_qk, d_head_vo, params (non-embedding),
               lower_estimate (eq. 9)
    pairs      pair_id, db_id, layer_id, init_seed               every planned pair
    runs       pair_id, db_id, layer_id, status, epochs, loss, accuracy (argmax), acc_tau_<τ>
               per threshold (e.g. acc_tau_0_95), train_config (JSON), init_seed, versions, host

Output: ``figures/`` (Figures 2a, 2b, 3a-d, 4), ``claims.json`` (every quantitative claim
of the section: the paper's value, ours, the test, whether it holds), ``report.html``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pandas as pd
import torch

from factlab.experiments.core.paper import Paper, Rendered, Table, Unit
from factlab.experiments.core.runner import config_text
from factlab.experiments.wong2025 import figures as F
from factlab.experiments.wong2025 import plan
from factlab.experiments.wong2025.claims import wong2025_claims
from factlab.experiments.wong2025.config import SCALES, ExperimentSpec, scale_spec, spec_from_dict
from factlab.experiments.wong2025.unit import tau_column, train_shard
from factlab.report.figures import save

RANK_BATCH = 137  # databases per committed batch of rank intervals (one batched CP search each)


class Wong2025(Paper):
    name = "wong2025"
    title = "Wong (2025) section 4: attention layers memorizing random databases"
    source = "Wong 2025, Paying Attention to Facts, Section 4"
    scales = SCALES
    config_class = ExperimentSpec

    def config(self, scale: str) -> ExperimentSpec:
        return scale_spec(scale)

    def config_from_dict(self, data: dict, *, source: str = "<config>") -> ExperimentSpec:
        return spec_from_dict(data, source=source)

    def tables(self, config: ExperimentSpec) -> dict[str, Table]:
        taus = {tau_column(t): "DOUBLE" for t in config.thresholds.taus}
        return {
            "databases": Table({"db_id": "INTEGER", "name": "TEXT", "triples": "INTEGER", "subjects": "INTEGER",
                                "predicates": "INTEGER", "objects": "INTEGER", "n_tokens": "INTEGER",
                                "prop21": "INTEGER", "rank_lower": "INTEGER", "rank_upper": "INTEGER",
                                "rank_certified": "BOOLEAN", "rank_json": "TEXT", "generator_json": "TEXT"},
                               ("db_id",)),
            "layers": Table({"layer_id": "INTEGER", "d_model": "INTEGER", "n_heads": "INTEGER",
                             "d_head_qk": "INTEGER", "d_head_vo": "INTEGER", "params": "INTEGER",
                             "lower_estimate": "INTEGER"}, ("layer_id",)),
            "pairs": Table({"pair_id": "INTEGER", "db_id": "INTEGER", "layer_id": "INTEGER", "init_seed": "UBIGINT"},
                           ("pair_id",)),
            "runs": Table({"pair_id": "INTEGER", "db_id": "INTEGER", "layer_id": "INTEGER", "status": "TEXT",
                           "epochs": "INTEGER", "loss": "DOUBLE", "accuracy": "DOUBLE", **taus,
                           "train_config": "TEXT", "init_seed": "UBIGINT", "factlab_version": "TEXT",
                           "torch_version": "TEXT", "device": "TEXT", "host": "TEXT", "shard_seconds": "DOUBLE"},
                          ("pair_id",)),
        }

    # ------------------------------------------------------------------ running
    def prepare(self, config: ExperimentSpec, store, *, log, progress: bool) -> None:
        """The layers, databases (|D| and Proposition 2.1), planned pairs and the databases'
        rank intervals, each committed on its own and skipped when stored."""
        dbs, layer_list, pair_list = plan.databases(config), plan.layers(config), plan.pairs(config)
        if store.count("layers") < len(layer_list):
            store.insert("layers", plan.layer_rows(layer_list))
        if store.count("databases") < len(dbs):
            store.insert("databases", plan.database_rows(config, dbs))
        if store.count("pairs") < len(pair_list):
            store.insert("pairs", plan.pair_rows(pair_list))
        if config.databases.rank_interval:
            fill_rank_intervals(config, store, dbs, progress)

    def plan(self, config: ExperimentSpec, store) -> list[Unit]:
        return plan.units(config, store.ids("runs", "pair_id"))

    @staticmethod
    def run_unit(config: ExperimentSpec, unit: Unit) -> dict[str, list[dict]]:
        from factlab import __version__

        rows = train_shard(config, unit.payload)
        for row in rows:
            row.update(factlab_version=__version__, torch_version=torch.__version__, host=platform.node())
        return {"runs": rows}

    # ------------------------------------------------------------------ reading
    def frames(self, store) -> dict[str, pd.DataFrame]:
        return {"results": results(store)}

    def render(self, config: ExperimentSpec, store, figdir: Path) -> Rendered:
        dbs, layers, res = store.frame("databases"), store.frame("layers"), results(store)
        pngs = [save(F.figure_2a(dbs), figdir, "fig2a")[0], save(F.figure_2b(layers), figdir, "fig2b")[0]]
        if not res.empty:
            for stem, metric, title in figure_panels(config):
                pngs.append(save(F.figure_3(res, metric, title), figdir, stem)[0])
            if 0.95 in config.thresholds.taus:
                pngs.append(save(F.figure_4(res, tau_column(0.95)), figdir, "fig4")[0])
        claims = wong2025_claims(config, dbs, layers, res)
        summary = (f"{len(dbs)} databases, {len(layers)} layers, {len(res)} trained pairs. "
                   f"{rank_summary(dbs)}").strip()
        return Rendered(pngs, claims, summary, config_text(config, header={"paper": self.name}),
                        extra={"memorized_threshold": config.thresholds.memorized})

    def summary_lines(self, config: ExperimentSpec, store) -> list[tuple[str, str]]:
        res = results(store)
        lines = [("pairs trained / planned", f"{store.count('runs')} / {store.count('pairs')}")]
        if res.empty:
            return lines
        lines.append(("status", ", ".join(f"{k} {v}" for k, v in res["status"].value_counts().items())))
        lines.append(("mean epochs", f"{res['epochs'].mean():.0f}"))
        metrics = [("argmax", "accuracy")] + [(f"tau={t:g}", tau_column(t)) for t in config.thresholds.taus]
        for label, col in metrics:
            lines.append((f"mean accuracy {label}", f"{res[col].mean():.3f}"))
        bins = (res["layer_bound"] - 1) // 5 * 5 + 5
        for b, group in res.groupby(bins):
            accs = "  ".join(f"{label} {group[col].mean():.2f}" for label, col in metrics)
            lines.append((f"layer bound ({b - 5}, {b}]", f"{len(group):4d} pairs  {accs}"))
        return lines


PAPER = Wong2025()


def results(store) -> pd.DataFrame:
    """One row per finished pair, joined with its database's and layer's sizes and bounds:
    ``db_bound`` is Proposition 2.1, ``layer_bound`` the lower estimate (9)."""
    return store.query("""
        SELECT r.*, d.name AS db_name, d.triples, d.n_tokens, d.prop21 AS db_bound,
               d.rank_lower, d.rank_upper, l.d_model, l.n_heads, l.d_head_qk, l.d_head_vo,
               l.params, l.lower_estimate AS layer_bound
        FROM runs r JOIN databases d USING (db_id) JOIN layers l USING (layer_id)
        ORDER BY r.pair_id""")


def figure_panels(spec: ExperimentSpec) -> list[tuple[str, str, str]]:
    """(file stem, metric column, title) of Figure 3's panels present in the spec's thresholds."""
    panels = [("fig3a_argmax", "accuracy", "Figure 3(a): argmax")]
    for letter, tau in zip("bcd", (0.75, 0.95, 0.99)):
        if tau in spec.thresholds.taus:
            panels.append((f"fig3{letter}_tau{tau:g}", tau_column(tau), f"Figure 3({letter}): softmax ≥ {tau:g}"))
    return panels


def rank_summary(dbs: pd.DataFrame) -> str:
    """One sentence on the databases' rank intervals (empty when none were computed)."""
    if "rank_upper" not in dbs or dbs["rank_upper"].isna().all():
        return ""
    d = dbs.dropna(subset=["rank_upper"])
    below = int((d["rank_upper"] < d["prop21"]).sum())
    return (f"Rank intervals of {len(d)} databases: {int(d['rank_certified'].sum())} certified, "
            f"mean width {(d['rank_upper'] - d['rank_lower']).mean():.2f}; an exact CP decomposition "
            f"beat Proposition 2.1 on {below}.")


def fill_rank_intervals(spec: ExperimentSpec, store, dbs, progress: bool) -> None:
    """Rank intervals of the databases whose interval is still missing, committed in batches."""
    from dataclasses import replace

    from factlab.experiments.core.runner import progress_bar
    from factlab.tensors.rank import CPSearchConfig, rank_intervals

    missing = sorted(r[0] for r in store.con.execute("SELECT db_id FROM databases WHERE rank_json IS NULL").fetchall())
    if not missing:
        return
    base, d = CPSearchConfig(), spec.databases
    changes = {}
    if d.rank_restarts:
        changes["restarts"] = d.rank_restarts
    if d.rank_max_iter:
        changes["max_iter"] = d.rank_max_iter
        changes["min_iter"] = min(base.min_iter, d.rank_max_iter)
    config = replace(base, **changes)
    bar = progress_bar(len(missing), progress, f"{spec.name}: rank intervals")
    try:
        for s in range(0, len(missing), RANK_BATCH):
            ids = missing[s:s + RANK_BATCH]
            intervals = list(rank_intervals([dbs[i] for i in ids], config=config, seed=d.seed))
            store.fill("databases", "db_id",
                       [{"db_id": i, "rank_lower": iv.lower.value, "rank_upper": iv.upper.value,
                         "rank_certified": bool(iv.certified), "rank_json": json.dumps(iv.to_dict(), sort_keys=True,
                                                                                       default=str)}
                        for i, iv in zip(ids, intervals)],
                       ["rank_lower", "rank_upper", "rank_certified", "rank_json"], marker="rank_json")
            bar.update(len(ids))
    finally:
        bar.close()
