"""The rank schedule: lower the blocks' proven upper bounds by exact CP fits.

Per block with proven bounds [lo, hi]: round 1 tries lo (a hit certifies) and hi - 1;
while the last try at some r succeeded, the next round bisects between the largest failed
rank and r (:func:`_bisect`). All blocks of all tensors of a round are fitted in one
batched stack (:func:`~factlab.tensors.cp_search.fit_exact`) on their compressed cores,
lifted back and checked on the block itself (:func:`_search`). The same schedule drives
the masked fits of :func:`factlab.tensors.rank_effective.effective_rank`, so it lives
apart from both callers.
"""

from __future__ import annotations

import hashlib

import numpy as np

from factlab.tensors.cp_problem import CPSearchConfig, Factors, Problem, SparseTensor, exact_error, kernel_used, problem_seed
from factlab.tensors.cp_search import fit_exact
from factlab.tensors.rank_blocks import _Block


def _content_key(t: SparseTensor) -> int:
    """A key from the tensor's entries, so that a tensor gets the same random starts alone
    or among others (the batched and the one-at-a-time paths agree)."""
    h = hashlib.blake2b(digest_size=8)
    for part in (t.coords.numpy(), t.values.numpy(), np.asarray(t.shape)):
        h.update(np.ascontiguousarray(part).tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def _lift(b: _Block, factors: Factors) -> Factors:
    """Factors of the core mapped to factors of the block, ``A = C1 A_core`` etc."""
    return tuple(L @ f for L, f in zip(b.lift, factors))


def _bisect(targets: list, fit_round, label: str, max_rank: int) -> None:
    """The rank schedule: lower each target's proven ``hi`` by exact fits.

    Ranks above ``max_rank`` are never tried; let ``top = min(hi, max_rank + 1)``. Round 1
    tries ``lo`` (a hit certifies) and ``top - 1``; later rounds try the midpoint of
    ``[max(lo, largest failed rank + 1), top - 1]`` until that range is empty. A failure is
    not a proof, only a reason to stop looking below it. ``fit_round`` maps
    ``{target: [ranks]}`` to ``{(target, rank): (factors, max error)}`` for the exact hits.
    """
    def top(t):  # least rank not to try: the proven upper bound, or just above the cap
        return min(t.hi, max_rank + 1)

    tries = {i: [t.lo] + ([top(t) - 1] if top(t) - 1 > t.lo else []) for i, t in enumerate(targets)
             if t.lo < top(t)}
    while tries:
        hits = fit_round(tries)
        nxt = {}
        for i, ranks in tries.items():
            t = targets[i]
            for r in sorted(ranks):
                if (i, r) in hits and r < t.hi:
                    t.hi, t.found = r, hits[(i, r)]
                    t.hi_method = f"{label}, max error {t.found[1]:.1e})"
                elif (i, r) not in hits:
                    t.failed = max(t.failed, r)
            lo = max(t.lo, t.failed + 1)
            if lo < top(t):
                nxt[i] = [(lo + top(t)) // 2]
        tries = nxt


def _search(blocks: list[_Block], config: CPSearchConfig, seed: int, keys: list[int]) -> None:
    """Lower every block's ``hi`` by exact fits on its core, all blocks batched per round."""

    # lifting multiplies entry errors by at most the product of the lifts' max row sums
    atol = [config.tol * max(1.0, b.tensor.max_abs)
            / float(np.prod([max(1.0, L.abs().sum(1).max().item()) if L.numel() else 1.0 for L in b.lift]))
            for b in blocks]

    def fit_round(tries):
        problems, owner = [], []
        for i, ranks in tries.items():
            for r in ranks:
                for s in range(config.restarts):
                    problems.append(Problem(blocks[i].core, r, problem_seed(seed, keys[i], r, s), atol[i]))
                    owner.append((i, r))
        hits = {}
        for key, res in zip(owner, fit_exact(problems, config, groups=[i for i, _ in owner])):
            if res is not None and key not in hits:
                factors = _lift(blocks[key[0]], res[0])
                err = exact_error(blocks[key[0]].tensor, factors, config)  # checked on the block itself
                if err is not None:
                    hits[key] = (factors, err)
        return hits

    label = f"exact CP (Levenberg-Marquardt, {kernel_used(config)} iteration"
    _bisect(blocks, fit_round, label, config.max_search_rank)
