"""The training engine against a plain per-model PyTorch loop, and its stopping rules."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from factlab import keyed_random
from factlab.databases.database import Database
from factlab.databases.generators import RandomDatabaseConfig, random_database
from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.training.data import FixedData, StreamData, uniform_weight
from factlab.training.engine import RunConfig, TrainConfig, plan_chunks, train
from factlab.training.interfaces import Batch
from factlab.training.optim import SGD, Adam, AdamW

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


def run64(kernel="auto", **kw):
    return RunConfig(kernel=kernel, dtype="float64", **kw)


def torch_optimizer(config, params):
    if isinstance(config, AdamW):
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if isinstance(config, Adam):
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                           nesterov=config.nesterov)


def reference_loop(stack, dbs, steps, optimizer, trained=None):
    """Each model alone: torch.optim on the mean next-token cross-entropy, holding only the
    ``trained`` weights (default all)."""
    out = []
    for i, db in enumerate(dbs):
        alone = AttentionStack.from_weights([stack.configs[i]], [stack.model_weights(i)])
        W = {n: w.clone().requires_grad_(n in (trained or alone.params)) for n, w in alone.params.items()}
        opt = torch_optimizer(optimizer, [w for n, w in W.items() if w.requires_grad])
        seq = torch.from_numpy(db.sequences().copy())
        for _ in range(steps):
            opt.zero_grad()
            logits = alone.logits(seq[None, :, :2], W)[0]
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1)).backward()
            opt.step()
        out.append({n: w.detach()[0] for n, w in W.items()})
    return out


def assert_weights(got_stack, ref, i, tol=1e-7):
    for n, w in got_stack.model_weights(i).items():
        torch.testing.assert_close(w, ref[n], rtol=tol, atol=tol)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("chunk_size", [1024, 2])
def test_engine_matches_per_model_loop_after_50_steps(chunk_size, kernel):
    dbs, stack = mixed_stack()
    opt = AdamW(lr=0.05, weight_decay=0.01)
    res = train(stack, FixedData.from_databases(dbs), TrainConfig(max_epochs=50, stop_tau=None, optimizer=opt),
                run64(kernel, chunk_size=chunk_size))
    ref = reference_loop(stack, dbs, 50, opt)
    for i in range(len(dbs)):
        assert_weights(res.model, ref[i], i)
        assert res.results[i].status == "max_epochs" and res.results[i].epochs == 50
    assert res.model_rounds == 50 * len(dbs)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("optimizer", [Adam(lr=0.03, weight_decay=0.05), SGD(lr=0.1, momentum=0.5),
                                       SGD(lr=0.1, nesterov=True, momentum=0.5)],
                         ids=["adam-l2", "momentum", "nesterov"])
def test_every_optimizer_matches_its_torch_optim_loop(optimizer, kernel):
    dbs, stack = mixed_stack()
    res = train(stack, FixedData.from_databases(dbs), TrainConfig(max_epochs=30, stop_tau=None, optimizer=optimizer),
                run64(kernel))
    ref = reference_loop(stack, dbs, 30, optimizer)
    for i in range(len(dbs)):
        assert_weights(res.model, ref[i], i)
        assert res.results[i].status == "max_epochs" and math.isfinite(res.results[i].loss)


def test_frozen_weights_train_as_a_loop_whose_optimizer_holds_only_the_trained_tensors():
    """Embedding and unembedding frozen (as Nichani et al.'s are): the engine equals a
    per-model AdamW loop over the other four weights, decay included, and the frozen
    weights do not move at all."""
    dbs, stack = mixed_stack()
    frozen = stack.freeze(["W_E", "W_U"])
    opt = AdamW(lr=0.05, weight_decay=0.1)
    res = train(frozen, FixedData.from_databases(dbs), TrainConfig(max_epochs=40, stop_tau=None, optimizer=opt),
                run64())
    assert res.kernel == "autograd"                  # the compiled step updates every weight
    ref = reference_loop(stack, dbs, 40, opt, trained={"W_Q", "W_K", "W_V", "W_O"})
    for i in range(len(dbs)):
        assert_weights(res.model, ref[i], i)
        for n in ("W_E", "W_U"):
            assert torch.equal(res.model.model_weights(i)[n], stack.model_weights(i)[n])
    with pytest.raises(ConfigError, match="no compiled step"):
        train(frozen, FixedData.from_databases(dbs), TrainConfig(max_epochs=1), RunConfig(kernel="fused"))


def test_a_train_mask_freezes_single_entries_weight_decay_included():
    """Only some rows of W_E train (a freeze-and-swap transfer trains only subject rows):
    the other rows keep their values exactly under AdamW with decay, and the trained
    entries follow a loop that zeroes the frozen entries' gradients (with Adam and no
    decay, a zero gradient leaves an entry where it is)."""
    dbs, stack = mixed_stack()
    V, D = stack.params["W_E"].shape[1:]
    rows = torch.zeros(stack.n_models, V, D, dtype=torch.bool)
    rows[:, ::2] = True                                # every other token's embedding trains
    part = stack.freeze([], {"W_E": rows})
    assert part.partially_frozen
    res = train(part, FixedData.from_databases(dbs), TrainConfig(max_epochs=30, stop_tau=None,
                                                               optimizer=AdamW(lr=0.05, weight_decay=0.2)), run64())
    for i in range(len(dbs)):
        before, after = stack.model_weights(i)["W_E"], res.model.model_weights(i)["W_E"]
        assert torch.equal(after[1::2], before[1::2]) and not torch.equal(after[::2], before[::2])
    res = train(part, FixedData.from_databases(dbs), TrainConfig(max_epochs=30, stop_tau=None,
                                                               optimizer=Adam(lr=0.05)), run64())
    for i, db in enumerate(dbs):
        alone = AttentionStack.from_weights([stack.configs[i]], [stack.model_weights(i)])
        W = {n: w.clone().requires_grad_(True) for n, w in alone.params.items()}
        keep = rows[i, :stack.configs[i].n_tokens, :stack.configs[i].d_model][None]
        W["W_E"].register_hook(lambda g, keep=keep: g * keep)
        opt = torch.optim.Adam(list(W.values()), lr=0.05)
        seq = torch.from_numpy(db.sequences().copy())
        for _ in range(30):
            opt.zero_grad()
            logits = alone.logits(seq[None, :, :2], W)[0]
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1)).backward()
            opt.step()
        assert_weights(res.model, {n: w.detach()[0] for n, w in W.items()}, i)


@pytest.mark.parametrize("kernel", KERNELS)
def test_reported_metrics_match_an_independent_evaluation(kernel):
    dbs, stack = mixed_stack()
    res = train(stack, FixedData.from_databases(dbs),
                TrainConfig(max_epochs=30, stop_tau=None, optimizer=Adam(lr=0.05)), run64(kernel))
    for i, db in enumerate(dbs):
        alone = AttentionStack.from_weights([res.model.configs[i]], [res.model.model_weights(i)])
        seq = torch.from_numpy(db.sequences().copy())
        logits = alone.logits(seq[:, :2])[0]                       # (B, 2, V)
        probs = logits[:, -1].softmax(-1)
        target = seq[:, 2]
        p = probs[torch.arange(len(seq)), target]
        r = res.results[i]
        assert r.accuracy == pytest.approx(float((probs.argmax(-1) == target).double().mean()))
        for tau in (0.5, 0.75, 0.95, 0.99):
            assert r.tau_accuracy[tau] == pytest.approx(float((p >= tau).double().mean()))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1))
        assert r.loss == pytest.approx(float(loss), rel=1e-9)
        assert r.best_accuracy >= r.accuracy


@pytest.mark.parametrize("kernel", KERNELS)
def test_padding_is_inert_in_training(kernel):
    """A model trained inside a mixed stack ends where it ends when trained alone."""
    dbs, stack = mixed_stack()
    cfg = TrainConfig(max_epochs=40, stop_tau=None, optimizer=Adam(lr=0.03))
    data = FixedData.from_databases(dbs)
    together = train(stack, data, cfg, run64(kernel))
    for i in (0, 3):
        alone = train(stack.select([i]), data.take(torch.tensor([i])), cfg, run64(kernel))
        for n, w in alone.model.model_weights(0).items():
            torch.testing.assert_close(together.model.model_weights(i)[n], w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_nan_model_is_flagged_and_frozen_and_neighbours_unaffected(kernel):
    dbs, stack = mixed_stack()
    weights = [stack.model_weights(i) for i in range(len(dbs))]
    weights[1] = {n: w.clone() for n, w in weights[1].items()}
    weights[1]["W_U"][0, 0] = float("nan")
    poisoned = AttentionStack.from_weights(stack.configs, weights)
    cfg = TrainConfig(max_epochs=20, stop_tau=None, optimizer=Adam(lr=0.05))
    res = train(poisoned, FixedData.from_databases(dbs), cfg, run64(kernel))
    assert res.results[1].status == "diverged" and res.results[1].epochs == 0
    frozen = res.model.model_weights(1)
    for n in frozen:
        torch.testing.assert_close(frozen[n], weights[1][n], equal_nan=True)
    clean = train(stack.select([0, 2, 3, 4]), FixedData.from_databases([dbs[i] for i in (0, 2, 3, 4)]), cfg,
                  run64(kernel))
    for j, i in enumerate((0, 2, 3, 4)):
        for n, w in clean.model.model_weights(j).items():
            torch.testing.assert_close(res.model.model_weights(i)[n], w, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kernel", KERNELS)
def test_early_stopping_when_tau_accuracy_reaches_one(kernel):
    db = Database.from_triples([("a", "r", "x"), ("b", "r", "y"), ("c", "s", "x")])
    stack = AttentionStack.init([AttentionLayerConfig(db.n_tokens, 6, 2, 3, 6)], seed=0)
    res = train(stack, FixedData.from_databases([db]),
                TrainConfig(max_epochs=2000, stop_tau=0.95, eval_every=5, optimizer=Adam(lr=0.1)),
                RunConfig(kernel=kernel))
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
    runs = [train(stack, FixedData.from_databases([db]),
                  TrainConfig(max_epochs=2000, stop_tau=0.9, taus=taus, eval_every=5, optimizer=Adam(lr=0.1)),
                  RunConfig(kernel=kernel))
            for taus in ((0.5,), (0.5, 0.9))]
    hidden, shown = runs[0].results[0], runs[1].results[0]
    assert hidden.status == shown.status == "memorized" and hidden.epochs == shown.epochs < 2000
    assert set(hidden.tau_accuracy) == {0.5} and shown.tau_accuracy[0.9] == 1.0
    for n, w in runs[0].model.model_weights(0).items():
        assert torch.equal(w, runs[1].model.model_weights(0)[n])


def test_plateau_stops_a_model_that_cannot_improve():
    dbs, stack = mixed_stack()
    res = train(stack, FixedData.from_databases(dbs),
                TrainConfig(max_epochs=500, stop_tau=None, plateau_patience=30, eval_every=10, optimizer=Adam(lr=0.0)))
    for r in res.results:
        assert r.status == "plateau" and r.epochs == 30


def test_held_out_evaluation_and_the_accuracy_stop():
    """Accuracy measured on a held-out set per model (not the training facts) stops a model
    once it reaches stop_accuracy; the reported accuracy is the held-out one."""
    db = Database.from_triples([(f"s{i}", f"r{j}", f"o{(i + j) % 3}") for i in range(6) for j in range(2)])
    train_db, held = db.select(np.arange(len(db)) % 4 != 0), db.select(np.arange(len(db)) % 4 == 0)
    stack = AttentionStack.init([AttentionLayerConfig(db.n_tokens, 6, 2, 3, 6)] * 2, seed=1, dtype=torch.float64)
    data = FixedData.from_databases([train_db, train_db], held_out=[held, held])
    res = train(stack, data, TrainConfig(max_epochs=300, stop_tau=None, stop_accuracy=0.01, eval_every=5,
                                         optimizer=Adam(lr=0.05)), run64())
    for i, r in enumerate(res.results):
        seq = torch.from_numpy(held.sequences().copy())
        alone = AttentionStack.from_weights([res.model.configs[i]], [res.model.model_weights(i)])
        pred = alone.logits(seq[:, :2])[0, :, -1].argmax(-1)
        assert r.accuracy == pytest.approx(float((pred == seq[:, 2]).double().mean()))
        assert r.status == ("accurate" if r.accuracy >= 0.01 else "max_epochs")
    assert any(r.status == "accurate" for r in res.results)


@pytest.mark.parametrize("kernel", KERNELS)
def test_same_keys_same_result_and_minibatches_deterministic(kernel):
    dbs, stack = mixed_stack(dtype=torch.float32)
    cfg = TrainConfig(max_epochs=15, stop_tau=None, batch_size=4)
    keys = keyed_random.model_keys(7, range(len(dbs)))
    a = train(stack, FixedData.from_databases(dbs, keys=keys), cfg, RunConfig(kernel=kernel))
    b = train(stack, FixedData.from_databases(dbs, keys=keys), cfg, RunConfig(kernel=kernel))
    for i in range(len(dbs)):
        for n, w in a.model.model_weights(i).items():
            assert torch.equal(w, b.model.model_weights(i)[n])
    c = train(stack, FixedData.from_databases(dbs, keys=keyed_random.model_keys(8, range(len(dbs)))), cfg,
              RunConfig(kernel=kernel))
    assert any(not torch.equal(a.model.model_weights(i)["W_U"], c.model.model_weights(i)["W_U"]) for i in range(5))


def test_minibatches_of_a_model_do_not_depend_on_its_neighbours():
    """A model's shuffles are keyed by its own key: alone, or in a stack, it sees the same
    batches and ends with the same weights (compiled step: bit for bit)."""
    dbs, stack = mixed_stack(dtype=torch.float32)
    keys = keyed_random.model_keys(3, range(len(dbs)))
    data = FixedData.from_databases(dbs, keys=keys)
    cfg = TrainConfig(max_epochs=12, stop_tau=None, batch_size=3)
    together = train(stack, data, cfg)
    alone = train(stack.select([2]), FixedData.from_databases([dbs[2]], keys=keys[2:3]), cfg)
    for n, w in alone.model.model_weights(0).items():
        assert torch.equal(w, together.model.model_weights(2)[n])


@pytest.mark.parametrize("deterministic", [True, False])
def test_cpu_training_runs_under_deterministic_algorithms_and_restores_them(deterministic):
    """Same-seed runs must not depend on thread timing: train() switches torch's
    deterministic algorithms on for the run (seen from the progress callback, which runs
    inside it) and leaves the caller's setting as it found it."""
    dbs, stack = mixed_stack(dtype=torch.float32)
    seen = []
    assert not torch.are_deterministic_algorithms_enabled()
    train(stack, FixedData.from_databases(dbs), TrainConfig(max_epochs=2), RunConfig(deterministic=deterministic),
          progress=lambda n: seen.append(torch.are_deterministic_algorithms_enabled()))
    assert seen and all(s == deterministic for s in seen)
    assert not torch.are_deterministic_algorithms_enabled()


