"""The attention-layer stack's loss and gradient in one compiled pass per model (CPU).

The autograd path (:meth:`AttentionStack.residual` plus
:func:`factlab.training.loss.unembed_cross_entropy`) pads every model to the stack's
largest vocabulary, sequence count and head sizes, and runs some forty tensor operations
per step, each a pass over memory. For the papers' tiny layers (d_model <= 6) that is
mostly padding and memory traffic. This module computes the same loss, metrics and
gradient with hand-written loops compiled by numba, one model per thread:

- loops run over each model's own sizes, so padding costs nothing and its gradient is 0;
- the attention's projections (queries, keys, values and what each head writes, W_O v)
  depend on a position's token alone, so they are computed once per distinct token of
  the model's data, not once per position; position 0, whose softmax is exactly [1],
  needs nothing more;
- the unembedding runs position by position. Consecutive sequences that share the
  prefix up to a position (facts sorted by subject share position 0) share that
  position's logits, so its softmax is computed once per such run. This is exact, not an
  approximation: the logits at position i depend only on tokens 0..i. Runs are taken
  four at a time, so that each pass over W_U serves four softmax rows, and a row's
  logits never leave a ``(4, V)`` scratch block;
- optionally, the optimizer's step is applied in the same pass, to the model's own
  weights only (:func:`loss_and_grad`'s ``step``, the element-wise rule of
  :mod:`factlab._updates`), so that no gradient is written out and the padding is never
  visited.

Each model's work runs on one thread in a fixed order, so results do not depend on the
thread count or timing. The autograd path stays the reference: the test suite checks this
kernel's loss, metrics and gradient against it on stacks of mixed sizes.

Weights arrive as one row per model (``flat (M, n_params)``): ``W_E, W_U, W_Q, W_K, W_V, W_O``
at their padded shapes, flattened and concatenated in that order (the engine's layout).
"""

from __future__ import annotations

import math

import numpy as np

import torch

from factlab import _updates
from factlab._numba import OPTIONS, available, njit, numba, version  # noqa: F401 (available, version: this module's API)
from factlab._threads import run_split
from factlab.errors import ConfigError


def _run_models(models, flat, grad, dims, offsets, pad, inputs, targets, weight, rows,
                want_grad, want_argmax, loss, nll, argmax, want_step, step):
    """Run :func:`_one_model` for each model of ``models`` in turn (one thread's share)."""
    for m in models:
        _one_model(m, flat, grad, dims, offsets, pad, inputs, targets, weight, rows,
                   want_grad, want_argmax, loss, nll, argmax, want_step, step)


