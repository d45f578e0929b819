"""Batched search for exact CP decompositions of many small sparse 3-tensors at once.

The rank interval of :mod:`factlab.tensors.rank` needs, for many tensors and many trial
ranks, a yes/no answer to "is there a CP decomposition of rank r that reproduces T
exactly?", found numerically. This module answers a whole list of such problems (tensor,
rank, random start) in one stack, written once for a leading problem axis ``P``:

- every problem is padded to the stack's largest ``(I, J, K)``, number of stored entries
  ``N`` and rank ``R``; padded rows, entries (value 0) and rank components (masked to 0)
  are provably inert (:mod:`factlab.tensors.cp_stack`), so a problem fitted in a stack
  follows the same iterates as alone (up to the order of floating-point sums);
- the fit is Levenberg-Marquardt (damped Gauss-Newton) on ``f = 1/2 ||T - [[A, B, C]]||^2``
  with the Gauss-Newton system solved by block-Jacobi preconditioned conjugate gradients
  (:mod:`factlab.tensors.cp_lm`): unlike ALS it converges quadratically onto an exact
  decomposition;
- nothing is ever densified: the MTTKRPs run over the ``N`` stored entries of T and the
  model's norm comes from the Gram matrices;
- each problem stops on its own, when its residual reaches the exactness tolerance or when
  its loss stagnates, and finished problems leave the stack.

What counts as an *exact* fit (entry-wise error and a bound on the terms' norms) is stated
in :mod:`factlab.tensors.cp_problem`, with the configuration and the problem types.

Layout: :mod:`~factlab.tensors.cp_problem` (config, problems, exactness),
:mod:`~factlab.tensors.cp_stack` (padding, starts, buckets), :mod:`~factlab.tensors.cp_lm`
(the iteration, compiled or torch), :mod:`~factlab.tensors.cp_kernel` (the compiled
iteration), :mod:`~factlab.tensors.cp_fibers` (masked fits for the effective rank); this
module drives them (:func:`fit_exact`) and re-exports their names, so that everything
stays importable from ``factlab.tensors.cp_search``.
"""

from __future__ import annotations

import torch

from factlab.tensors.cp_fibers import FiberProblem, _masked_als, fiber_error, fit_fibers  # noqa: F401  re-exported
from factlab.tensors.cp_lm import (_kernel_state, _KernelState, _lm, _lm_compiled, _lm_torch,  # noqa: F401  re-exported
                                   _loss, _mttkrp, _stops)
from factlab.tensors.cp_problem import (KERNELS, CPSearchConfig, Factors, Problem,  # noqa: F401  re-exported
                                        SparseTensor, cp_to_tensor, exact_error, kernel_used, problem_seed)
from factlab.tensors.cp_stack import _buckets, _Stack, _start  # noqa: F401  re-exported


def fit_exact(problems: list[Problem], config: CPSearchConfig,
              groups: list[int] | None = None) -> list[tuple[Factors, float] | None]:
    """Fit every problem; for each, ``(factors, max error)`` when the fit is exact, else None.

    Problems with the same ``groups`` entry are alternatives (restarts and trial ranks of
    one tensor): once one is exact at rank r, the others at rank >= r are skipped or stopped,
    since they can no longer lower that tensor's bound.
    """
    groups = list(range(len(problems))) if groups is None else list(groups)
    out: list[tuple[Factors, float] | None] = [None] * len(problems)
    best: dict[int, int] = {}  # group -> least exact rank so far
    for bucket in _buckets(problems, config.max_batch):
        bucket = [i for i in bucket if problems[i].rank < best.get(groups[i], problems[i].rank + 1)]
        if not bucket:
            continue
        probs = [problems[i] for i in bucket]
        stack = _Stack(probs, [_start(p) for p in probs], [groups[i] for i in bucket])
        atol = torch.tensor([config.tol * max(1.0, p.tensor.max_abs) if p.atol is None else p.atol
                             for p in probs], dtype=torch.float64)

        def verify(j: int, padded: list[torch.Tensor]) -> bool:
            p, i = probs[j], bucket[j]
            factors = tuple(f[:n, : p.rank].clone() for f, n in zip(padded, p.tensor.shape))
            err = exact_error(p.tensor, factors, config, p.atol)
            if err is None:
                return False
            out[i] = (factors, err)
            best[groups[i]] = min(best.get(groups[i], p.rank), p.rank)
            return True

        _lm(stack, config, atol, verify)
    return out
