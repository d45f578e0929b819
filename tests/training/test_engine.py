"""The training engine against a plain per-model PyTorch loop, and its stopping rules."""

import math

import numpy as np
import pytest
import torch

from factlab.databases.database import Database
from factlab.databases.generators import RandomDatabaseConfig, random_database
from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.training.adam import AdamConfig
from factlab.training.data import FactSequences
from factlab.training.engine import TrainConfig, plan_chunks, train

# every test that trains runs on both ways of computing a step: the compiled CPU step of
# the attention layers and torch's autograd
KERNELS = ["fused", "autograd"]

# all-distinct sizes so that a transposed axis cannot pass unnoticed
SHAPES = [(3, 2, 1, 3), (5, 1, 5, 2), (4, 3, 2, 2), (6, 4, 6, 5), (2, 1, 1, 1)]


def mixed_stack(dtype=torch.float64, seed=3):
    dbs = [random_database(RandomDatabaseConfig(n_subjects=5 + 3 * i, n_predicates=2 + i % 3,
                                                n_objects=4 + i, density=0.6), seed=i) for i in range(len(SHAPES))]
    configs = [AttentionLayerConfig(db.n_tokens, d, h, a, b) for db, (d, h, a, b) in zip(dbs, SHAPES)]
    return dbs, AttentionStack.init(configs, seed=seed, dtype=dtype)


def reference_loop(stack, dbs, steps, lr, weight_decay=0.0):
    """Each model alone: torch.optim.AdamW on the mean next-token cross-entropy."""
    out = []
    for i, db in enumerate(dbs):
        alone = AttentionStack.from_weights([stack.configs[i]], [stack.model_weights(i)])
        W = {n: w.clone().requires_grad_(True) for n, w in alone.weights.items()}
        opt = torch.optim.AdamW(list(W.values()), lr=lr, weight_decay=weight_decay)
        seq = torch.from_numpy(db.sequences().copy())
        for _ in range(steps):
            opt.zero_grad()
            logits = alone.logits(seq[None, :, :2], W)[0]
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1)).backward()
            opt.step()
        out.append({n: w.detach()[0] for n, w in W.items()})
    return out


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("chunk_size", [1024, 2])
def test_engine_matches_per_model_loop_after_50_steps(chunk_size, kernel):
    dbs, stack = mixed_stack()
    cfg = TrainConfig(kernel=kernel, max_epochs=50, stop_tau=None, dtype="float64", chunk_size=chunk_size,
                      adam=AdamConfig(lr=0.05, weight_decay=0.01))
    res = train(stack, FactSequences.from_databases(dbs), cfg)
    ref = reference_loop(stack, dbs, 50, lr=0.05, weight_decay=0.01)
    for i in range(len(dbs)):
        got = res.model.model_weights(i)
        for n in got:
            torch.testing.assert_close(got[n], ref[i][n], rtol=1e-7, atol=1e-7)
        assert res.results[i].status == "max_epochs" and res.results[i].epochs == 50
    assert res.model_epochs == 50 * len(dbs)


