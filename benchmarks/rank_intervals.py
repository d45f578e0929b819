"""Rank intervals of the 548-database paper population: factlab against a TensorLy loop.

factlab side: :func:`factlab.tensors.rank.rank_intervals` on all databases at once (batched
Levenberg-Marquardt over every block, rank and restart of a search round).

TensorLy side: the same search, one database at a time, with ``tensorly.decomposition.parafac``
(ALS, ``init="random"``, one ``random_state`` per restart, TensorLy's default stopping
tolerance) fitted to the dense tensor D:

- the same starting interval (lower: largest flattening rank; upper: the least of |D|,
  Proposition 2.1 and the object-slice ranks, all recomputed here with numpy);
- the same rank schedule (try lower and upper - 1, then bisect while a try succeeds; no
  search where the upper bound exceeds ``max_search_rank``);
- the same number of restarts and the same iteration cap per rank;
- the same exactness check (max |error| <= tol * max(1, max|D|), no rank-one term of norm
  above ``max_term_norm * max(1, ||D||_F)``).

factlab's time includes computing its bounds; TensorLy's time counts only its fits and
checks. Prints both times, the bounds found, and the speed ratio last on its own line.

    python benchmarks/rank_intervals.py               # all 548 on both sides (slow on TensorLy)
    python benchmarks/rank_intervals.py --subset 60   # TensorLy on 60 evenly spread databases (quicker;
                                                      # the spread over-weights large ones),
                                                      # its total extrapolated per database
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from factlab.databases.generators import paper_population
from factlab.tensors import database_tensor, proposition_2_1
from factlab.tensors.cp_search import CPSearchConfig, problem_seed
from factlab.tensors.rank import rank_intervals


def tensorly_interval(D: np.ndarray, n_facts: int, prop: int, config: CPSearchConfig, seed: int) -> tuple[int, int]:
    """The same search as factlab's, with TensorLy's parafac as the fitting engine."""
    import tensorly as tl
    from tensorly.decomposition import parafac

    lower = max(np.linalg.matrix_rank(np.moveaxis(D, m, 0).reshape(D.shape[m], -1)) for m in range(3))
    slices = sum(int(np.linalg.matrix_rank(D[:, :, v])) for v in range(D.shape[2]))
    hi = min(n_facts, prop, slices)
    scale, norm = max(1.0, np.abs(D).max()), max(1.0, np.linalg.norm(D))

    def exact(rank: int) -> bool:
        for s in range(config.restarts):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cp = parafac(D, rank, n_iter_max=config.max_iter, init="random",
                             random_state=problem_seed(seed, rank, s) % 2**32)
            err = np.abs(tl.cp_to_tensor(cp) - D).max()
            weights, (A, B, C) = cp
            terms = np.abs(weights) * np.linalg.norm(A, axis=0) * np.linalg.norm(B, axis=0) * np.linalg.norm(C, axis=0)
            if err <= config.tol * scale and terms.max() <= config.max_term_norm * norm:
                return True
        return False

    if not lower < hi <= config.max_search_rank:
        return lower, hi
    failed, tries = -1, [lower] + ([hi - 1] if hi - 1 > lower else [])
    while tries:
        for r in sorted(tries):
            if exact(r) and r < hi:
                hi = r
            elif r != hi:
                failed = max(failed, r)
        lo = max(lower, failed + 1)
        tries = [(lo + hi) // 2] if lo < hi else []
    return lower, hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subset", type=int, default=None,
                        help="time TensorLy on this many evenly spread databases and extrapolate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = CPSearchConfig()

    population = paper_population(seed=0)
    n = len(population)
    print(f"population: {n} databases, |D| up to {max(len(db) for db in population)}, "
          f"Proposition 2.1 from {min(map(proposition_2_1, population))} to {max(map(proposition_2_1, population))}")
    print(f"search budget (both sides): {config.restarts} restarts x {config.max_iter} iterations per rank, "
          f"tol {config.tol:g}, no search above rank {config.max_search_rank}")

    t0 = time.perf_counter()
    intervals = rank_intervals(population, config=config, seed=args.seed)
    t_factlab = time.perf_counter() - t0
    lo_f = np.array([iv.lower.value for iv in intervals])
    up_f = np.array([iv.upper.value for iv in intervals])

    subset = np.arange(n) if args.subset is None else np.unique(np.linspace(0, n - 1, args.subset).round().astype(int))
    t0 = time.perf_counter()
    tl_bounds = [tensorly_interval(database_tensor(population[i]).numpy(), len(population[i]),
                                   proposition_2_1(population[i]), config, args.seed) for i in subset]
    t_tl_subset = time.perf_counter() - t0
    t_tensorly = t_tl_subset * n / len(subset)
    lo_t = np.array([b[0] for b in tl_bounds])
    up_t = np.array([b[1] for b in tl_bounds])

    print()
    print(f"{'':34s}{'factlab':>14s}{'TensorLy loop':>16s}")
    print(f"{'databases timed':34s}{n:>14d}{len(subset):>16d}")
    note = "" if len(subset) == n else f"  (extrapolated from {t_tl_subset:.1f} s on {len(subset)})"
    print(f"{'wall time for all 548 (s)':34s}{t_factlab:>14.1f}{t_tensorly:>16.1f}{note}")
    print(f"{'certified (on the TensorLy set)':34s}{int((lo_f[subset] == up_f[subset]).sum()):>14d}"
          f"{int((lo_t == up_t).sum()):>16d}")
    print(f"{'certified (all 548, factlab)':34s}{int((lo_f == up_f).sum()):>14d}")
    print(f"{'sum of upper bounds (TensorLy set)':34s}{int(up_f[subset].sum()):>14d}{int(up_t.sum()):>16d}")
    print(f"{'mean upper bound (TensorLy set)':34s}{up_f[subset].mean():>14.2f}{up_t.mean():>16.2f}")
    print(f"{'sum of lower bounds (TensorLy set)':34s}{int(lo_f[subset].sum()):>14d}{int(lo_t.sum()):>16d}")
    print(f"factlab upper <= TensorLy upper on {int((up_f[subset] <= up_t).sum())} of {len(subset)} databases "
          f"(strictly lower on {int((up_f[subset] < up_t).sum())})")
    print(f"speed ratio (TensorLy / factlab): {t_tensorly / t_factlab:.1f}x")


if __name__ == "__main__":
    main()
