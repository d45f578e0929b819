"""One Levenberg-Marquardt iteration of the CP search, compiled, one problem at a time (CPU).

The torch form of :func:`factlab.tensors.cp_search._lm` runs about a hundred batched
tensor operations per iteration over a stack padded to its largest problem; the
problems are tiny (a few dozen rows, rank <= 40), so most of that time is memory
traffic, padding and per-operation overhead. This module computes the same iteration
with loops compiled by numba, each problem at its own sizes and whole on one thread:

- the three MTTKRPs in one pass over the stored entries;
- the Gauss-Newton blocks ``W_m``, their damped Cholesky inverses (the block-Jacobi
  preconditioner) and the matrix-free products of conjugate gradients, on the problem's
  own ``(I_m, R)`` factors;
- the trial point's loss, the gain ratio, acceptance and the damping update.

The iteration is the torch form's, operation for operation, so the two agree up to the
order of floating-point sums (the tests check this on stacks of mixed problems); which
problems iterate and when they stop stays with the caller.

State, shared by all problems and indexed by the problem (the caller's padded arrays):
``X (P, S, R)`` the three factors side by side (mode ``m`` in rows ``off[m]`` on),
``G (P, 3, R, R)`` their Gram matrices, ``f (P,)`` the loss, ``mu (P,)`` the damping;
the tensors are ``coords (P, N, 3)``, ``values (P, N)``, ``nnz (P,)``, ``tn2 (P,)``
(squared norms); ``shape (P, 3)`` and ``rank (P,)`` the problems' own sizes.
"""

from __future__ import annotations

import numpy as np

from factlab._numba import OPTIONS, available, njit, numba  # noqa: F401 (available: this module's API)


# ------------------------------------------------------------------ small dense helpers
def _ata(A, B, out):
    """``out = A^T B`` for ``A, B (n, R)``."""
    out[:, :] = 0
    n, R = A.shape
    for i in range(n):
        for k in range(R):
            a = A[i, k]
            for j in range(R):
                out[k, j] += a * B[i, j]


def _mm_add(A, B, out):
    """``out += A B`` for ``A (n, R)``, ``B (R, R)``."""
    n, R = A.shape
    for i in range(n):
        for k in range(R):
            a = A[i, k]
            for j in range(R):
                out[i, j] += a * B[k, j]


def _dot(A, B):
    acc = 0.0
    n, R = A.shape
    for i in range(n):
        for j in range(R):
            acc += A[i, j] * B[i, j]
    return acc


def _inv_spd(A, mu, out, L):
    """``out = (A + mu I)^{-1}`` through its Cholesky factor (``L`` scratch). A pivot that
    is not positive (only possible in floating point, ``A`` being a Gram product) is
    replaced by a tiny one: the result only preconditions conjugate gradients."""
    R = A.shape[0]
    L[:, :] = 0
    for j in range(R):
        s = A[j, j] + mu
        for k in range(j):
            s -= L[j, k] * L[j, k]
        d = np.sqrt(s) if s > 1e-300 else 1e-150
        L[j, j] = d
        for i in range(j + 1, R):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / d
    # L <- L^{-1} (lower triangular), in place, column by column
    for j in range(R):
        L[j, j] = 1 / L[j, j]
        for i in range(j + 1, R):
            s = 0.0
            for k in range(j, i):
                s -= L[i, k] * L[k, j]
            L[i, j] = s / L[i, i]
    # out = L^{-T} L^{-1}
    for i in range(R):
        for j in range(i, R):
            s = 0.0
            for k in range(j, R):
                s += L[k, i] * L[k, j]
            out[i, j] = s
            out[j, i] = s


def _loss(F0, F1, F2, G, crd, val, N, tn2):
    """``1/2 ||T - [[F0, F1, F2]]||^2`` from the stored entries and the Gram matrices."""
    R = F0.shape[1]
    inner = 0.0
    for e in range(N):
        a, b, c = crd[e, 0], crd[e, 1], crd[e, 2]
        s = 0.0
        for r in range(R):
            s += F0[a, r] * F1[b, r] * F2[c, r]
        inner += val[e] * s
    gg = 0.0
    for i in range(R):
        for j in range(R):
            gg += G[0, i, j] * G[1, i, j] * G[2, i, j]
    f = 0.5 * (tn2 - 2 * inner + gg)
    return f if not f < 0 else 0.0