def _one_model(m, flat, grad, dims, offsets, pad, inputs, targets, weight, rows,
               want_grad, want_argmax, loss, nll, argmax, want_step, step):
    """Fill model ``m``'s ``loss[m]``, ``nll[m]``, ``argmax[m]`` and, if ``want_grad``,
    ``grad[m]``; or, if ``want_step``, apply the optimizer step to ``flat[m]`` instead of
    writing the gradient out (``step``: see :func:`_update_own`).

    ``dims (M, 5)``: each model's own V, D, H, K, Z; ``pad (5,)``: the padded ones;
    ``offsets (6,)``: where each weight starts in a row of ``flat``; ``rows (M, B)``: the
    sequences to compute.

    Loops over tokens or sequences are innermost (so they are long and vectorise); the
    loops over the small model sizes are outside them.
    """
    Tp, Dp, Ap, Bp = pad[0], pad[1], pad[3], pad[4]
    oE, oU, oQ, oK, oV, oO = offsets[0], offsets[1], offsets[2], offsets[3], offsets[4], offsets[5]
    n = inputs.shape[2]
    T, D, H, A, B = dims[m, 0], dims[m, 1], dims[m, 2], dims[m, 3], dims[m, 4]
    # Private copies: slicing an array shared by the threads would bump its reference
    # count atomically on every slice, and the threads would fight over that cache line.
    W = flat[m].copy()
    G = np.zeros(W.shape[0], flat.dtype) if want_grad or want_step else W[:0]
    dt = flat.dtype
    seqs = np.flatnonzero(rows[m])
    N = seqs.shape[0]
    if N == 0:
        loss[m] = 0
        if want_grad and not want_step:
            grad[m, :] = 0
        return
    # Each distinct input token gets a local index u; the attention's projections depend on
    # the token alone, so they are computed once per token, not once per position.
    loc = np.full(Tp, -1, np.int64)
    tl = np.empty((n, N), np.int64)              # local token index of each input position
    utok = np.empty(n * N, np.int64)             # the token of each local index
    U = 0
    for i in range(n):
        for s in range(N):
            t = inputs[m, seqs[s], i]
            if loc[t] < 0:
                loc[t] = U
                utok[U] = t
                U += 1
            tl[i, s] = loc[t]
    kbuf = np.zeros(max(4 * T, N), np.int32)     # scratch of _exp_row
    kview = kbuf.view(np.float32)
    zero = np.zeros(1, dt)[0]                    # 0 in the weights' dtype (W[0] * 0 is NaN if W[0] is)
    # ----------------------------------------------------- attention, per token (forward)
    x = np.empty((D, U), dt)
    for d in range(D):
        for u in range(U):
            x[d, u] = W[oE + utok[u] * Dp + d]
    q = np.zeros((H, A, U), dt)
    k = np.zeros((H, A, U), dt)
    v = np.zeros((H, B, U), dt)
    o = np.zeros((H, D, U), dt)                  # W_O v: what a head writes when it reads token u
    for h in range(H):
        for d in range(D):
            for a in range(A):
                _axpy(q[h, a], W[oQ + (h * Dp + d) * Ap + a], x[d], U)
                _axpy(k[h, a], W[oK + (h * Ap + a) * Dp + d], x[d], U)
            for b in range(B):
                _axpy(v[h, b], W[oV + (h * Dp + d) * Bp + b], x[d], U)
        for b in range(B):
            for d in range(D):
                _axpy(o[h, d], W[oO + (h * Bp + b) * Dp + d], v[h, b], U)
    # ------------------------------------------------- attention, per position (forward)
    # Position 0 attends to itself alone (its softmax is exactly [1]): its residual is
    # x + Σ_h o_h of its own token. Later positions mix the heads' outputs over their
    # prefix; those loops run over the sequences, gathering the tokens' rows.
    r = np.empty((n, D, N), dt)
    for d in range(D):
        x0 = x[d].copy()
        for h in range(H):
            _axpy(x0, 1, o[h, d], U)
        rd, t0 = r[0, d], tl[0]
        for s in range(N):
            rd[s] = x0[t0[s]]
    pat = np.zeros((n, H, n, N), dt)             # the attention pattern, Δ of eq. (3)
    top = np.empty(N, dt)
    total = np.empty(N, dt)
    for i in range(1, n):
        ti = tl[i]
        for d in range(D):
            rd, xd = r[i, d], x[d]
            for s in range(N):
                rd[s] = xd[ti[s]]
        for h in range(H):
            for j in range(i + 1):
                tj, pj = tl[j], pat[i, h, j]
                for a in range(A):
                    qa, ka = q[h, a], k[h, a]
                    for s in range(N):
                        pj[s] += qa[ti[s]] * ka[tj[s]]
            top[:] = pat[i, h, 0]
            for j in range(1, i + 1):
                pj = pat[i, h, j]
                for s in range(N):
                    top[s] = max(top[s], pj[s])
            total[:] = 0
            for j in range(i + 1):
                pj = pat[i, h, j]
                for s in range(N):
                    pj[s] -= top[s]
                _exp_row(pj, N, zero, kbuf, kview)
                for s in range(N):
                    total[s] += pj[s]
            for j in range(i + 1):
                tj, pj = tl[j], pat[i, h, j]
                for s in range(N):
                    pj[s] /= total[s]
                for d in range(D):
                    rd, od = r[i, d], o[h, d]
                    for s in range(N):
                        rd[s] += pj[s] * od[tj[s]]
    # ------------------------------------------------------------ unembedding and loss
    # Position by position. Consecutive sequences that share the prefix up to position i
    # (a "run") share that position's logits: the softmax work is done once per run.
    dr = np.zeros((n, D, N), dt)
    starts = np.empty(N + 1, np.int64)
    ys = np.empty(N, np.int64)
    wts = np.empty(N, dt)
    nl = np.empty(N, dt)
    arg = np.zeros(N, np.int64)
    P = np.zeros((4, T), dt)                     # softmax rows of four runs
    loss_m = 0.0
    K = 0
    for i in range(n):
        # runs of position i split those of position i - 1 where token i changes
        K = 0
        for s in range(N):
            new = s == 0
            for j in range(i + 1):                # equal local indices: equal tokens
                new = new or tl[j, s] != tl[j, s - 1]
            if new:
                starts[K] = s
                K += 1
            ys[s] = targets[m, seqs[s], i]
            wts[s] = weight[m, seqs[s], i]
        starts[K] = N
        loss_m += _unembed(W, G, oU, Tp, T, D, r[i], dr[i], ys, wts, starts, K, N, P, nl, arg,
                           kbuf, kview, want_grad or want_step, want_argmax)
        for s in range(N):
            nll[m, seqs[s], i] = nl[s]
            argmax[m, seqs[s], i] = arg[s]
    loss[m] = loss_m
    if not (want_grad or want_step):
        return
    # ------------------------------------------------ attention, per position (backward)
    dx = np.zeros((D, U), dt)
    do = np.zeros((H, D, U), dt)
    dq = np.zeros((H, A, U), dt)
    dk = np.zeros((H, A, U), dt)
    t0 = tl[0]
    for d in range(D):                           # position 0: the residual and Δ = [1]
        g0 = np.zeros(U, dt)
        dd = dr[0, d]
        for s in range(N):
            g0[t0[s]] += dd[s]
        _axpy(dx[d], 1, g0, U)
        for h in range(H):
            _axpy(do[h, d], 1, g0, U)
    dp = np.zeros((n, N), dt)
    for i in range(1, n):
        ti = tl[i]
        for d in range(D):
            dd, dxd = dr[i, d], dx[d]
            for s in range(N):
                dxd[ti[s]] += dd[s]
        for h in range(H):
            total[:] = 0                         # Σ_j p_j dp_j
            for j in range(i + 1):
                tj, pj, dpj = tl[j], pat[i, h, j], dp[j]
                dpj[:] = 0
                for d in range(D):
                    dd, od, dod = dr[i, d], o[h, d], do[h, d]
                    for s in range(N):
                        dpj[s] += dd[s] * od[tj[s]]
                    for s in range(N):
                        dod[tj[s]] += pj[s] * dd[s]
                for s in range(N):
                    total[s] += pj[s] * dpj[s]
            for j in range(i + 1):
                tj, pj, dpj = tl[j], pat[i, h, j], dp[j]
                for s in range(N):
                    dpj[s] = pj[s] * (dpj[s] - total[s])   # now d score
                for a in range(A):
                    qa, ka, dqa, dka = q[h, a], k[h, a], dq[h, a], dk[h, a]
                    for s in range(N):
                        dqa[ti[s]] += dpj[s] * ka[tj[s]]
                    for s in range(N):
                        dka[tj[s]] += dpj[s] * qa[ti[s]]
    # -------------------------------------------------- attention, per token (backward)
    dv = np.zeros((H, B, U), dt)
    for h in range(H):
        for b in range(B):
            for d in range(D):
                wo = oO + (h * Bp + b) * Dp + d
                G[wo] += _dot(v[h, b], do[h, d], U)
                _axpy(dv[h, b], W[wo], do[h, d], U)
    for h in range(H):
        for d in range(D):
            for a in range(A):
                wq = oQ + (h * Dp + d) * Ap + a
                wk = oK + (h * Ap + a) * Dp + d
                G[wq] += _dot(x[d], dq[h, a], U)
                G[wk] += _dot(x[d], dk[h, a], U)
                _axpy(dx[d], W[wq], dq[h, a], U)
                _axpy(dx[d], W[wk], dk[h, a], U)
            for b in range(B):
                wv = oV + (h * Dp + d) * Bp + b
                G[wv] += _dot(x[d], dv[h, b], U)
                _axpy(dx[d], W[wv], dv[h, b], U)
    for d in range(D):
        for u in range(U):
            G[oE + utok[u] * Dp + d] += dx[d, u]
    if not want_step:
        grad[m, :] = G
    elif step[0][m] and math.isfinite(loss_m):
        _update_own(m, flat[m], G, step, dims, pad, offsets)