@pytest.mark.parametrize("kernel", KERNELS)
def test_reported_metrics_match_an_independent_evaluation(kernel):
    dbs, stack = mixed_stack()
    res = train(stack, FactSequences.from_databases(dbs),
                TrainConfig(kernel=kernel, max_epochs=30, stop_tau=None, dtype="float64", adam=AdamConfig(lr=0.05)))
    for i, db in enumerate(dbs):
        alone = AttentionStack.from_weights([res.model.configs[i]], [res.model.model_weights(i)])
        seq = torch.from_numpy(db.sequences().copy())
        logits = alone.logits(seq[:, :2])[0]                       # (N, 2, T)
        probs = logits[:, -1].softmax(-1)
        target = seq[:, 2]
        p = probs[torch.arange(len(seq)), target]
        r = res.results[i]
        assert r.accuracy == pytest.approx(float((probs.argmax(-1) == target).double().mean()))
        for tau in (0.5, 0.75, 0.95, 0.99):
            assert r.tau_accuracy[tau] == pytest.approx(float((p >= tau).double().mean()))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))
        assert r.loss == pytest.approx(float(loss), rel=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_padding_is_inert_in_training(kernel):
    """A model trained inside a mixed stack ends where it ends when trained alone."""
    dbs, stack = mixed_stack()
    cfg = TrainConfig(kernel=kernel, max_epochs=40, stop_tau=None, dtype="float64", adam=AdamConfig(lr=0.03))
    together = train(stack, FactSequences.from_databases(dbs), cfg)
    for i in (0, 3):
        alone = train(stack.select([i]), FactSequences.from_databases([dbs[i]]), cfg)
        for n, w in alone.model.model_weights(0).items():
            torch.testing.assert_close(together.model.model_weights(i)[n], w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_nan_model_is_flagged_and_frozen_and_neighbours_unaffected(kernel):
    dbs, stack = mixed_stack()
    weights = [stack.model_weights(i) for i in range(len(dbs))]
    weights[1] = {n: w.clone() for n, w in weights[1].items()}
    weights[1]["W_U"][0, 0] = float("nan")
    poisoned = AttentionStack.from_weights(stack.configs, weights)
    cfg = TrainConfig(kernel=kernel, max_epochs=20, stop_tau=None, dtype="float64", adam=AdamConfig(lr=0.05))
    res = train(poisoned, FactSequences.from_databases(dbs), cfg)
    assert res.results[1].status == "diverged" and res.results[1].epochs == 0
    frozen = res.model.model_weights(1)
    for n in frozen:
        torch.testing.assert_close(frozen[n], weights[1][n], equal_nan=True)
    clean = train(stack.select([0, 2, 3, 4]), FactSequences.from_databases([dbs[i] for i in (0, 2, 3, 4)]), cfg)
    for j, i in enumerate((0, 2, 3, 4)):
        for n, w in clean.model.model_weights(j).items():
            torch.testing.assert_close(res.model.model_weights(i)[n], w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_early_stopping_when_tau_accuracy_reaches_one(kernel):
    db = Database.from_triples([("a", "r", "x"), ("b", "r", "y"), ("c", "s", "x")])
    stack = AttentionStack.init([AttentionLayerConfig(db.n_tokens, 6, 2, 3, 6)], seed=0)
    res = train(stack, FactSequences.from_databases([db]),
                TrainConfig(kernel=kernel, max_epochs=2000, stop_tau=0.95, eval_every=5, adam=AdamConfig(lr=0.1)))
    r = res.results[0]
    assert r.status == "memorized" and r.epochs < 2000 and r.epochs % 5 == 0
    assert r.tau_accuracy[0.95] == 1.0 and r.accuracy == 1.0
    # the returned weights are the ones that memorized
    seq = torch.from_numpy(db.sequences().copy())
    p = res.model.logits(seq[:, :2])[0, :, -1].softmax(-1)[torch.arange(3), seq[:, 2]]
    assert (p >= 0.95).all()


@pytest.mark.parametrize("kernel", KERNELS)
def test_stop_tau_outside_the_reported_taus_stops_as_if_reported(kernel):
    """stop_tau need not be one of the reported taus: it is evaluated beside them, and the
    run stops where a run that also reports it stops."""
    db = Database.from_triples([("a", "r", "x"), ("b", "r", "y"), ("c", "s", "x")])
    stack = AttentionStack.init([AttentionLayerConfig(db.n_tokens, 6, 2, 3, 6)], seed=0)
    runs = [train(stack, FactSequences.from_databases([db]),
                  TrainConfig(kernel=kernel, max_epochs=2000, stop_tau=0.9, taus=taus, eval_every=5,
                              adam=AdamConfig(lr=0.1)))
            for taus in ((0.5,), (0.5, 0.9))]
    hidden, shown = runs[0].results[0], runs[1].results[0]
    assert hidden.status == shown.status == "memorized" and hidden.epochs == shown.epochs < 2000
    assert set(hidden.tau_accuracy) == {0.5} and shown.tau_accuracy[0.9] == 1.0
    for n, w in runs[0].model.model_weights(0).items():
        assert torch.equal(w, runs[1].model.model_weights(0)[n])


def test_plateau_stops_a_model_that_cannot_improve():
    dbs, stack = mixed_stack()
    res = train(stack, FactSequences.from_databases(dbs),
                TrainConfig(max_epochs=500, stop_tau=None, plateau_patience=30, eval_every=10,
                            adam=AdamConfig(lr=0.0)))
    for r in res.results:
        assert r.status == "plateau" and r.epochs == 30


@pytest.mark.parametrize("kernel", KERNELS)
def test_same_seed_same_result_and_minibatches_deterministic(kernel):
    dbs, stack = mixed_stack(dtype=torch.float32)
    cfg = TrainConfig(kernel=kernel, max_epochs=15, stop_tau=None, batch_size=4, seed=7)
    a = train(stack, FactSequences.from_databases(dbs), cfg)
    b = train(stack, FactSequences.from_databases(dbs), cfg)
    for i in range(len(dbs)):
        for n, w in a.model.model_weights(i).items():
            assert torch.equal(w, b.model.model_weights(i)[n])
    c = train(stack, FactSequences.from_databases(dbs), TrainConfig(kernel=kernel, max_epochs=15, stop_tau=None, batch_size=4, seed=8))
    assert any(not torch.equal(a.model.model_weights(i)["W_U"], c.model.model_weights(i)["W_U"]) for i in range(5))


@pytest.mark.parametrize("deterministic", [True, False])
def test_cpu_training_runs_under_deterministic_algorithms_and_restores_them(deterministic):
    """Same-seed runs must not depend on thread timing: train() switches torch's
    deterministic algorithms on for the run (seen from the progress callback, which runs
    inside it) and leaves the caller's setting as it found it."""
    dbs, stack = mixed_stack(dtype=torch.float32)
    seen = []
    assert not torch.are_deterministic_algorithms_enabled()
    train(stack, FactSequences.from_databases(dbs), TrainConfig(max_epochs=2, deterministic=deterministic),
          progress=lambda n: seen.append(torch.are_deterministic_algorithms_enabled()))
    assert seen and all(s == deterministic for s in seen)
    assert not torch.are_deterministic_algorithms_enabled()


def test_minibatch_epoch_takes_ceil_n_over_b_steps():
    """With lr tiny the step count is visible in Adam's update size: compare with the loop."""
    db = Database.from_triples([(f"s{i}", "r", f"o{i % 3}") for i in range(7)])
    stack = AttentionStack.init([AttentionLayerConfig(db.n_tokens, 4, 1, 2, 3)], seed=1, dtype=torch.float64)
    data = FactSequences.from_databases([db])
    batches = list(data.epoch(3, torch.Generator().manual_seed(0)))
    assert len(batches) == math.ceil(7 / 3)
    seen = torch.cat([b.inputs[0][b.evaluated[0]] for b in batches])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, db.sequences()[:, :2].tolist()))
    for b in batches:  # each model's weights sum to 1 over its real positions
        assert float(b.weight.sum()) == pytest.approx(1.0)


def test_curves_recorded_at_stride():
    dbs, stack = mixed_stack(dtype=torch.float32)
    res = train(stack, FactSequences.from_databases(dbs), TrainConfig(max_epochs=40, stop_tau=None, curve_every=20))
    curve = res.results[0].curve
    assert curve["epoch"] == [0, 20, 40]
    assert len(curve["loss"]) == 3 and curve["loss"][-1] < curve["loss"][0]


def test_plan_chunks_covers_every_model_once_and_groups_similar_sizes():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 200, 300).tolist()
    vocab = rng.integers(3, 300, 300).tolist()
    chunks = plan_chunks(sizes, vocab, max_chunk=64)
    assert sorted(i for c in chunks for i in c) == list(range(300))
    assert all(len(c) <= 64 for c in chunks)
    assert len(plan_chunks([5] * 10, [7] * 10, max_chunk=1024)) == 1  # identical models: one chunk


