"""Unembedding fused with next-token cross-entropy, per model.

The logits of a stack, ``(M, B·P, O)`` (B·P scored positions, O outputs), are by far its
largest tensor; the stock path (matmul, mask, log_softmax, gather and their backwards)
reads and writes it a dozen times.
:class:`UnembedCrossEntropy` computes the loss from the residual stream and ``W_out``
in one pass over the logits buffer: the forward pass turns it in place into
``weight · (softmax - onehot)``, the gradient with respect to the logits, and the backward
pass only multiplies it into the two matmul gradients. The test suite
checks values and gradients against ``torch.nn.functional.cross_entropy``.
"""

from __future__ import annotations

import torch

# Added to the logits of tokens beyond a model's vocabulary: exp() of it is exactly 0 in
# float32 and float64, and unlike -inf it cannot make 0 * inf = NaN inside a matmul.
_OUTSIDE = -1e30
#: Log-probabilities are floored here before exp (see :func:`_exp_floored`).
LOG_FLOOR = {torch.float32: -80.0, torch.float64: -700.0, torch.float16: -15.0, torch.bfloat16: -80.0}


def vocab_bias(token_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(M, 1, O)``: 0 on each model's own outputs (``token_mask (M, O)``), a huge negative
    number beyond them."""
    bias = torch.zeros(token_mask.shape, dtype=dtype, device=token_mask.device)
    return bias.masked_fill(~token_mask, _OUTSIDE)[:, None, :]


class UnembedCrossEntropy(torch.autograd.Function):
    """``loss[m] = Σ_i weight[m, i] · CE(resid[m, i] @ W_out[m] + bias[m], target[m, i])``.

    Inputs, one row per scored position of every sequence: ``resid (M, B·P, D)``,
    ``W_out (M, D, O)``, ``bias (M, 1, O)`` (from :func:`vocab_bias`), ``target (M, B·P)``
    output ids, ``weight (M, B·P)``. Returns ``(loss (M,), nll (M, B·P), argmax (M, B·P))``;
    only ``loss`` carries gradient, the other two serve the accuracy metrics
    (``want_argmax=False`` skips the argmax, returning an empty tensor in its place).
    """

    @staticmethod
    def forward(ctx, resid, W_out, bias, target, weight, want_argmax=True):
        logits = torch.baddbmm(bias, resid, W_out)                    # (M, B·P, O)
        picked = logits.gather(-1, target[..., None]).squeeze(-1)   # (M, B·P)
        argmax = logits.argmax(dim=-1) if want_argmax else target.new_empty(0)  # (M, B·P)
        top = logits.amax(dim=-1, keepdim=True)                     # (M, B·P, 1)
        probs = _exp_floored(logits.sub_(top))                      # (M, B·P, O) unnormalised, in place
        total = probs.sum(dim=-1)                                   # (M, B·P)
        lse = top.squeeze(-1) + total.log()
        nll = lse - picked
        scale = torch.where(weight > 0, weight, 0)                  # (M, B·P)
        loss = (nll.where(weight > 0, 0) * scale).sum(dim=1)        # (M,)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            # d loss / d logits = weight · (softmax - onehot), formed now while the
            # exponentials are at hand; backward only scales it by each model's grad_loss
            probs.mul_((scale / total)[..., None])
            probs.scatter_add_(-1, target[..., None], -scale[..., None])
            ctx.save_for_backward(resid, W_out, probs)
        ctx.mark_non_differentiable(nll, argmax)
        return loss, nll, argmax

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll, _grad_argmax):
        resid, W_out, g = ctx.saved_tensors                           # g: (M, B·P, O)
        per_model = grad_loss[:, None, None]                        # (M, 1, 1)
        grad_resid = torch.bmm(g, W_out.transpose(1, 2)) * per_model if ctx.needs_input_grad[0] else None  # (M, B·P, D)
        grad_W_out = torch.bmm(resid.transpose(1, 2), g) * per_model if ctx.needs_input_grad[1] else None  # (M, D, O)
        return grad_resid, grad_W_out, None, None, None, None


def _exp_floored(x: torch.Tensor) -> torch.Tensor:
    """``exp`` in place of log-probabilities floored at :data:`LOG_FLOOR` for their dtype.

    torch's vectorised exp falls to a much slower scalar path for arguments whose result
    underflows (docs/performance.md); flooring first keeps it fast. A probability below
    e^floor (e^-80 in float32) is taken as e^floor, which moves a loss by less than O·e^floor.
    """
    return x.clamp_(min=LOG_FLOOR[x.dtype]).exp_()


def unembed_cross_entropy(resid, W_out, bias, target, weight, want_argmax: bool = True):
    """Functional form of :class:`UnembedCrossEntropy`."""
    return UnembedCrossEntropy.apply(resid, W_out, bias, target, weight, want_argmax)
