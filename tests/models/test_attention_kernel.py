"""The compiled step of the attention layers against torch's autograd on the same stack."""

import numpy as np
import pytest
import torch

from factlab.databases.generators import RandomDatabaseConfig, random_database
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.training.data import FixedData
from factlab.training.loop import FlatParams as _FlatParams
from factlab.training.loop import forward_loss
from factlab.training.interfaces import Batch
from factlab.training.loss import vocab_bias
from factlab.training.optim import SGD, AdamW, StackedOptimizer

# (d_model, n_heads, d_head_qk, d_head_vo), all different so that a swapped axis shows
SHAPES = [(3, 2, 1, 3), (5, 1, 5, 2), (4, 3, 2, 2), (6, 4, 6, 5), (2, 1, 1, 1), (1, 2, 1, 1)]


def stack_and_data(dtype, seed=0):
    dbs = [random_database(RandomDatabaseConfig(n_subjects=3 + 4 * i, n_predicates=1 + i % 4,
                                                n_objects=3 + 2 * i, density=0.7), seed=seed + i)
           for i in range(len(SHAPES))]
    configs = [AttentionLayerConfig(db.n_tokens, *shape) for db, shape in zip(dbs, SHAPES)]
    return AttentionStack.init(configs, seed=seed, dtype=dtype), FixedData.from_databases(dbs)


def autograd_step(stack, flat, batch):
    params = _FlatParams(stack.params, flat)
    loss, nll, argmax = forward_loss(stack, params.views(), batch, vocab_bias(stack.token_mask, flat.dtype))
    (grad,) = torch.autograd.grad(loss.sum(), [params.flat])
    return loss.detach(), nll, argmax, grad


def random_flat(stack, seed):
    """Random weights (not the initial ones, so nothing is special), zero in the padding."""
    g = torch.Generator().manual_seed(seed)
    W = {n: torch.randn(w.shape, generator=g, dtype=w.dtype) * stack.masks[n] for n, w in stack.params.items()}
    return _FlatParams(W).flat.detach()