def test_minibatch_epoch_takes_ceil_n_over_b_steps():
    db = Database.from_triples([(f"s{i}", "r", f"o{i % 3}") for i in range(7)])
    data = FixedData.from_databases([db])
    batches = data.epoch(0, batch_size=3)
    assert len(batches) == math.ceil(7 / 3)
    seen = torch.cat([b.inputs[0][b.evaluated[0]] for b in batches])
    assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, db.sequences()[:, :2].tolist()))
    for b in batches:  # each model's weights sum to 1 over its real positions
        assert float(b.weight.sum()) == pytest.approx(1.0)


def test_step_indexed_minibatches_cycle_through_each_models_own_epochs():
    """Counted in steps, model m takes batch s mod K_m of its epoch s div K_m, K_m =
    ceil(N_m / b): every K_m steps it has seen each of its sequences exactly once, and its
    epoch's order is the one epoch() gives it."""
    dbs = [Database.from_triples([(f"s{i}", "r", f"o{i % 3}") for i in range(n)]) for n in (7, 3, 5)]
    data = FixedData.from_databases(dbs)
    b = 2
    for m, db in enumerate(dbs):
        K = math.ceil(len(db) / b)
        for epoch in range(3):
            rows = [data.step(epoch * K + j, b) for j in range(K)]
            seen = torch.cat([batch.inputs[m][batch.evaluated[m]] for batch in rows])
            assert sorted(map(tuple, seen.tolist())) == sorted(map(tuple, db.sequences()[:, :2].tolist()))
            order = torch.cat([batch.inputs[m][batch.evaluated[m]] for batch in data.epoch(epoch, b)])
            assert torch.equal(seen, order)


