"""Tensor completions: artifacts, generalization and hallucination (Wong 2025b, arXiv 2502.17305).

A layer trained on the facts of a database completes its tensor on every prefix (k, q) of
K x Q; an *artifact* is a novel sentence it predicts with probability >= τ, a
*generalization* when it is a held-out true fact and a *hallucination* otherwise
(:mod:`factlab.models.artifacts`). The experiment: databases with latent structure, a
fraction of each held out; layers of increasing size trained on the rest for several
training lengths; for every trained (database, layer, epochs) run its artifacts at τ and
their split against the held-out facts, and per database the effective-rank estimates of the
training facts and of training + held-out facts. Our choices: :mod:`.config` and
docs/completions.md.

Store tables (beside the core's ``meta`` and ``units``)::

    databases  one row per database: structure, sizes, effective ranks (a unit each)
    runs       one row per (database, layer, epochs): artifacts, generalizations,
               hallucinations, errors, provenance (units: shards of one training length)

Output: ``figures/`` (artifacts_vs_layer, artifacts_vs_epochs, generalization_vs_rank_gap),
``claims.json`` (each finding: paper, ours, test, holds), ``report.html``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from factlab.experiments.completions import figures as F
from factlab.experiments.completions.claims import completions_claims
from factlab.experiments.completions.config import SCALES, CompletionsConfig, scale_config
from factlab.experiments.completions.unit import database_row, train_runs
from factlab.experiments.core.paper import Paper, Rendered, Table, Unit
from factlab.experiments.core.runner import config_text
from factlab.report.figures import save

WHY = {
    "classes": "latent classes per database (1: the object depends on the predicate only)",
    "noise": "fraction of noise facts (object != f(class, predicate)); moves the effective-rank gap",
    "replicates": "databases per (classes, noise)",
    "database": "generator: subjects, predicates, object pool, values per predicate, density",
    "held_out": "fraction of facts held out, drawn uniformly without replacement",
    "layers": "(d_model, n_heads, d_head_qk, d_head_vo); layer bound (9) = d_model + n_heads * d_head_vo",
    "epochs": "training lengths: same initialisation, full-batch Adam, no early stopping",
    "tau": "artifact threshold: novel (k, q, v) with softmax probability >= tau",
    "rank_restarts": "effective rank: masked CP starts per trial rank; estimate = upper end of the interval",
    "rank_max_search_rank": "no masked CP fit above this rank (the combinatorial bound stands)",
    "shard_size": "runs trained together (does not change results; not in the hash)",
}
NOTES = ("\n# generalization error = 1 - (held-out facts inside the training K x Q predicted with p >= tau)"
         " / (held-out facts inside)\n# rank gap = eff(train + held out) - eff(train), both upper ends of "
         "factlab.tensors.rank.effective_rank")


class Completions(Paper):
    name = "completions"
    title = "Tensor completions: artifacts, generalization and hallucination (Wong 2025b)"
    source = "Wong 2025b, arXiv 2502.17305 (text not at hand: every choice is ours)"
    scales = SCALES
    config_class = CompletionsConfig

    def config(self, scale: str) -> CompletionsConfig:
        return scale_config(scale)

    def threads(self, config: CompletionsConfig) -> int:
        return 1    # these tiny tensors run several times faster on one thread than on two (busy 2 cores)

    def tables(self, config: CompletionsConfig) -> dict[str, Table]:
        return {
            "databases": Table({
                "db_id": "INTEGER", "name": "TEXT", "n_classes": "INTEGER", "noise": "DOUBLE", "replicate": "INTEGER",
                "seed": "UBIGINT", "triples": "INTEGER", "train_triples": "INTEGER", "held_out_triples": "INTEGER",
                "noise_triples": "INTEGER", "held_out_noise": "INTEGER", "subjects": "INTEGER",
                "predicates": "INTEGER", "objects": "INTEGER", "n_tokens": "INTEGER", "train_prefixes": "INTEGER",
                "prop21_train": "INTEGER", "eff_train_lower": "INTEGER", "eff_train": "INTEGER",
                "eff_train_method": "TEXT", "eff_full_lower": "INTEGER", "eff_full": "INTEGER",
                "eff_full_method": "TEXT", "rank_gap": "INTEGER", "rank_seconds": "DOUBLE",
                "generator_json": "TEXT"}, ("db_id",)),
            "runs": Table({
                "run_id": "INTEGER", "db_id": "INTEGER", "layer_id": "INTEGER", "epochs": "INTEGER",
                "d_model": "INTEGER", "n_heads": "INTEGER", "d_head_qk": "INTEGER", "d_head_vo": "INTEGER",
                "layer_bound": "INTEGER", "params": "INTEGER", "init_seed": "UBIGINT", "status": "TEXT",
                "epochs_run": "INTEGER", "loss": "DOUBLE", "train_accuracy": "DOUBLE", "train_tau_accuracy": "DOUBLE",
                "tau": "DOUBLE", "train_triples": "INTEGER", "artifacts": "INTEGER", "artifact_ratio": "DOUBLE",
                "on_training_pairs": "INTEGER", "novel_artifacts": "INTEGER", "generalizations": "INTEGER",
                "hallucinations": "INTEGER", "held_out_inside": "INTEGER", "held_out_outside": "INTEGER",
                "generalization_rate": "DOUBLE", "generalization_error": "DOUBLE", "held_out_argmax": "DOUBLE",
                "train_config": "TEXT", "factlab_version": "TEXT", "torch_version": "TEXT", "host": "TEXT",
                "shard_seconds": "DOUBLE"}, ("run_id",)),
        }

    def plan(self, config: CompletionsConfig, store) -> list[Unit]:
        """A unit per database not yet stored (its effective ranks), and per shard of runs of
        one training length with runs not yet stored (shards cut from every planned run, so
        a shard's id names the same runs on every call)."""
        have_db, have_run = store.ids("databases", "db_id"), store.ids("runs", "run_id")
        units = [Unit(f"db-{d}", d, size=1) for d, *_ in config.databases() if d not in have_db]
        for e in config.epochs:
            runs = [r for r in config.runs() if r[3] == e]
            for k in range(0, len(runs), config.shard_size):
                todo = [r for r in runs[k:k + config.shard_size] if r[0] not in have_run]
                if todo:
                    units.append(Unit(f"runs-e{e}-{k // config.shard_size}", todo, size=len(todo)))
        return units

    @staticmethod
    def run_unit(config: CompletionsConfig, unit: Unit) -> dict[str, list[dict]]:
        if unit.id.startswith("db-"):
            return {"databases": [database_row(config, unit.payload)]}
        rows, _ = train_runs(config, unit.payload)
        return {"runs": rows}

    def frames(self, store) -> dict[str, pd.DataFrame]:
        return {"results": results(store)}

    def render(self, config: CompletionsConfig, store, figdir: Path) -> Rendered:
        dbs, runs = store.frame("databases"), results(store)
        pngs = []
        if not runs.empty:
            pngs.append(save(F.figure_artifacts_vs_layer(runs), figdir, "artifacts_vs_layer")[0])
            pngs.append(save(F.figure_artifacts_vs_epochs(runs), figdir, "artifacts_vs_epochs")[0])
            pngs.append(save(F.figure_generalization_vs_rank_gap(runs), figdir, "generalization_vs_rank_gap")[0])
        summary = (f"{len(dbs)} databases with latent classes, {len(config.layers)} layers, training lengths "
                   f"{list(config.epochs)}: {len(runs)} of {len(config.runs())} runs; artifacts at tau = "
                   f"{config.tau:g}, {config.held_out:.0%} of facts held out.")
        return Rendered(pngs, completions_claims(runs), summary, config_text(config, WHY) + NOTES,
                        extra={"tau": config.tau, "held_out": config.held_out})

    def summary_lines(self, config: CompletionsConfig, store) -> list[tuple[str, str]]:
        runs = results(store)
        lines = [("runs trained / planned", f"{len(runs)} / {len(config.runs())}")]
        if not runs.empty:
            for e, g in runs.groupby("epochs"):
                lines.append((f"{e} epochs", f"mean artifacts/triples {g['artifact_ratio'].mean():.2f}, mean "
                                             f"generalization error {g['generalization_error'].mean():.2f}"))
        return lines


PAPER = Completions()


def results(store) -> pd.DataFrame:
    """Runs joined with their database's structure and effective ranks."""
    return store.query("""SELECT r.*, d.name AS db_name, d.n_classes, d.noise, d.eff_train, d.eff_full,
        d.rank_gap, d.train_prefixes FROM runs r JOIN databases d USING (db_id) ORDER BY r.run_id""")
