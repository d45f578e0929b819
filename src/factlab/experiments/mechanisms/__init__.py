"""One database, three mechanisms: the smallest model of each that memorizes a database.

For every database (a user's files with ``factlab capacity``; random databases of growing
size and rank and the countries table with ``factlab reproduce mechanisms``) and every
mechanism (:mod:`.ladders`: Wong's attention layer, Nichani et al.'s recall transformer over
frozen random embeddings, Ravfogel et al.'s learned-embedding model), a search over the
mechanism's ladder of widths finds the smallest model that memorizes every fact (argmax
accuracy 1; the softmax >= tau accuracies are reported beside it). Our choices:
docs/mechanisms.md.

Store tables (beside the core's ``meta`` and ``units``)::

    databases  db_id, name, source, |D|, sizes, Proposition 2.1, rank interval
    probes     db_id, mechanism, rung: a trained model (width d, trained parameters; of its
               restarts the one reported, how many memorized; its argmax and softmax >= tau
               accuracies, steps, status; memorized if any restart did)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from factlab.experiments.core.claims import no_nan
from factlab.experiments.core.paper import Paper, Rendered, Table, Unit
from factlab.experiments.core.runner import config_text
from factlab.experiments.mechanisms import figures as F
from factlab.experiments.mechanisms import plan
from factlab.experiments.mechanisms.claims import mechanisms_claims
from factlab.experiments.mechanisms.config import SCALES, MechanismsConfig, scale_config
from factlab.experiments.mechanisms.unit import tau_column, train_probes
from factlab.report.figures import save


class Mechanisms(Paper):
    name = "mechanisms"
    title = "One database, three mechanisms: the smallest model that memorizes it (ours)"
    source = "factlab: Wong 2025, Nichani et al. 2024 and Ravfogel et al. 2026 compared on the same facts"
    scales = SCALES
    config_class = MechanismsConfig

    def config(self, scale: str) -> MechanismsConfig:
        return scale_config(scale)

    def tables(self, config: MechanismsConfig) -> dict[str, Table]:
        taus = {tau_column(t): "DOUBLE" for t in config.training.taus}
        return {
            "databases": Table({"db_id": "INTEGER", "name": "TEXT", "source": "TEXT", "triples": "INTEGER",
                                "subjects": "INTEGER", "predicates": "INTEGER", "objects": "INTEGER",
                                "n_tokens": "INTEGER", "prop21": "INTEGER", "rank_lower": "INTEGER",
                                "rank_upper": "INTEGER", "rank_certified": "BOOLEAN"}, ("db_id",)),
            "probes": Table({"db_id": "INTEGER", "mechanism": "TEXT", "rung": "INTEGER", "d": "INTEGER",
                             "params": "INTEGER", "config_json": "TEXT", "restart": "INTEGER",
                             "restarts_memorized": "INTEGER", "accuracy": "DOUBLE", **taus,
                             "best_accuracy": "DOUBLE", "loss": "DOUBLE", "steps": "INTEGER", "status": "TEXT",
                             "memorized": "BOOLEAN", "train_config": "TEXT", "factlab_version": "TEXT",
                             "torch_version": "TEXT", "host": "TEXT"}, ("db_id", "mechanism", "rung")),
        }

    def prepare(self, config: MechanismsConfig, store, *, log, progress: bool) -> None:
        """The databases with |D|, Proposition 2.1 and their rank intervals."""
        from factlab.tensors.database_tensor import proposition_2_1
        from factlab.tensors.rank import rank_interval

        have = store.ids("databases", "db_id")
        rows = []
        for i, (name, source, db) in enumerate(plan.databases(config)):
            if i in have:
                continue
            k, q, v = db.shape
            iv = rank_interval(db, seed=config.seed)
            rows.append({"db_id": i, "name": name, "source": source, "triples": len(db), "subjects": k,
                         "predicates": q, "objects": v, "n_tokens": db.n_tokens, "prop21": proposition_2_1(db),
                         "rank_lower": iv.lower.value, "rank_upper": iv.upper.value,
                         "rank_certified": bool(iv.certified)})
        store.insert("databases", rows)

    def plan(self, config: MechanismsConfig, store) -> list[Unit]:
        return plan.units(config, store.frame("probes"), store.count("databases"))

    @staticmethod
    def run_unit(config: MechanismsConfig, unit: Unit) -> dict[str, list[dict]]:
        dbs = [db for _, _, db in plan.databases(config)]
        return {"probes": train_probes(config, unit.payload, dbs)}

    def frames(self, store) -> dict[str, pd.DataFrame]:
        return {"smallest": plan.smallest(store.config, store.frame("probes"), store.frame("databases"))}

    def render(self, config: MechanismsConfig, store, figdir: Path) -> Rendered:
        dbs, probes = store.frame("databases"), store.frame("probes")
        best = plan.smallest(config, probes, dbs)
        pngs = []
        if len(probes):
            pngs.append(save(F.figure_accuracy_vs_params(probes, dbs), figdir, "accuracy_vs_params")[0])
            pngs.append(save(F.figure_params_vs_facts(best), figdir, "params_vs_facts")[0])
        summary = (f"{len(dbs)} databases x {len(config.mechanisms)} mechanisms; {len(probes)} models trained; "
                   f"{int(best['done'].sum()) if len(best) else 0} searches finished.")
        return Rendered(pngs, mechanisms_claims(best, config.mechanisms), summary,
                        config_text(config, header={"paper": self.name}),
                        extra={"smallest": no_nan(best.drop(columns=["config"], errors="ignore").to_dict("records"))})

    def summary_lines(self, config: MechanismsConfig, store) -> list[tuple[str, str]]:
        best = plan.smallest(config, store.frame("probes"), store.frame("databases"))
        return [(f"{r.database} / {r.mechanism}",
                 "running" if not r.done else ("none on the ladder" if pd.isna(r.rung) else
                                               f"d = {int(r.d)}, {int(r.params)} parameters "
                                               f"({r.params_per_fact:.1f} per fact)"))
                for r in best.itertuples()]


PAPER = Mechanisms()