def test_curves_recorded_at_stride_with_a_monitor():
    dbs, stack = mixed_stack(dtype=torch.float32)
    seen = []

    def monitor(now, ids):
        seen.append(ids.tolist())
        return {"norm_W_U": now.params["W_U"].flatten(1).norm(dim=1)}

    res = train(stack, FixedData.from_databases(dbs), TrainConfig(max_epochs=40, stop_tau=None, curve_every=20),
                monitor=monitor)
    curve = res.results[0].curve
    assert curve["round"] == [0, 20, 40]
    assert len(curve["loss"]) == 3 and curve["loss"][-1] < curve["loss"][0]
    assert curve["norm_W_U"][0] == pytest.approx(float(stack.params["W_U"][0].norm()), rel=1e-5)
    assert sorted(seen[0]) == list(range(len(dbs)))
    with pytest.raises(ConfigError, match="curve_every"):
        train(stack, FixedData.from_databases(dbs), TrainConfig(max_epochs=2), monitor=monitor)


def test_plan_chunks_covers_every_model_once_and_groups_similar_sizes():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 200, 300)
    vocab = rng.integers(3, 300, (300, 1))
    chunks = plan_chunks(sizes, vocab, max_chunk=64)
    assert sorted(i for c in chunks for i in c) == list(range(300))
    assert all(len(c) <= 64 for c in chunks)
    assert len(plan_chunks([5] * 10, np.full((10, 2), 7), max_chunk=1024)) == 1  # identical models: one chunk


