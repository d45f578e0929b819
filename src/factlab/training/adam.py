"""Adam over stacked parameters, stepping each model only when asked.

Adam is elementwise, so Adam on a tensor holding M models' weights is M independent
Adams, provided each model keeps its own step count (for bias correction) and a model
that must not move (finished, diverged, or without data this step) has neither its
weights nor its moments touched. This module does exactly that; the test suite checks
it against ``torch.optim.AdamW`` run on each model alone.

Weight decay is decoupled (AdamW, Loshchilov & Hutter): ``w <- w - lr·wd·w`` before the
Adam step. With ``weight_decay = 0`` this is plain Adam.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AdamConfig:
    lr: float = 1e-2          # the paper does not give one; chosen for 2,000-epoch full-batch runs
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0


class StackedAdam:
    """Adam state for a dict of stacked parameters ``(M, ...)``; per-model step counts."""

    def __init__(self, params: dict[str, torch.Tensor], config: AdamConfig):
        self.config = config
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        first = next(iter(params.values()))
        self.steps = torch.zeros(first.shape[0], dtype=torch.long, device=first.device)  # (M,)

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], active: torch.Tensor) -> None:
        """Update in place the models where ``active`` ``(M,)`` is true; leave the others as they are."""
        c = self.config
        b1, b2 = c.betas
        self.steps += active.long()
        t = self.steps.clamp(min=1).double()
        dtype = first_dtype(params)
        bc1 = (1 - b1 ** t).to(dtype)  # (M,) bias corrections, computed in float64 as torch.optim does
        bc2 = (1 - b2 ** t).to(dtype)
        for name, p in params.items():
            g = grads[name]
            shape = (-1,) + (1,) * (p.dim() - 1)
            on = active.view(shape)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            g = torch.where(on, g, torch.zeros((), dtype=g.dtype, device=g.device))  # NaN-safe
            m.copy_(torch.where(on, m * b1 + g * (1 - b1), m))
            v.copy_(torch.where(on, v * b2 + g * g * (1 - b2), v))
            denom = (v / bc2.view(shape)).sqrt_().add_(c.eps)
            new = p * (1 - c.lr * c.weight_decay) if c.weight_decay else p
            new = new - c.lr * (m / bc1.view(shape)) / denom
            p.copy_(torch.where(on, new, p))

    def take(self, index: torch.Tensor) -> "StackedAdam":
        """The state of the models at ``index``."""
        out = StackedAdam.__new__(StackedAdam)
        out.config = self.config
        out.exp_avg = {n: t.index_select(0, index) for n, t in self.exp_avg.items()}
        out.exp_avg_sq = {n: t.index_select(0, index) for n, t in self.exp_avg_sq.items()}
        out.steps = self.steps.index_select(0, index)
        return out


def first_dtype(params: dict[str, torch.Tensor]) -> torch.dtype:
    return next(iter(params.values())).dtype
