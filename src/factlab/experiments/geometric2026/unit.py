"""The units of our reproduction of Ravfogel et al. (2026): a stack of threshold or multi-hop
probes, and one replicate of the analyses. Each is a pure function of (config, unit)."""

from __future__ import annotations

import json
import platform

import numpy as np
import torch

from factlab.databases.bijections import BijectionTask, draw_bijections, hop_sequences, one_hop_sequences
from factlab.experiments.core.config import stable_key as key
from factlab.experiments.core.runner import row_provenance
from factlab.experiments.geometric2026.config import GeometricConfig
from factlab.experiments.geometric2026.plan import Probe
from factlab.keyed_random import model_keys
from factlab.models.geometry import intervene, linear_readout, superposition_fit
from factlab.models.transformer import TransformerConfig, TransformerStack
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import AdamW


def model_config(config: GeometricConfig, n_tokens: int, seq_len: int, d: int) -> TransformerConfig:
    """The transformer of a probe: the config's layers and heads (head size d // heads, at
    least 1), MLP width ``width_factor · d``, and the norm."""
    m = config.model
    return TransformerConfig(n_tokens, seq_len, d, m.n_layers, m.n_heads, max(1, d // m.n_heads),
                             max(1, int(round(m.width_factor * d))), m.norm)


def perms_for(config: GeometricConfig, *parts) -> np.ndarray:
    """The bijections of a task named by ``parts`` (the same for every d of a search)."""
    task = BijectionTask(int(parts[-2]), int(parts[-1]))
    return draw_bijections(task, seed=key(config.seed, *parts))


def task_data(config: GeometricConfig, probe: Probe):
    """``(inputs (n, C-1), targets (n, C-1), answer positions, perms)``: the sequences of a
    probe's task, each next token a target; the positions that hold answers in the inputs'
    frame (the position whose next token is an answer)."""
    s = probe.search
    task = BijectionTask(s.n_subjects, s.n_relations)
    if s.experiment == "threshold":
        perms = perms_for(config, "threshold", s.n_subjects, s.n_relations)
        seq, answer_at = one_hop_sequences(task, perms), (2,)
    else:
        perms = perms_for(config, "multihop", s.n_subjects, s.n_relations)
        hs = hop_sequences(task, perms, s.hops, cot=s.cot, max_sequences=config.multihop.max_sequences,
                           seed=key(config.seed, "multihop-subsample", s.hops, s.cot))
        seq, answer_at = hs.sequences, tuple(hs.answer_positions)
    seq = torch.from_numpy(np.ascontiguousarray(seq))
    return seq[:, :-1], seq[:, 1:], tuple(p - 1 for p in answer_at), perms


def train_probes(config: GeometricConfig, probes: list[Probe]) -> list[dict]:
    """Train a stack of probes (their tasks may differ) until every final answer is right
    (every answer of a chain of thought) or the step budget runs out."""
    t = config.training
    data = [task_data(config, p) for p in probes]
    n_tokens = [p.search.n_subjects + p.search.n_relations for p in probes]
    configs = [model_config(config, v, x.shape[1], p.d) for v, (x, *_), p in zip(n_tokens, data, probes)]
    dtype = getattr(torch, config.dtype)
    weights = [TransformerStack.init([c], seed=key(config.seed, p.id), dtype=dtype).model_weights(0)
               for c, p in zip(configs, probes)]
    stack = TransformerStack.from_weights(configs, weights)
    if any(p.search.embed == "frozen" for p in probes):
        if not all(p.search.embed == "frozen" for p in probes):
            raise ValueError("a unit trains learned and frozen embeddings apart")
        stack = stack.freeze(["W_E"])                 # Appendix D's control: random token embeddings, frozen
    n = max(x.shape[0] for x, *_ in data)
    T = max(x.shape[1] for x, *_ in data)
    if len({x.shape[1] for x, *_ in data}) > 1 or len({len(a) for *_, a, _ in data}) > 1:
        raise ValueError("the probes of a unit must share their sequence length and answer positions")
    inputs = torch.zeros(len(probes), n, T, dtype=torch.long)
    targets = torch.zeros(len(probes), n, T, dtype=torch.long)
    valid = torch.zeros(len(probes), n, dtype=torch.bool)
    for i, (x, y, _, _) in enumerate(data):
        inputs[i, :len(x)], targets[i, :len(x)], valid[i, :len(x)] = x, y, True
    answer_at = data[0][2]
    keys = model_keys(config.seed, [key(p.id) for p in probes])
    answers = FixedData(inputs, targets[:, :, list(answer_at)], valid, answer_at, keys=keys)
    if t.loss_on == "answers":
        train_data = answers                           # trained and evaluated on the answers
    else:
        train_data = FixedData(inputs, targets, valid, tuple(range(T)), keys=keys, held_out=answers)
    tc = TrainConfig(max_steps=t.max_steps, batch_size=t.batch_size, eval_every=t.eval_every, stop_tau=None,
                     stop_accuracy=1.0, accuracy_on="every", taus=(0.5,),
                     optimizer=AdamW(lr=t.lr, weight_decay=t.weight_decay))
    run = RunConfig(dtype=config.dtype, chunk_size=config.runner.unit_models)
    res = train(stack, train_data, tc, run)
    prov = row_provenance(tc, run, res.kernel)
    return [{"search": p.search.id, "d": p.d, "experiment": p.search.experiment, "n_subjects": p.search.n_subjects,
             "n_relations": p.search.n_relations, "embed": p.search.embed, "hops": p.search.hops, "cot": p.search.cot,
             "params": c.params, "accuracy": r.accuracy, "best_accuracy": r.best_accuracy, "loss": r.loss,
             "steps": r.steps, "status": r.status, "ok": bool(r.best_accuracy >= 1.0), **prov}
            for p, c, r in zip(probes, configs, res.results)]


# ============================================================================ analyses
def _one_hop(config: GeometricConfig, perms: np.ndarray, d: int, init_seed: int, *, stack=None,
             train_mask=None, until_memorized: bool = True):
    """Train a one-hop model on ``perms`` (or go on training ``stack``) for the analyses' budget
    and decay, stopping at full accuracy if ``until_memorized``; returns the result."""
    R, N = perms.shape
    seq = torch.from_numpy(one_hop_sequences(BijectionTask(N, R), perms))
    x, y = seq[None, :, :2], seq[None, :, 1:]
    valid = torch.ones(1, len(seq), dtype=torch.bool)
    keys = model_keys(config.seed, [init_seed])
    answers = FixedData(x, y[:, :, 1:], valid, (1,), keys=keys)
    data = answers if config.training.loss_on == "answers" else FixedData(x, y, valid, (0, 1), keys=keys,
                                                                          held_out=answers)
    if stack is None:
        stack = TransformerStack.init([model_config(config, N + R, 2, d)], seed=init_seed,
                                      dtype=getattr(torch, config.dtype))
    if train_mask is not None:
        stack = stack.freeze([n for n in stack.AXES if n != "W_E"], {"W_E": train_mask})
    t, a = config.training, config.analysis
    tc = TrainConfig(max_steps=a.steps, batch_size=t.batch_size, eval_every=t.eval_every, stop_tau=None,
                     stop_accuracy=1.0 if until_memorized else None, taus=(0.5,),
                     optimizer=AdamW(lr=t.lr, weight_decay=a.weight_decay))
    return train(stack, data, tc, RunConfig(dtype=config.dtype))


def _vectors(stack: TransformerStack, N: int) -> tuple[np.ndarray, np.ndarray]:
    """Subject embeddings ``(N, d)`` and each attribute's output vector ``(N, d)`` (its column of W_U)."""
    E = stack.params["W_E"][0, :N].detach().double().numpy()
    U = stack.params["W_U"][0, :, :N].T.detach().double().numpy()
    return E, U


def analyse(config: GeometricConfig, replicate: int) -> dict:
    """One replicate: train a one-hop model at (N, R, d), then the superposition probe and the
    linear readouts on it and on its initialisation, the selector intervention, and the
    freeze-and-swap transfer (new bijections, fresh subject embeddings, only they train)
    against training a fresh model from scratch on the new bijections with the same budget."""
    a = config.analysis
    N, R = a.n_subjects, a.n_relations
    perms = perms_for(config, "analysis", replicate, N, R)
    init_seed = key(config.seed, "analysis-init", replicate)
    init = TransformerStack.init([model_config(config, N + R, 2, a.d)], seed=init_seed,
                                 dtype=getattr(torch, config.dtype))
    trained = _one_hop(config, perms, a.d, init_seed, stack=init, until_memorized=False)
    out = {"replicate": replicate, "n_subjects": N, "n_relations": R, "d": a.d,
           "trained_accuracy": trained.results[0].accuracy, "trained_steps": trained.results[0].steps}
    for name, stack in (("init", init), ("trained", trained.model)):
        E, U = _vectors(stack, N)
        fit = superposition_fit(E, U, perms, seed=replicate)
        out[f"r2_{name}"], out[f"r2_fit_{name}"] = fit.r2_test, fit.r2_train
        out[f"readout_{name}"] = json.dumps(linear_readout(E, U, perms, seed=replicate).round(4).tolist())
    E, U = _vectors(trained.model, N)
    fit = superposition_fit(E, U, perms, seed=replicate)
    rng = np.random.default_rng(key(config.seed, "interventions", replicate))
    pairs = []
    for _ in range(a.interventions):
        s, r = int(rng.integers(N)), int(rng.integers(R))
        pairs.append((s, r, int((perms[r, s] + 1 + rng.integers(N - 1)) % N)))
    out["moved"], out["kept"], out["joint"] = intervene(trained.model, 0, perms, fit, U, pairs)
    # freeze-and-swap: new bijections; fresh subject embeddings; only they train
    new = perms_for(config, "analysis-swap", replicate, N, R)
    fresh = TransformerStack.init([model_config(config, N + R, 2, a.d)], seed=key(config.seed, "swap", replicate),
                                  dtype=getattr(torch, config.dtype)).params["W_E"][0, :N]
    W_E = trained.model.params["W_E"].clone()
    W_E[0, :N] = fresh
    swapped = trained.model.with_params({"W_E": W_E})
    mask = torch.zeros_like(W_E, dtype=torch.bool)
    mask[0, :N] = True
    swap = _one_hop(config, new, a.d, init_seed, stack=swapped, train_mask=mask)
    scratch = _one_hop(config, new, a.d, key(config.seed, "scratch", replicate))
    for name, res in (("swap", swap), ("scratch", scratch)):
        r = res.results[0]
        out[f"{name}_accuracy"], out[f"{name}_steps"], out[f"{name}_status"] = r.accuracy, r.steps, r.status
    from factlab import __version__
    out.update(factlab_version=__version__, torch_version=torch.__version__, host=platform.node())
    return out