def _gn(V, Fs, Vs, outs, out, G, W, Q, S, mu, damped):
    """``out = (J^T J + mu I) V`` (``damped``) or ``J^T J V``, matrix-free, mode by mode;
    ``Vs``, ``outs`` are the per-mode views of ``V``, ``out``; ``Q``, ``S`` scratch."""
    for m in range(3):
        _ata(Vs[m], Fs[m], Q[m])  # dX_m^T X_m
    out[:, :] = 0
    R = S.shape[0]
    for m in range(3):
        o1, o2 = (1, 2) if m == 0 else ((0, 2) if m == 1 else (0, 1))
        for i in range(R):
            for j in range(R):
                S[i, j] = Q[o1, i, j] * G[o2, i, j] + G[o1, i, j] * Q[o2, i, j]
        _mm_add(Vs[m], W[m], outs[m])
        _mm_add(Fs[m], S, outs[m])
    if damped:
        n = V.shape[0]
        for i in range(n):
            for j in range(R):
                out[i, j] += mu * V[i, j]


def _precondition(Vs, Winv, outs, out):
    """``out = V`` times the block-diagonal preconditioner, mode by mode (``Vs``, ``outs``:
    the per-mode views of ``V``, ``out``)."""
    out[:, :] = 0
    for m in range(3):
        _mm_add(Vs[m], Winv[m], outs[m])


def _split(V, sizes):
    return (V[0:sizes[0]], V[sizes[0]:sizes[0] + sizes[1]], V[sizes[0] + sizes[1]:sizes[0] + sizes[1] + sizes[2]])


# ------------------------------------------------------------------ one problem
def _load(p, X, off, shape, rank):
    """Problem ``p``'s factors as one compact ``(I + J + K, R)`` array (a private copy:
    views of the shared array would bump its reference count from every thread)."""
    R = rank[p]
    sizes = (shape[p, 0], shape[p, 1], shape[p, 2])
    Xl = np.empty((sizes[0] + sizes[1] + sizes[2], R))
    o = 0
    for m in range(3):
        for i in range(sizes[m]):
            for r in range(R):
                Xl[o + i, r] = X[p, off[m] + i, r]
        o += sizes[m]
    return Xl, sizes


def _start_one(p, X, G, f, mu, coords, values, nnz, tn2, off, shape, rank):
    """Gram matrices, loss and initial damping of problem ``p``."""
    Xl, sizes = _load(p, X, off, shape, rank)
    R = rank[p]
    Fs = _split(Xl, sizes)
    Gl = np.empty((3, R, R))
    for m in range(3):
        _ata(Fs[m], Fs[m], Gl[m])
        for i in range(R):
            for j in range(R):
                G[p, m, i, j] = Gl[m, i, j]
    f[p] = _loss(Fs[0], Fs[1], Fs[2], Gl, coords[p], values[p], nnz[p], tn2[p])
    scale = 0.0
    for r in range(R):
        scale += Gl[0, r, r] * Gl[1, r, r] * Gl[2, r, r]
    scale /= max(R, 1)
    mu[p] = 1e-2 * max(scale, 1e-12) ** (2 / 3)


