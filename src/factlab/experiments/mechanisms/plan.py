"""What the mechanisms comparison trains: for every (database, mechanism), a search for the
smallest rung of the mechanism's ladder whose model memorizes every fact.

Success is taken to be monotone along the ladder (a wider model memorizes what a narrower
one does), so :func:`factlab.experiments.core.search.bisect_up` finds the smallest rung in
about log2(rungs) probes; every round trains all pending probes as stacks, one family per
unit, and a killed run resumes from the stored probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from factlab.databases.database import Database
from factlab.databases.generators import RandomDatabaseConfig, random_database
from factlab.databases.sources import read
from factlab.experiments.core.config import stable_key as key
from factlab.experiments.core.paper import Unit
from factlab.experiments.core.search import Threshold, bisect_up
from factlab.experiments.mechanisms.config import MechanismsConfig, resolve


@dataclass(frozen=True)
class Probe:
    db_id: int
    mechanism: str
    rung: int

    @property
    def id(self) -> str:
        return f"db={self.db_id}/{self.mechanism}/rung={self.rung}"


def databases(config: MechanismsConfig) -> list[tuple[str, str, Database]]:
    """``(name, source, database)`` of every database: the files, then the random population."""
    out = []
    for path in config.sources:
        out.append((Path(path).stem, path, read(resolve(path), **dict(config.reader))))
    p = config.population
    for s in p.subjects:
        for v in p.values:
            for rep in range(p.replicates):
                gen = RandomDatabaseConfig(n_subjects=s, n_predicates=p.predicates, n_objects=2 * v,
                                           density=p.density, values_per_predicate=v)
                name = f"random-s{s}-v{v}-r{rep}"
                out.append((name, "random", random_database(gen, seed=key(config.seed, name), name=name)))
    return out


def state(probes: pd.DataFrame, config: MechanismsConfig, db_id: int, mechanism: str) -> Threshold:
    if len(probes):
        mine = probes[(probes["db_id"] == db_id) & (probes["mechanism"] == mechanism)]
        outcomes = {int(r): bool(m) for r, m in zip(mine["rung"], mine["memorized"])}
    else:
        outcomes = {}
    return bisect_up(0, len(config.ladder) - 1, outcomes)


def units(config: MechanismsConfig, probes: pd.DataFrame, n_databases: int) -> list[Unit]:
    todo = []
    for db_id in range(n_databases):
        for m in config.mechanisms:
            b = state(probes, config, db_id, m)
            if not b.done:
                todo.append(Probe(db_id, m, b.probe))
    out = []
    for m in config.mechanisms:
        mine = sorted((p for p in todo if p.mechanism == m), key=lambda p: (p.rung, p.db_id))
        for i in range(0, len(mine), config.runner.unit_models):
            part = mine[i:i + config.runner.unit_models]
            out.append(Unit(f"{m}:{key(*(p.id for p in part)):x}", part, size=len(part), round=len(probes)))
    return out


def smallest(config: MechanismsConfig, probes: pd.DataFrame, dbs: pd.DataFrame) -> pd.DataFrame:
    """One row per (database, mechanism): whether the search is done, the smallest rung that
    memorized (None if none of the ladder did) with its probe's row (parameters, steps,
    accuracies), beside the database's |D| and bounds."""
    rows = []
    for db in dbs.itertuples():
        for m in config.mechanisms:
            b = state(probes, config, db.db_id, m)
            row = {"db_id": db.db_id, "database": db.name, "triples": db.triples, "prop21": db.prop21,
                   "rank_lower": db.rank_lower, "rank_upper": db.rank_upper, "mechanism": m, "done": b.done,
                   "rung": b.answer, "d": None if b.answer is None else config.ladder[b.answer]}
            hit = probes[(probes["db_id"] == db.db_id) & (probes["mechanism"] == m) & (probes["rung"] == b.answer)] \
                if b.answer is not None and len(probes) else pd.DataFrame()
            if len(hit):
                h = hit.iloc[0]
                row.update(params=int(h["params"]), params_per_fact=h["params"] / db.triples, steps=int(h["steps"]),
                           config=h["config_json"], argmax_accuracy=float(h["accuracy"]))
            rows.append(row)
    return pd.DataFrame(rows)