@pytest.mark.parametrize("bad", [dict(max_epochs=0), dict(stop_tau=0.4), dict(taus=(1.2,)),
                                 dict(batch_size=0), dict(dtype="float16"), dict(curve_every=15)])
def test_bad_config_values_are_rejected(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


def test_kernel_choice_is_checked():
    with pytest.raises(ConfigError, match="kernel must be one of"):
        TrainConfig(kernel="numba")
    dbs, stack = mixed_stack()

    class NoFusedStep:  # a model family without a compiled step
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            if name == "has_fused_step":
                raise AttributeError(name)
            return getattr(self.inner, name)

    with pytest.raises(ConfigError, match="has no fused step"):
        train(NoFusedStep(stack), FactSequences.from_databases(dbs), TrainConfig(kernel="fused", max_epochs=1))
    with pytest.raises(ConfigError, match="has no fused step"):
        train(stack, FactSequences.from_databases(dbs), TrainConfig(kernel="fused", device="meta", max_epochs=1))


def test_fused_and_autograd_training_agree_in_float32():
    """The default path (fused, float32) follows the autograd path closely over 100 epochs."""
    dbs, stack = mixed_stack(dtype=torch.float32)
    runs = {k: train(stack, FactSequences.from_databases(dbs),
                     TrainConfig(kernel=k, max_epochs=100, stop_tau=None, adam=AdamConfig(lr=0.02)))
            for k in KERNELS}
    for i in range(len(dbs)):
        a, b = runs["fused"].results[i], runs["autograd"].results[i]
        assert a.loss == pytest.approx(b.loss, rel=1e-3, abs=1e-4)
        for n, w in runs["fused"].model.model_weights(i).items():
            torch.testing.assert_close(w, runs["autograd"].model.model_weights(i)[n], rtol=1e-3, atol=1e-3)


def test_fused_training_does_not_depend_on_the_thread_count():
    dbs, stack = mixed_stack(dtype=torch.float32)
    data = FactSequences.from_databases(dbs)
    runs = [train(stack, data, TrainConfig(kernel="fused", max_epochs=30, stop_tau=None, threads=t)) for t in (1, 2)]
    for i in range(len(dbs)):
        for n, w in runs[0].model.model_weights(i).items():
            assert torch.equal(w, runs[1].model.model_weights(i)[n])


def test_fused_and_autograd_minibatch_training_agree():
    """With minibatches the fused path takes every Adam step inside the kernel; in float64
    it follows the autograd path (torch's Adam arithmetic) step for step."""
    dbs, stack = mixed_stack()
    data = FactSequences.from_databases(dbs)
    cfg = dict(max_epochs=12, stop_tau=None, batch_size=4, eval_every=5, dtype="float64",
               adam=AdamConfig(lr=0.05, weight_decay=0.01))
    runs = {k: train(stack, data, TrainConfig(kernel=k, **cfg)) for k in KERNELS}
    for i in range(len(dbs)):
        for n, w in runs["fused"].model.model_weights(i).items():
            torch.testing.assert_close(w, runs["autograd"].model.model_weights(i)[n], rtol=1e-9, atol=1e-9)
