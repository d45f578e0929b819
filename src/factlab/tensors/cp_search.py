"""Batched search for exact CP decompositions of many small sparse 3-tensors at once.

The rank interval of :mod:`factlab.tensors.rank` needs, for many tensors and many trial
ranks, a yes/no answer to "is there a CP decomposition of rank r that reproduces T
exactly?", found numerically. This module answers a whole list of such problems (tensor,
rank, random start) in one stack, written once for a leading problem axis ``P``:

- every problem is padded to the stack's largest ``(I, J, K)``, number of stored entries
  ``N`` and rank ``R``; padded rows, entries (value 0) and rank components (masked to 0)
  are provably inert: they receive a zero gradient, a zero step and add nothing to the
  loss, so a problem fitted in a stack follows the same iterates as alone (up to the order
  of floating-point sums);
- the fit is Levenberg-Marquardt (damped Gauss-Newton) on ``f = 1/2 ||T - [[A, B, C]]||^2``
  with the Gauss-Newton system solved by block-Jacobi preconditioned conjugate gradients,
  the matrix-free scheme of Tensorlab's ``cpd_nls`` (Sorber, Van Barel, De Lathauwer 2013):
  unlike ALS it converges quadratically onto an exact decomposition;
- nothing is ever densified: the MTTKRPs run over the ``N`` stored entries of T and the
  model's norm comes from the Gram matrices, ``||[[A,B,C]]||^2 = 1^T (A^TA * B^TB * C^TC) 1``;
- each problem stops on its own, when its residual reaches the exactness tolerance or when
  its loss stagnates, and finished problems leave the stack.

A fit is *exact* when the dense reconstruction of the problem, formed once at the end,
differs from T by at most ``tol * max(1, max|T|)`` in every entry and no rank-one term has
norm above ``max_term_norm * max(1, ||T||_F)`` (the second test rejects border-rank
approximations whose error vanishes only as their terms diverge). For a 0/1 tensor an
error below 1/2 already rounds back to T; the tolerance asks far more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from factlab._threads import run_split
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


def _start(problem: Problem) -> Factors:
    """Gaussian factors scaled so that E||[[A, B, C]]||^2 = ||T||^2, drawn from the problem's
    own generator so that a problem's start does not depend on the stack it is in."""
    g = torch.Generator().manual_seed(problem.seed)
    I, J, K = problem.tensor.shape
    r = problem.rank
    scale = (max(problem.tensor.norm, 1e-12) ** 2 / (r * I * J * K)) ** (1 / 6)
    return tuple(torch.randn(n, r, generator=g, dtype=torch.float64) * scale for n in (I, J, K))


class _Stack:
    """Problems padded to common sizes; ``select`` keeps a subset of them."""

    def __init__(self, problems: list[Problem], starts: list[Factors], groups: list[int] | None = None):
        P = len(problems)
        self.group = torch.tensor(groups if groups is not None else list(range(P)), dtype=torch.long)  # (P,)
        self.rank = torch.tensor([p.rank for p in problems], dtype=torch.long)  # (P,)
        self.size = torch.tensor([p.rank * sum(p.tensor.shape) for p in problems], dtype=torch.long)  # (P,)
        self.shape = torch.tensor([p.tensor.shape for p in problems], dtype=torch.long).reshape(P, 3)  # (P, 3) own
        self.nnz = torch.tensor([len(p.tensor.values) for p in problems], dtype=torch.long)  # (P,)
        self.dims = tuple(max(p.tensor.shape[m] for p in problems) for m in range(3))
        self.R = max(p.rank for p in problems)
        N = max(max(len(p.tensor.values) for p in problems), 1)
        coords = torch.zeros(P, N, 3, dtype=torch.long)  # (P, N, 3)
        self.values = torch.zeros(P, N, dtype=torch.float64)  # (P, N), padding stores 0
        self.F = [torch.zeros(P, n, self.R, dtype=torch.float64) for n in self.dims]  # (P, I_m, R)
        self.comp = torch.zeros(P, self.R, dtype=torch.float64)  # (P, R), 1 on live components
        for i, (p, f) in enumerate(zip(problems, starts)):
            n = len(p.tensor.values)
            coords[i, :n] = p.tensor.coords
            self.values[i, :n] = p.tensor.values
            self.comp[i, : p.rank] = 1
            for m in range(3):
                self.F[m][i, : p.tensor.shape[m], : p.rank] = f[m]
        self.coords = coords
        self.ids = torch.arange(P)

    def select(self, keep: torch.Tensor) -> None:
        self.coords, self.values, self.comp = self.coords[keep], self.values[keep], self.comp[keep]
        self.group, self.rank, self.size = self.group[keep], self.rank[keep], self.size[keep]
        self.shape, self.nnz = self.shape[keep], self.nnz[keep]
        self.F = [f[keep] for f in self.F]
        self.ids = self.ids[keep]

    def flat(self) -> list[torch.Tensor]:
        P, N = self.values.shape
        return [(self.coords[:, :, m] + torch.arange(P)[:, None] * self.dims[m]).reshape(-1) for m in range(3)]


