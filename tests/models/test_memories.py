"""The associative memories of Nichani, Lee and Bietti (2024) against independent references."""

import re

import numpy as np
import pytest
import torch

from factlab.errors import ConfigError
from factlab.models.memories import (POSITIONS, LinearMemoryConfig, LinearMemoryStack, MLPMemoryConfig,
                                     MLPMemoryStack, memory_dataset, memory_targets)
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import AdamW

# all-different sizes, so that a transposed or mixed-up axis cannot pass unnoticed
LINEAR = [LinearMemoryConfig(11, 11, 3), LinearMemoryConfig(13, 4, 5), LinearMemoryConfig(6, 9, 7)]
MLP = [MLPMemoryConfig(11, 11, 3, 8), MLPMemoryConfig(13, 4, 5, 2), MLPMemoryConfig(6, 9, 7, 5)]
FAMILIES = {"linear": (LinearMemoryStack, LINEAR, ("W",)), "mlp": (MLPMemoryStack, MLP, ("W1", "b1", "W2"))}


def make(family, seed=3, dtype=torch.float64):
    cls, configs, trained = FAMILIES[family]
    return cls.init(configs, seed=seed, dtype=dtype), trained


def with_random_bias(stack, seed=0):
    """The MLP stack with b1 ~ N(0, 1) (it starts at 0, which would hide a bias bug)."""
    g = torch.Generator().manual_seed(seed)
    weights = [dict(stack.model_weights(i)) for i in range(stack.n_models)]
    for w in weights:
        w["b1"] = torch.randn(w["b1"].shape, generator=g, dtype=w["b1"].dtype)
    return type(stack).from_weights(stack.configs, weights)


def brute_force_logits(family, w, config) -> np.ndarray:
    """``(V, O)``: z[i, j] = u_j . memory(e_i), one input and one output at a time."""
    W = {n: t.double().numpy() for n, t in w.items()}
    z = np.zeros((config.n_inputs, config.n_outputs))
    for i in range(config.n_inputs):
        e = W["E"][i]
        if family == "linear":
            y = np.array([sum(W["W"][a, b] * e[b] for b in range(config.d)) for a in range(config.d)])
        else:
            pre = W["W1"] @ e + W["b1"]
            y = W["W2"] @ np.where(pre > 0, pre, 0.0)
        for j in range(config.n_outputs):
            z[i, j] = float(np.dot(W["U"][j], y))
    return z


def reference_logits(family, W, ids):
    """The logits in plain torch from one model's own weights (for the optimizer loop)."""
    x = W["E"][ids]                                                          # (B, D)
    y = x @ W["W"].T if family == "linear" else torch.relu(x @ W["W1"].T + W["b1"]) @ W["W2"].T
    return y @ W["U"].T                                                      # (B, O)


def data_of(stack):
    return FixedData(*memory_dataset(stack), POSITIONS)


