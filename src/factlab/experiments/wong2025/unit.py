"""One unit of Wong (2025, sec. 4)'s experiment: a shard of (layer, database) pairs trained together."""

from __future__ import annotations

import json

import torch

from factlab._numba import version as numba_version
from factlab.experiments.wong2025.config import ExperimentSpec
from factlab.experiments.wong2025.plan import Task
from factlab.keyed_random import model_keys
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train


def tau_column(tau: float) -> str:
    """Column name of the softmax >= τ accuracy: ``acc_tau_0_95`` for τ = 0.95."""
    return "acc_tau_" + f"{tau:g}".replace(".", "_")


def train_config(spec: ExperimentSpec) -> tuple[TrainConfig, RunConfig]:
    """The engine's configs for a spec: what to train (full-batch epochs, so no shuffling
    depends on shards) and how to run it."""
    t, r = spec.training, spec.runner
    return (TrainConfig(max_epochs=t.max_epochs, optimizer=t.optimizer_config(),
                        stop_tau=t.stop_tau if t.early_stop else None, eval_every=t.eval_every,
                        taus=tuple(spec.thresholds.taus)),
            RunConfig(chunk_size=r.chunk_size, device=r.device, dtype=t.dtype, threads=r.threads or None,
                      kernel=r.kernel))


def train_shard(spec: ExperimentSpec, tasks: list[Task]) -> list[dict]:
    """Train every pair of a shard together with the engine; one ``runs`` row per pair.

    Each pair's layer is initialised alone from its own seed (``AttentionStack.init`` of a
    stack of one with the pair's ``init_seed``) and the stack is assembled from those weights,
    so a pair starts from the same point whatever shard it lands in; the engine's padding is
    inert, so its result does not depend on its neighbours (bit for bit with the compiled
    step; up to float rounding with autograd)."""
    train_cfg, run_cfg = train_config(spec)
    configs = [AttentionLayerConfig(n_tokens=t.database.n_tokens, **t.layer) for t in tasks]
    dtype = getattr(torch, run_cfg.dtype)
    scale = spec.training.init_scale            # 1.0 by default: the weights as drawn, bit for bit
    weights = []
    for c, t in zip(configs, tasks):
        drawn = AttentionStack.init([c], seed=t.pair.init_seed, dtype=dtype).model_weights(0)
        weights.append({n: w * scale for n, w in drawn.items()})
    stack = AttentionStack.from_weights(configs, weights)
    data = FixedData.from_databases([t.database for t in tasks], keys=model_keys(spec.seed, [t.pair.pair_id
                                                                                             for t in tasks]))
    result = train(stack, data, train_cfg, run_cfg)
    record = json.dumps({"engine": {**train_cfg.to_dict(), **run_cfg.to_dict()}, "spec_hash": spec.hash,
                         "kernel_used": result.kernel, "numba_version": numba_version()}, sort_keys=True)
    rows = []
    for t, r in zip(tasks, result.results):
        row = {"pair_id": t.pair.pair_id, "db_id": t.pair.db_id, "layer_id": t.pair.layer_id,
               "status": r.status, "epochs": r.epochs, "loss": r.loss, "accuracy": r.accuracy}
        row.update({tau_column(tau): acc for tau, acc in r.tau_accuracy.items()})
        row.update({"init_seed": t.pair.init_seed, "train_config": record, "device": run_cfg.device,
                    "shard_seconds": result.seconds})
        rows.append(row)
    return rows
