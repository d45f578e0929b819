"""What Wong (2025, sec. 4)'s experiment trains: databases, layers, pairs and shards, all
functions of the spec.

Every pair's result depends only on (spec, pair id): its database, its layer sizes and its
initial weights, drawn from a generator seeded with ``(spec.seed, pair_id)``. Shards (the
units of work) are a deterministic cut of the pair list sorted by size, so a resumed run
trains the same pairs from the same starting points as an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from factlab.databases.database import Database
from factlab.databases.generators import config_dict, paper_population, paper_population_configs
from factlab.errors import ConfigError
from factlab.experiments.core.paper import Unit
from factlab.experiments.wong2025.config import ExperimentSpec
from factlab.models.attention_layer import AttentionLayerConfig, paper_layer_grid
from factlab.models.bounds import lower_estimate
from factlab.tensors.database_tensor import proposition_2_1


@dataclass(frozen=True)
class Pair:
    """One (layer, database) pair to train."""

    pair_id: int
    db_id: int
    layer_id: int
    init_seed: int


@dataclass(frozen=True)
class Task:
    """What a worker needs to train one pair: the database itself and the layer's sizes."""

    pair: Pair
    database: Database
    layer: dict


def databases(spec: ExperimentSpec) -> list[Database]:
    """The database population (Wong 2025, sec. 4: 548 random databases of <= 200 triples)."""
    d = spec.databases
    return paper_population(d.n, seed=d.seed, max_facts=d.max_facts)


def layers(spec: ExperimentSpec) -> list[dict]:
    """The layer sizes (Wong 2025, sec. 4: 364 layers), as AttentionLayerConfig fields without n_tokens."""
    return paper_layer_grid(spec.layers.max_d_model, spec.layers.max_heads)


def pairs(spec: ExperimentSpec) -> list[Pair]:
    """The pairs, numbered in draw order: ``random`` draws ``n_pairs`` distinct (database, layer)
    pairs uniformly without replacement (Wong 2025: "3,947 random pairs")."""
    n_db, n_layer = spec.databases.n, len(layers(spec))
    total = n_db * n_layer
    if spec.pairing.method == "all":
        flat = np.arange(total)
    else:
        if spec.pairing.n_pairs > total:
            raise ConfigError(f"pairing.n_pairs = {spec.pairing.n_pairs} exceeds the {total} possible pairs "
                              f"({n_db} databases x {n_layer} layers)")
        rng = np.random.default_rng([spec.seed, 3947])
        flat = rng.choice(total, size=spec.pairing.n_pairs, replace=False)
    return [Pair(i, int(f // n_layer), int(f % n_layer), _pair_seed(spec.seed, i)) for i, f in enumerate(flat)]


def shards(spec: ExperimentSpec, pair_list: list[Pair], dbs: list[Database], shard_size: int | None = None
           ) -> list[list[Pair]]:
    """Cut pairs into shards of at most ``shard_size`` that the engine trains together, sorted by
    (database size, vocabulary) so that a shard pads little. A deterministic function of its input."""
    size = shard_size or spec.runner.shard_size
    order = sorted(pair_list, key=lambda p: (len(dbs[p.db_id]), dbs[p.db_id].n_tokens, p.pair_id))
    return [order[i:i + size] for i in range(0, len(order), size)]


def tasks(shard: list[Pair], dbs: list[Database], layer_list: list[dict]) -> list[Task]:
    return [Task(p, dbs[p.db_id], layer_list[p.layer_id]) for p in shard]


def units(spec: ExperimentSpec, done_pairs: set[int]) -> list[Unit]:
    """The shards with pairs not yet in the store, as units: ``shard-k`` is the k-th shard of
    every planned pair, holding the tasks of its pairs still to train (a store written
    before units were recorded may hold some of a shard's pairs)."""
    dbs, layer_list = databases(spec), layers(spec)
    out = []
    for k, shard in enumerate(shards(spec, pairs(spec), dbs)):
        todo = [p for p in shard if p.pair_id not in done_pairs]
        if todo:
            out.append(Unit(f"shard-{k}", tasks(todo, dbs, layer_list), size=len(todo)))
    return out


def database_rows(spec: ExperimentSpec, dbs: list[Database]) -> list[dict]:
    """Rows of the ``databases`` table without the rank interval (filled by the runner)."""
    d = spec.databases
    configs = paper_population_configs(d.n, seed=d.seed, max_facts=d.max_facts)
    rows = []
    for i, (db, cfg) in enumerate(zip(dbs, configs)):
        k, q, v = db.shape
        rows.append({"db_id": i, "name": db.name, "triples": len(db), "subjects": k, "predicates": q,
                     "objects": v, "n_tokens": db.n_tokens, "prop21": proposition_2_1(db),
                     "rank_lower": None, "rank_upper": None, "rank_certified": None, "rank_json": None,
                     "generator_json": json.dumps(config_dict(cfg))})
    return rows


def layer_rows(layer_list: list[dict]) -> list[dict]:
    """Rows of the ``layers`` table: sizes, non-embedding parameters and the lower estimate (9)."""
    rows = []
    for i, sizes in enumerate(layer_list):
        cfg = AttentionLayerConfig(n_tokens=1, **sizes)
        rows.append({"layer_id": i, **sizes, "params": cfg.non_embedding_params,
                     "lower_estimate": lower_estimate(cfg)})
    return rows


def pair_rows(pair_list: list[Pair]) -> list[dict]:
    return [{"pair_id": p.pair_id, "db_id": p.db_id, "layer_id": p.layer_id, "init_seed": p.init_seed}
            for p in pair_list]


def _pair_seed(seed: int, pair_id: int) -> int:
    """The seed of pair ``pair_id``'s initial weights: independent of every other pair."""
    return int(np.random.SeedSequence([seed, pair_id, 1]).generate_state(1)[0])