# ---------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_brute_force_and_are_minus_inf_beyond_the_outputs(family):
    stack, _ = make(family)
    if family == "mlp":
        stack = with_random_bias(stack)
    V = max(c.n_inputs for c in stack.configs)
    z = stack.logits(torch.arange(V))                                        # (M, B = V, O)
    assert z.shape == (stack.n_models, V, max(c.n_outputs for c in stack.configs))
    for m, c in enumerate(stack.configs):
        ref = brute_force_logits(family, stack.model_weights(m), c)
        np.testing.assert_allclose(z[m, :c.n_inputs, :c.n_outputs].numpy(), ref, rtol=0, atol=1e-12)
        assert (z[m, :, c.n_outputs:] == float("-inf")).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_readout_is_the_logits_and_padding_is_inert_in_the_forward_pass(family):
    """features @ W_out are the logits; garbage written into the padding of the weights does
    not change them, and gets gradient exactly 0."""
    stack, trained = make(family)
    inputs, _, _ = memory_dataset(stack)
    features, W_out = stack.readout(None, inputs, POSITIONS)
    D = max(c.d for c in stack.configs)
    assert features.shape == (stack.n_models, inputs.shape[1], 1, D) and W_out.shape[1] == D
    z = stack.logits(inputs[..., 0])
    own = torch.isfinite(z)
    torch.testing.assert_close((features[:, :, 0] @ W_out)[own], z[own], rtol=0, atol=1e-12)
    noisy = {n: (w + 5.0 * (1 - stack.masks[n])).requires_grad_(True) for n, w in stack.params.items()}
    z2 = stack.logits(inputs[..., 0], noisy)
    assert torch.equal(z2, z)
    z2[own].sum().backward()
    for n, w in noisy.items():
        assert (w.grad[stack.masks[n] == 0] == 0).all()
        if n in trained:
            assert w.grad.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_a_padded_model_gives_the_logits_of_the_same_model_alone(family):
    stack, _ = make(family)
    for m, c in enumerate(stack.configs):
        alone = stack.select([m])
        assert alone.params["E"].shape == (1, c.n_inputs, c.d)
        ids = torch.arange(c.n_inputs)
        torch.testing.assert_close(stack.logits(ids.expand(stack.n_models, -1))[m, :, :c.n_outputs],
                                   alone.logits(ids)[0], rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------------- training
@pytest.mark.parametrize("family", FAMILIES)
def test_training_in_a_mixed_stack_ends_where_training_alone_ends(family):
    stack, trained = make(family)
    data = data_of(stack)
    cfg = TrainConfig(max_steps=40, stop_tau=None, eval_every=10, curve_every=10,
                      optimizer=AdamW(lr=0.05, weight_decay=0.1))
    run = RunConfig(dtype="float64")
    chunks = []
    together = train(stack, data, cfg, run, monitor=lambda s, ids: chunks.append(ids.tolist()) or {})
    assert sorted(chunks[0]) == [0, 1, 2]    # the models trained padded together, in one chunk
    assert together.kernel == "autograd"
    for n in stack.AXES:
        assert (together.model.params[n][stack.masks[n] == 0] == 0).all()
    for m in range(stack.n_models):
        alone = train(stack.select([m]), data.take(torch.tensor([m])), cfg, run)
        got, ref = together.model.model_weights(m), alone.model.model_weights(0)
        for n, w in ref.items():
            torch.testing.assert_close(got[n], w, rtol=1e-9, atol=1e-9)
        for n in ("E", "U"):
            assert torch.equal(got[n], stack.model_weights(m)[n])
        for n in trained:
            assert not torch.equal(got[n], stack.model_weights(m)[n])


@pytest.mark.parametrize("family", FAMILIES)
def test_engine_equals_a_per_model_torch_optim_loop_over_the_trained_tensors(family):
    stack, trained = make(family)
    steps, lr, decay = 30, 0.05, 0.1
    res = train(stack, data_of(stack), TrainConfig(max_steps=steps, stop_tau=None,
                                                   optimizer=AdamW(lr=lr, weight_decay=decay)),
                RunConfig(dtype="float64"))
    for m, c in enumerate(stack.configs):
        W = {n: w.clone().requires_grad_(n in trained) for n, w in stack.model_weights(m).items()}
        opt = torch.optim.AdamW([W[n] for n in trained], lr=lr, weight_decay=decay)
        ids = torch.arange(c.n_inputs)
        target = torch.from_numpy(memory_targets(c.n_inputs, c.n_outputs))
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(reference_logits(family, W, ids), target).backward()
            opt.step()
        for n, w in res.model.model_weights(m).items():
            torch.testing.assert_close(w, W[n].detach(), rtol=1e-9, atol=1e-9)
        with torch.no_grad():
            loss = float(torch.nn.functional.cross_entropy(reference_logits(family, W, ids), target))
        assert res.results[m].loss == pytest.approx(loss, rel=1e-9)


def test_a_linear_memory_memorizes_when_d_squared_is_much_larger_than_n_and_not_when_much_smaller():
    """Figure 1 (left) at the authors' settings: AdamW, learning rate 1000, no weight decay,
    float32. d^2 = 256 >> N = 24 reaches argmax accuracy 1; d^2 = 9 << N = 60 does not."""
    stack = LinearMemoryStack.init([LinearMemoryConfig(24, 24, 16), LinearMemoryConfig(60, 60, 3)], seed=0)
    res = train(stack, data_of(stack), TrainConfig(max_steps=300, stop_tau=None, stop_accuracy=1.0, eval_every=10,
                                                   optimizer=AdamW(lr=1000.0, weight_decay=0.0)), RunConfig())
    big, small = res.results
    assert big.status == "accurate" and big.accuracy == 1.0 and big.steps <= 300
    assert small.status == "max_steps" and small.best_accuracy < 0.5
    z = res.model.select([0]).logits(torch.arange(24))[0]
    assert torch.isfinite(z).all() and torch.equal(z.argmax(-1), torch.arange(24))


# ---------------------------------------------------------------------------------- the rest
@pytest.mark.parametrize("family", FAMILIES)
def test_embeddings_are_unit_vectors_and_the_memory_has_the_documented_scale(family):
    cls, configs, _ = FAMILIES[family]
    stack = cls.init(configs, seed=1, dtype=torch.float32)
    for m, c in enumerate(configs):
        w = stack.model_weights(m)
        for n in ("E", "U"):
            torch.testing.assert_close(w[n].norm(dim=1), torch.ones(w[n].shape[0]), rtol=0, atol=1e-6)
        if family == "mlp":
            assert torch.equal(w["b1"], torch.zeros(c.width))
    big = (LinearMemoryStack.init([LinearMemoryConfig(5, 5, 400)], seed=0) if family == "linear"
           else MLPMemoryStack.init([MLPMemoryConfig(5, 5, 400, 300)], seed=0))
    w = big.model_weights(0)
    first = w["W"] if family == "linear" else w["W1"]
    if family == "mlp":
        assert float(w["W2"].var()) == pytest.approx(1 / 300, rel=0.05)
    assert float(first.var()) == pytest.approx(1 / 400, rel=0.05)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_same_seed_gives_the_same_stack_and_a_model_does_not_depend_on_its_neighbours(family):
    cls, configs, _ = FAMILIES[family]
    a, b, c = cls.init(configs, seed=5), cls.init(configs, seed=5), cls.init(configs, seed=6)
    for n in cls.AXES:
        assert torch.equal(a.params[n], b.params[n])
    assert not torch.equal(a.params["E"], c.params["E"])
    first = cls.init(configs[:1], seed=5)
    for n, w in first.model_weights(0).items():
        assert torch.equal(w, a.model_weights(0)[n])


def test_parameter_counts():
    assert LinearMemoryConfig(10, 10, 7).non_embedding_params == 49
    assert MLPMemoryConfig(10, 10, 7, 12).non_embedding_params == 2 * 12 * 7   # b1 not counted
    assert LinearMemoryConfig(10, 3, 7).axis_sizes() == {"V": 10, "O": 3, "D": 7}
    assert MLPMemoryConfig(10, 3, 7, 12).axis_sizes() == {"V": 10, "O": 3, "D": 7, "F": 12}


@pytest.mark.parametrize("n, k", [(7, 7), (12, 4), (13, 4), (5, 1), (32, 5), (3, 8)])
def test_memory_targets_follow_their_formula(n, k):
    t = memory_targets(n, k)
    assert t.dtype == np.int64 and t.shape == (n,)
    assert t.tolist() == [(i * k) // n for i in range(n)]
    if n == k:
        assert t.tolist() == list(range(n))                 # Figure 1: f(i) = i
    if k <= n:
        counts = np.bincount(t, minlength=k)                 # Figure 6: K classes of near-equal size
        assert t[0] == 0 and t[-1] == k - 1 and counts.max() - counts.min() <= 1
    assert (np.diff(t) >= 0).all() and (0 <= t).all() and (t < k).all()


def test_memory_dataset_pads_each_model_to_the_longest():
    stack = MLPMemoryStack.init(MLP, seed=0)
    inputs, targets, valid = memory_dataset(stack)
    assert inputs.shape == targets.shape == (3, 13, 1) and valid.shape == (3, 13)
    for m, c in enumerate(MLP):
        assert inputs[m, :c.n_inputs, 0].tolist() == list(range(c.n_inputs))
        assert targets[m, :c.n_inputs, 0].tolist() == memory_targets(c.n_inputs, c.n_outputs).tolist()
        assert valid[m].tolist() == [True] * c.n_inputs + [False] * (13 - c.n_inputs)
        assert (inputs[m, c.n_inputs:] == 0).all() and (targets[m, c.n_inputs:] == 0).all()


@pytest.mark.parametrize("make_config, bad", [
    (lambda: LinearMemoryConfig(0, 3, 2), "n_inputs must be a positive integer, got 0"),
    (lambda: LinearMemoryConfig(3, -1, 2), "n_outputs must be a positive integer, got -1"),
    (lambda: LinearMemoryConfig(3, 3, 2.5), "d must be a positive integer, got 2.5"),
    (lambda: MLPMemoryConfig(3, 3, 2, 0), "width must be a positive integer, got 0"),
    (lambda: MLPMemoryConfig(3, 3, True, 4), "d must be a positive integer, got True"),
    (lambda: memory_targets(0, 3), "n_inputs must be a positive integer, got 0"),
    (lambda: memory_targets(4, 0), "n_outputs must be a positive integer, got 0"),
])
def test_bad_configs_raise_config_error_naming_the_value(make_config, bad):
    with pytest.raises(ConfigError, match=re.escape(bad)):
        make_config()
