"""Masked CP fits: tensors that reproduce a database's observed fibers, the others free.

The effective rank of :func:`factlab.tensors.rank.effective_rank` (Wong 2025, sec. 2.1)
asks for the least rank of a tensor E whose fibers ``E[k, q, :]`` equal ``e_v`` on the
observed facts. This is a different fit from the exact one (the loss sees only the
observed fibers), so it runs its own iteration, masked ALS, on the same padded stack as
the exact search (:mod:`factlab.tensors.cp_stack`), with the same tolerance and the same
test against degenerate (border-rank) terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from factlab.tensors.cp_problem import CPSearchConfig, Factors, Problem, SparseTensor
from factlab.tensors.cp_stack import _buckets, _Stack, _start


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
