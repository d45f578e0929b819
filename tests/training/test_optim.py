"""The stacked optimizers against torch.optim run on each model alone."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from factlab.errors import ConfigError
from factlab.training.optim import SGD, Adam, AdamW, StackedOptimizer, optimizer_from_dict

CONFIGS = {
    "adam": Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-7),
    "adam-l2": Adam(lr=0.02, weight_decay=0.1),
    "adamw": AdamW(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1),
    "sgd": SGD(lr=0.1),
    "sgd-l2": SGD(lr=0.05, weight_decay=0.2),
    "momentum": SGD(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    "nesterov": SGD(lr=0.05, momentum=0.8, nesterov=True),
}


def torch_optimizer(config, params):
    """The torch.optim counterpart of a config (single-tensor implementation)."""
    if isinstance(config, AdamW):
        return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                 weight_decay=config.weight_decay, foreach=False)
    if isinstance(config, Adam):
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                weight_decay=config.weight_decay, foreach=False)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, dampening=config.dampening,
                           weight_decay=config.weight_decay, nesterov=config.nesterov, foreach=False)


@pytest.mark.parametrize("compiled", [False, True], ids=["torch", "compiled"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_each_model_steps_as_torch_optim_alone_and_inactive_models_stay(name, compiled):
    cfg = CONFIGS[name]
    g = torch.Generator().manual_seed(1)
    p0 = torch.randn(4, 9, generator=g, dtype=torch.float64)
    params = p0.clone()
    opt = StackedOptimizer(cfg, params)
    grads = [torch.randn(4, 9, generator=g, dtype=torch.float64) for _ in range(7)]
    actives = [torch.tensor([1, 1, 0, 1], dtype=torch.bool)] * 3 + [torch.tensor([1, 0, 1, 1], dtype=torch.bool)] * 4
    for grad, active in zip(grads, actives):
        opt.step(params, grad, active, compiled=compiled)
    for m in range(4):
        ref = p0[m].clone().requires_grad_(True)
        ref_opt = torch_optimizer(cfg, [ref])
        for grad, active in zip(grads, actives):
            if active[m]:
                ref.grad = grad[m].clone()
                ref_opt.step()
        torch.testing.assert_close(params[m], ref.detach(), rtol=1e-12, atol=1e-12)
    assert opt.steps.tolist() == [7, 3, 4, 7]


@pytest.mark.parametrize("compiled", [False, True], ids=["torch", "compiled"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_learning_rate_per_model_steps_each_as_torch_optim_at_its_own_rate(name, compiled):
    """``lr=`` gives each model its own rate (AdamW's decoupled decay ``1 - lr·wd`` too),
    with and without a mask, and survives ``take``."""
    cfg = CONFIGS[name]
    rates = [0.001, 0.03, 0.2, 0.07]
    g = torch.Generator().manual_seed(4)
    p0 = torch.randn(4, 9, generator=g, dtype=torch.float64)
    mask = torch.rand(4, 9, generator=g) < 0.7
    grads = [torch.randn(4, 9, generator=g, dtype=torch.float64) for _ in range(6)]
    for m_ in (None, mask):
        params = p0.clone()
        opt = StackedOptimizer(cfg, params, m_, lr=rates)
        for grad in grads[:3]:
            opt.step(params, grad, torch.ones(4, dtype=torch.bool), compiled=compiled)
        keep = torch.tensor([3, 1])                      # the rows of models 3 and 1 go on alone
        opt, params = opt.take(keep), params[keep].clone()
        for grad in grads[3:]:
            opt.step(params, grad[keep], torch.ones(2, dtype=torch.bool), compiled=compiled)
        for j, m in enumerate(keep.tolist()):
            on = torch.ones(9, dtype=torch.bool) if m_ is None else mask[m]
            ref = p0[m, on].clone().requires_grad_(True)
            ref_opt = torch_optimizer(replace(cfg, lr=rates[m]), [ref])
            for grad in grads:
                ref.grad = grad[m, on].clone()
                ref_opt.step()
            torch.testing.assert_close(params[j, on], ref.detach(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ConfigError, match="3 learning rates for 4 models"):
        StackedOptimizer(cfg, p0, lr=[0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="lr must be"):
        StackedOptimizer(cfg, p0, lr=[0.1, 0.2, -0.3, 0.1])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_masked_entries_never_move_and_the_rest_step_as_torch_optim_with_those_entries_left_out(name):
    """A mask per entry (padding, partial freezing): masked entries keep their value and
    state, weight decay included; the others step as torch.optim steps a tensor made of
    them alone (the optimizers are element-wise)."""
    cfg = CONFIGS[name]
    g = torch.Generator().manual_seed(2)
    p0 = torch.randn(3, 12, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 12, generator=g) < 0.6
    for compiled in (False, True):
        params = p0.clone()
        opt = StackedOptimizer(cfg, params, mask)
        gen = torch.Generator().manual_seed(3)
        grads = [torch.randn(3, 12, generator=gen, dtype=torch.float64) for _ in range(5)]
        for grad in grads:
            opt.step(params, grad, torch.ones(3, dtype=torch.bool), compiled=compiled)
        assert torch.equal(params[~mask], p0[~mask])
        for m in range(3):
            ref = p0[m, mask[m]].clone().requires_grad_(True)
            ref_opt = torch_optimizer(cfg, [ref])
            for grad in grads:
                ref.grad = grad[m, mask[m]].clone()
                ref_opt.step()
            torch.testing.assert_close(params[m, mask[m]], ref.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["adamw", "momentum"])
def test_compiled_equals_torch_in_float32_and_ignores_nan_in_inactive_rows(name):
    g = torch.Generator().manual_seed(4)
    p0 = torch.randn(5, 40, generator=g)
    runs = {}
    for compiled in (False, True):
        p = p0.clone()
        opt = StackedOptimizer(CONFIGS[name], p)
        gen = torch.Generator().manual_seed(5)
        for step in range(8):
            grad = torch.randn(5, 40, generator=gen)
            active = torch.tensor([True, step % 2 == 0, True, False, True])
            grad[3] = float("nan")                      # never active: must not leak in
            opt.step(p, grad, active, compiled=compiled)
        runs[compiled] = (p, opt)
    torch.testing.assert_close(runs[True][0], runs[False][0], rtol=1e-6, atol=1e-6)
    assert torch.equal(runs[True][0][3], p0[3]) and (runs[True][1].s1[3] == 0).all()
    assert runs[True][1].steps.tolist() == [8, 4, 8, 0, 8]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_numbers_are_torch_optims_at_any_step_count(dtype):
    """Adam's bias corrections come from a table that grows on demand (it starts at 1,024
    steps); at every step count, on both sides of a growth, they equal torch.optim's
    Python-float ``1 - beta^t`` cast to the dtype, and kernel_state hands over those of the
    next step. SGD's number is 1 on a model's first step only."""
    b1, b2 = 0.8, 0.995
    opt = StackedOptimizer(Adam(betas=(b1, b2)), torch.zeros(6, 3, dtype=dtype))
    for steps in ([0, 1, 2, 10, 1023, 5], [1024, 1025, 0, 3000, 7, 2048]):
        opt.steps = torch.tensor(steps)
        c = opt._step_numbers(opt.steps.numpy(), dtype)
        t = [max(s, 1) for s in steps]
        expect = torch.tensor([[1 - b1 ** k, 1 - b2 ** k] for k in t], dtype=torch.float64).to(dtype).numpy()
        assert (c == expect).all()
        nxt = opt.kernel_state().c
        expect = torch.tensor([[1 - b1 ** (s + 1), 1 - b2 ** (s + 1)] for s in steps], dtype=torch.float64)
        assert (nxt == expect.to(dtype).numpy()).all()
    sgd = StackedOptimizer(SGD(momentum=0.5), torch.zeros(3, 2, dtype=dtype))
    sgd.steps = torch.tensor([0, 1, 5])
    assert sgd.kernel_state().c[:, 0].tolist() == [1.0, 0.0, 0.0]


def test_configs_round_trip_and_bad_values_are_refused():
    for cfg in CONFIGS.values():
        assert optimizer_from_dict(cfg.to_dict()) == cfg
    assert AdamW().weight_decay == 0.01                 # torch's default
    assert optimizer_from_dict({"lr": 0.5}) == Adam(lr=0.5)
    for bad in ({"kind": "rmsprop"}, {"kind": "sgd", "betas": [0.9, 0.9]}):
        with pytest.raises(ConfigError):
            optimizer_from_dict(bad)
    for make in (lambda: Adam(lr=-1.0), lambda: Adam(betas=(0.9, 1.0)), lambda: SGD(nesterov=True),
                 lambda: SGD(momentum=0.9, dampening=0.5, nesterov=True), lambda: SGD(dampening=2.0)):
        with pytest.raises(ConfigError):
            make()


def test_kernel_state_refuses_a_masked_optimizer():
    opt = StackedOptimizer(Adam(), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="masked"):
        opt.kernel_state()
    assert np.asarray(opt.take(torch.tensor([1])).mask).shape == (1, 3)