@pytest.mark.parametrize("bad", [dict(max_epochs=0), dict(stop_tau=0.4), dict(taus=(1.2,)), dict(batch_size=0),
                                 dict(curve_every=15), dict(max_epochs=5, max_steps=5), dict(stop_accuracy=1.5),
                                 dict(plateau_patience=0)])
def test_bad_train_config_values_are_rejected(bad):
    with pytest.raises(ConfigError):
        TrainConfig(**bad)


@pytest.mark.parametrize("bad", [dict(dtype="float16"), dict(kernel="numba"), dict(chunk_size=0), dict(threads=0)])
def test_bad_run_config_values_are_rejected(bad):
    with pytest.raises(ConfigError):
        RunConfig(**bad)


def test_the_budget_defaults_to_the_papers_epochs_and_a_stream_needs_steps():
    assert TrainConfig().max_epochs == 2000 and TrainConfig(max_steps=9).max_epochs is None
    dbs, stack = mixed_stack()
    with pytest.raises(ConfigError, match="max_steps"):
        train(stack, StreamData(SumSampler(stack), batch_size=4, eval_size=4), TrainConfig(max_epochs=3))


def test_kernel_choice_is_checked():
    dbs, stack = mixed_stack()
    with pytest.raises(ConfigError, match="has no compiled step"):
        train(stack, FixedData.from_databases(dbs), TrainConfig(max_epochs=1), RunConfig(kernel="fused", device="meta"))


