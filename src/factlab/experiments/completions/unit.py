"""The units of the completions study: a database's effective ranks, and a shard of training runs."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict

import numpy as np
import torch

from factlab._numba import version as numba_version
from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.experiments.completions.config import CompletionsConfig, _seed, build_database, init_seed
from factlab.keyed_random import model_keys
from factlab.models.artifacts import artifacts, next_token_probabilities
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.models.bounds import layer_bounds
from factlab.tensors.database_tensor import proposition_2_1
from factlab.tensors.rank import effective_rank
from factlab.training.data import FixedData
from factlab.training.engine import TrainConfig, train
from factlab.training.optim import Adam


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
            "train_prefixes": K * Q if config.artifact_prefixes == "kq" else train_db.n_tokens ** 2,
            "prop21_train": proposition_2_1(train_db),
            "eff_train_lower": eff_t.lower.value, "eff_train": eff_t.upper.value, "eff_train_method": eff_t.upper.method,
            "eff_full_lower": eff_f.lower.value, "eff_full": eff_f.upper.value, "eff_full_method": eff_f.upper.method,
            "rank_gap": eff_f.upper.value - eff_t.upper.value, "rank_seconds": time.perf_counter() - start,
            "generator_json": json.dumps(asdict(gen), sort_keys=True)}


def train_config(config: CompletionsConfig, epochs: int) -> TrainConfig:
    """Full-batch Adam for exactly ``epochs`` epochs (no early stopping), τ-accuracy at ``tau``."""
    return TrainConfig(max_epochs=epochs, optimizer=Adam(lr=config.lr), stop_tau=None, taus=(config.tau,))


def run_metrics(stack: AttentionStack, model: int, train_db: Database, held: Database, tau: float,
                prefixes: str = "kq") -> dict:
    """Artifacts at ``tau`` over ``prefixes`` of model ``model`` and their split against
    ``held``, plus the argmax accuracy on held-out facts inside the training K x Q."""
    if held.tokens != train_db.tokens:
        raise ConfigError("held-out facts must share the training vocabulary (see split_held_out)")
    a = artifacts(stack, train_db, model=model, held_out=held, tau=tau, prefixes=prefixes)
    inside = a.n_held_out - len(a.held_out_outside)
    P = next_token_probabilities(stack, train_db, model).numpy()  # (|K|, |Q|, V)
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
    data = FixedData.from_databases([dbs[d][1] for _, d, _, _ in runs], keys=model_keys(config.seed,
                                                                                        [run[0] for run in runs]))
    result = train(stack, data, tc)
    rows = []
    for i, ((run_id, d, li, e), r) in enumerate(zip(runs, result.results)):
        dm, h, qk, vo = config.layers[li]
        b = layer_bounds(dm, h, qk, vo, dbs[d][1].shape[1])
        rows.append({"run_id": run_id, "db_id": d, "layer_id": li, "epochs": e, "d_model": dm, "n_heads": h,
                     "d_head_qk": qk, "d_head_vo": vo, "layer_bound": b["lower_estimate"], "params": b["params"],
                     "init_seed": init_seed(config, d, li), "status": r.status, "epochs_run": r.epochs,
                     "loss": r.loss, "train_accuracy": r.accuracy, "train_tau_accuracy": r.tau_accuracy[config.tau],
                     **run_metrics(result.model, i, dbs[d][1], dbs[d][2], config.tau, config.artifact_prefixes)})
    seconds = time.perf_counter() - start
    record = {**tc.to_dict(), "kernel_used": result.kernel, "numba_version": numba_version()}
    prov = {"train_config": json.dumps(record, sort_keys=True, default=str), "factlab_version": __version__,
            "torch_version": torch.__version__, "host": platform.node(), "shard_seconds": seconds}
    return [{**row, **prov} for row in rows], result.model
