"""What the CP search is asked and what counts as an answer: its configuration, its problems,
and the exactness test.

The batched search of :mod:`factlab.tensors.cp_search` and the masked fits of
:mod:`factlab.tensors.cp_fibers` share these definitions, and the rank intervals of
:mod:`factlab.tensors.rank` use them to state and check their upper bounds, so they live
apart from the iterations that use them.

A fit is *exact* when the dense reconstruction of the problem, formed once at the end,
differs from T by at most ``tol * max(1, max|T|)`` in every entry and no rank-one term has
norm above ``max_term_norm * max(1, ||T||_F)`` (the second test rejects border-rank
approximations whose error vanishes only as their terms diverge). For a 0/1 tensor an
error below 1/2 already rounds back to T; the tolerance asks far more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.tensors import cp_kernel

Factors = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (I, r), (J, r), (K, r)
KERNELS = ("auto", "compiled", "torch")


@dataclass(frozen=True)
class CPSearchConfig:
    """How hard to look for exact CP decompositions; defaults are our choice (the paper
    computes no decompositions, only the bounds of Proposition 2.1).

    - ``restarts``: random starts per (tensor, trial rank).
    - ``max_iter``: Levenberg-Marquardt iterations per start.
    - ``tol``: exactness, the largest entry-wise error allowed, relative to ``max(1, max|T|)``;
      for a 0/1 database tensor any error below 0.5 rounds back to D.
    - ``max_term_norm``: largest norm of one rank-one term, relative to ``max(1, ||T||_F)``,
      before a fit counts as degenerate (a border-rank approximation) and is not exact.
    - ``cg_iter``: conjugate-gradient steps per Gauss-Newton system.
    - ``stall_window`` / ``stall_factor``: a start stops when, after ``min_iter`` iterations,
      its loss fell by less than ``stall_factor`` over the last ``stall_window`` iterations.
    - ``min_iter``: iterations before a start may be stopped as stagnating.

      The defaults of ``cg_iter``, ``stall_window`` and ``min_iter`` (6, 10, 10) trade a little
      tightness for speed (halving the time against (8, 20, 20) on the paper population for
      a 0.15% looser sum of bounds; docs/performance.md has the trials). Raise them where
      the tightest bounds matter more than time.
    - ``patient_size``: starts with ``rank * (I + J + K)`` at most this stall only after
      ``5 * min_iter`` iterations and when their loss fell by less than half over
      ``3 * stall_window`` iterations: exact fits of small tensors often cross a swamp (a
      plateau before fast convergence) that the ordinary rule cuts off, and iterations of
      such small starts cost little.
    - ``max_search_rank``: no fit is tried at a higher rank (above 40, no start on the paper
      population beat the combinatorial bound, while those ranks cost most of the work).
    - ``split_components``: search each direct summand (connected block of facts) alone.
    - ``compress``: replace T by the subtensor on a basis of its slices in every mode
      (same rank, shape = the multilinear rank) before searching.
    - ``max_batch``: most problems stacked in one batch.
    - ``kernel``: how an iteration runs. ``"compiled"``: each problem at its own sizes in
      a loop compiled by numba (:mod:`factlab.tensors.cp_kernel`), on CPU; ``"torch"``:
      batched torch operations over the padded stack; ``"auto"`` (the default): compiled
      where numba is available. Both run the same iteration and stopping rules and agree
      up to the order of floating-point sums, which over hundreds of iterations can
      move a search to a different local solution, so a bound may now and then differ
      by one between the two (docs/performance.md compares them).
    """

    restarts: int = 4
    max_iter: int = 300
    tol: float = 1e-6
    max_term_norm: float = 1e4
    cg_iter: int = 6
    stall_window: int = 10
    stall_factor: float = 0.2
    min_iter: int = 10
    patient_size: int = 100
    max_search_rank: int = 40
    split_components: bool = True
    compress: bool = True
    max_batch: int = 4096
    kernel: str = "auto"

    def __post_init__(self):
        for name in ("restarts", "max_iter", "cg_iter", "stall_window", "max_batch", "max_search_rank"):
            if getattr(self, name) < 1:
                raise ConfigError(f"CPSearchConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_iter < 0:
            raise ConfigError(f"CPSearchConfig.min_iter must be >= 0, got {self.min_iter}")
        if not 0 < self.tol < 0.5:
            raise ConfigError(f"CPSearchConfig.tol must be in (0, 0.5), got {self.tol}")
        if self.patient_size < 0:
            raise ConfigError(f"CPSearchConfig.patient_size must be >= 0, got {self.patient_size}")
        if not 0 < self.stall_factor < 1:
            raise ConfigError(f"CPSearchConfig.stall_factor must be in (0, 1), got {self.stall_factor}")
        if self.max_term_norm <= 0:
            raise ConfigError("CPSearchConfig.max_term_norm must be > 0")
        if self.kernel not in KERNELS:
            raise ConfigError(f"CPSearchConfig.kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.kernel == "compiled" and not cp_kernel.available():
            raise ConfigError("CPSearchConfig.kernel='compiled' needs numba, which is not installed")


def kernel_used(config: CPSearchConfig) -> str:
    """The form of the iteration that ``config`` runs here: ``"compiled"`` or ``"torch"``."""
    if config.kernel == "auto":
        return "compiled" if cp_kernel.available() else "torch"
    return config.kernel


@dataclass(frozen=True)
class SparseTensor:
    """A 3-tensor as its stored entries: ``coords`` (N, 3) long, ``values`` (N,) float64."""

    coords: torch.Tensor
    values: torch.Tensor
    shape: tuple[int, int, int]

    @property
    def max_abs(self) -> float:
        return float(self.values.abs().max()) if len(self.values) else 0.0

    @property
    def norm(self) -> float:
        return float(self.values.norm())

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=torch.float64)  # (I, J, K)
        out.index_put_(tuple(self.coords.T), self.values, accumulate=True)
        return out


@dataclass(frozen=True)
class Problem:
    """One search problem: fit ``tensor`` at ``rank`` from the start drawn with ``seed``.
    ``atol`` overrides the entry-wise tolerance ``tol * max(1, max|T|)`` (a compressed core
    needs a tighter one, so that its lifted decomposition is still exact)."""

    tensor: SparseTensor
    rank: int
    seed: int
    atol: float | None = None


def problem_seed(seed: int, *keys: int) -> int:
    """A reproducible 63-bit seed for one start, from the user's seed and the start's keys."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def cp_to_tensor(factors: Factors) -> torch.Tensor:
    """``[[A, B, C]] = sum_r a_r (x) b_r (x) c_r``, ``(I, J, K)``."""
    A, B, C = factors
    return torch.einsum("ir,jr,kr->ijk", A, B, C)


def exact_error(tensor: SparseTensor, factors: Factors, config: CPSearchConfig,
                atol: float | None = None) -> float | None:
    """The largest entry-wise error of ``factors`` if they are an exact decomposition of
    ``tensor`` in the sense of the module docstring (or within ``atol`` if given), else None."""
    err = (cp_to_tensor(factors) - tensor.dense()).abs().max().item() if tensor.shape[0] else 0.0
    if not err <= (config.tol * max(1.0, tensor.max_abs) if atol is None else atol):
        return None
    A, B, C = factors
    terms = A.norm(dim=0) * B.norm(dim=0) * C.norm(dim=0)  # (r,)
    if len(terms) and terms.max().item() > config.max_term_norm * max(1.0, tensor.norm):
        return None
    return err