def _mttkrp(F, flat, values, dims, m) -> torch.Tensor:
    """``T_(m) (khatri-rao of the other two factors)`` over the stored entries, ``(P, I_m, R)``."""
    P, R = F[0].shape[0], F[0].shape[2]
    o1, o2 = [x for x in range(3) if x != m]
    g1 = F[o1].reshape(-1, R).index_select(0, flat[o1])  # (P*N, R)
    g2 = F[o2].reshape(-1, R).index_select(0, flat[o2])  # (P*N, R)
    prod = g1 * g2 * values.reshape(-1, 1)  # (P*N, R)
    out = torch.zeros(P * dims[m], R, dtype=torch.float64).index_add_(0, flat[m], prod)
    return out.reshape(P, dims[m], R)


def _loss(F, G, flat, values, dims, tn2) -> torch.Tensor:
    """``1/2 ||T - [[A, B, C]]||^2`` per problem from one MTTKRP and the Gram matrices, ``(P,)``."""
    inner = (_mttkrp(F, flat, values, dims, 2) * F[2]).sum((1, 2))  # <T, [[A,B,C]]>
    return 0.5 * (tn2 - 2 * inner + (G[0] * G[1] * G[2]).sum((1, 2))).clamp_min(0)


def _lm(stack: _Stack, config: CPSearchConfig, atol: torch.Tensor, verify) -> None:
    """Run damped Gauss-Newton on every problem of ``stack`` until it is exact or stalls.

    ``verify(j, factors)`` is called with the padded factors of original problem ``j`` when
    its loss reaches the tolerance and returns whether the fit is exact; an exact fit ends
    every problem of the same group at the same or a higher rank (they can no longer lower
    the bound). ``config.kernel`` picks the compiled or the torch form of an iteration.
    """
    if kernel_used(config) == "torch":
        _lm_torch(stack, config, atol, verify)
        return
    # The compiled iterations run on their own threads; torch, left with the checks of
    # exact fits, runs on one, so that its idle OpenMP workers do not spin on the cores
    # (as in the training engine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _lm_compiled(stack, config, atol, verify, threads)
    finally:
        torch.set_num_threads(threads)


def kernel_used(config: CPSearchConfig) -> str:
    """The form of the iteration that ``config`` runs here: ``"compiled"`` or ``"torch"``."""
    if config.kernel == "auto":
        return "compiled" if cp_kernel.available() else "torch"
    return config.kernel