def test_fused_and_autograd_training_agree_in_float32():
    """The default path (fused, float32) follows the autograd path closely over 100 epochs."""
    dbs, stack = mixed_stack(dtype=torch.float32)
    runs = {k: train(stack, FixedData.from_databases(dbs), TrainConfig(max_epochs=100, stop_tau=None,
                                                                         optimizer=Adam(lr=0.02)), RunConfig(kernel=k))
            for k in KERNELS}
    for i in range(len(dbs)):
        a, b = runs["fused"].results[i], runs["autograd"].results[i]
        assert a.loss == pytest.approx(b.loss, rel=1e-3, abs=1e-4)
        for n, w in runs["fused"].model.model_weights(i).items():
            torch.testing.assert_close(w, runs["autograd"].model.model_weights(i)[n], rtol=1e-3, atol=1e-3)


def test_fused_training_does_not_depend_on_the_thread_count():
    dbs, stack = mixed_stack(dtype=torch.float32)
    data = FixedData.from_databases(dbs)
    runs = [train(stack, data, TrainConfig(max_epochs=30, stop_tau=None), RunConfig(kernel="fused", threads=t))
            for t in (1, 2)]
    for i in range(len(dbs)):
        for n, w in runs[0].model.model_weights(i).items():
            assert torch.equal(w, runs[1].model.model_weights(i)[n])


