"""Effective rank of a database (Wong 2025, sec. 2.1): the least rank of a tensor that
represents it, i.e. agrees with D on the observed fibers, the other fibers free.

Its interval reuses the rank interval's pieces: the combinatorial upper bounds on rank(D)
(:mod:`factlab.tensors.rank_blocks`), the bisection schedule
(:mod:`factlab.tensors.rank_search`) and masked CP fits
(:mod:`factlab.tensors.cp_fibers`) in place of exact ones. It is importable from
:mod:`factlab.tensors.rank`, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.tensors.cp_fibers import FiberProblem, fit_fibers
from factlab.tensors.cp_problem import CPSearchConfig, Factors, problem_seed
from factlab.tensors.rank_blocks import _interval, _prepare
from factlab.tensors.rank_bounds import RankBound, RankInterval
from factlab.tensors.rank_search import _bisect


@dataclass
class _Target:
    lo: int
    hi: int
    hi_method: str
    found: tuple[Factors, float] | None = None
    failed: int = -1


def effective_rank(db: Database, *, config: CPSearchConfig = CPSearchConfig(), seed: int = 0) -> RankInterval:
    """An interval for the effective rank of a database (Wong 2025, sec. 2.1, Example 2.4):
    the least rank of a tensor E with ``E[k, q, :] = D[k, q, :]`` for every pair (k, q) in the
    database, the other fibers free.

    lower: ``|V|``, because the mode-3 flattening of any such E contains the column
    ``e_v`` for every object v. upper: the least of the proven upper bounds on rank(D) (an
    exact decomposition of D represents D) and the least rank at which a masked CP fit
    reproduced every observed fiber exactly (same schedule and tolerance as for the rank).
    """
    if not isinstance(db, Database):
        raise ConfigError(f"effective_rank() takes a Database, got {type(db).__name__}")
    _, lower_d, uppers, blocks = _prepare(db, config)
    upper = _interval(lower_d, uppers, blocks).upper  # combinatorial bounds only: no search on D
    target = _Target(lo=db.shape[2], hi=upper.value, hi_method=f"upper bound on rank(D): {upper.method}")
    facts = torch.from_numpy(db.tensor_index().copy())

    def fit_round(tries):
        (ranks,) = tries.values()
        problems = [FiberProblem(facts, db.shape, r, problem_seed(seed, 17, r, s))
                    for r in ranks for s in range(config.restarts)]
        hits = {}
        for p, res in zip(problems, fit_fibers(problems, config)):
            if res is not None:
                hits.setdefault((0, p.rank), res)
        return hits

    _bisect([target], fit_round, "masked CP on the observed fibers (ALS", config.max_search_rank)
    lower = RankBound(db.shape[2], "|V| distinct objects (mode-3 flattening on observed fibers)")
    return RankInterval(lower, RankBound(target.hi, target.hi_method))
