"""Element-wise optimizer updates, compiled: the arithmetic every optimizer step shares.

Adam (with coupled L2 weight decay, as ``torch.optim.Adam``), AdamW (decoupled decay, as
``torch.optim.AdamW``) and SGD with momentum (as ``torch.optim.SGD``) are element-wise, so
one step of a model is a loop over its parameters. This leaf module holds that loop once;
:mod:`factlab.training.optim` steps stacks of models with it, and a model family's
compiled training step (:mod:`factlab.models.attention_kernel`) calls it to update a
model's own weights inside its own pass. Neither imports the other: the optimizer hands
the step its state (:class:`KernelUpdate`), built here.

A rule is an integer code, its hyper-parameters a row ``k`` per model in the parameters'
dtype (so that the loops vectorise; a row each, so that the models of one stack may step
with different learning rates), and each model carries two numbers ``c = (c1, c2)`` that
change with its step count:

- :data:`ADAM`: ``k = (b1, 1 - b1, b2, 1 - b2, lr, eps, 1 - lr·wd_decoupled, wd_l2)``;
  state ``s1`` the first moment, ``s2`` the second; ``c`` the bias corrections
  ``(1 - b1^t, 1 - b2^t)`` of the step being taken.
- :data:`SGD`: ``k = (lr, momentum, 1 - dampening, wd_l2, nesterov)``; ``s1`` the momentum
  buffer; ``c1 = 1`` on a model's first step (the buffer starts as the gradient, as
  torch's does), else 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from factlab._numba import njit

ADAM = 0
SGD = 1


class KernelUpdate(NamedTuple):
    """An optimizer's state as a compiled step takes it (numpy views, updated in place).

    ``rule``: :data:`ADAM` or :data:`SGD`; ``s1``, ``s2`` ``(M, n_params)``: the rule's state;
    ``steps (M,)`` int64: steps taken so far, to be incremented by the step;
    ``c (M, 2)``: each model's step-dependent numbers for its *next* step; ``k (M, 8)``: each
    model's hyper-parameters. A step of model m over ``[start, stop)`` of its row is
    ``span(p, g, s1[m], s2[m], start, stop, rule, c[m, 0], c[m, 1], k[m])``, after which
    ``steps[m] += 1``."""

    rule: int
    s1: np.ndarray
    s2: np.ndarray
    steps: np.ndarray
    c: np.ndarray
    k: np.ndarray


def span(p, g, s1, s2, start, stop, rule, c1, c2, k):
    """One step of ``p[start:stop]`` (1-D, updated in place with its state ``s1``, ``s2``)
    with gradient ``g``, by ``rule`` (see the module docstring)."""
    if rule == ADAM:
        b1, nb1, b2, nb2, lr, eps, decay, l2 = k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
        if l2 != 0:
            for j in range(start, stop):
                gj = g[j] + l2 * p[j]
                mj = s1[j] * b1 + gj * nb1
                vj = s2[j] * b2 + gj * gj * nb2
                s1[j] = mj
                s2[j] = vj
                p[j] = p[j] * decay - lr * (mj / c1) / (math.sqrt(vj / c2) + eps)
        else:
            for j in range(start, stop):
                gj = g[j]
                mj = s1[j] * b1 + gj * nb1
                vj = s2[j] * b2 + gj * gj * nb2
                s1[j] = mj
                s2[j] = vj
                p[j] = p[j] * decay - lr * (mj / c1) / (math.sqrt(vj / c2) + eps)
    else:
        lr, mom, damp, l2, nesterov = k[0], k[1], k[2], k[3], k[4]
        for j in range(start, stop):
            gj = g[j] + l2 * p[j] if l2 != 0 else g[j]
            if mom != 0:
                bj = gj if c1 != 0 else s1[j] * mom + gj * damp
                s1[j] = bj
                gj = gj + bj * mom if nesterov != 0 else bj
            p[j] = p[j] - lr * gj


def masked_rows(rows, p, g, s1, s2, mask, rule, c, k):
    """:func:`span` over each row ``r`` of ``rows`` (2-D arrays ``(M, n_params)``, ``k (M, 8)``), touching only
    the entries where ``mask[r]`` is nonzero: elsewhere ``p``, ``s1`` and ``s2`` keep their
    values (frozen entries and padding stay as they are, weight decay included)."""
    P = p.shape[1]
    two = s2.shape[1] == P                       # SGD keeps no second state
    tmp_p = np.empty(P, p.dtype)
    tmp_1 = np.empty(P, p.dtype)
    tmp_2 = np.empty(P if two else 0, p.dtype)
    for r in rows:
        tmp_p[:] = p[r]
        tmp_1[:] = s1[r]
        if two:
            tmp_2[:] = s2[r]
        span(tmp_p, g[r], tmp_1, tmp_2, 0, P, rule, c[r, 0], c[r, 1], k[r])
        pr, ar, br, mr = p[r], s1[r], s2[r], mask[r]
        for j in range(P):
            if mr[j]:
                pr[j] = tmp_p[j]
                ar[j] = tmp_1[j]
                if two:
                    br[j] = tmp_2[j]


def whole_rows(rows, p, g, s1, s2, rule, c, k):
    """:func:`span` over the whole of each row ``r`` of ``rows`` (no mask: every entry trains,
    or the untrained ones have zero gradient, zero state and zero value, as padding has)."""
    P = p.shape[1]
    for r in rows:
        span(p[r], g[r], s1[r], s2[r], 0, P, rule, c[r, 0], c[r, 1], k[r])


if njit is not None:
    # no fastmath: the step must round as torch's element-wise form does, whoever calls it
    span = njit(cache=True, nogil=True, error_model="numpy", inline="always")(span)
    masked_rows = njit(cache=True, nogil=True, error_model="numpy")(masked_rows)
    whole_rows = njit(cache=True, nogil=True, error_model="numpy")(whole_rows)
