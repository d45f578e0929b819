"""The fused unembedding cross-entropy and the stacked Adam against torch's own."""

import pytest
import torch

from factlab.training.adam import AdamConfig, StackedAdam
from factlab.training.loss import unembed_cross_entropy, vocab_bias


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_loss_matches_cross_entropy_values_and_gradients(dtype):
    g = torch.Generator().manual_seed(0)
    M, L, D, T = 3, 7, 5, 11
    sizes = [11, 6, 9]  # vocabulary of each model
    resid = torch.randn(M, L, D, generator=g, dtype=dtype).requires_grad_(True)
    W_U = torch.randn(M, D, T, generator=g, dtype=dtype).requires_grad_(True)
    mask = torch.arange(T)[None] < torch.tensor(sizes)[:, None]
    target = torch.stack([torch.randint(0, s, (L,), generator=g) for s in sizes])
    weight = torch.rand(M, L, generator=g, dtype=dtype)
    weight[1, 3:] = 0  # padded positions
    loss, nll, argmax = unembed_cross_entropy(resid, W_U, vocab_bias(mask, dtype), target, weight)
    upstream = torch.tensor([0.5, 2.0, -1.0], dtype=dtype)
    gr, gw = torch.autograd.grad((loss * upstream).sum(), [resid, W_U])

    ref_losses, ref_nll = [], []
    for m in range(M):
        logits = resid[m] @ W_U[m, :, : sizes[m]]
        ce = torch.nn.functional.cross_entropy(logits, target[m], reduction="none")
        ref_nll.append(ce)
        ref_losses.append((ce * weight[m]).sum())
        assert torch.equal(argmax[m], logits.argmax(-1))
    ref_loss = torch.stack(ref_losses)
    rr, rw = torch.autograd.grad((ref_loss * upstream).sum(), [resid, W_U])
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, ref_loss, **tol)
    torch.testing.assert_close(nll, torch.stack(ref_nll), **tol)
    torch.testing.assert_close(gr, rr, **tol)
    torch.testing.assert_close(gw, rw, **tol)
    # tokens outside a vocabulary get probability e^LOG_FLOOR, so their gradient is negligible
    # (the model's masks then zero it exactly: see test_padding_is_inert_in_training)
    assert gw[1, :, 6:].abs().max() < (1e-290 if dtype == torch.float64 else 1e-30)


@pytest.mark.parametrize("compiled", [False, True], ids=["torch", "compiled"])
def test_stacked_adam_is_per_model_adamw_and_leaves_inactive_models_alone(compiled):
    g = torch.Generator().manual_seed(1)
    p0 = {"a": torch.randn(4, 3, 5, generator=g, dtype=torch.float64), "b": torch.randn(4, 7, generator=g, dtype=torch.float64)}
    cfg = AdamConfig(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1)
    params = {n: p.clone() for n, p in p0.items()}
    adam = StackedAdam(params, cfg)
    grads_seq = [{n: torch.randn(p.shape, generator=g, dtype=torch.float64) for n, p in p0.items()} for _ in range(6)]
    active_seq = [torch.tensor([1, 1, 0, 1], dtype=torch.bool)] * 3 + [torch.tensor([1, 0, 1, 1], dtype=torch.bool)] * 3
    for grads, active in zip(grads_seq, active_seq):
        adam.step(params, grads, active, compiled=compiled)
    for m in range(4):
        ref = {n: p[m].clone().requires_grad_(True) for n, p in p0.items()}
        opt = torch.optim.AdamW(list(ref.values()), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
        for grads, active in zip(grads_seq, active_seq):
            if active[m]:
                for n in ref:
                    ref[n].grad = grads[n][m].clone()
                opt.step()
        for n in ref:
            torch.testing.assert_close(params[n][m], ref[n].detach(), rtol=1e-12, atol=1e-12)
    assert adam.steps.tolist() == [6, 3, 3, 6]


def test_compiled_adam_equals_torch_adam_in_float32_and_ignores_nan_in_inactive_rows():
    g = torch.Generator().manual_seed(4)
    p0 = torch.randn(5, 40, generator=g)
    cfg = AdamConfig(lr=0.03, weight_decay=0.05)
    runs = {}
    for compiled in (False, True):
        p = {"flat": p0.clone()}
        adam = StackedAdam(p, cfg)
        gen = torch.Generator().manual_seed(5)
        for step in range(8):
            grad = torch.randn(5, 40, generator=gen)
            active = torch.tensor([True, step % 2 == 0, True, False, True])
            grad[3] = float("nan")                      # never active: must not leak in
            adam.step(p, {"flat": grad}, active, compiled=compiled)
        runs[compiled] = (p["flat"], adam)
    torch.testing.assert_close(runs[True][0], runs[False][0], rtol=1e-6, atol=1e-6)
    assert torch.equal(runs[True][0][3], p0[3]) and (runs[True][1].exp_avg["flat"][3] == 0).all()
    assert runs[True][1].steps.tolist() == [8, 4, 8, 0, 8]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bias_corrections_are_torch_optims_at_any_step_count(dtype):
    """The per-step bias corrections come from a table that grows on demand (it starts at
    1,024 steps); at every step count, on both sides of a growth, they equal torch.optim's
    Python-float ``1 - beta^t`` cast to the dtype, and kernel_state hands over those of the
    next step."""
    b1, b2 = 0.8, 0.995
    adam = StackedAdam({"w": torch.zeros(6, 3, dtype=dtype)}, AdamConfig(betas=(b1, b2)))
    for steps in ([0, 1, 2, 10, 1023, 5], [1024, 1025, 0, 3000, 7, 2048]):
        adam.steps = torch.tensor(steps)
        bc1, bc2 = adam._bias_corrections(adam.steps, dtype)
        t = [max(s, 1) for s in steps]
        assert torch.equal(bc1, torch.tensor([1 - b1 ** k for k in t], dtype=torch.float64).to(dtype))
        assert torch.equal(bc2, torch.tensor([1 - b2 ** k for k in t], dtype=torch.float64).to(dtype))
        bias = adam.kernel_state("w")[3]
        expect = [[1 - b1 ** (s + 1), 1 - b2 ** (s + 1)] for s in steps]
        assert (bias == torch.tensor(expect, dtype=torch.float64).to(dtype).numpy()).all()
