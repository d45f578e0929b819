"""The threshold probes of our Ravfogel et al. (2026) protocol train on the loss the config names.

``training.loss_on`` chooses the causal language-modelling loss on every next token ("all")
or on the answer tokens only ("answers", ours); both are evaluated on the answers. A stack of
probes (different d and different tasks, so the shorter task is padded) is trained by
:func:`train_probes` and each probe against its own plain-torch run: a textbook forward pass,
``torch.optim.AdamW``, and ``cross_entropy`` over the positions the loss names.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from factlab.experiments.core.config import stable_key as key
from factlab.experiments.geometric2026.config import GeometricConfig, TrainingSpec
from factlab.experiments.geometric2026.plan import Probe, Search
from factlab.experiments.geometric2026.unit import model_config, perms_for, train_probes
from factlab.models.transformer import TransformerStack

STEPS, LR, DECAY = 6, 1e-2, 0.05


def config(loss_on: str) -> GeometricConfig:
    return GeometricConfig(name="loss-on", dtype="float64",
                           training=TrainingSpec(lr=LR, weight_decay=DECAY, max_steps=STEPS, eval_every=3,
                                                 loss_on=loss_on))


PROBES = [Probe(Search("threshold/learned/N=16/R=2", "threshold", 16, 2, 2, 16), 4),
          Probe(Search("threshold/learned/N=16/R=2", "threshold", 16, 2, 2, 16), 7),
          Probe(Search("threshold/learned/N=12/R=3", "threshold", 12, 3, 2, 16), 5)]


def forward(w: dict, tokens: torch.Tensor, c) -> torch.Tensor:
    """Logits ``(B, n, V)`` of one pre-LN transformer, head by head, as a textbook writes it."""
    n = tokens.shape[1]
    future = torch.ones(n, n, dtype=torch.bool).triu(1)
    x = w["W_E"][tokens] + w["W_pos"][:n]
    for l in range(c.n_layers):
        y = F.layer_norm(x, (c.d,), w["ln1_g"][l], w["ln1_b"][l])
        attn = 0
        for h in range(c.n_heads):
            q, k, v = y @ w["W_Q"][l, h], y @ w["W_K"][l, h], y @ w["W_V"][l, h]
            scores = (q @ k.transpose(1, 2) / math.sqrt(c.d_head)).masked_fill(future, float("-inf"))
            attn = attn + scores.softmax(-1) @ v @ w["W_O"][l, h]
        x = x + attn
        y = F.layer_norm(x, (c.d,), w["ln2_g"][l], w["ln2_b"][l])
        x = x + F.relu(y @ w["W1"][l].T + w["b1"][l]) @ w["W2"][l].T + w["b2"][l]
    return F.layer_norm(x, (c.d,), w["lnf_g"], w["lnf_b"]) @ w["W_U"]


def reference(cfg: GeometricConfig, probe: Probe, loss_on: str) -> tuple[float, float]:
    """``(loss, accuracy)`` on the answers after training the probe's model alone: its initial
    weights (seeded by the probe's id, as every probe is), every fact (s, N + r, pi_r(s)) of
    its task, full-batch AdamW on the mean cross-entropy over every next token ("all") or over
    the answer alone ("answers")."""
    s = probe.search
    N, R = s.n_subjects, s.n_relations
    c = model_config(cfg, N + R, 2, probe.d)
    w = {n: t.clone().requires_grad_(True) for n, t in
         TransformerStack.init([c], seed=key(cfg.seed, probe.id), dtype=torch.float64).model_weights(0).items()}
    perms = perms_for(cfg, "threshold", N, R)
    seq = torch.tensor([[a, N + r, int(perms[r, a])] for a in range(N) for r in range(R)])
    x, y = seq[:, :2], seq[:, 1:]
    opt = torch.optim.AdamW(list(w.values()), lr=LR, weight_decay=DECAY)
    for _ in range(STEPS):
        opt.zero_grad()
        logits = forward(w, x, c)
        if loss_on == "all":
            loss = F.cross_entropy(logits.reshape(-1, N + R), y.reshape(-1))
        else:
            loss = F.cross_entropy(logits[:, 1], y[:, 1])
        loss.backward()
        opt.step()
    with torch.no_grad():
        answer = forward(w, x, c)[:, 1]
        return float(F.cross_entropy(answer, y[:, 1])), float((answer.argmax(-1) == y[:, 1]).double().mean())


def test_the_loss_on_every_next_token_trains_each_probe_as_its_own_torch_run():
    rows = {loss_on: train_probes(config(loss_on), PROBES) for loss_on in ("all", "answers")}
    for loss_on, got in rows.items():
        for probe, row in zip(PROBES, got):
            assert (row["search"], row["d"], row["steps"], row["status"]) == (probe.search.id, probe.d, STEPS,
                                                                             "max_steps")
            loss, accuracy = reference(config(loss_on), probe, loss_on)
            assert row["loss"] == pytest.approx(loss, rel=1e-9), (loss_on, probe.id)
            assert row["accuracy"] == pytest.approx(accuracy, abs=1e-12), (loss_on, probe.id)
    # the two losses train differently: the test would see one path standing in for the other
    for a, b in zip(rows["all"], rows["answers"]):
        assert abs(a["loss"] - b["loss"]) > 1e-3
