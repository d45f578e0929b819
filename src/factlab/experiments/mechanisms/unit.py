"""A unit of the mechanisms comparison: probes of one mechanism on their databases, trained as one stack."""

from __future__ import annotations

import json

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.experiments.core.config import stable_key as key
from factlab.experiments.core.runner import row_provenance
from factlab.experiments.mechanisms.config import MechanismsConfig
from factlab.experiments.mechanisms.ladders import describe, model_config, trained_params
from factlab.experiments.mechanisms.plan import Probe
from factlab.keyed_random import model_keys
from factlab.models.attention_layer import AttentionStack
from factlab.models.recall_transformer import RecallTransformerStack
from factlab.models.transformer import TransformerStack
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import Adam, AdamW

STACKS = {"attention": AttentionStack, "recall": RecallTransformerStack, "geometric": TransformerStack}


def tau_column(tau: float) -> str:
    return "acc_tau_" + f"{tau:g}".replace(".", "_")


def mechanism_data(mechanism: str, dbs: list[Database], keys: np.ndarray) -> FixedData:
    """The facts of each database as the mechanism reads them (padded to the largest):
    attention and geometric (k, q) -> v at q; recall (k, q, EOS) -> v at EOS, v as an answer
    id among the database's objects."""
    n = max(len(db) for db in dbs)
    width = 3 if mechanism == "recall" else 2
    inputs = torch.zeros(len(dbs), n, width, dtype=torch.long)
    targets = torch.zeros(len(dbs), n, 1, dtype=torch.long)
    valid = torch.zeros(len(dbs), n, dtype=torch.bool)
    for i, db in enumerate(dbs):
        seq = torch.from_numpy(db.sequences().astype(np.int64))                      # (|D|, 3): k, q, v
        inputs[i, :len(db), :2] = seq[:, :2]
        if mechanism == "recall":
            inputs[i, :, 2] = db.n_tokens                                             # EOS, the query token
            inputs[i, len(db):, :2] = 0
            targets[i, :len(db), 0] = torch.from_numpy(np.searchsorted(db.objects, db.sequences()[:, 2]))
        else:
            targets[i, :len(db), 0] = seq[:, 2]
        valid[i, :len(db)] = True
    return FixedData(inputs, targets, valid, (width - 1,), keys=keys)


def train_probes(config: MechanismsConfig, probes: list[Probe], dbs: list[Database]) -> list[dict]:
    """Train one mechanism's probes, each on its database and from ``training.restarts``
    initialisations, until every fact is memorized (argmax accuracy 1) or the budget runs
    out; a probe memorizes if one of its restarts does."""
    mechanism = probes[0].mechanism
    t = config.training
    runs = [(p, r) for p in probes for r in range(t.restarts)]                  # restart 0: key(seed, probe)
    mine = [dbs[p.db_id] for p, _ in runs]
    configs = [model_config(mechanism, config.ladder[p.rung], db) for (p, _), db in zip(runs, mine)]
    seeds = [key(config.seed, p.id, *([r] if r else [])) for p, r in runs]
    stack_cls = STACKS[mechanism]
    weights = [stack_cls.init([c], seed=s).model_weights(0) for c, s in zip(configs, seeds)]
    stack = stack_cls.from_weights(configs, weights)
    data = mechanism_data(mechanism, mine, model_keys(config.seed, seeds))
    optimizer = Adam(lr=t.lr) if mechanism == "attention" else AdamW(lr=t.lr, weight_decay=0.0)
    tc = TrainConfig(max_steps=t.steps, eval_every=t.eval_every, stop_tau=None, stop_accuracy=1.0, taus=t.taus,
                     optimizer=optimizer)
    run = RunConfig(chunk_size=config.runner.unit_models)
    res = train(stack, data, tc, run)
    prov = row_provenance(tc, run, res.kernel)
    rows = []
    for i, p in enumerate(probes):
        mine_r = res.results[i * t.restarts:(i + 1) * t.restarts]
        won = [r.best_accuracy >= 1.0 for r in mine_r]
        # the reported restart: the fastest to memorize, or (none did) the most accurate
        best = min(range(t.restarts), key=lambda j: (not won[j], mine_r[j].steps if won[j] else -mine_r[j].best_accuracy))
        r, c = mine_r[best], configs[i * t.restarts]
        row = {"db_id": p.db_id, "mechanism": mechanism, "rung": p.rung, "d": config.ladder[p.rung],
               "params": trained_params(mechanism, c), "config_json": json.dumps(describe(mechanism, c)),
               "restart": best, "restarts_memorized": int(sum(won)),
               "accuracy": r.accuracy, "best_accuracy": r.best_accuracy, "loss": r.loss, "steps": r.steps,
               "status": r.status, "memorized": any(won), **prov}
        row.update({tau_column(tau): acc for tau, acc in r.tau_accuracy.items()})
        rows.append(row)
    return rows
