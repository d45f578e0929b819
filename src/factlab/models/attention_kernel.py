"""The attention-layer stack's loss and gradient in one compiled pass per model (CPU).

The autograd path (:meth:`AttentionStack.residual` plus
:func:`factlab.training.loss.unembed_cross_entropy`) pads every model to the stack's
largest vocabulary, sequence count and head sizes, and runs some forty tensor operations
per step, each a pass over memory. For the papers' tiny layers (d_model <= 6) that is
mostly padding and memory traffic. This module computes the same loss, metrics and
gradient with hand-written loops compiled by numba, one model per thread:

- loops run over each model's own sizes, so padding costs nothing and its gradient is 0;
- a sequence's logits are made, exponentiated and consumed row by row in cache, never
  stored as an ``(M, L, T)`` tensor;
- consecutive sequences that share a prefix (facts sorted by subject share position 0)
  share that position's softmax: it is computed once per run of equal prefixes and its
  gradient is folded in once per run. This is exact, not an approximation: the logits at
  position i depend only on tokens 0..i.

Each model's work runs on one thread in a fixed order, so results do not depend on the
thread count or timing. The autograd path stays the reference: the test suite checks this
kernel's loss, metrics and gradient against it on stacks of mixed sizes.

Weights arrive as one row per model (``flat (M, P)``): ``W_E, W_U, W_Q, W_K, W_V, W_O``
at their padded shapes, flattened and concatenated in that order (the engine's layout).
"""

from __future__ import annotations

import math

import numpy as np

from factlab._numba import OPTIONS, available, njit, numba, version  # noqa: F401 (available, version: this module's API)
from factlab._threads import run_split


def _run_models(models, flat, grad, dims, offsets, pad, inputs, targets, weight, rows,
                want_grad, want_argmax, loss, nll, argmax):
    """Run :func:`_one_model` for each model of ``models`` in turn (one thread's share)."""
    for m in models:
        _one_model(m, flat, grad, dims, offsets, pad, inputs, targets, weight, rows,
                   want_grad, want_argmax, loss, nll, argmax)