def _step_one(p, X, G, f, mu, coords, values, nnz, tn2, off, shape, rank, cg_iter):
    """One damped Gauss-Newton iteration of problem ``p`` (see :func:`cp_search._lm`)."""
    Xl, sizes = _load(p, X, off, shape, rank)
    R = rank[p]
    S_ = Xl.shape[0]
    Fs = _split(Xl, sizes)
    crd, val, N = coords[p], values[p], nnz[p]
    m_u = mu[p]
    Gl = np.empty((3, R, R))
    for m in range(3):
        for i in range(R):
            for j in range(R):
                Gl[m, i, j] = G[p, m, i, j]
    W = np.empty((3, R, R))  # Gauss-Newton diagonal blocks
    for i in range(R):
        for j in range(R):
            W[0, i, j] = Gl[1, i, j] * Gl[2, i, j]
            W[1, i, j] = Gl[0, i, j] * Gl[2, i, j]
            W[2, i, j] = Gl[0, i, j] * Gl[1, i, j]
    # gradient: F_m W_m - T_(m) (Khatri-Rao of the other two), all three MTTKRPs in one pass
    grad = np.zeros((S_, R))
    gs = _split(grad, sizes)
    F0, F1, F2 = Fs
    g0, g1, g2 = gs
    for e in range(N):
        a, b, c = crd[e, 0], crd[e, 1], crd[e, 2]
        v = val[e]
        for r in range(R):
            x0, x1, x2 = F0[a, r], F1[b, r], F2[c, r]
            g0[a, r] -= v * x1 * x2
            g1[b, r] -= v * x0 * x2
            g2[c, r] -= v * x0 * x1
    for m in range(3):
        _mm_add(Fs[m], W[m], gs[m])
    L = np.empty((R, R))
    Winv = np.empty((3, R, R))
    for m in range(3):
        _inv_spd(W[m], m_u, Winv[m], L)
    # preconditioned conjugate gradients on (J^T J + mu I) step = -grad
    Q = np.empty((3, R, R))
    Sm = np.empty((R, R))
    step = np.zeros((S_, R))
    res = -grad
    ress = _split(res, sizes)
    z = np.empty((S_, R))
    zs = _split(z, sizes)
    _precondition(ress, Winv, zs, z)
    d = z.copy()
    ds = _split(d, sizes)
    Hd = np.empty((S_, R))
    Hds = _split(Hd, sizes)
    rz = _dot(res, z)
    for _ in range(cg_iter):
        _gn(d, Fs, ds, Hds, Hd, Gl, W, Q, Sm, m_u, True)
        dHd = _dot(d, Hd)
        alpha = rz / max(dHd, 1e-300) if dHd > 0 else 0.0
        for i in range(S_):
            for j in range(R):
                step[i, j] += alpha * d[i, j]
                res[i, j] -= alpha * Hd[i, j]
        _precondition(ress, Winv, zs, z)
        rz_new = _dot(res, z)
        beta = rz_new / max(rz, 1e-300) if rz > 0 else 0.0
        for i in range(S_):
            for j in range(R):
                d[i, j] = z[i, j] + beta * d[i, j]
        rz = rz_new
    # the trial point, its loss and the gain ratio
    Xn = Xl + step
    Fn = _split(Xn, sizes)
    Gn = np.empty((3, R, R))
    for m in range(3):
        _ata(Fn[m], Fn[m], Gn[m])
    fn = _loss(Fn[0], Fn[1], Fn[2], Gn, crd, val, N, tn2[p])
    _gn(step, Fs, _split(step, sizes), Hds, Hd, Gl, W, Q, Sm, 0.0, False)
    predicted = -(_dot(grad, step) + 0.5 * _dot(step, Hd))
    f0 = f[p]
    rho = (f0 - fn) / max(predicted, 1e-300)
    if fn < f0:
        f[p] = fn
        o = 0
        for m in range(3):
            for i in range(sizes[m]):
                for r in range(R):
                    X[p, off[m] + i, r] = Xn[o + i, r]
            o += sizes[m]
            for i in range(R):
                for j in range(R):
                    G[p, m, i, j] = Gn[m, i, j]
    # damping: down after a good step, up after a poor one (or a non-finite ratio)
    if rho > 0.75:
        m_u = m_u / 3
    elif not rho >= 0.25:
        m_u = m_u * 2
    mu[p] = min(max(m_u, 1e-15), 1e15)


def _start_all(problems, X, G, f, mu, coords, values, nnz, tn2, off, shape, rank):
    for p in problems:
        _start_one(p, X, G, f, mu, coords, values, nnz, tn2, off, shape, rank)


def _step_all(problems, X, G, f, mu, coords, values, nnz, tn2, off, shape, rank, cg_iter):
    for p in problems:
        _step_one(p, X, G, f, mu, coords, values, nnz, tn2, off, shape, rank, cg_iter)


if numba is not None:
    # Helpers are left to LLVM to inline: forcing numba to inline them made the first
    # compilation a third longer for no measurable gain.
    _options = OPTIONS
    (_ata, _mm_add, _dot, _split, _precondition, _gn, _loss, _inv_spd, _load) = (
        njit(**_options)(fn) for fn in (_ata, _mm_add, _dot, _split, _precondition, _gn, _loss, _inv_spd, _load))
    _start_one, _step_one, _start_all, _step_all = (
        njit(nogil=True, **_options)(fn) for fn in (_start_one, _step_one, _start_all, _step_all))
