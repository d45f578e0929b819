"""The Levenberg-Marquardt iteration of the exact CP search, on a padded stack of problems.

The fit is Levenberg-Marquardt (damped Gauss-Newton) on ``f = 1/2 ||T - [[A, B, C]]||^2``
with the Gauss-Newton system solved by block-Jacobi preconditioned conjugate gradients,
the matrix-free scheme of Tensorlab's ``cpd_nls`` (Sorber, Van Barel, De Lathauwer 2013):
unlike ALS it converges quadratically onto an exact decomposition. Nothing is ever
densified: the MTTKRPs run over the ``N`` stored entries of T and the model's norm comes
from the Gram matrices, ``||[[A,B,C]]||^2 = 1^T (A^TA * B^TB * C^TC) 1``. Each problem stops
on its own, when its residual reaches the exactness tolerance or when its loss stagnates.

An iteration runs in one of two forms that agree up to the order of floating-point sums:
compiled per problem (:mod:`factlab.tensors.cp_kernel`, driven by :func:`_lm_compiled`)
or batched torch operations over the whole stack (:func:`_lm_torch`); :func:`_lm` picks
one. This module holds the iteration and its stopping rules; which problems to stack and
what to do with an exact fit stay with :func:`factlab.tensors.cp_search.fit_exact`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from factlab._threads import run_split
from factlab.tensors import cp_kernel
from factlab.tensors.cp_problem import CPSearchConfig, kernel_used
from factlab.tensors.cp_stack import _Stack


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