def _stops(config: CPSearchConfig, it: int, f0, ago, exact, patient):
    """Which problems stop after iteration ``it`` (0-based): exact, stalled, or out of
    iterations. ``ago(k)`` is the loss ``k`` iterations earlier; torch or numpy alike."""
    stalled = exact & False
    if it + 1 >= max(config.min_iter, config.stall_window):
        stalled = stalled | ((f0 > config.stall_factor * ago(config.stall_window)) & ~patient)
    window = 3 * config.stall_window  # the patient rule's window
    if it + 1 >= max(5 * config.min_iter, window):
        stalled = stalled | ((f0 > 0.5 * ago(window)) & patient)
    return exact | stalled if it + 1 < config.max_iter else exact | True


class _KernelState(NamedTuple):
    """The arrays of :mod:`cp_kernel` for a stack (see its docstring), in the order its
    functions take them; ``f`` and ``mu`` are filled by ``cp_kernel._start_all``."""

    X: np.ndarray
    G: np.ndarray
    f: np.ndarray
    mu: np.ndarray
    coords: np.ndarray
    values: np.ndarray
    nnz: np.ndarray
    tn2: np.ndarray
    off: np.ndarray
    shape: np.ndarray
    rank: np.ndarray


def _kernel_state(stack: _Stack) -> _KernelState:
    P, R = len(stack.ids), stack.R
    values = stack.values.numpy()
    return _KernelState(X=torch.cat(stack.F, 1).numpy().copy(), G=np.zeros((P, 3, R, R)), f=np.zeros(P),
                        mu=np.zeros(P), coords=stack.coords.numpy(), values=values, nnz=stack.nnz.numpy(),
                        tn2=(values**2).sum(1), off=np.cumsum([0, *stack.dims])[:3].astype(np.int64),
                        shape=stack.shape.numpy(), rank=stack.rank.numpy())


def _lm_compiled(stack: _Stack, config: CPSearchConfig, atol: torch.Tensor, verify, threads: int) -> None:
    """:func:`_lm` with each iteration compiled per problem (:mod:`cp_kernel`), problems
    shared among ``threads`` threads. The stack stays whole: an index of the problems
    still running shrinks instead, and ``stack.F`` ends as every problem's last iterate."""
    state = _kernel_state(stack)
    X, f, off, rank = state.X, state.f, state.off, state.rank
    P = len(X)
    cost = rank * rank * (rank + state.shape.sum(1)) * (config.cg_iter + 2) + state.nnz * rank
    target = (0.5 * atol**2).numpy()
    group, patient = stack.group.numpy(), (stack.size <= config.patient_size).numpy()
    history = np.empty((config.max_iter + 1, P))
    live = np.arange(P)
    run_split(cp_kernel._start_all, live, cost, threads, *state)
    history[0] = f
    for it in range(config.max_iter):
        run_split(cp_kernel._step_all, live, cost, threads, *state, config.cg_iter)
        history[it + 1, live] = fl = f[live]
        exact = fl <= target[live]
        stop = _stops(config, it, fl, lambda k: history[it + 1 - k, live], exact, patient[live])
        for j in np.flatnonzero(exact):
            p = live[j]
            factors = [torch.from_numpy(X[p, off[m]:off[m] + stack.dims[m]]) for m in range(3)]
            if verify(int(stack.ids[p]), factors):
                stop |= (group[live] == group[p]) & (rank[live] >= rank[p])
        live = live[~stop]
        if not len(live):
            break
    Xt = torch.from_numpy(X)
    stack.F = [Xt[:, off[m]:off[m] + stack.dims[m]] for m in range(3)]