def _update_own(m, p, G, step, dims, pad, offsets):
    """One optimizer step of model ``m``'s own weights ``p`` (its row of ``flat``) with
    gradient ``G``; the padding, whose gradient is always 0, is left alone as the engine's
    optimizer leaves it. ``step = (stepping (M,) bool, rule, s1 (M, n_params), s2 (M, n_params), steps
    (M,), c (M, 2), k (M, 8))``: a :class:`factlab._updates.KernelUpdate` behind the stepping
    flags (which are not read here)."""
    rule, am, av, steps, c, k = step[1], step[2], step[3], step[4], step[5], step[6][m]
    steps[m] += 1
    c1, c2 = c[m, 0], c[m, 1]
    mm, vv = am[m], av[m]
    T, D, H, A, B = dims[m, 0], dims[m, 1], dims[m, 2], dims[m, 3], dims[m, 4]
    Tp, Dp, Ap, Bp = pad[0], pad[1], pad[3], pad[4]
    oE, oU, oQ, oK, oV, oO = offsets[0], offsets[1], offsets[2], offsets[3], offsets[4], offsets[5]
    for t in range(T):                           # each weight's own block, as contiguous runs
        span(p, G, mm, vv, oE + t * Dp, oE + t * Dp + D, rule, c1, c2, k)
    for d in range(D):
        span(p, G, mm, vv, oU + d * Tp, oU + d * Tp + T, rule, c1, c2, k)
    for h in range(H):
        for d in range(D):
            span(p, G, mm, vv, oQ + (h * Dp + d) * Ap, oQ + (h * Dp + d) * Ap + A, rule, c1, c2, k)
            span(p, G, mm, vv, oV + (h * Dp + d) * Bp, oV + (h * Dp + d) * Bp + B, rule, c1, c2, k)
        for a in range(A):
            span(p, G, mm, vv, oK + (h * Ap + a) * Dp, oK + (h * Ap + a) * Dp + D, rule, c1, c2, k)
        for b in range(B):
            span(p, G, mm, vv, oO + (h * Bp + b) * Dp, oO + (h * Bp + b) * Dp + D, rule, c1, c2, k)


