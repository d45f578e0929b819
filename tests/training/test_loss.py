"""The fused unembedding cross-entropy against torch's own."""

import pytest
import torch

from factlab.training.loss import unembed_cross_entropy, vocab_bias


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_loss_matches_cross_entropy_values_and_gradients(dtype):
    g = torch.Generator().manual_seed(0)
    M, R, D, O = 3, 7, 5, 11   # R = B·P rows (scored positions), O outputs
    sizes = [11, 6, 9]  # vocabulary of each model
    resid = torch.randn(M, R, D, generator=g, dtype=dtype).requires_grad_(True)
    W_U = torch.randn(M, D, O, generator=g, dtype=dtype).requires_grad_(True)
    mask = torch.arange(O)[None] < torch.tensor(sizes)[:, None]
    target = torch.stack([torch.randint(0, s, (R,), generator=g) for s in sizes])
    weight = torch.rand(M, R, generator=g, dtype=dtype)
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