def _lm_torch(stack: _Stack, config: CPSearchConfig, atol: torch.Tensor, verify) -> None:
    """:func:`_lm` as batched torch operations over the padded stack; problems leave the
    stack as they stop."""
    R = stack.R
    eye = torch.eye(R, dtype=torch.float64)
    dims = stack.dims
    flat = stack.flat()
    tn2 = (stack.values**2).sum(1)  # (P,)
    target = 0.5 * atol**2  # (P,) Frobenius error <= atol bounds every entry's error
    G = [f.mT @ f for f in stack.F]  # (P, R, R)
    f0 = _loss(stack.F, G, flat, stack.values, dims, tn2)
    live = stack.comp.sum(1).clamp_min(1)  # (P,) number of live components
    mu = 1e-2 * ((G[0] * G[1] * G[2]).diagonal(dim1=1, dim2=2).sum(1) / live).clamp_min(1e-12) ** (2 / 3)
    history = [f0]
    window = 3 * config.stall_window  # the patient rule's window

    off = np.cumsum([0, *dims])
    # The three factors live side by side in one (P, I + J + K, R) tensor X, so that every
    # vector operation of the conjugate-gradient loop is one kernel instead of three.
    def split(X):  # views of the three factors, (P, I_m, R)
        return [X[:, off[m]:off[m + 1]] for m in range(3)]

    def dot(X, Y):  # (P,)
        return torch.linalg.vecdot(X.flatten(1), Y.flatten(1))

    X = torch.cat(stack.F, 1)  # (P, S, R)
    for it in range(config.max_iter):
        F, cm = split(X), stack.comp
        pad = torch.diag_embed(1 - cm)  # (P, R, R): identity on masked components
        W = [G[1] * G[2], G[0] * G[2], G[0] * G[1]]  # (P, R, R) Gauss-Newton diagonal blocks
        # gradient (P, S, R): F_m W_m - T_(m) (khatri-rao of the others), per mode
        grad = torch.cat([torch.baddbmm(_mttkrp(F, flat, stack.values, dims, m), F[m], W[m], beta=-1)
                          for m in range(3)], 1)
        mu3 = mu[:, None, None]
        Winv = [torch.cholesky_inverse(torch.linalg.cholesky_ex(w + mu3 * eye + pad)[0]) for w in W]

        def precondition(V):  # block-diagonal preconditioner, mode by mode
            return torch.cat([v @ w for v, w in zip(split(V), Winv)], 1)

        def gn(V, damped=True):  # (J^T J + mu I) V, matrix-free
            Vs = split(V)
            Q = [Vs[m].mT @ F[m] for m in range(3)]  # (P, R, R) dX^T X
            out = []
            for m in range(3):
                o1, o2 = [x for x in range(3) if x != m]
                S = (Q[o1] * G[o2]).addcmul_(G[o1], Q[o2])
                out.append(torch.baddbmm(Vs[m] @ W[m], F[m], S))
            Y = torch.cat(out, 1)
            return Y.addcmul_(mu3, V) if damped else Y

        # preconditioned CG on (J^T J + mu I) p = -grad
        p = torch.zeros_like(X)
        r = grad.neg()
        z = precondition(r)
        d, rz = z, dot(r, z)
        for _ in range(config.cg_iter):
            Hd = gn(d)
            dHd = dot(d, Hd)
            alpha = torch.where(dHd > 0, rz / dHd.clamp_min(1e-300), torch.zeros_like(rz))[:, None, None]
            p.addcmul_(alpha, d)
            r.addcmul_(alpha, Hd, value=-1)
            z = precondition(r)
            rz_new = dot(r, z)
            beta = torch.where(rz > 0, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))[:, None, None]
            d, rz = torch.addcmul(z, beta, d), rz_new
        p.mul_(cm[:, None, :])
        Xn = X + p
        Fn = split(Xn)
        Gn = [x.mT @ x for x in Fn]
        fn = _loss(Fn, Gn, flat, stack.values, dims, tn2)
        predicted = -(dot(grad, p) + 0.5 * dot(p, gn(p, damped=False)))
        rho = (f0 - fn) / predicted.clamp_min(1e-300)
        ok = (fn < f0)[:, None, None]
        X = torch.where(ok, Xn, X)
        stack.F = split(X)
        G = [torch.where(ok, x, y) for x, y in zip(Gn, G)]
        f0 = torch.where(fn < f0, fn, f0)
        # damping: down after a good step, up after a poor one or a non-finite ratio
        mu = torch.where(rho > 0.75, mu / 3, torch.where(rho >= 0.25, mu, mu * 2)).clamp(1e-15, 1e15)
        history.append(f0)
        exact = f0 <= target[stack.ids]
        stop = _stops(config, it, f0, lambda k: history[-1 - k], exact, stack.size <= config.patient_size)
        for j in exact.nonzero().flatten().tolist():
            if verify(int(stack.ids[j]), [f[j] for f in stack.F]):
                stop |= (stack.group == stack.group[j]) & (stack.rank >= stack.rank[j])
        if stop.any():
            keep = ~stop
            if not keep.any():
                break
            stack.select(keep)
            X = X[keep]
            stack.F = split(X)
            G, f0, mu = [g[keep] for g in G], f0[keep], mu[keep]
            history = [h[keep] for h in history[-window - 1:]]
            flat, tn2 = stack.flat(), tn2[keep]