span = _updates.span


def _unembed(W, G, oU, Tp, T, D, r, dr, ys, wts, starts, K, N, P, nl, arg, kbuf, kview,
             want_grad, want_argmax):
    """One position's next-token cross-entropy over the model's ``N`` rows.

    ``r (D, N)``: the residuals; ``ys``, ``wts``: each row's target and loss weight;
    ``starts[:K + 1]``: where each run of rows with equal prefixes starts (rows of a run
    have the same residual, so the same logits). Fills ``nl`` (the rows' negative
    log-likelihoods), ``arg`` (their argmax, if ``want_argmax``) and, if ``want_grad``,
    ``dr (D, N)`` and the W_U part of ``G``; returns ``Σ wt·nll``.

    Runs are taken four at a time: every pass over W_U serves four softmax rows, and
    each pass of the softmax runs over the four rows at once (as one row for the exp).
    """
    dt = W.dtype
    zero = np.zeros(1, dt)[0]
    Tu = np.uint64(T)
    lse = np.empty(K, dt)
    best = np.zeros(K, np.int64)
    us = np.empty((D, K), dt)                    # W_U · softmax, per run
    c = np.zeros((4, D), dt)
    p0, p1, p2, p3 = P[0], P[1], P[2], P[3]
    flatP = P.reshape(-1)
    tops = np.empty(4, dt)
    sums = np.empty(4, dt)
    bests = np.zeros(4, np.int64)
    for k0 in range(0, K, 4):
        nb = min(4, K - k0)
        s0 = starts[k0]                          # each run's first row; a missing run repeats the first
        s1 = starts[k0 + 1] if nb > 1 else s0
        s2 = starts[k0 + 2] if nb > 2 else s0
        s3 = starts[k0 + 3] if nb > 3 else s0
        # ----- logits
        base = np.uint64(oU)
        a0, a1, a2, a3 = r[0, s0], r[0, s1], r[0, s2], r[0, s3]
        for t in range(Tu):
            w = W[base + t]
            p0[t] = a0 * w
            p1[t] = a1 * w
            p2[t] = a2 * w
            p3[t] = a3 * w
        for d in range(1, D):
            base = np.uint64(oU + d * Tp)
            a0, a1, a2, a3 = r[d, s0], r[d, s1], r[d, s2], r[d, s3]
            for t in range(Tu):
                w = W[base + t]
                p0[t] += a0 * w
                p1[t] += a1 * w
                p2[t] += a2 * w
                p3[t] += a3 * w
        # ----- softmax of the four rows (a missing run's row is a copy of the first)
        if want_argmax:
            for j in range(4):
                pj = P[j]
                top = pj[0]
                b = 0
                for t in range(1, T):
                    if pj[t] > top:
                        top = pj[t]
                        b = t
                tops[j] = top
                bests[j] = b
        else:
            m0, m1, m2, m3 = p0[0], p1[0], p2[0], p3[0]
            for t in range(1, T):
                m0 = max(m0, p0[t])
                m1 = max(m1, p1[t])
                m2 = max(m2, p2[t])
                m3 = max(m3, p3[t])
            tops[0], tops[1], tops[2], tops[3] = m0, m1, m2, m3
        m0, m1, m2, m3 = tops[0], tops[1], tops[2], tops[3]
        for t in range(Tu):
            p0[t] -= m0
            p1[t] -= m1
            p2[t] -= m2
            p3[t] -= m3
        _exp_row(flatP, 4 * T, zero, kbuf, kview)
        s0 = s1 = s2 = s3 = zero
        for t in range(Tu):
            s0 += p0[t]
            s1 += p1[t]
            s2 += p2[t]
            s3 += p3[t]
        i0, i1, i2, i3 = 1 / s0, 1 / s1, 1 / s2, 1 / s3
        for t in range(Tu):
            p0[t] *= i0
            p1[t] *= i1
            p2[t] *= i2
            p3[t] *= i3
        sums[0], sums[1], sums[2], sums[3] = s0, s1, s2, s3
        for j in range(nb):
            lse[k0 + j] = tops[j] + math.log(sums[j])
            best[k0 + j] = bests[j]
        if not want_grad:
            continue
        # ----- W_U · softmax (a missing run's sums are computed and dropped)
        for d in range(D):
            base = np.uint64(oU + d * Tp)
            u0 = u1 = u2 = u3 = zero
            for t in range(Tu):
                w = W[base + t]
                u0 += w * p0[t]
                u1 += w * p1[t]
                u2 += w * p2[t]
                u3 += w * p3[t]
            us[d, k0] = u0
            if nb > 1:
                us[d, k0 + 1] = u1
            if nb > 2:
                us[d, k0 + 2] = u2
            if nb > 3:
                us[d, k0 + 3] = u3
        # ----- the softmax term of W_U's gradient: Σ_rows wt · r ⊗ softmax
        for j in range(4):
            cw = zero
            if j < nb:
                for s in range(starts[k0 + j], starts[k0 + j + 1]):
                    if wts[s] > 0:
                        cw += wts[s]
            if j >= nb or cw == 0:               # nothing to add (and a NaN softmax must not leak)
                c[j, :] = 0
                P[j, :] = 0
            else:
                sj = starts[k0 + j]
                for d in range(D):
                    c[j, d] = r[d, sj] * cw
        for d in range(D):
            base = np.uint64(oU + d * Tp)
            c0, c1, c2, c3 = c[0, d], c[1, d], c[2, d], c[3, d]
            for t in range(Tu):
                G[base + t] += c0 * p0[t] + c1 * p1[t] + c2 * p2[t] + c3 * p3[t]
    # ----- row by row: the target's logit, the loss and the residual's gradient
    run = np.empty(N, np.int64)
    k = 0
    for s in range(N):
        while s == starts[k + 1]:
            k += 1
        run[s] = k
    picked = np.zeros(N, dt)
    for d in range(D):
        base = oU + d * Tp
        rd = r[d]
        for s in range(N):
            picked[s] += rd[s] * W[base + ys[s]]
    out = 0.0
    for s in range(N):
        v = lse[run[s]] - picked[s]
        nl[s] = v
        arg[s] = best[run[s]]
        if wts[s] > 0:
            out += wts[s] * v
    if want_grad:
        for d in range(D):
            base = oU + d * Tp
            rd, ud, drd = r[d], us[d], dr[d]
            for s in range(N):
                wt = wts[s]
                drd[s] = wt * (ud[run[s]] - W[base + ys[s]]) if wt > 0 else zero
            for s in range(N):
                if wts[s] > 0:
                    G[base + ys[s]] -= wts[s] * rd[s]
    return out