@pytest.mark.parametrize("optimizer", [AdamW(lr=0.05, weight_decay=0.01), SGD(lr=0.1, momentum=0.5)],
                         ids=["adamw", "sgd"])
def test_fused_and_autograd_minibatch_training_agree(optimizer):
    """With minibatches the fused path takes every optimizer step inside the kernel; in
    float64 it follows the autograd path (torch's arithmetic) step for step."""
    dbs, stack = mixed_stack()
    data = FixedData.from_databases(dbs)
    cfg = TrainConfig(max_epochs=12, stop_tau=None, batch_size=4, eval_every=5, optimizer=optimizer)
    runs = {k: train(stack, data, cfg, run64(k)) for k in KERNELS}
    for i in range(len(dbs)):
        for n, w in runs["fused"].model.model_weights(i).items():
            torch.testing.assert_close(w, runs["autograd"].model.model_weights(i)[n], rtol=1e-9, atol=1e-9)


# ============================================================================ streams
class SumSampler:
    """A toy stream for any stack of attention layers: sequences (x0, x1) uniform over each
    model's vocabulary, targets (x1, (x0 + x1) mod |T|), every position scored; drawn from
    keyed_random, as a real sampler must."""

    def __init__(self, stack_or_vocab):
        vocab = stack_or_vocab if isinstance(stack_or_vocab, np.ndarray) else \
            np.array([c.n_tokens for c in stack_or_vocab.configs])
        self.vocab = vocab

    @property
    def n_models(self):
        return len(self.vocab)

    def draw(self, keys, counter, size, stream):
        x = keyed_random.integers(keys, counter, 2 * size, self.vocab, stream).reshape(len(keys), size, 2)
        x = torch.from_numpy(x)
        targets = torch.stack([x[..., 1], (x[..., 0] + x[..., 1]) % torch.from_numpy(self.vocab)[:, None]], dim=-1)
        valid = torch.ones(len(keys), size, dtype=torch.bool)
        return Batch(x, targets, uniform_weight(valid, 2), valid, (0, 1))

    def take(self, index):
        return SumSampler(self.vocab[index])


def stream_stack(n=50, seed=0):
    rng = np.random.default_rng(seed)
    configs = [AttentionLayerConfig(int(rng.integers(3, 9)), int(d), int(rng.integers(1, 3)),
                                    int(rng.integers(1, d + 1)), int(rng.integers(1, d + 1)))
               for d in rng.integers(1, 6, n)]
    return AttentionStack.init(configs, seed=seed)


