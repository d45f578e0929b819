"""Rank intervals of database tensors and of real 3-tensors (Wong 2025, sec. 2).

Tensor (CP) rank is NP-hard to compute (Hillar & Lim 2013) and hard to approximate
(Swernofsky 2018), so we report an interval whose two ends are both proven:

- lower: the largest matrix rank of the three flattenings (unfoldings), exact modulo the
  prime 2^31 - 1 for an integer tensor, else the singular values above a threshold chosen
  so that the bound holds for every "exact" fit and the interval can never invert
  (:mod:`factlab.tensors.rank_bounds` gives the argument).
- upper: the least of ``|D|``, Proposition 2.1 ``min(Σ_k |V_k|, Σ_q |V_q|)``, the sum of
  the ranks of the object slices ``Σ_v rank D[:, :, v]`` (the same argument as Prop. 2.1,
  in mode 3), for a real tensor the trivial ``min(r1 r2, r1 r3, r2 r3)`` over its
  multilinear rank, and the least rank at which an *exact* CP decomposition was found
  numerically (see :mod:`factlab.tensors.cp_problem` for what exact means). An
  approximate fit never lowers the upper bound.

The interval is certified when the two ends meet (Example 2.2: |D| = 8, Proposition 2.1
gives 6, the interval is [5, 5]).

Before searching, a tensor is split into direct summands, each compressed to its core
(:mod:`factlab.tensors.rank_blocks`), and the cores' upper bounds are lowered by a
bisection over trial ranks, all blocks of all tensors of a round fitted in one batched
stack (:mod:`factlab.tensors.rank_search`). The effective rank of a database lives in
:mod:`factlab.tensors.rank_effective`. This module holds the public entry points and
re-exports the names of those modules, so that everything stays importable from
``factlab.tensors.rank``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from factlab.databases.database import Database
from factlab.tensors.cp_search import (CPSearchConfig, Factors, FiberProblem, Problem, SparseTensor,  # noqa: F401  re-exported
                                       exact_error, fit_exact, fit_fibers, kernel_used, problem_seed)
from factlab.tensors.database_tensor import proposition_2_1  # noqa: F401  re-exported
from factlab.tensors.rank_blocks import (_Block, _block_upper, _components, _constructive,  # noqa: F401  re-exported
                                         _interval, _make_block, _prepare, _sparse)
from factlab.tensors.rank_bounds import (PRIME, RankBound, RankInterval, _as_dense, _is_integer,  # noqa: F401  re-exported
                                         _rank_exact, _rank_mod_p, _rank_svd, _slice_ranks, _svd_atol, _unfold,
                                         flattening_ranks)
from factlab.tensors.rank_effective import _Target, effective_rank  # noqa: F401  re-exported
from factlab.tensors.rank_search import _bisect, _content_key, _lift, _search  # noqa: F401  re-exported

__all__ = ["CPSearchConfig", "RankBound", "RankInterval", "cp_decompose_exact", "effective_rank",
           "flattening_ranks", "rank_interval", "rank_intervals"]


def rank_intervals(xs: Sequence[Database | torch.Tensor], *, config: CPSearchConfig = CPSearchConfig(),
                   seed: int = 0) -> list[RankInterval]:
    """Rank intervals of many databases or 3-tensors at once (the batched path).

    All blocks of all inputs share each round of the search, so 548 databases cost a few
    batched fits rather than thousands of small ones. Same result as calling
    :func:`rank_interval` on each input with the same seed, up to floating-point order.
    """
    prepared = [_prepare(x, config) for x in xs]
    blocks = [b for _, _, _, bl in prepared for b in bl]
    _search(blocks, config, seed, [_content_key(b.core) for b in blocks])
    return [_interval(lower, uppers, bl) for _, lower, uppers, bl in prepared]


def rank_interval(x: Database | torch.Tensor, *, config: CPSearchConfig = CPSearchConfig(),
                  seed: int = 0) -> RankInterval:
    """The rank interval of a database tensor D (Wong 2025, sec. 2) or of a real 3-tensor.

    >>> rank_interval(figure_1_database)  # Example 2.2 # doctest: +SKIP
    RankInterval(lower=RankBound(5, 'flattening (mode 1, ...)'), upper=RankBound(5, 'exact CP ...'))
    """
    return rank_intervals([x], config=config, seed=seed)[0]


def cp_decompose_exact(x: Database | torch.Tensor, rank: int, *, config: CPSearchConfig = CPSearchConfig(),
                       seed: int = 0) -> Factors | None:
    """An exact CP decomposition with at most ``rank`` terms, or None when none was found.

    Returns factors ``(I, rank)``, ``(J, rank)``, ``(K, rank)`` (unused columns are zero)
    whose reconstruction differs from the tensor by at most ``config.tol * max(1, max|T|)``
    in every entry. Each block takes the factors of the least rank the search reached, or
    of the construction behind its combinatorial bound; the direct sum is checked again.
    """
    T, lower, _, blocks = _prepare(x, config)
    if rank < lower.value:
        return None
    _search(blocks, config, seed, [_content_key(b.core) for b in blocks])
    if sum(b.hi for b in blocks) > rank:
        return None
    out = [torch.zeros(n, rank, dtype=torch.float64) for n in T.shape]
    col = 0
    for b in blocks:
        factors = b.found[0] if b.found is not None else _constructive(b)
        r = factors[0].shape[1]
        for m in range(3):
            out[m][torch.from_numpy(b.index[m])[:, None], torch.arange(col, col + r)[None, :]] = factors[m]
        col += r
    return tuple(out) if exact_error(_sparse(T), tuple(out), config) is not None else None