def _one_model(m, flat, grad, dims, offsets, pad, inputs, targets, weight, rows,
               want_grad, want_argmax, loss, nll, argmax):
    """Fill model ``m``'s ``loss[m]``, ``nll[m]``, ``argmax[m]`` and (if ``want_grad``) ``grad[m]``.

    ``dims (M, 5)``: each model's own T, D, H, A, B; ``pad (5,)``: the padded ones;
    ``offsets (6,)``: where each weight starts in a row of ``flat``; ``rows (M, S)``: the
    sequences to compute.

    The attention part runs over all of the model's sequences at once, the sequence
    index innermost (so the loops are long and vectorise); the unembedding runs row by
    row, a row's logits living only in ``prob``.
    """
    Tp, Dp, Ap, Bp = pad[0], pad[1], pad[3], pad[4]
    oE, oU, oQ, oK, oV, oO = offsets[0], offsets[1], offsets[2], offsets[3], offsets[4], offsets[5]
    n = inputs.shape[2]
    T, D, H, A, B = dims[m, 0], dims[m, 1], dims[m, 2], dims[m, 3], dims[m, 4]
    # Private copies: slicing an array shared by the threads would bump its reference
    # count atomically on every slice, and the threads would fight over that cache line.
    W = flat[m].copy()
    G = np.zeros(W.shape[0], flat.dtype) if want_grad else W[:0]
    dt = flat.dtype
    seqs = np.flatnonzero(rows[m])
    N = seqs.shape[0]
    if N == 0:
        loss[m] = 0
        if want_grad:
            grad[m, :] = 0
        return
    tok = np.empty((n, N), np.int64)
    for i in range(n):
        for s in range(N):
            tok[i, s] = inputs[m, seqs[s], i]
    kbuf = np.zeros(max(T, N), np.int32)         # scratch of _exp_row
    kview = kbuf.view(np.float32)
    zero = W[0] * 0
    # ---------------------------------------------------------------- attention, forward
    x = np.empty((n, D, N), dt)
    for i in range(n):
        for d in range(D):
            for s in range(N):
                x[i, d, s] = W[oE + tok[i, s] * Dp + d]
    q = np.zeros((n, H, A, N), dt)
    k = np.zeros((n, H, A, N), dt)
    v = np.zeros((n, H, B, N), dt)
    for i in range(n):
        for h in range(H):
            for d in range(D):
                for a in range(A):
                    _axpy(q[i, h, a], W[oQ + (h * Dp + d) * Ap + a], x[i, d], N)
                    _axpy(k[i, h, a], W[oK + (h * Ap + a) * Dp + d], x[i, d], N)
                for b in range(B):
                    _axpy(v[i, h, b], W[oV + (h * Dp + d) * Bp + b], x[i, d], N)
    p = np.zeros((n, H, n, N), dt)               # the attention pattern, Δ of eq. (3)
    top = np.empty(N, dt)
    total = np.empty(N, dt)
    for i in range(n):
        for h in range(H):
            for j in range(i + 1):
                for a in range(A):
                    qa, ka, pj = q[i, h, a], k[j, h, a], p[i, h, j]
                    for s in range(N):
                        pj[s] += qa[s] * ka[s]
            top[:] = p[i, h, 0]
            for j in range(1, i + 1):
                for s in range(N):
                    top[s] = max(top[s], p[i, h, j, s])
            total[:] = 0
            for j in range(i + 1):
                for s in range(N):
                    p[i, h, j, s] -= top[s]
                _exp_row(p[i, h, j], N, zero, kbuf, kview)
                for s in range(N):
                    total[s] += p[i, h, j, s]
            for j in range(i + 1):
                for s in range(N):
                    p[i, h, j, s] /= total[s]
    z = np.zeros((n, H, B, N), dt)
    r = np.empty((n, D, N), dt)
    for i in range(n):
        for h in range(H):
            for b in range(B):
                for j in range(i + 1):
                    zb, pj, vb = z[i, h, b], p[i, h, j], v[j, h, b]
                    for s in range(N):
                        zb[s] += pj[s] * vb[s]
        for d in range(D):
            r[i, d, :] = x[i, d, :]
            for h in range(H):
                for b in range(B):
                    _axpy(r[i, d], W[oO + (h * Bp + b) * Dp + d], z[i, h, b], N)
    # ----------------------------------------------------- unembedding and loss, row by row
    dr = np.zeros((n, D, N), dt)
    prob = np.zeros((n, T), dt)                  # per position: softmax of the current run of equal prefixes
    usoft = np.zeros((n, D), dt)                 # W_U · that softmax
    run_r = np.zeros((n, D), dt)                 # its residual
    run_w = np.zeros(n, dt)                      # summed loss weight of its rows
    run_lse = np.zeros(n, dt)
    run_arg = np.zeros(n, np.int64)
    rvec = np.empty(D, dt)
    loss_m = 0.0
    for s in range(N):
        same = True
        for i in range(n):
            same = same and s > 0 and tok[i, s] == tok[i, s - 1]
            for d in range(D):
                rvec[d] = r[i, d, s]
            if not same:
                if want_grad and run_w[i] != 0:
                    _flush(G, oU, Tp, T, D, run_r[i], run_w[i], prob[i])
                run_w[i] = 0
                run_r[i, :] = rvec
                run_lse[i], run_arg[i] = _open_run(W, oU, Tp, T, D, rvec, prob[i], usoft[i], kbuf, kview,
                                                   want_grad, want_argmax)
            y = targets[m, seqs[s], i]
            wt = weight[m, seqs[s], i]
            picked = rvec[0] * 0
            for d in range(D):
                picked += rvec[d] * W[oU + d * Tp + y]
            nl = run_lse[i] - picked
            nll[m, seqs[s], i] = nl
            argmax[m, seqs[s], i] = run_arg[i]
            if wt > 0:
                loss_m += wt * nl
                if want_grad:
                    run_w[i] += wt
                    for d in range(D):
                        G[oU + d * Tp + y] -= wt * rvec[d]
                        dr[i, d, s] = wt * (usoft[i, d] - W[oU + d * Tp + y])
    loss[m] = loss_m
    if not want_grad:
        return
    for i in range(n):
        if run_w[i] != 0:
            _flush(G, oU, Tp, T, D, run_r[i], run_w[i], prob[i])
    # --------------------------------------------------------------- attention, backward
    dx = dr.copy()                               # the residual connection
    dq = np.zeros((n, H, A, N), dt)
    dk = np.zeros((n, H, A, N), dt)
    dv = np.zeros((n, H, B, N), dt)
    dz = np.zeros((B, N), dt)
    dp = np.zeros((n, N), dt)
    for i in range(n):
        for h in range(H):
            dz[:] = 0
            for b in range(B):
                for d in range(D):
                    wo = oO + (h * Bp + b) * Dp + d
                    _axpy(dz[b], W[wo], dr[i, d], N)
                    G[wo] += _dot(z[i, h, b], dr[i, d], N)
            total[:] = 0                         # Σ_j p_j dp_j
            for j in range(i + 1):
                dp[j, :] = 0
                for b in range(B):
                    pj, vb, dzb, dvb, dpj = p[i, h, j], v[j, h, b], dz[b], dv[j, h, b], dp[j]
                    for s in range(N):
                        dpj[s] += dzb[s] * vb[s]
                        dvb[s] += pj[s] * dzb[s]
                for s in range(N):
                    total[s] += p[i, h, j, s] * dp[j, s]
            for j in range(i + 1):
                for s in range(N):
                    dp[j, s] = p[i, h, j, s] * (dp[j, s] - total[s])   # now d score
                for a in range(A):
                    _axpy_mul(dq[i, h, a], dp[j], k[j, h, a], N)
                    _axpy_mul(dk[j, h, a], dp[j], q[i, h, a], N)
    for i in range(n):
        for h in range(H):
            for d in range(D):
                for a in range(A):
                    wq = oQ + (h * Dp + d) * Ap + a
                    wk = oK + (h * Ap + a) * Dp + d
                    G[wq] += _dot(x[i, d], dq[i, h, a], N)
                    G[wk] += _dot(x[i, d], dk[i, h, a], N)
                    _axpy(dx[i, d], W[wq], dq[i, h, a], N)
                    _axpy(dx[i, d], W[wk], dk[i, h, a], N)
                for b in range(B):
                    wv = oV + (h * Dp + d) * Bp + b
                    G[wv] += _dot(x[i, d], dv[i, h, b], N)
                    _axpy(dx[i, d], W[wv], dv[i, h, b], N)
        for d in range(D):
            for s in range(N):
                G[oE + tok[i, s] * Dp + d] += dx[i, d, s]
    grad[m, :] = G