def _buckets(problems: list[Problem], max_batch: int) -> list[list[int]]:
    """Group problems of similar rank and size so that padding wastes little work."""
    cost = lambda p: (p.rank, sum(p.tensor.shape), len(p.tensor.values))
    order = sorted(range(len(problems)), key=lambda i: cost(problems[i]))
    groups, cur = [], []
    for i in order:
        p = problems[i]
        if cur:
            R = max(problems[j].rank for j in cur + [i])
            S = max(sum(problems[j].tensor.shape) for j in cur + [i])
            padded = (len(cur) + 1) * R * R * (R + S)
            real = sum(problems[j].rank ** 2 * (problems[j].rank + sum(problems[j].tensor.shape)) for j in cur + [i])
            if padded > 1.5 * real + 1e5 or len(cur) >= max_batch:
                groups.append(cur)
                cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    return groups


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


def problem_seed(seed: int, *keys: int) -> int:
    """A reproducible 63-bit seed for one start, from the user's seed and the start's keys."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


# ---------------------------------------------------------------------------- masked fits
@dataclass(frozen=True)
class FiberProblem:
    """Fit a rank-``rank`` tensor E whose fibers ``E[k, q, :]`` equal ``e_v`` for every
    observed fact ``(k, q, v)`` in ``facts`` (N, 3); the other fibers are free (Wong 2025,
    sec. 2.1, the tensors that *represent* a database)."""

    facts: torch.Tensor
    shape: tuple[int, int, int]
    rank: int
    seed: int


def fit_fibers(problems: list[FiberProblem], config: CPSearchConfig) -> list[tuple[Factors, float] | None]:
    """Masked ALS on observed fibers for every problem, stacked; ``(factors, max error)`` where
    the fit reproduces every observed fiber within ``config.tol``, else None.

    Row updates solve ``(Σ_{n: k_n = k} b_n b_n^T * C^T C) a_k = Σ_n b_n * c_{v_n}`` (one R x R
    system per row, because each row sees its own set of observed fibers); the object
    factor update is ordinary least squares over the observed fibers.
    """
    out: list[tuple[Factors, float] | None] = [None] * len(problems)
    full = [Problem(SparseTensor(p.facts, torch.ones(len(p.facts), dtype=torch.float64), p.shape), p.rank, p.seed)
            for p in problems]  # the observed entries, as a sparse tensor: same padding and starts
    for group in _buckets(full, config.max_batch):
        probs = [problems[i] for i in group]
        stack = _Stack([full[i] for i in group], [_start(full[i]) for i in group])
        F = _masked_als(stack, config)
        for j, (i, p) in enumerate(zip(group, probs)):
            I, J, K = p.shape
            factors = tuple(F[m][j, :n, : p.rank].clone() for m, n in enumerate((I, J, K)))
            err = fiber_error(p, factors, config)
            if err is not None:
                out[i] = (factors, err)
    return out


def fiber_error(p: FiberProblem, factors: Factors, config: CPSearchConfig) -> float | None:
    """Largest error on the observed fibers if within ``config.tol`` and not degenerate, else None."""
    A, B, C = factors
    k, q, v = p.facts.T
    fibers = (A[k] * B[q]) @ C.T  # (N, K)
    fibers[torch.arange(len(v)), v] -= 1
    err = fibers.abs().max().item() if len(v) else 0.0
    terms = A.norm(dim=0) * B.norm(dim=0) * C.norm(dim=0)
    if err > config.tol or (len(terms) and terms.max().item() > config.max_term_norm * max(1.0, len(v) ** 0.5)):
        return None
    return err


def _masked_als(stack: _Stack, config: CPSearchConfig) -> list[torch.Tensor]:
    """ALS on the observed fibers; ALS steps are cheap, so it runs ``3 * max_iter`` of them
    with a stall window of ``3 * stall_window``. Returns the padded factors per problem."""
    P, R, dims = len(stack.ids), stack.R, stack.dims
    eye = torch.eye(R, dtype=torch.float64)
    target = 0.5 * config.tol**2
    window, n_iter = 3 * config.stall_window, 3 * config.max_iter
    done = [torch.zeros(P, n, R, dtype=torch.float64) for n in dims]
    history = []
    for it in range(n_iter):
        F, flat, cm, w = stack.F, stack.flat(), stack.comp, stack.values  # w (P, N): 1 on facts
        Pn = len(stack.ids)
        reg = torch.diag_embed(1 - cm) + 1e-10 * eye  # (P, R, R) masked components, tiny ridge

        def gather(m):  # rows of factor m at the facts, (P, N, R)
            return F[m].reshape(-1, R).index_select(0, flat[m]).reshape(Pn, -1, R)

        def scatter(m, x):  # sum x (P, N, ...) into the rows of mode m, (P, I_m, ...)
            out = torch.zeros(Pn * dims[m], *x.shape[2:], dtype=torch.float64)
            return out.index_add_(0, flat[m], x.reshape(-1, *x.shape[2:])).reshape(Pn, dims[m], *x.shape[2:])

        z = gather(0) * gather(1) * w[:, :, None]  # (P, N, R) a_k * b_q on observed pairs
        L = torch.linalg.cholesky_ex(z.mT @ z + reg)[0]
        F[2] = torch.cholesky_solve(scatter(2, z).mT, L).mT * cm[:, None, :]  # (P, K, R)
        GC = F[2].mT @ F[2]  # (P, R, R)
        cv = gather(2)  # (P, N, R) c_{v_n}
        for m in (0, 1):
            other = gather(1 - m) * w[:, :, None]  # (P, N, R)
            H = scatter(m, other[:, :, :, None] * other[:, :, None, :]) * GC[:, None] + reg[:, None]  # (P, I_m, R, R)
            rhs = scatter(m, other * cv)  # (P, I_m, R)
            L = torch.linalg.cholesky_ex(H)[0]
            F[m] = torch.cholesky_solve(rhs[..., None], L)[..., 0] * cm[:, None, :]
        z = gather(0) * gather(1) * w[:, :, None]
        loss = 0.5 * (w.sum(1) - 2 * (z * cv).sum((1, 2)) + ((z @ GC) * z).sum((1, 2))).clamp_min(0)  # (P,)
        history.append(loss)
        stop = loss <= target
        if it >= max(3 * config.min_iter, window):
            stop |= loss > config.stall_factor * history[-1 - window]
        if it + 1 == n_iter:
            stop |= True
        if stop.any():
            for m in range(3):
                done[m][stack.ids[stop]] = stack.F[m][stop]
            keep = ~stop
            if not keep.any():
                break
            stack.select(keep)
            history = [h[keep] for h in history[-window - 1:]]
    return done
