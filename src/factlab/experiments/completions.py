"""Tensor completions: artifacts, generalization and hallucination (Wong 2025b, arXiv 2502.17305; SPEC sec. 9).

A layer trained on the facts of a database completes its tensor on every prefix (k, q) of
K x Q; an *artifact* is a novel sentence it predicts with probability >= τ, a
*generalization* when it is a held-out true fact and a *hallucination* otherwise
(:mod:`factlab.models.artifacts`). The experiment: databases with latent structure
(:func:`latent_class_database`), a fraction of each held out; layers of increasing size
trained on the rest for several training lengths; for every trained (database, layer,
epochs) run the artifacts at τ and their split against the held-out facts, and per database
the effective-rank estimates of the training facts and of training + held-out facts.

Choices the source leaves open (each a field of :class:`CompletionsConfig`; docs/completions.md):

- Databases: a purely random database has nothing to generalize from, so ours have
  latent classes. Subject k belongs to class c(k); predicate q ranges over its own random
  subset of a shared object pool; the object of a defined pair (k, q) is f(c(k), q), except
  for a fraction ``noise`` of *noise facts* whose object is another value of q's range.
  Class counts and noise levels vary across databases, which moves the effective-rank gap.
  Pairs are defined with probability ``density`` (0.3), so K x Q has room for artifacts.
- Held out: ``round(held_out · |D|)`` facts drawn uniformly without replacement (20%).
- Effective rank: the upper end of :func:`factlab.tensors.rank.effective_rank` (the least
  rank at which a masked CP fit reproduced every observed fiber, or a combinatorial bound),
  with the search budget of ``rank_restarts`` / ``rank_max_iter`` / ``rank_max_search_rank``.
  The gap is ``eff(train + held out) - eff(train)``.
- Training length: runs of the same (database, layer) differ only in ``max_epochs`` and
  start from the same initialisation; full-batch Adam without early stopping, so the
  shorter run is a prefix of the longer one. Generalization error: the fraction of held-out
  facts inside the training K x Q that are not artifacts at τ.

Output layout (``reproduce``)::

    out/results.duckdb   meta (config, config_hash, versions); databases (one row per database:
                         structure, sizes, effective ranks); runs (one row per (database, layer,
                         epochs): artifacts, generalizations, hallucinations, errors, provenance)
    out/figures/artifacts_vs_layer, artifacts_vs_epochs, generalization_vs_rank_gap (.png, .svg)
    out/claims.json      each finding of SPEC sec. 9: paper, ours, test, holds
    out/report.html      figures, claims, the config with our choices, provenance

A store is resumed, never overwritten: finished databases and runs are skipped and rows are
inserted with ``ON CONFLICT DO NOTHING``; a store made for another config is refused.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import duckdb
import numpy as np
import pandas as pd
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.experiments.store import DuckDBStore, connect
from factlab.models import attention_kernel
from factlab.models.artifacts import artifacts, next_token_probabilities
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.models.bounds import layer_bounds
from factlab.tensors.cp_search import CPSearchConfig
from factlab.tensors.database_tensor import proposition_2_1
from factlab.tensors.rank import effective_rank
from factlab.training.data import FixedData
from factlab.training.engine import TrainConfig, train
from factlab.training.optim import Adam

SCALES = ("quick", "paper")
Layer = tuple[int, int, int, int]  # (d_model, n_heads, d_head_qk, d_head_vo)

#: Layers of increasing lower estimate (9), d_model + n_heads · d_head_vo = 2, 3, 5, 8, 12, 14, 18, 30;
#: all inside the paper's grid (d_model <= 6, n_heads <= 4).
PAPER_LAYERS: tuple[Layer, ...] = ((1, 1, 1, 1), (2, 1, 1, 1), (3, 1, 2, 2), (4, 2, 2, 2), (4, 2, 4, 4),
                                   (5, 3, 3, 3), (6, 4, 3, 3), (6, 4, 6, 6))
QUICK_LAYERS: tuple[Layer, ...] = ((2, 1, 1, 1), (3, 1, 2, 2), (4, 2, 2, 2), (6, 4, 3, 3))


# ============================================================================ databases
@dataclass(frozen=True)
class LatentClassConfig:
    """Knobs of :func:`latent_class_database` (our choice; the paper's databases are random)."""

    n_subjects: int = 40
    n_predicates: int = 6
    n_objects: int = 16            # the shared object pool
    values_per_predicate: int = 8  # each predicate's range: a random subset of the pool of this size
    n_classes: int = 4             # latent classes of subjects
    density: float = 0.3           # probability that a pair (k, q) is defined
    noise: float = 0.0             # fraction of defined pairs whose object is not f(c(k), q)

    def __post_init__(self):
        for name in ("n_subjects", "n_predicates", "n_objects", "values_per_predicate", "n_classes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.values_per_predicate > self.n_objects:
            raise ConfigError(f"values_per_predicate ({self.values_per_predicate}) exceeds n_objects ({self.n_objects})")
        if not 0.0 < self.density <= 1.0:
            raise ConfigError(f"density must be in (0, 1], got {self.density}")
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"noise must be in [0, 1], got {self.noise}")
        if self.noise > 0 and self.values_per_predicate < 2:
            raise ConfigError("noise facts need values_per_predicate >= 2 (another value than f(c, q))")


@dataclass(frozen=True)
class LatentClassDatabase:
    """A database drawn by :func:`latent_class_database` and the structure it was drawn from.

    Token names carry the indices: subject i is ``s{i}``, predicate j ``p{j}``, pool object o
    ``o{o}`` (zero-padded); tokens that occur in no fact are not in the vocabulary.
    """

    database: Database
    classes: np.ndarray  # (n_subjects,) latent class c(k)
    table: np.ndarray    # (n_classes, n_predicates) pool index of f(c, q)
    noise: np.ndarray    # (|D|,) bool, aligned with database.facts: object != f(c(k), q)
    config: LatentClassConfig


def latent_class_database(config: LatentClassConfig = LatentClassConfig(), *, seed: int = 0,
                          name: str | None = None) -> LatentClassDatabase:
    """Facts ``(k, q, f(c(k), q))`` over subjects in latent classes, a fraction of them noise.

    Each subject gets a uniform class; each predicate a random range of
    ``values_per_predicate`` pool objects and, per class, a uniform value f(c, q) in it; each
    pair is defined with probability ``density`` (at least one pair always); a defined pair
    is a noise fact with probability ``noise``, its object then uniform over q's range
    without f(c(k), q). The same seed gives the same database.
    """
    c = config
    rng = np.random.default_rng(seed)
    classes = rng.integers(c.n_classes, size=c.n_subjects)
    ranges = np.stack([rng.choice(c.n_objects, c.values_per_predicate, replace=False)
                       for _ in range(c.n_predicates)])                        # (Q, r)
    table = ranges[np.arange(c.n_predicates)[None, :],
                   rng.integers(c.values_per_predicate, size=(c.n_classes, c.n_predicates))]  # (C, Q)
    pairs = np.argwhere(rng.random((c.n_subjects, c.n_predicates)) < c.density)  # (n, 2), sorted by (k, q)
    if len(pairs) == 0:
        pairs = np.array([[rng.integers(c.n_subjects), rng.integers(c.n_predicates)]])
    true = table[classes[pairs[:, 0]], pairs[:, 1]]                              # (n,)
    noise = rng.random(len(pairs)) < c.noise
    # a noise object: uniform over the other values of q's range (shift by 1..r-1 within the range)
    r = c.values_per_predicate
    where = np.argmax(ranges[pairs[:, 1]] == true[:, None], axis=1)             # position of f in q's range
    other = ranges[pairs[:, 1], (where + rng.integers(1, max(r, 2), size=len(pairs))) % r]
    objects = np.where(noise, other, true)
    nk, nq, nv = (len(str(n - 1)) for n in (c.n_subjects, c.n_predicates, c.n_objects))
    tokens = ([f"s{i:0{nk}d}" for i in range(c.n_subjects)] + [f"p{j:0{nq}d}" for j in range(c.n_predicates)]
              + [f"o{v:0{nv}d}" for v in range(c.n_objects)])
    facts = np.stack([pairs[:, 0], c.n_subjects + pairs[:, 1], c.n_subjects + c.n_predicates + objects], axis=1)
    db = Database.from_ids(tokens, facts, name=name)  # drops unused pool tokens, keeps the order
    # one object per pair and pairs sorted by (k, q): db.facts lists the facts in our order, so noise stays aligned
    assert all(np.array_equal(np.array(db.tokens)[db.facts[:, m]], np.array(tokens)[facts[:, m]]) for m in range(3))
    return LatentClassDatabase(db, classes, table, noise, c)


def split_held_out(db: Database, fraction: float, *, seed: int = 0) -> tuple[Database, Database, np.ndarray]:
    """``(train, held_out, mask)``: ``round(fraction · |D|)`` facts (``mask``) held out, drawn
    uniformly without replacement; both keep ``db``'s vocabulary."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"held-out fraction must be in [0, 1), got {fraction}")
    n_out = int(round(fraction * len(db)))
    mask = np.zeros(len(db), dtype=bool)
    mask[np.random.default_rng(seed).choice(len(db), n_out, replace=False)] = True
    return db.select(~mask), db.select(mask), mask


# ============================================================================ config
@dataclass(frozen=True)
class CompletionsConfig:
    """Everything the results depend on; the defaults are the ``paper`` scale (our choices:
    the second paper's text is not at hand, SPEC sec. 9). ``shard_size`` only says how many
    runs train together and is left out of :attr:`hash`."""

    name: str = "completions-paper"
    seed: int = 0
    # databases: one per (n_classes, noise, replicate)
    classes: tuple[int, ...] = (1, 2, 4, 8)
    noise: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5)
    replicates: int = 3
    database: LatentClassConfig = LatentClassConfig()  # n_classes and noise are replaced per database
    held_out: float = 0.2             # fraction of each database's facts held out
    # layers x training lengths
    layers: tuple[Layer, ...] = PAPER_LAYERS
    epochs: tuple[int, ...] = (100, 300, 1000, 3000)
    lr: float = 0.03                  # Adam; full-batch epochs, no early stopping
    tau: float = 0.5                  # artifact threshold (SPEC sec. 9 default)
    # effective-rank search budget (CPSearchConfig)
    rank_restarts: int = 4
    rank_max_iter: int = 300
    rank_max_search_rank: int = 40
    shard_size: int = 96              # runs trained together (not in the hash)

    def __post_init__(self):
        if not (self.classes and self.noise and self.layers and self.epochs) or self.replicates < 1:
            raise ConfigError("classes, noise, layers and epochs must be non-empty and replicates >= 1")
        if list(self.epochs) != sorted(set(self.epochs)) or self.epochs[0] < 1:
            raise ConfigError(f"epochs must be increasing and >= 1, got {self.epochs}")
        if not 0.5 <= self.tau <= 1.0:
            raise ConfigError(f"tau must be in [0.5, 1] (at most one artifact per prefix), got {self.tau}")
        if not 0.0 < self.held_out < 1.0:
            raise ConfigError(f"held_out must be in (0, 1), got {self.held_out}")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size must be >= 1, got {self.shard_size}")
        for layer in self.layers:
            AttentionLayerConfig(1, *layer)  # validates the sizes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CompletionsConfig":
        d = dict(d)
        d["database"] = LatentClassConfig(**d["database"])
        d["layers"] = tuple(tuple(layer) for layer in d["layers"])
        for key in ("classes", "noise", "epochs"):
            d[key] = tuple(d[key])
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    @property
    def hash(self) -> str:
        d = self.to_dict()
        d.pop("shard_size")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def rank_config(self) -> CPSearchConfig:
        return CPSearchConfig(restarts=self.rank_restarts, max_iter=self.rank_max_iter,
                              max_search_rank=self.rank_max_search_rank)

    def databases(self) -> list[tuple[int, LatentClassConfig, int]]:
        """``(db_id, generator config, replicate)`` of every database, classes-major."""
        out = []
        for c in self.classes:
            for nz in self.noise:
                for rep in range(self.replicates):
                    out.append((len(out), replace(self.database, n_classes=c, noise=nz), rep))
        return out

    def runs(self) -> list[tuple[int, int, int, int]]:
        """``(run_id, db_id, layer_id, epochs)`` of every planned run."""
        nl, ne = len(self.layers), len(self.epochs)
        return [((d * nl + li) * ne + ei, d, li, e) for d in range(len(self.classes) * len(self.noise) * self.replicates)
                for li in range(nl) for ei, e in enumerate(self.epochs)]


def scale_config(scale: str) -> CompletionsConfig:
    """``paper``: the defaults (48 databases, 8 layers, 4 training lengths, 1,536 runs). ``quick``:
    24 databases, 4 layers, 3 training lengths (288 runs) and 2 restarts per effective-rank
    trial, so that it finishes in a few minutes on 2 CPU cores."""
    if scale == "paper":
        return CompletionsConfig()
    if scale == "quick":
        return CompletionsConfig(name="completions-quick", noise=(0.0, 0.2, 0.5), replicates=2,
                                 layers=QUICK_LAYERS, epochs=(100, 300, 1000), rank_restarts=2)
    raise ConfigError(f"unknown scale {scale!r}; use one of {list(SCALES)}")


def _print(message: str) -> None:
    print(message, flush=True)


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def build_database(config: CompletionsConfig, db_id: int) -> tuple[LatentClassDatabase, Database, Database, np.ndarray]:
    """Database ``db_id`` of the config with its split: ``(drawn, train, held_out, held-out mask)``."""
    _, gen, rep = config.databases()[db_id]
    drawn = latent_class_database(gen, seed=_seed(config.seed, 1, db_id),
                                  name=f"db{db_id:03d}-c{gen.n_classes}-n{gen.noise:g}-r{rep}")
    return drawn, *split_held_out(drawn.database, config.held_out, seed=_seed(config.seed, 2, db_id))


def init_seed(config: CompletionsConfig, db_id: int, layer_id: int) -> int:
    """Initialisation of a (database, layer): the same for every training length."""
    return _seed(config.seed, 3, db_id, layer_id)


# ============================================================================ store
class CompletionsStore(DuckDBStore):
    """The DuckDB file of one completions experiment (tables ``meta``, ``databases``, ``runs``)."""

    TABLES = ("databases", "runs")

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, config: CompletionsConfig):
        super().__init__(path, con)
        self.config = config

    @classmethod
    def open(cls, path: str | Path, config: CompletionsConfig | None = None, *, create: bool = False,
             read_only: bool = False) -> "CompletionsStore":
        """Open the store at ``path`` (with ``create``, make it if missing); with ``config``,
        refuse a store made for another config."""
        path = Path(path)
        if not path.exists():
            if not create or config is None:
                raise ConfigError(f"{path}: no completions result store here")
            return cls._create(path, config)
        con, meta = connect(path, read_only=read_only)
        if meta.get("experiment") != "completions":
            con.close()
            raise ConfigError(f"{path}: not a completions result store (its meta has no experiment = completions; "
                              "a store of `factlab run` or wong2025?); it is never overwritten: pass a new --out")
        stored = CompletionsConfig.from_dict(json.loads(meta["config"]))
        if config is not None and config.hash != meta["config_hash"]:
            con.close()
            raise ConfigError(f"{path}: this store holds results of a different config (hash {meta['config_hash']}, "
                              f"name {stored.name!r}) than the one given (hash {config.hash}, name {config.name!r}); "
                              "it is never overwritten: pass a new --out")
        return cls(path, con, config or stored)

    @classmethod
    def _create(cls, path: Path, config: CompletionsConfig) -> "CompletionsStore":
        from factlab import __version__

        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        con.execute("BEGIN TRANSACTION")
        con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("""CREATE TABLE databases (db_id INTEGER PRIMARY KEY, name TEXT, n_classes INTEGER,
            noise DOUBLE, replicate INTEGER, seed UBIGINT, triples INTEGER, train_triples INTEGER,
            held_out_triples INTEGER, noise_triples INTEGER, held_out_noise INTEGER, subjects INTEGER,
            predicates INTEGER, objects INTEGER, n_tokens INTEGER, train_prefixes INTEGER, prop21_train INTEGER,
            eff_train_lower INTEGER, eff_train INTEGER, eff_train_method TEXT,
            eff_full_lower INTEGER, eff_full INTEGER, eff_full_method TEXT, rank_gap INTEGER,
            rank_seconds DOUBLE, generator_json TEXT)""")
        con.execute("""CREATE TABLE runs (run_id INTEGER PRIMARY KEY, db_id INTEGER, layer_id INTEGER,
            epochs INTEGER, d_model INTEGER, n_heads INTEGER, d_head_qk INTEGER, d_head_vo INTEGER,
            layer_bound INTEGER, params INTEGER, init_seed UBIGINT, status TEXT, epochs_run INTEGER,
            loss DOUBLE, train_accuracy DOUBLE, train_tau_accuracy DOUBLE, tau DOUBLE, train_triples INTEGER,
            artifacts INTEGER, artifact_ratio DOUBLE, on_training_pairs INTEGER, novel_artifacts INTEGER,
            generalizations INTEGER, hallucinations INTEGER, held_out_inside INTEGER,
            held_out_outside INTEGER, generalization_rate DOUBLE, generalization_error DOUBLE,
            held_out_argmax DOUBLE, train_config TEXT, factlab_version TEXT, torch_version TEXT,
            host TEXT, shard_seconds DOUBLE, finished_at TIMESTAMP)""")
        meta = {"experiment": "completions", "config": json.dumps(config.to_dict(), sort_keys=True),
                "config_hash": config.hash, "factlab_version": __version__, "torch_version": torch.__version__,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        for item in meta.items():
            con.execute("INSERT INTO meta VALUES (?, ?)", list(item))
        con.execute("COMMIT")
        return cls(path, con, config)

    def ids(self, table: str) -> set[int]:
        key = {"databases": "db_id", "runs": "run_id"}[table]
        return {r[0] for r in self.con.execute(f"SELECT {key} FROM {table}").fetchall()}

    def frame(self, table: str) -> pd.DataFrame:
        key = {"databases": "db_id", "runs": "run_id"}[table]
        return self.con.execute(f"SELECT * FROM {table} ORDER BY {key}").df()

    def results(self) -> pd.DataFrame:
        """Runs joined with their database's structure and effective ranks."""
        return self.con.execute("""SELECT r.*, d.name AS db_name, d.n_classes, d.noise, d.eff_train, d.eff_full,
            d.rank_gap, d.train_prefixes FROM runs r JOIN databases d USING (db_id) ORDER BY r.run_id""").df()


# ============================================================================ running
def database_row(config: CompletionsConfig, db_id: int) -> dict:
    """The ``databases`` row of ``db_id``: structure, sizes and both effective-rank estimates."""
    drawn, train_db, held, held_mask = build_database(config, db_id)
    _, gen, rep = config.databases()[db_id]
    start = time.perf_counter()
    rc = config.rank_config()
    eff_t = effective_rank(train_db, config=rc, seed=config.seed)
    eff_f = effective_rank(drawn.database, config=rc, seed=config.seed)
    K, Q, V = train_db.shape
    return {"db_id": db_id, "name": drawn.database.name, "n_classes": gen.n_classes, "noise": gen.noise,
            "replicate": rep, "seed": _seed(config.seed, 1, db_id), "triples": len(drawn.database),
            "train_triples": len(train_db), "held_out_triples": len(held),
            "noise_triples": int(drawn.noise.sum()), "held_out_noise": int(drawn.noise[held_mask].sum()),
            "subjects": K, "predicates": Q, "objects": V, "n_tokens": drawn.database.n_tokens,
            "train_prefixes": K * Q, "prop21_train": proposition_2_1(train_db),
            "eff_train_lower": eff_t.lower.value, "eff_train": eff_t.upper.value, "eff_train_method": eff_t.upper.method,
            "eff_full_lower": eff_f.lower.value, "eff_full": eff_f.upper.value, "eff_full_method": eff_f.upper.method,
            "rank_gap": eff_f.upper.value - eff_t.upper.value, "rank_seconds": time.perf_counter() - start,
            "generator_json": json.dumps(asdict(gen), sort_keys=True)}


def train_config(config: CompletionsConfig, epochs: int) -> TrainConfig:
    """Full-batch Adam for exactly ``epochs`` epochs (no early stopping), τ-accuracy at ``tau``."""
    return TrainConfig(max_epochs=epochs, optimizer=Adam(lr=config.lr), stop_tau=None, taus=(config.tau,))


def run_metrics(stack: AttentionStack, model: int, train_db: Database, held: Database, tau: float) -> dict:
    """Artifacts at ``tau`` of model ``model`` and their split against ``held``, plus the argmax
    accuracy on held-out facts inside the training K x Q."""
    if held.tokens != train_db.tokens:
        raise ConfigError("held-out facts must share the training vocabulary (see split_held_out)")
    a = artifacts(stack, train_db, model=model, held_out=held, tau=tau)
    inside = a.n_held_out - len(a.held_out_outside)
    P = next_token_probabilities(stack, train_db, model).numpy()  # (K, Q, T)
    sub = {t: i for i, t in enumerate(train_db.subjects.tolist())}
    pre = {t: j for j, t in enumerate(train_db.predicates.tolist())}
    trained = {(k, q) for k, q, _ in train_db.facts.tolist()}
    hits = [P[sub[k], pre[q]].argmax() == v for k, q, v in held.facts.tolist()
            if k in sub and q in pre and (k, q) not in trained]  # the held-out facts inside K x Q
    rate = a.generalization_rate
    return {"tau": tau, "train_triples": len(train_db), "artifacts": a.n_artifacts, "artifact_ratio": a.ratio,
            "on_training_pairs": a.on_training_pairs, "novel_artifacts": a.n_artifacts - a.on_training_pairs,
            "generalizations": a.n_generalizations, "hallucinations": a.n_hallucinations,
            "held_out_inside": inside, "held_out_outside": len(a.held_out_outside),
            "generalization_rate": rate, "generalization_error": None if rate is None else 1.0 - rate,
            "held_out_argmax": float(np.mean(hits)) if hits else None}


def train_runs(config: CompletionsConfig, runs: list[tuple[int, int, int, int]]) -> tuple[list[dict], AttentionStack]:
    """Train runs of one training length together; returns their ``runs`` rows and the trained stack."""
    from factlab import __version__

    epochs = {e for *_, e in runs}
    if len(epochs) != 1:
        raise ConfigError(f"runs trained together must share one training length, got {sorted(epochs)}")
    tc = train_config(config, epochs.pop())
    start = time.perf_counter()
    dbs = {d: build_database(config, d)[:3] for d in sorted({d for _, d, _, _ in runs})}
    configs, weights = [], []
    for _, d, li, _ in runs:
        c = AttentionLayerConfig(dbs[d][1].n_tokens, *config.layers[li])
        configs.append(c)
        weights.append(AttentionStack.init([c], seed=init_seed(config, d, li)).model_weights(0))
    stack = AttentionStack.from_weights(configs, weights)
    result = train(stack, FixedData.from_databases([dbs[d][1] for _, d, _, _ in runs]), tc)
    rows = []
    for i, ((run_id, d, li, e), r) in enumerate(zip(runs, result.results)):
        dm, h, qk, vo = config.layers[li]
        b = layer_bounds(dm, h, qk, vo, dbs[d][1].shape[1])
        rows.append({"run_id": run_id, "db_id": d, "layer_id": li, "epochs": e, "d_model": dm, "n_heads": h,
                     "d_head_qk": qk, "d_head_vo": vo, "layer_bound": b["lower_estimate"], "params": b["params"],
                     "init_seed": init_seed(config, d, li), "status": r.status, "epochs_run": r.epochs,
                     "loss": r.loss, "train_accuracy": r.accuracy, "train_tau_accuracy": r.tau_accuracy[config.tau],
                     **run_metrics(result.model, i, dbs[d][1], dbs[d][2], config.tau)})
    seconds = time.perf_counter() - start
    now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    record = {**tc.to_dict(), "kernel_used": result.kernel, "numba_version": attention_kernel.version()}
    prov = {"train_config": json.dumps(record, sort_keys=True, default=str), "factlab_version": __version__,
            "torch_version": torch.__version__, "host": platform.node(), "shard_seconds": seconds, "finished_at": now}
    return [{**row, **prov} for row in rows], result.model


@dataclass(frozen=True)
class RunSummary:
    databases_added: int
    trained: int
    skipped: int
    seconds: float


def run(config: CompletionsConfig, store_path: str | Path, *, threads: int | None = 1,
        log: Callable[[str], None] = _print) -> RunSummary:
    """Run (or resume) ``config`` into the store at ``store_path``: effective ranks of the
    databases not yet stored, then every planned run not yet stored, one transaction per
    database and per shard of runs. ``threads``: torch intra-op threads meanwhile (1 is the
    fastest for these tiny tensors, several times faster than 2 on a busy 2-core machine;
    None leaves torch's setting); restored afterwards."""
    start = time.perf_counter()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(config, store_path, log, start)
    finally:
        torch.set_num_threads(before)


def _run(config: CompletionsConfig, store_path: str | Path, log: Callable[[str], None], start: float) -> RunSummary:
    with CompletionsStore.open(store_path, config, create=True) as store:
        added = 0
        for d, *_ in config.databases():
            if d not in store.ids("databases"):
                added += store.insert("databases", [database_row(config, d)])
        if added:
            log(f"effective ranks of {added} databases in {time.perf_counter() - start:.0f} s")
        done = store.ids("runs")
        pending = [r for r in config.runs() if r[0] not in done]
        for e in config.epochs:
            todo = [r for r in pending if r[3] == e]
            for s in range(0, len(todo), config.shard_size):
                shard = todo[s:s + config.shard_size]
                rows, _ = train_runs(config, shard)
                store.insert("runs", rows)
                log(f"epochs {e}: {s + len(shard)}/{len(todo)} runs ({rows[0]['shard_seconds']:.1f} s for this shard)")
    return RunSummary(added, len(pending), len(config.runs()) - len(pending), time.perf_counter() - start)


# ============================================================================ claims
def _spearman(x, y) -> float:
    x, y = pd.Series(np.asarray(x, dtype=float)), pd.Series(np.asarray(y, dtype=float))
    if min(x.nunique(), y.nunique()) < 2:
        return float("nan")  # undefined for a constant input
    return float(x.corr(y, method="spearman"))


def _claim(cid, figure, claim, paper, ours, test, holds) -> dict:
    return {"id": cid, "figure": figure, "claim": claim, "paper": paper, "ours": _no_nan(ours), "test": test,
            "holds": bool(holds)}


def _no_nan(x):
    """NaN (an undefined correlation) as None, so that claims.json is strict JSON."""
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    return None if isinstance(x, float) and np.isnan(x) else x


def completions_claims(runs: pd.DataFrame) -> list[dict]:
    """The findings of SPEC sec. 9, each tested on the joined runs (:meth:`CompletionsStore.results`).
    Claims on size and generalization use the runs of the longest training length."""
    if runs.empty:
        return [_claim(cid, "-", "no runs", "-", 0, "some runs trained", False)
                for cid in ("artifacts_several_times", "artifacts_more_in_smaller_models",
                            "artifacts_fewer_with_overfitting", "generalization_error_rank_gap")]
    e_max, e_min = runs["epochs"].max(), runs["epochs"].min()
    last = runs[runs["epochs"] == e_max]
    out = []
    med = float(last["artifact_ratio"].median())
    room = float((last["train_prefixes"] / last["train_triples"]).median())  # at most one artifact per prefix
    out.append(_claim(
        "artifacts_several_times", "artifacts_vs_layer",
        "artifacts are common: several times the number of training triples", "several times",
        {"median_ratio": round(med, 3), "mean_ratio": round(float(last["artifact_ratio"].mean()), 3),
         "fraction_of_runs_ratio_ge_2": round(float((last["artifact_ratio"] >= 2).mean()), 3),
         "median_largest_possible_ratio": round(room, 3), "epochs": int(e_max)},
        f"median over runs at {e_max} epochs of artifacts / training triples >= 2", med >= 2))
    rho = _spearman(last["layer_bound"], last["artifacts"])
    mem = last[last["train_tau_accuracy"] >= 1.0]
    rho_mem = _spearman(mem["layer_bound"], mem["artifacts"]) if mem["layer_bound"].nunique() > 1 else float("nan")
    per_layer = last.groupby("layer_bound")["artifact_ratio"].mean()
    out.append(_claim(
        "artifacts_more_in_smaller_models", "artifacts_vs_layer",
        "artifacts are more numerous in smaller (lower rank) models", "more in smaller models",
        {"spearman_layer_bound_artifacts": round(rho, 3), "mean_ratio_per_layer_bound":
            {str(int(k)): round(float(v), 3) for k, v in per_layer.items()},
         "spearman_among_memorizing_runs": None if np.isnan(rho_mem) else round(rho_mem, 3),
         "memorizing_runs": len(mem)},
        f"Spearman correlation of the layer bound (9) and the artifact count over runs at {e_max} epochs < 0",
        rho < 0))
    key = ["db_id", "layer_id"]
    a = runs[runs["epochs"] == e_min].set_index(key)
    b = last.set_index(key)
    both = a.merge(b, left_index=True, right_index=True, suffixes=("_short", "_long"))
    diff = float((both["artifacts_long"] - both["artifacts_short"]).mean()) if len(both) else float("nan")
    by_e = runs.groupby("epochs")[["artifact_ratio", "loss", "train_accuracy"]].mean()
    loss_falls = bool(by_e["loss"].iloc[-1] < by_e["loss"].iloc[0])
    out.append(_claim(
        "artifacts_fewer_with_overfitting", "artifacts_vs_epochs",
        "artifacts are fewer when models overfit (train longer)", "fewer with longer training",
        {"mean_change_in_artifacts": round(diff, 3), "pairs": len(both),
         "fraction_of_pairs_with_fewer": round(float((both["artifacts_long"] < both["artifacts_short"]).mean()), 3),
         "per_epochs": {str(int(e)): {k: round(float(v), 4) for k, v in row.items()} for e, row in by_e.iterrows()}},
        f"same (database, layer, initialisation): mean of artifacts({e_max} epochs) - artifacts({e_min} epochs) < 0, "
        "with the mean training loss lower at the longer length (the models fit their data more closely)",
        loss_falls and diff < 0))
    g = last.dropna(subset=["generalization_error"])
    rho_g = _spearman(g["rank_gap"], g["generalization_error"])
    cut = float(g["rank_gap"].median()) if len(g) else float("nan")
    close, far = g[g["rank_gap"] <= cut], g[g["rank_gap"] > cut]
    out.append(_claim(
        "generalization_error_rank_gap", "generalization_vs_rank_gap",
        "generalization error is lower when the effective rank of train + held-out facts is close to that of "
        "the training facts", "lower error for a small gap",
        {"spearman_gap_error": round(rho_g, 3), "median_gap": cut,
         "mean_error_gap_le_median": round(float(close["generalization_error"].mean()), 3) if len(close) else None,
         "mean_error_gap_gt_median": round(float(far["generalization_error"].mean()), 3) if len(far) else None,
         "runs": len(g), "spearman_per_noise_level": {
             f"{nz:g}": round(_spearman(h["rank_gap"], h["generalization_error"]), 3)
             for nz, h in (g.groupby("noise") if "noise" in g else [])}},
        f"Spearman correlation of the gap eff(train + held out) - eff(train) and the generalization error over "
        f"runs at {e_max} epochs > 0", rho_g > 0))
    return out


# ============================================================================ report
def config_text(config: CompletionsConfig) -> str:
    """The config, one field a line, with the choice behind each (shown in the report)."""
    why = {
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
    lines = [f"# config hash {config.hash}"]
    for k, v in config.to_dict().items():
        lines.append(f"{k} = {json.dumps(v)}" + (f"    # {why[k]}" if k in why else ""))
    lines += ["", ("# generalization error = 1 - (held-out facts inside the training K x Q predicted with p >= tau)"
                   " / (held-out facts inside)"),
              "# rank gap = eff(train + held out) - eff(train), both upper ends of factlab.tensors.rank.effective_rank"]
    return "\n".join(lines)


def render(store_path: str | Path, out: str | Path, *, config: CompletionsConfig | None = None) -> dict:
    """Figures, claims.json and report.html from a store; returns the claims document."""
    from factlab.report import figures as F
    from factlab.report.html import write_report

    out = Path(out)
    with CompletionsStore.open(store_path, config, read_only=config is None) as store:
        config, dbs, runs, meta = store.config, store.frame("databases"), store.results(), store.meta()
    figdir = out / "figures"
    pngs = []
    if not runs.empty:
        pngs.append(F.save(F.figure_artifacts_vs_layer(runs), figdir, "artifacts_vs_layer")[0])
        pngs.append(F.save(F.figure_artifacts_vs_epochs(runs), figdir, "artifacts_vs_epochs")[0])
        pngs.append(F.save(F.figure_generalization_vs_rank_gap(runs), figdir, "generalization_vs_rank_gap")[0])
    claims = completions_claims(runs)
    provenance = {**{k: v for k, v in meta.items() if k != "config"}, "databases": len(dbs), "runs": len(runs),
                  "runs_planned": len(config.runs()), "python": platform.python_version(),
                  "torch": torch.__version__, "host": platform.node()}
    doc = {"paper": "Wong 2025b, arXiv 2502.17305 (SPEC sec. 9)", "config_name": config.name,
           "config_hash": config.hash, "tau": config.tau, "held_out": config.held_out, "claims": claims,
           "provenance": provenance}
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.json").write_text(json.dumps(doc, indent=2, default=str))
    held = sum(c["holds"] for c in claims)
    write_report(out / "report.html", title=f"Tensor completions: artifacts, generalization, hallucination ({config.name})",
                 figures=pngs, claims=claims, spec_toml=config_text(config), provenance=provenance,
                 summary=f"{len(dbs)} databases with latent classes, {len(config.layers)} layers, training lengths "
                         f"{list(config.epochs)}: {len(runs)} runs; artifacts at tau = {config.tau:g}, "
                         f"{config.held_out:.0%} of facts held out; {held} of {len(claims)} findings hold.")
    return doc


def reproduce(scale: str | CompletionsConfig = "quick", out: str | Path = "completions", *,
              threads: int | None = 1, log: Callable[[str], None] = _print) -> dict:
    """Run (or resume) a scale, or a config, into ``out/results.duckdb`` (``threads`` as in
    :func:`run`), then :func:`render`. Returns the claims document with ``seconds`` added."""
    start = time.perf_counter()
    config = scale if isinstance(scale, CompletionsConfig) else scale_config(scale)
    out = Path(out)
    store_path = out / "results.duckdb"
    if store_path.exists():
        CompletionsStore.open(store_path, config).close()  # refuses a foreign store before any work
        log(f"resuming {store_path}")
    summary = run(config, store_path, threads=threads, log=log)
    doc = render(store_path, out, config=config)
    doc["seconds"] = time.perf_counter() - start
    log(f"{summary.trained} runs trained, {summary.skipped} already done; wrote {out}/figures, "
        f"{out}/claims.json, {out}/report.html in {doc['seconds']:.0f} s")
    return doc
