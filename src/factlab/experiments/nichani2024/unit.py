"""The units of Nichani et al. (2024)'s reproduction: a stack of probes, a block of the trade-off
grid, Figure 5's run. Each is a pure function of (config, unit)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import torch

from factlab.databases.recall_task import RecallTaskConfig, RecallTasks, answer_table
from factlab.experiments.core.runner import row_provenance
from factlab.experiments.nichani2024.config import NichaniConfig
from factlab.experiments.nichani2024.plan import Probe, key, model_seed
from factlab.keyed_random import model_keys
from factlab.models.memories import (LinearMemoryConfig, LinearMemoryStack, MLPMemoryConfig, MLPMemoryStack,
                                     POSITIONS, memory_dataset)
from factlab.models.recall_transformer import (LinearAttentionConfig, LinearAttentionStack, RecallTransformerConfig,
                                               RecallTransformerStack)
from factlab.training.data import FixedData, LastTokenSampler, StreamData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import SGD, AdamW


def _run_config(config: NichaniConfig) -> RunConfig:
    return RunConfig(dtype=config.dtype, chunk_size=config.runner.unit_models)


def _init(stack_cls, configs, seeds, dtype):
    """A stack whose model i is drawn from its own seed ``seeds[i]`` (alone, then padded)."""
    weights = [stack_cls.init([c], seed=s, dtype=dtype).model_weights(0) for c, s in zip(configs, seeds)]
    return stack_cls.from_weights(configs, weights)


# ============================================================================ memories
def memory_config(config: NichaniConfig, probe: Probe):
    s = probe.search
    if s.experiment == "linear":
        return LinearMemoryConfig(probe.size, probe.size, s.d)
    spec = getattr(config, s.experiment)
    return MLPMemoryConfig(probe.size, spec.classes or probe.size, s.d, int(s.alpha * s.d))


def train_memories(config: NichaniConfig, probes: list[Probe]) -> list[dict]:
    """Train one experiment's memory probes (all of one family) as a stack: full batch, AdamW
    without weight decay, stopped once the accuracy reaches 0.99."""
    experiment = probes[0].search.experiment
    spec = getattr(config, experiment)
    stack_cls = LinearMemoryStack if experiment == "linear" else MLPMemoryStack
    configs = [memory_config(config, p) for p in probes]
    dtype = getattr(torch, config.dtype)
    stack = _init(stack_cls, configs, [model_seed(config, p.search.id, p.size) for p in probes], dtype)
    data = FixedData(*memory_dataset(stack), POSITIONS)
    lrs = [p.lr for p in probes]
    tc = _train_config(spec.steps, lrs[0], config.training.target, spec.eval_every)
    run = _run_config(config)
    res = train(stack, data, tc, run, lr=lrs)            # every learning rate in the one stack
    return [_probe_row(p, c, r, c.non_embedding_params, p.size, row_provenance(_with_lr(tc, p.lr), run, res.kernel),
                       config.training.target) for p, c, r in zip(probes, configs, res.results)]


def _train_config(steps: int, lr: float, target: float, eval_every: int) -> TrainConfig:
    """AdamW without weight decay, stopped once the accuracy reaches ``target``."""
    return TrainConfig(max_steps=steps, optimizer=AdamW(lr=lr, weight_decay=0.0), stop_tau=None,
                       stop_accuracy=target, eval_every=eval_every, taus=(0.5,))


def _with_lr(tc: TrainConfig, lr: float) -> TrainConfig:
    """The config a model of a learning-rate ladder was trained under: its own rate (the
    engine steps it exactly as it would step it alone with this config)."""
    return replace(tc, optimizer=replace(tc.optimizer, lr=lr))


def _probe_row(probe: Probe, model_config, r, params: int, facts: int, prov: dict, target: float) -> dict:
    from dataclasses import asdict

    s = probe.search
    return {"search": s.id, "size": probe.size, "lr": probe.lr, "experiment": s.experiment, "d": s.d,
            "alpha": s.alpha, "beta": s.beta, "seed": s.seed, "params": params, "facts": facts,
            "accuracy": r.accuracy, "best_accuracy": r.best_accuracy, "loss": r.loss, "steps": r.steps,
            "status": r.status, "ok": bool(r.best_accuracy >= target), "model_json": json.dumps(asdict(model_config)),
            **prov}


# ============================================================================ the recall transformer
def task_config(config: NichaniConfig, n_subjects: int, n_noise: int | None = None) -> RecallTaskConfig:
    t = config.task
    return RecallTaskConfig(n_subjects, n_subjects, t.n_answers, n_noise if n_noise is not None else t.n_noise,
                            t.seq_len, t.zipf)


def transformer_config(task: RecallTaskConfig, d: int, n_heads: int, d_head: int, width: int) -> RecallTransformerConfig:
    return RecallTransformerConfig(task.vocab_size, task.n_outputs, d, n_heads, d_head, width)


def train_transformers(config: NichaniConfig, tasks: list[RecallTaskConfig], models: list[RecallTransformerConfig],
                       lrs: list[float], seeds: list[int]):
    """Train recall transformers on fresh batches of their tasks, every learning rate in one
    stack; ``seeds[i]`` keys model i's initialisation, answer table and data. Returns
    (results, provenance per model)."""
    tr = config.training
    dtype = getattr(torch, config.dtype)
    stack = _init(RecallTransformerStack, models, seeds, dtype)
    sampler = LastTokenSampler(RecallTasks(tasks, [answer_table(t, seed=s) for t, s in zip(tasks, seeds)],
                                           threads=max(1, torch.get_num_threads())))
    data = StreamData(sampler, batch_size=tr.batch_size, eval_size=tr.eval_size, keys=model_keys(config.seed, seeds))
    tc = _train_config(tr.steps, lrs[0], tr.target, tr.eval_every)
    run = _run_config(config)
    res = train(stack, data, tc, run, lr=lrs)
    return res.results, [row_provenance(_with_lr(tc, lr), run, res.kernel) for lr in lrs]


def train_capacity_probes(config: NichaniConfig, probes: list[Probe]) -> list[dict]:
    """Figure 4 (left): recall transformers of H = 8 heads, d_h = int(alpha·d/H), m = int(beta·d)
    on S = R = size."""
    H = config.capacity.n_heads
    tasks = [task_config(config, p.size) for p in probes]
    models = [transformer_config(t, p.search.d, H, int(p.search.alpha * p.search.d / H),
                                 int(p.search.beta * p.search.d)) for t, p in zip(tasks, probes)]
    seeds = [model_seed(config, p.search.id, p.size) for p in probes]
    results, provs = train_transformers(config, tasks, models, [p.lr for p in probes], seeds)
    return [_probe_row(p, m, r, m.params, p.size * p.size, prov, config.training.target)
            for p, m, r, prov in zip(probes, models, results, provs)]


def train_tradeoff(config: NichaniConfig, cells: list[tuple[int, int]]) -> list[dict]:
    """Figure 4 (right): every (H, m) cell at S = R fixed, one learning rate."""
    t = config.tradeoff
    task = task_config(config, t.n_subjects, t.n_noise)
    models = [transformer_config(task, t.d, h, t.d_head, m) for h, m in cells]
    seeds = [key(config.seed, "tradeoff", h, m) for h, m in cells]
    results, provs = train_transformers(config, [task] * len(cells), models, [t.lr] * len(cells), seeds)
    return [{"n_heads": h, "width": m, "attention_params": t.d * t.d_head * h, "mlp_params": t.d * m,
             "params": mdl.params, "accuracy": r.accuracy, "best_accuracy": r.best_accuracy, "loss": r.loss,
             "steps": r.steps, "status": r.status, "ok": bool(r.best_accuracy >= config.training.target), **prov}
            for (h, m), mdl, r, prov in zip(cells, models, results, provs)]


# ============================================================================ Figure 5
def train_sequential(config: NichaniConfig) -> list[dict]:
    """Figure 5: linear attention on the structured table by plain gradient descent; every
    ``curve_every`` steps the total loss, the relation-only loss (-log of the mass on the
    right relation's block) and the subject-only loss (-log of the mass on the answers with
    the right subject part, floor(s·D/S), in any block), on one fixed sample."""
    q = config.sequential
    task = RecallTaskConfig(q.n_subjects, q.n_relations, q.n_answers, q.n_noise, q.seq_len, structured=True)
    model = LinearAttentionConfig(task.vocab_size, task.n_outputs, q.seq_len)
    stack = LinearAttentionStack.init([model], dtype=getattr(torch, config.dtype))
    seed = key(config.seed, "sequential")
    sampler = LastTokenSampler(RecallTasks([task], [answer_table(task)]))
    data = StreamData(sampler, batch_size=q.batch_size, eval_size=q.eval_size, keys=model_keys(config.seed, [seed]))
    ev = data.eval_batch()
    D = q.n_answers
    answers = torch.arange(task.n_outputs)
    block, part = answers // D, answers % D                                         # (A,)
    target = ev.targets[0, :, 0]                                                    # (B,)
    right_block = block[None, :] == (target // D)[:, None]                          # (B, O)
    right_part = part[None, :] == (target % D)[:, None]

    def monitor(now, ids):
        logp = torch.log_softmax(now.logits(ev.inputs)[0].double(), dim=-1)         # (B, O)
        rel = -torch.logsumexp(logp.masked_fill(~right_block, -math.inf), dim=-1).mean()
        sub = -torch.logsumexp(logp.masked_fill(~right_part, -math.inf), dim=-1).mean()
        return {"relation_loss": rel[None], "subject_loss": sub[None]}

    tc = TrainConfig(max_steps=q.steps, optimizer=SGD(lr=q.lr), stop_tau=None, eval_every=q.curve_every,
                     curve_every=q.curve_every, taus=(0.5,))
    run = _run_config(config)
    res = train(stack, data, tc, run, monitor=monitor)
    curve = res.results[0].curve
    prov = row_provenance(tc, run, res.kernel)
    return [{"step": s, "loss": lo, "relation_loss": rl, "subject_loss": sl, "accuracy": a, **prov}
            for s, lo, rl, sl, a in zip(curve["round"], curve["loss"], curve["relation_loss"], curve["subject_loss"],
                                        curve["accuracy"])]


def stored_facts(config: NichaniConfig) -> np.ndarray:
    """The structured table of Figure 5 (for reports)."""
    q = config.sequential
    return answer_table(RecallTaskConfig(q.n_subjects, q.n_relations, q.n_answers, q.n_noise, q.seq_len,
                                         structured=True))