def _axpy(y, a, x, N):
    """``y[:N] += a · x[:N]``."""
    for s in range(N):
        y[s] += a * x[s]


def _dot(x, y, N):
    acc = x[0] * 0
    for s in range(N):
        acc += x[s] * y[s]
    return acc


def _exp_row(x, T, top, kbuf, kview):
    """``x[:T] = exp(max(x[:T] - top, floor))`` in place; returns the sum. ``kbuf`` is
    int32 scratch and ``kview`` the same memory seen as float32. The floor is
    that of :data:`factlab.training.loss.LOG_FLOOR` for the dtype. Compiled per dtype
    (see the overload below): float32 takes a vectorisable polynomial, float64 ``math.exp``."""
    raise NotImplementedError("compiled only")


# exp in float32 as 2^k · p(r), r = v - k·ln2 in [-ln2/2, ln2/2], p the degree-7 Taylor
# polynomial (relative error about 2e-7, 2 ulp); 2^k is built from its exponent bits.
# Unlike a call to expf it vectorises: 1.3 ns per element on the benchmark machine
# against 4 ns.
_f = np.float32
_LOG2E, _LN2_HI, _LN2_LO = _f(1.4426950408889634), _f(0.693359375), _f(-2.12194440e-4)
_C = tuple(_f(1 / math.factorial(i)) for i in range(8))
_FLOOR32, _FLOOR64, _HALF = _f(-80.0), -700.0, _f(0.5)