def _axpy(y, a, x, N):
    """``y[:N] += a · x[:N]``."""
    for s in range(N):
        y[s] += a * x[s]


def _axpy_mul(y, a, x, N):
    """``y[:N] += a[:N] · x[:N]``."""
    for s in range(N):
        y[s] += a[s] * x[s]


def _dot(x, y, N):
    acc = x[0] * 0
    for s in range(N):
        acc += x[s] * y[s]
    return acc


def _open_run(W, oU, Tp, T, D, r, prob, usoft, kbuf, kview, want_grad, want_argmax):
    """Start a run of equal prefixes: ``prob[:T] = softmax(r · W_U)`` and, for the
    gradient, ``usoft = W_U · prob``. Returns ``(logsumexp, argmax)`` of the logits
    (argmax 0 unless ``want_argmax``).

    Indices into ``W`` are unsigned: numba then knows they are not negative and the
    loops vectorise without slicing (a slice costs two reference-count updates).
    """
    Tu = np.uint64(T)
    base = np.uint64(oU)
    r0 = r[0]
    for t in range(Tu):
        prob[t] = r0 * W[base + t]
    for d in range(1, D):
        rd = r[d]
        base = np.uint64(oU + d * Tp)
        for t in range(Tu):
            prob[t] += rd * W[base + t]
    top = prob[0]
    best = 0
    if want_argmax:
        for t in range(1, T):
            if prob[t] > top:
                top = prob[t]
                best = t
    else:
        for t in range(1, T):
            top = max(top, prob[t])
    total = _exp_row(prob, T, top, kbuf, kview)
    inv = 1 / total
    if want_grad:
        base = np.uint64(oU)
        acc = prob[0] * 0
        for t in range(Tu):
            pt = prob[t] * inv
            prob[t] = pt
            acc += W[base + t] * pt
        usoft[0] = acc
        for d in range(1, D):
            base = np.uint64(oU + d * Tp)
            acc = prob[0] * 0
            for t in range(Tu):
                acc += W[base + t] * prob[t]
            usoft[d] = acc
    else:
        for t in range(Tu):
            prob[t] *= inv
    return top + math.log(total), best


def _flush(G, oU, Tp, T, D, r, w, prob):
    """Add a closed run's softmax term to the gradient of W_U: ``w · r ⊗ softmax``."""
    T = np.uint64(T)
    for d in range(D):
        c = r[d] * w
        base = np.uint64(oU + d * Tp)
        for t in range(T):
            G[base + t] += c * prob[t]


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

    _open_run, _flush = njit(**_inline)(_open_run), njit(**_inline)(_flush)
    _axpy, _axpy_mul, _dot = njit(**_inline)(_axpy), njit(**_inline)(_axpy_mul), njit(**_inline)(_dot)
    _one_model = njit(nogil=True, **_options)(_one_model)
    _run_models = njit(nogil=True, **_options)(_run_models)


def loss_and_grad(flat: np.ndarray, dims: np.ndarray, pad: np.ndarray, inputs: np.ndarray,
                  targets: np.ndarray, weight: np.ndarray, rows: np.ndarray, models: np.ndarray,
                  *, grad_out: np.ndarray | None, want_argmax: bool, threads: int):
    """Run the kernel for ``models`` on numpy arrays (see
    :meth:`~factlab.models.attention_layer.AttentionStack.fused_loss_and_grad`); the
    gradient, if ``grad_out`` (shaped like ``flat``) is given, is written there.

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
    if want_grad:
        skipped = np.ones(M, dtype=bool)
        skipped[models] = False
        grad_out[skipped] = 0                   # computed rows are written whole by the kernel
    grad = grad_out if want_grad else np.zeros((M, 0), flat.dtype)
    loss = np.zeros(M, np.float64)
    nll = np.zeros((M, S, n), flat.dtype)
    argmax = np.zeros((M, S, n), np.int64)
    run_split(_run_models, models, rows.sum(axis=1) * (dims[:, 0] + 8), threads,
              flat, grad, dims, offsets, np.asarray(pad, np.int64), inputs, targets, weight, rows,
              want_grad, want_argmax, loss, nll, argmax)
    return loss, nll, argmax, grad_out