def test_a_stream_gives_a_model_the_same_data_alone_in_a_stack_in_chunks_and_on_any_thread_count():
    """Every draw is keyed by (model key, step): model 7 of a stack of 50 gets the batches
    it gets alone, and ends with the same weights (bit for bit: the compiled step runs each
    model on its own sizes) whatever the chunking and the thread count."""
    stack = stream_stack()
    keys = keyed_random.model_keys(11, range(stack.n_models))
    data = StreamData(SumSampler(stack), batch_size=16, eval_size=32, keys=keys)
    alone_data = StreamData(SumSampler(stack.select([7])), batch_size=16, eval_size=32, keys=keys[7:8])
    for step in (0, 5):
        b, a = data.step(step), alone_data.step(step)
        assert torch.equal(b.inputs[7], a.inputs[0]) and torch.equal(b.targets[7], a.targets[0])
    assert torch.equal(data.eval_batch().inputs[7], alone_data.eval_batch().inputs[0])
    assert not torch.equal(data.step(0).inputs[7], data.step(1).inputs[7])
    cfg = TrainConfig(max_steps=40, eval_every=10, stop_tau=None, optimizer=Adam(lr=0.05))
    runs = [train(stack, data, cfg, RunConfig(threads=2)),
            train(stack, data, cfg, RunConfig(threads=1, chunk_size=8)),
            train(stack.select([7]), alone_data, cfg, RunConfig(threads=1))]
    reference = runs[2].model.model_weights(0)
    for run in runs[:2]:
        assert run.results[7].steps == 40 and run.results[7].status == "max_steps"
        for n, w in run.model.model_weights(7).items():
            assert torch.equal(w, reference[n])


def test_the_autograd_path_gives_a_model_its_weights_alone_in_a_stack_in_chunks_and_on_any_thread_count():
    """The same on the autograd path, which every family but the attention layer's compiled
    step takes: the data are the same draws, and the weights agree to rounding (torch's
    batched matmuls sum in an order set by the chunk's padded shapes)."""
    stack = stream_stack()
    keys = keyed_random.model_keys(11, range(stack.n_models))
    data = StreamData(SumSampler(stack), batch_size=16, eval_size=32, keys=keys)
    alone_data = StreamData(SumSampler(stack.select([7])), batch_size=16, eval_size=32, keys=keys[7:8])
    cfg = TrainConfig(max_steps=40, eval_every=10, stop_tau=None, optimizer=Adam(lr=0.05))
    runs = [train(stack, data, cfg, run64("autograd", threads=2)),
            train(stack, data, cfg, run64("autograd", threads=1, chunk_size=8)),
            train(stack.select([7]), alone_data, cfg, run64("autograd", threads=1))]
    assert all(r.kernel == "autograd" for r in runs)
    reference = runs[2].model.model_weights(0)
    moved = max(float((reference[n] - stack.model_weights(7)[n].double()).abs().max()) for n in reference)
    assert moved > 0.05                                   # training did move the weights
    for run in runs[:2]:
        assert run.results[7].steps == 40
        for n, w in run.model.model_weights(7).items():
            torch.testing.assert_close(w, reference[n], rtol=0, atol=1e-12)