def _exp_row_f32(x, T, top, kbuf, kview):
    c0, c1, c2, c3, c4, c5, c6, c7 = _C
    for t in range(T):
        v = x[t] - top
        v = v if not (v < _FLOOR32) else _FLOOR32          # written so that NaN stays NaN
        kf = np.floor(v * _LOG2E + _HALF)
        r = (v - kf * _LN2_HI) - kf * _LN2_LO
        x[t] = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * c7))))))
        kbuf[t] = (np.int32(kf) + np.int32(127)) << np.int32(23)
    total = x[0] * 0
    for t in range(T):
        e = x[t] * kview[t]
        x[t] = e
        total += e
    return total


def _exp_row_f64(x, T, top, kbuf, kview):
    total = 0.0
    for t in range(T):
        v = x[t] - top
        e = math.exp(v if not (v < _FLOOR64) else _FLOOR64)
        x[t] = e
        total += e
    return total


if numba is not None:
    _options = OPTIONS
    _inline = dict(_options, inline="always")
    _exp_row_f32 = njit(**_inline)(_exp_row_f32)
    _exp_row_f64 = njit(**_inline)(_exp_row_f64)

    @numba.extending.overload(_exp_row)
    def _exp_row_by_dtype(x, T, top, kbuf, kview):
        if x.dtype == numba.float32:
            return lambda x, T, top, kbuf, kview: _exp_row_f32(x, T, top, kbuf, kview)
        return lambda x, T, top, kbuf, kview: _exp_row_f64(x, T, top, kbuf, kview)

    _unembed = njit(**_options)(_unembed)
    # no fastmath here: the step must round as the optimizer's own compiled step does
    _update_own = njit(cache=True, nogil=True, error_model="numpy")(_update_own)
    _axpy, _dot = njit(**_inline)(_axpy), njit(**_inline)(_dot)
    _one_model = njit(nogil=True, **_options)(_one_model)
    _run_models = njit(nogil=True, **_options)(_run_models)