def assert_same(fused, ref, batch, tol):
    loss, nll, argmax, grad = fused
    r_loss, r_nll, r_argmax, r_grad = ref
    ev = batch.evaluated
    torch.testing.assert_close(loss, r_loss.double(), rtol=tol, atol=tol)
    torch.testing.assert_close(nll[ev], r_nll[ev], rtol=tol, atol=tol)
    assert torch.equal(argmax[ev], r_argmax[ev])
    torch.testing.assert_close(grad, r_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_full_batch_matches_autograd(dtype, tol):
    stack, data = stack_and_data(dtype)
    flat = random_flat(stack, 1)
    batch = data.full_batch()
    assert_same(stack.compiled_step("cpu")(flat, batch), autograd_step(stack, flat, batch), batch, tol)


def test_shuffled_minibatches_match_autograd():
    """Shuffled order breaks the runs of equal prefixes; padding rows sit among real ones."""
    stack, data = stack_and_data(torch.float64, seed=5)
    flat = random_flat(stack, 2)
    for batch in data.epoch(3, batch_size=7):
        assert_same(stack.compiled_step("cpu")(flat, batch), autograd_step(stack, flat, batch), batch, 1e-10)


def test_longer_sequences_match_autograd():
    """The kernel is written for any sequence length: random sequences of 4 input tokens."""
    stack, _ = stack_and_data(torch.float64, seed=2)
    M, B, C = stack.n_models, 9, 4
    g = torch.Generator().manual_seed(0)
    vocab = torch.tensor([c.n_tokens for c in stack.configs])
    tokens = (torch.rand(M, B, C + 1, generator=g) * vocab[:, None, None]).long()
    tokens[:, 1:3, :2] = tokens[:, :1, :2]              # shared prefixes, as facts of one subject have
    evaluated = torch.rand(M, B, generator=g) < 0.8
    weight = evaluated[..., None].double().expand(M, B, C) / (evaluated.sum(1) * C).clamp(min=1)[:, None, None]
    batch = Batch(tokens[..., :-1].contiguous(), tokens[..., 1:].contiguous(), weight.contiguous(), evaluated,
                  tuple(range(C)))
    flat = random_flat(stack, 4)
    assert_same(stack.compiled_step("cpu")(flat, batch), autograd_step(stack, flat, batch), batch, 1e-10)


def test_model_subset_and_thread_count():
    stack, data = stack_and_data(torch.float32)
    flat = random_flat(stack, 3)
    batch = data.full_batch()
    step = stack.compiled_step("cpu")
    full = step(flat, batch, threads=1)
    full = [t.clone() for t in full]                    # the gradient buffer is reused by the next call
    two = step(flat, batch, threads=2)
    for a, b in zip(full, two):
        assert torch.equal(a, b)                        # each model runs whole on one thread
    some = torch.tensor([True, False, True, True, False, False])
    loss, _, _, grad = step(flat, batch, models=some, threads=2)
    assert torch.equal(loss[some], full[0][some]) and torch.equal(grad[some], full[3][some])
    assert (loss[~some] == 0).all() and (grad[~some] == 0).all()


def test_gradient_is_zero_in_the_padding():
    stack, data = stack_and_data(torch.float32)
    grad = stack.compiled_step("cpu")(random_flat(stack, 6), data.full_batch())[3]
    mask = _FlatParams(stack.masks).flat.detach()
    assert (grad[mask == 0] == 0).all() and (grad[mask == 1] != 0).any()


def test_non_finite_weights_give_a_non_finite_loss_for_that_model_only():
    stack, data = stack_and_data(torch.float32)
    flat = random_flat(stack, 7)
    clean = [t.clone() for t in stack.compiled_step("cpu")(flat, data.full_batch())]
    V, D = stack.params["W_E"].shape[1:]
    flat[2, V * D] = float("nan")                       # model 2's W_U[0, 0] (W_U follows W_E in a row)
    loss, _, _, grad = stack.compiled_step("cpu")(flat, data.full_batch())
    assert not np.isfinite(float(loss[2]))
    others = torch.arange(len(SHAPES)) != 2
    assert torch.equal(loss[others], clean[0][others]) and torch.equal(grad[others], clean[3][others])


@pytest.mark.parametrize("optimizer", [AdamW(lr=0.05, weight_decay=0.1), SGD(lr=0.05, momentum=0.9, weight_decay=0.1)],
                         ids=["adamw", "sgd"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_step_in_the_kernel_is_the_gradient_then_the_optimizer(dtype, tol, optimizer):
    """``update=``: three optimizer steps taken inside the kernel against the kernel's
    gradient followed by StackedOptimizer.step; one model is not stepping and one has a
    NaN weight (at the very start of its row, where a careless "x * 0" would spread it).
    The two calls are compiled separately and may sum in different orders, hence the
    tolerance."""
    stack, data = stack_and_data(dtype)
    batch = data.full_batch()
    flat = random_flat(stack, 8)
    flat[4, 0] = float("nan")                               # model 4's W_E[0, 0]: its loss is NaN
    stepping = torch.tensor([True, True, False, True, True, True])
    in_kernel, outside = flat.clone(), flat.clone()
    adam_in, adam_out = StackedOptimizer(optimizer, in_kernel), StackedOptimizer(optimizer, outside)
    step = stack.compiled_step("cpu")
    for _ in range(3):
        loss_in, _, _, none = step(in_kernel, batch, update=(stepping, adam_in.kernel_state()))
        loss, _, _, grad = step(outside, batch)
        adam_out.step(outside, grad, stepping & torch.isfinite(loss))
        assert none is None
        torch.testing.assert_close(loss_in, loss, rtol=tol, atol=tol, equal_nan=True)
    close = dict(rtol=tol, atol=tol, equal_nan=True)
    torch.testing.assert_close(in_kernel, outside, **close)
    torch.testing.assert_close(adam_in.s1, adam_out.s1, **close)
    torch.testing.assert_close(adam_in.s2, adam_out.s2, **close)
    assert adam_in.steps.tolist() == adam_out.steps.tolist() == [3, 3, 0, 3, 0, 3]
    moved = (in_kernel != flat) & ~flat.isnan()
    assert not moved[2].any() and not moved[4].any() and moved[0].any()
    mask = _FlatParams(stack.masks).flat.detach()
    assert (in_kernel[mask == 0] == 0).all()                # the padding was never visited
