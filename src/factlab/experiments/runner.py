"""Run an experiment into a result store, resumably (SPEC sec. 6).

:func:`run_experiment` fills the store in steps, each committed on its own: the layers, the
databases (|D| and Proposition 2.1), the planned pairs, the databases' rank intervals (in
batches), then the training shards. The driver is the one writer; a backend only computes.
A run stopped at any point (Ctrl-C, ``kill -9``) is continued by calling it again on the
same store: committed steps are skipped, finished pairs are never retrained, and the pairs
that remain are trained from the same seeds in the same shards as in an uninterrupted run.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from factlab.errors import ConfigError
from factlab.experiments import plan
from factlab.experiments.backends import make_backend
from factlab.models import attention_kernel
from factlab.experiments.spec import ExperimentSpec
from factlab.experiments.store import ResultStore, provenance_json
from factlab.training.engine import RunConfig, TrainConfig
from factlab.training.optim import Adam

RANK_BATCH = 137  # databases per committed batch of rank intervals (one batched CP search each)


@dataclass(frozen=True)
class RunSummary:
    store: Path
    pairs: int           # planned
    trained: int         # trained by this call
    skipped: int         # already in the store
    seconds: float


def train_config(spec: ExperimentSpec) -> tuple[TrainConfig, RunConfig]:
    """The engine's configs for a spec: what to train (full-batch epochs, so no shuffling
    depends on shards) and how to run it."""
    t, r = spec.training, spec.runner
    return (TrainConfig(max_epochs=t.max_epochs, optimizer=Adam(lr=t.lr), stop_tau=t.stop_tau,
                        eval_every=t.eval_every, taus=tuple(spec.thresholds.taus)),
            RunConfig(chunk_size=r.chunk_size, device=r.device, dtype=t.dtype, threads=r.threads or None,
                      kernel=r.kernel))


def provenance() -> dict:
    from factlab import __version__
    return {"factlab_version": __version__, "torch_version": torch.__version__}


def run_experiment(spec: ExperimentSpec, store_path: str | Path, *, resume: bool = False,
                   backend: str = "local", address: str | None = None, progress: bool = True,
                   on_commit: Callable[[int, int], None] | None = None, log: Callable[[str], None] = print
                   ) -> RunSummary:
    """Run ``spec`` into the store at ``store_path``.

    A new store is created; an existing one is continued only with ``resume`` (and only if
    it was made for this spec). ``on_commit(shard_index, n_rows)`` is called after each
    shard's rows are committed (a hook for tests and monitors).
    """
    start = time.perf_counter()
    store_path = Path(store_path)
    if store_path.exists() and not resume:
        raise ConfigError(f"{store_path}: a result store already exists; pass --resume to continue it "
                          "or choose a new --out")
    store = ResultStore.open_or_create(store_path, spec, provenance=provenance())
    try:
        dbs = plan.databases(spec)
        layer_list = plan.layers(spec)
        pair_list = plan.pairs(spec)
        if store.count("layers") < len(layer_list):
            store.insert("layers", plan.layer_rows(layer_list))
        if store.count("databases") < len(dbs):
            store.insert("databases", plan.database_rows(spec, dbs))
        if store.count("pairs") < len(pair_list):
            store.insert("pairs", plan.pair_rows(pair_list))
        if spec.databases.rank_interval:
            _fill_rank_intervals(spec, store, dbs, log, progress)
        done = store.done_pairs()
        todo = [p for p in pair_list if p.pair_id not in done]
        shard_list = plan.shards(spec, todo, dbs)
        config = train_config(spec)
        record = {"engine": {**config[0].to_dict(), **config[1].to_dict()}, "spec_hash": spec.hash}
        be = make_backend(backend, address, threads=spec.runner.threads)
        bar = _bar(len(pair_list), len(done), progress, desc=f"{spec.name}: training pairs")
        trained = 0
        try:
            for i, rows in be.map([plan.tasks(s, dbs, layer_list) for s in shard_list], config,
                                  progress=bar.update):
                now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
                for row in rows:
                    # the step that ran, and the compiler behind it, go with the engine config
                    used = {"kernel_used": row.pop("kernel"), "numba_version": attention_kernel.version()}
                    row.update({"train_config": json.dumps({**record, **used}, sort_keys=True),
                                "backend": be.name, "finished_at": now})
                trained += store.insert("runs", rows)
                if on_commit is not None:
                    on_commit(i, len(rows))
        finally:
            bar.close()
            be.close()
        return RunSummary(store_path, len(pair_list), trained, len(done), time.perf_counter() - start)
    finally:
        store.close()


def rank_module_available() -> bool:
    try:
        return importlib.util.find_spec("factlab.tensors.rank") is not None
    except ModuleNotFoundError:
        return False


def _fill_rank_intervals(spec, store: ResultStore, dbs, log, progress) -> None:
    """Rank intervals of the databases whose interval is still missing, committed in batches.
    Left NULL (with a note) when :mod:`factlab.tensors.rank` is not available."""
    missing = sorted(r[0] for r in store.con.execute(
        "SELECT db_id FROM databases WHERE rank_json IS NULL").fetchall())
    if not missing:
        return
    if not rank_module_available():
        log("note: factlab.tensors.rank is not available; rank intervals left empty (|D| and Prop. 2.1 stored)")
        return
    from factlab.tensors import rank as rank_mod

    config = rank_config(spec, rank_mod.CPSearchConfig)
    bar = _bar(len(dbs), len(dbs) - len(missing), progress, desc=f"{spec.name}: rank intervals", unit="db")
    try:
        for s in range(0, len(missing), RANK_BATCH):
            ids = missing[s:s + RANK_BATCH]
            intervals = _rank_intervals(rank_mod, [dbs[i] for i in ids], config, spec.databases.seed)
            store.fill_ranks([{"db_id": i, "rank_lower": iv.lower.value, "rank_upper": iv.upper.value,
                               "rank_certified": bool(iv.certified), "rank_json": provenance_json(iv.to_dict())}
                              for i, iv in zip(ids, intervals)])
            bar.update(len(ids))
    finally:
        bar.close()


def rank_config(spec: ExperimentSpec, cls):
    """The CP-search config of the spec's rank intervals (0 in the spec: the module's default)."""
    base, d = cls(), spec.databases
    changes = {}
    if d.rank_restarts:
        changes["restarts"] = d.rank_restarts
    if d.rank_max_iter:
        changes["max_iter"] = d.rank_max_iter
        changes["min_iter"] = min(base.min_iter, d.rank_max_iter)
    return replace(base, **changes)


def _rank_intervals(rank_mod, dbs, config, seed):
    if hasattr(rank_mod, "rank_intervals"):
        return list(rank_mod.rank_intervals(dbs, config=config, seed=seed))
    return [rank_mod.rank_interval(db, config=config, seed=seed) for db in dbs]


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, initial: int, enabled: bool, desc: str, unit: str = "pair"):
    """A progress bar with ETA over pairs (tqdm), or nothing."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.1)