def test_a_learning_rate_per_model_trains_each_model_as_it_trains_alone_at_its_rate():
    """A learning-rate ladder as one stack: ``train(..., lr=[...])`` gives model i the weights
    it gets alone with the optimizer's lr set to lr[i]; bit for bit on the compiled step, to
    rounding on the autograd path; for Adam, AdamW (whose decay follows the rate) and SGD."""
    stack = stream_stack(6, seed=4)
    keys = keyed_random.model_keys(2, range(stack.n_models))
    data = StreamData(SumSampler(stack), batch_size=16, eval_size=32, keys=keys)
    rates = [0.003, 0.01, 0.03, 0.1, 0.01, 0.05]
    for opt, run in ((Adam(lr=1.0), RunConfig(threads=1)), (AdamW(lr=1.0, weight_decay=0.3), run64("autograd")),
                     (SGD(lr=1.0, momentum=0.5), run64("autograd"))):
        cfg = TrainConfig(max_steps=25, eval_every=5, stop_tau=None, optimizer=opt)
        together = train(stack, data, cfg, run, lr=rates)
        for i in (0, 3, 5):
            alone_cfg = TrainConfig(max_steps=25, eval_every=5, stop_tau=None, optimizer=replace(opt, lr=rates[i]))
            alone = train(stack.select([i]), StreamData(SumSampler(stack.select([i])), batch_size=16, eval_size=32,
                                                        keys=keys[i:i + 1]), alone_cfg, run)
            for n, w in alone.model.model_weights(0).items():
                got = together.model.model_weights(i)[n]
                if run.kernel == "auto":
                    assert torch.equal(got, w), (opt, i, n)
                else:
                    torch.testing.assert_close(got, w, rtol=0, atol=1e-12)
        assert together.kernel == ("fused" if run.kernel == "auto" else "autograd")
    with pytest.raises(ConfigError, match="2 learning rates for 6 models"):
        train(stack, data, TrainConfig(max_steps=1, stop_tau=None), RunConfig(), lr=[0.1, 0.2])


def test_a_stream_trained_by_autograd_with_the_last_position_scored_only():
    """A stream scoring only the last position (as the recall task does): the readout
    unembeds that position alone; the model alone and in the stack end alike (autograd,
    float64, to rounding), and the eval sample drives the accuracy stop."""

    class LastOnly(SumSampler):
        def draw(self, keys, counter, size, stream):
            b = super().draw(keys, counter, size, stream)
            return Batch(b.inputs, b.targets[..., 1:], uniform_weight(b.evaluated, 1), b.evaluated, (1,))

        def take(self, index):
            return LastOnly(self.vocab[index])

    stack = stream_stack(8, seed=2).to(dtype=torch.float64)
    keys = keyed_random.model_keys(5, range(stack.n_models))
    data = StreamData(LastOnly(stack), batch_size=32, eval_size=64, keys=keys)
    cfg = TrainConfig(max_steps=60, eval_every=10, stop_tau=None, stop_accuracy=0.9, optimizer=Adam(lr=0.05))
    together = train(stack, data, cfg, run64())
    assert together.kernel == "autograd"
    alone = train(stack.select([3]), StreamData(LastOnly(stack.select([3])), batch_size=32, eval_size=64,
                                                keys=keys[3:4]), cfg, run64())
    assert alone.results[0].steps == together.results[3].steps
    for n, w in alone.model.model_weights(0).items():
        torch.testing.assert_close(together.model.model_weights(3)[n], w, rtol=1e-9, atol=1e-9)
    for r in together.results:
        assert r.status in ("accurate", "max_steps") and (r.status == "accurate") == (r.accuracy >= 0.9)


def test_accuracy_on_every_scored_position_counts_a_sequence_right_only_when_all_are():
    dbs, stack = mixed_stack()
    data = FixedData.from_databases(dbs)
    runs = {on: train(stack, data, TrainConfig(max_epochs=15, stop_tau=None, accuracy_on=on), run64())
            for on in ("last", "every")}
    for i, db in enumerate(dbs):
        alone = AttentionStack.from_weights([runs["every"].model.configs[i]], [runs["every"].model.model_weights(i)])
        seq = torch.from_numpy(db.sequences().copy())
        pred = alone.logits(seq[:, :2])[0].argmax(-1)                   # (B, 2): q after k, v after (k, q)
        both = (pred == seq[:, 1:]).all(dim=1).double().mean()
        assert runs["every"].results[i].accuracy == pytest.approx(float(both))
        assert runs["last"].results[i].accuracy >= runs["every"].results[i].accuracy
    with pytest.raises(ConfigError, match="accuracy_on"):
        TrainConfig(accuracy_on="first")