def loss_and_grad(flat: np.ndarray, dims: np.ndarray, pad: np.ndarray, inputs: np.ndarray,
                  targets: np.ndarray, weight: np.ndarray, rows: np.ndarray, models: np.ndarray,
                  *, grad_out: np.ndarray | None, want_argmax: bool, threads: int,
                  step: tuple | None = None):
    """Run the kernel for ``models`` on numpy arrays (see :class:`CompiledAttentionStep`);
    the gradient, if ``grad_out`` (shaped like ``flat``) is given, is written there.

    ``step = (stepping (M,) bool, update)``, ``update`` a
    :class:`factlab._updates.KernelUpdate`: instead of writing the gradient, apply one
    optimizer step in place to ``flat`` (and its state and step counts) for each model of
    ``models`` where ``stepping`` is true and whose loss is finite, as the engine's
    optimizer would with that gradient; ``grad_out`` must then be None.

    Models are shared among ``threads`` threads, largest first onto the least loaded
    (by sequences x vocabulary); each model runs whole on one thread, so the split does
    not change any result.
    """
    M, S, n = inputs.shape
    Tp, Dp, Hp, Ap, Bp = (int(s) for s in pad)
    sizes = np.array([Tp * Dp, Dp * Tp, Hp * Dp * Ap, Hp * Ap * Dp, Hp * Dp * Bp, Hp * Bp * Dp])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    if flat.shape[1] != sizes.sum():
        raise ValueError(f"flat rows have {flat.shape[1]} entries, the padded shapes need {sizes.sum()}")
    want_grad = grad_out is not None
    want_step = step is not None
    if want_grad and want_step:
        raise ValueError("a step applies the gradient in place: pass grad_out=None with step")
    if want_grad:
        skipped = np.ones(M, dtype=bool)
        skipped[models] = False
        grad_out[skipped] = 0                   # computed rows are written whole by the kernel
    if want_step:
        stepping, u = step
        step = (stepping, np.int64(u.rule), u.s1, u.s2, u.steps, u.c, u.k)
    else:                                       # placeholders of the right types
        step = (np.zeros(0, np.bool_), np.int64(0), flat[:, :0], flat[:, :0], np.zeros(0, np.int64),
                np.zeros((0, 2), flat.dtype), np.zeros((0, 8), flat.dtype))
    grad = grad_out if want_grad else np.zeros((M, 0), flat.dtype)
    loss = np.zeros(M, np.float64)
    nll = np.zeros((M, S, n), flat.dtype)
    argmax = np.zeros((M, S, n), np.int64)
    run_split(_run_models, models, rows.sum(axis=1) * (dims[:, 0] + 8), threads,
              flat, grad, dims, offsets, np.asarray(pad, np.int64), inputs, targets, weight, rows,
              want_grad, want_argmax, loss, nll, argmax, want_step, step)
    return loss, nll, argmax, grad_out


