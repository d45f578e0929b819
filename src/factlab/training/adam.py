"""Adam over stacked parameters, stepping each model only when asked.

Adam is elementwise, so Adam on a tensor holding M models' weights is M independent
Adams, provided each model keeps its own step count (for bias correction) and a model
that must not move (finished, diverged, or without data this step) has neither its
weights nor its moments touched. This module does exactly that; the test suite checks
it against ``torch.optim.AdamW`` run on each model alone.

Weight decay is decoupled (AdamW, Loshchilov & Hutter): ``w <- w - lr·wd·w`` before the
Adam step. With ``weight_decay = 0`` this is plain Adam.

On CPU, with numba importable, a step over ``(M, P)`` float tensors runs as one compiled
pass per model row (on the threads torch is set to use) instead of a dozen tensor
operations; the torch form stays for other devices and the test suite compares the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from factlab._numba import njit
from factlab._threads import run_split


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
        self._bias_tables: dict = {}     # dtype -> (2, T) on CPU: 1 - b^t for t = 0, 1, ...
        self._constant_arrays: dict = {}  # dtype -> adam_span's constants

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], active: torch.Tensor,
             compiled: bool | None = None, threads: int | None = None) -> None:
        """Update in place the models where ``active`` ``(M,)`` is true; leave the others as they are.

        ``compiled``: use the compiled CPU step (None: wherever it can run, see
        :meth:`can_compile`), on ``threads`` threads (None: torch's setting).
        """
        c = self.config
        b1, b2 = c.betas
        self.steps += active.long()
        bc1, bc2 = self._bias_corrections(self.steps, first_dtype(params))
        if compiled is None:
            compiled = self.can_compile(params, grads)
        if compiled:
            self._step_compiled(params, grads, active, bc1, bc2, threads or torch.get_num_threads())
            return
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

    def can_compile(self, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> bool:
        """Whether :meth:`step` can take the compiled path: numba importable, every tensor
        a contiguous float32/float64 CPU tensor ``(M, ...)`` of one dtype."""
        if njit is None:
            return False
        tensors = [t for n in params for t in (params[n], grads[n], self.exp_avg[n], self.exp_avg_sq[n])]
        dtype = tensors[0].dtype
        return all(t.device.type == "cpu" and t.dtype == dtype and t.dtype in (torch.float32, torch.float64)
                   and t.dim() >= 1 and t.is_contiguous() for t in tensors)

    def _step_compiled(self, params, grads, active, bc1, bc2, threads: int) -> None:
        """The update of :meth:`step` (step counts already advanced) by :func:`_adam_rows`."""
        rows = torch.nonzero(active).flatten().numpy()
        bc = torch.stack([bc1, bc2], dim=1).numpy()
        k = self._constants(bc1.dtype)
        for name, p in params.items():
            M = p.shape[0]
            rows_of = [x.detach().reshape(M, -1).numpy()
                       for x in (p, grads[name], self.exp_avg[name], self.exp_avg_sq[name])]
            run_split(_adam_rows, rows, np.ones(M), threads, *rows_of, bc, k)

    def _bias_corrections(self, steps: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 - b1^t, 1 - b2^t)`` ``(M,)`` at step counts ``steps`` (t at least 1), computed
        in float64, then cast to ``dtype``. On CPU they are read from :meth:`_bias_table`
        (the values :meth:`kernel_state` hands over); on another device they are computed
        there, since sizing the table would read the step counts back and wait for the
        device on every step."""
        t = steps.clamp(min=1)
        if steps.device.type != "cpu":
            b1, b2 = self.config.betas
            return (1 - b1 ** t.double()).to(dtype), (1 - b2 ** t.double()).to(dtype)
        table = self._bias_table(dtype, int(t.max()) if t.numel() else 1)
        return table[0, t], table[1, t]

    def _bias_table(self, dtype: torch.dtype, t_max: int) -> torch.Tensor:
        """``(2, T)`` on CPU: ``1 - b1^t`` and ``1 - b2^t`` for t = 0, 1, ..., at least up to
        ``t_max``, computed as torch.optim computes them (Python floats); kept per dtype
        (doubled when a step count outgrows it), so a step computes no powers."""
        table = self._bias_tables.get(dtype)
        if table is None or table.shape[1] <= t_max:
            size = max(t_max + 1, 2 * table.shape[1] if table is not None else 1024)
            b1, b2 = self.config.betas
            rows = [[1 - b1 ** k for k in range(size)], [1 - b2 ** k for k in range(size)]]
            table = self._bias_tables[dtype] = torch.tensor(rows, dtype=torch.float64).to(dtype)
        return table

    def _constants(self, dtype: torch.dtype) -> np.ndarray:
        """``(b1, 1 - b1, b2, 1 - b2, lr, eps, 1 - lr·wd)`` in ``dtype``, as :func:`adam_span` takes them."""
        k = self._constant_arrays.get(dtype)
        if k is None:
            c = self.config
            b1, b2 = c.betas
            k = self._constant_arrays[dtype] = torch.tensor(
                [b1, 1 - b1, b2, 1 - b2, c.lr, c.eps, 1 - c.lr * c.weight_decay], dtype=dtype).numpy()
        return k

    def kernel_state(self, name: str) -> tuple[np.ndarray, ...]:
        """The state of parameter ``name`` for a compiled step that applies Adam itself (the
        attention kernel's ``step``, see :func:`factlab.models.attention_kernel.loss_and_grad`):
        ``(exp_avg (M, P), exp_avg_sq (M, P), steps (M,) int64, bias (M, 2), constants (7,))``.
        The first three are numpy views of this object's tensors, to be updated in place;
        ``bias[m]`` holds the bias corrections ``(1 - b1^t, 1 - b2^t)`` of model m's next
        step (t = ``steps[m] + 1``), the values :meth:`step` uses. Such a step must add one
        to ``steps[m]`` and update with :func:`adam_span`; it then gives what :meth:`step`
        gives, bit for bit. The tensors must be contiguous CPU tensors (:meth:`can_compile`).
        Built with numpy, not torch: the engine asks for it every epoch."""
        m, v = self.exp_avg[name], self.exp_avg_sq[name]
        M = m.shape[0]
        steps = self.steps.numpy()
        t = steps + 1
        table = self._bias_table(m.dtype, int(t.max()) if M else 1).numpy()
        bias = np.ascontiguousarray(table[:, t].T)
        return (m.reshape(M, -1).numpy(), v.reshape(M, -1).numpy(), steps, bias, self._constants(m.dtype))

    def take(self, index: torch.Tensor) -> "StackedAdam":
        """The state of the models at ``index``."""
        out = StackedAdam.__new__(StackedAdam)
        out.config = self.config
        out.exp_avg = {n: t.index_select(0, index) for n, t in self.exp_avg.items()}
        out.exp_avg_sq = {n: t.index_select(0, index) for n, t in self.exp_avg_sq.items()}
        out.steps = self.steps.index_select(0, index)
        out._bias_tables, out._constant_arrays = self._bias_tables, self._constant_arrays
        return out


def first_dtype(params: dict[str, torch.Tensor]) -> torch.dtype:
    return next(iter(params.values())).dtype


def adam_span(p, g, m, v, start, stop, c1, c2, k):
    """One Adam step of ``p[start:stop]`` with gradient ``g``, moments ``m``, ``v`` (all 1-D,
    updated in place), bias corrections ``c1 = 1 - b1^t``, ``c2 = 1 - b2^t`` and ``k = (b1,
    1 - b1, b2, 1 - b2, lr, eps, 1 - lr·wd)``, all in ``p``'s dtype (so the loop
    vectorises): the torch form of :meth:`StackedAdam.step`, written out per element."""
    b1, nb1, b2, nb2, lr, eps, decay = k[0], k[1], k[2], k[3], k[4], k[5], k[6]
    for j in range(start, stop):
        gj = g[j]
        mj = m[j] * b1 + gj * nb1
        vj = v[j] * b2 + gj * gj * nb2
        m[j] = mj
        v[j] = vj
        p[j] = p[j] * decay - lr * (mj / c1) / (math.sqrt(vj / c2) + eps)


def _adam_rows(rows, p, g, m, v, bc, k):
    """:func:`adam_span` over the whole of each row ``r`` of ``rows``, with the bias
    corrections ``bc[r] = (1 - b1^t, 1 - b2^t)``."""
    for r in rows:
        adam_span(p[r], g[r], m[r], v[r], 0, p.shape[1], bc[r, 0], bc[r, 1], k)


if njit is not None:
    adam_span = njit(cache=True, nogil=True, error_model="numpy", inline="always")(adam_span)
    _adam_rows = njit(cache=True, nogil=True, error_model="numpy")(_adam_rows)