class CompiledAttentionStep:
    """The engine's compiled step for one stack of attention layers (the protocol
    ``factlab.training.interfaces.CompiledStep``): each model's loss, metrics and gradient
    in one compiled pass, the same quantities as the autograd path (the stack's
    ``readout`` with the fused unembedding cross-entropy of :mod:`factlab.training.loss`).

    It owns what it reuses from one call to the next: the gradient buffer, the models'
    own sizes, and the numpy form of the last batch (the engine passes the same full batch
    every epoch). ``flat (M, n_params)`` holds each model's weights in one row: the padded shapes
    of ``W_E, W_U, W_Q, W_K, W_V, W_O`` flattened and concatenated in that order.
    """

    def __init__(self, stack):
        p = stack.params
        self.n_models = stack.n_models
        self.dims = np.array([(c.n_tokens, c.d_model, c.n_heads, c.d_head_qk, c.d_head_vo) for c in stack.configs],
                             dtype=np.int64)                                   # (M, 5): own V, D, H, K, Z
        T, D = p["W_E"].shape[1:]
        H, _, A = p["W_Q"].shape[1:]
        self.pad = np.array([T, D, H, A, p["W_V"].shape[-1]], dtype=np.int64)  # padded V, D, H, K, Z
        self._grad: np.ndarray | None = None
        self._batch: tuple | None = None

    @staticmethod
    def supports(batch) -> bool:
        """Whether the kernel computes this batch: it scores every input position."""
        return tuple(batch.positions) == tuple(range(batch.inputs.shape[-1]))

    def __call__(self, flat: torch.Tensor, batch, *, grad: bool = True, metrics: bool = True,
                 models: torch.Tensor | None = None, threads: int | None = None, update: tuple | None = None):
        """``(loss (M,) float64, nll (M, B, C), argmax (M, B, C) or None, grad (M, n_params) or
        None)``; ``models`` (bool ``(M,)``) limits the work (the others get loss 0 and
        gradient 0). The gradient lives in a buffer that the next call overwrites. With
        ``update = (stepping (M,) bool tensor, KernelUpdate)`` the optimizer step is taken
        in the same pass (see :func:`loss_and_grad`) and no gradient is returned."""
        if flat.device.type != "cpu":
            raise ConfigError("the compiled attention step runs on CPU only")
        if not available():
            raise ConfigError("the compiled attention step needs numba (pip install numba)")
        if not self.supports(batch):
            raise ConfigError(f"the compiled attention step scores every position; this batch scores {batch.positions}")
        flat_np = flat.detach().contiguous().numpy()
        inputs, targets, weight, rows = self._arrays(batch, flat.dtype)
        chosen = np.arange(self.n_models) if models is None else np.flatnonzero(models.cpu().numpy())
        step = None
        out = None
        if update is not None:
            if not flat.is_contiguous():
                raise ValueError("a compiled step updates flat in place: it must be contiguous")
            stepping, state = update
            step = (stepping.cpu().numpy(), state)
        elif grad:
            if self._grad is None or self._grad.shape != flat_np.shape or self._grad.dtype != flat_np.dtype:
                self._grad = np.empty_like(flat_np)
            out = self._grad
        loss, nll, argmax, g = loss_and_grad(
            flat_np, self.dims, self.pad, inputs, targets, weight, rows, chosen, grad_out=out,
            want_argmax=metrics, threads=threads or torch.get_num_threads(), step=step)
        return (torch.from_numpy(loss), torch.from_numpy(nll), torch.from_numpy(argmax) if metrics else None,
                torch.from_numpy(g) if out is not None else None)

    def _arrays(self, batch, dtype: torch.dtype):
        """The batch as the kernel's numpy arrays, kept for the next call with the same batch."""
        if self._batch is not None and self._batch[0] is batch and self._batch[1] == dtype:
            return self._batch[2]
        weight = batch.weight.to(dtype)
        arrays = (batch.inputs.contiguous().numpy(), batch.targets.contiguous().numpy(),
                  weight.contiguous().numpy(), (batch.evaluated | (weight > 0).any(dim=2)).numpy())
        self._batch = (batch, dtype, arrays)
        return arrays
