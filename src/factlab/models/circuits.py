"""An attention layer built from given circuits (Wong 2025, sec. 3, Example 3.3).

The paper reasons about a layer through its |T| x |T| circuits

    W_EU = W_E W_U,   W_QK^h = W_E W_Q^h W_K^h W_E^T,   W_VO^h = W_E W_V^h W_O^h W_U,

and Example 3.3 writes a head down by its circuits alone. :func:`from_circuits` turns such
circuits back into weights, with ``d_model = |T|`` and ``W_E = I``:

- ``W_U = W_EU``;
- ``W_Q^h W_K^h = W_QK^h``, factorised by SVD, so ``d_head_qk`` is the largest numerical
  rank of the W_QK^h (at least 1; a head of smaller rank is zero-padded);
- ``W_V^h W_O^h W_U = W_VO^h`` asks for a matrix ``X^h = W_V^h W_O^h`` with
  ``X^h W_EU = W_VO^h``. It exists exactly when every row of W_VO^h lies in the row space
  of W_EU; then ``X^h = W_VO^h pinv(W_EU)`` solves it and has the rank of W_VO^h, which
  sets ``d_head_vo``. Otherwise :class:`~factlab.errors.ConfigError` is raised: a layer
  whose value-output circuit routes through W_U cannot write what W_U cannot read. A
  full-rank ``W_EU = eps·I`` (eps small) makes every W_VO^h expressible while adding only
  ``eps`` to each logit of the token itself.

Everything is computed in float64; the built layer's circuits equal the given ones to
round-off (checked here, and in ``tests/models/test_circuits.py``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack

ArrayLike = np.ndarray | torch.Tensor | Sequence


def from_circuits(
    W_EU: ArrayLike,
    W_QK: ArrayLike,
    W_VO: ArrayLike,
    *,
    rtol: float | None = None,
) -> AttentionStack:
    """A stack of one float64 layer with ``d_model = |T|``, ``W_E = I`` and the given circuits.

    ``W_EU`` is ``(V, V)`` (V = |T|, the vocabulary); ``W_QK`` and ``W_VO`` are ``(H, V, V)``
    arrays or lists of ``(V, V)`` matrices, one per head. ``rtol`` is the relative
    singular-value cut-off of the numerical ranks (default ``V · eps(float64)``, as
    ``numpy.linalg.matrix_rank``).

    Raises :class:`ConfigError` when shapes disagree or when a row of some W_VO^h is
    outside the row space of W_EU (see the module docstring).
    """
    eu = _matrix(W_EU, "W_EU")
    V = eu.shape[0]
    if eu.shape != (V, V):
        raise ConfigError(f"W_EU must be square (|T| x |T|), got shape {eu.shape}")
    qk = _heads(W_QK, "W_QK", V)  # (H, V, V)
    vo = _heads(W_VO, "W_VO", V)  # (H, V, V)
    if len(qk) != len(vo):
        raise ConfigError(f"W_QK has {len(qk)} heads but W_VO has {len(vo)}")
    rtol = V * np.finfo(np.float64).eps if rtol is None else float(rtol)
    n_heads = len(qk)

    # W_Q^h W_K^h = W_QK^h (W_E = I): W_Q = U sqrt(S), W_K = sqrt(S) V^T
    qk_factors = [_rank_factorisation(qk[h], rtol) for h in range(n_heads)]
    d_head_qk = max(1, max(a.shape[1] for a, _ in qk_factors))

    # W_V^h W_O^h = X^h with X^h W_EU = W_VO^h: solvable iff rows of W_VO^h lie in rowspace(W_EU)
    eu_rank, eu_rowspace = _row_space(eu, rtol)  # (r, V), orthonormal rows
    eu_pinv = np.linalg.pinv(eu, rcond=rtol)     # (V, V)
    vo_factors = []
    for h in range(n_heads):
        outside = vo[h] - (vo[h] @ eu_rowspace.T) @ eu_rowspace  # (V, V), component off the row space
        off = np.abs(outside).max(axis=1)                          # (V,)
        bad = np.flatnonzero(off > _atol(rtol, vo[h]))
        if bad.size:
            raise ConfigError(
                f"W_VO^{h + 1} cannot be written as W_V W_O W_U with W_U = W_EU (W_E = I): rows "
                f"{bad.tolist()} of W_VO^{h + 1} are not in the row space of W_EU (rank {eu_rank} "
                f"of {V}; largest off-space component {off.max():.3g}); give W_EU full rank, "
                f"e.g. W_EU = eps·I with eps small"
            )
        X = vo[h] @ eu_pinv  # (V, V), X W_EU = W_VO^h
        vo_factors.append(_rank_factorisation(X, rtol))
    d_head_vo = max(1, max(a.shape[1] for a, _ in vo_factors))

    config = AttentionLayerConfig(n_tokens=V, d_model=V, n_heads=n_heads, d_head_qk=d_head_qk,
                                  d_head_vo=d_head_vo)
    weights = {
        "W_E": torch.eye(V, dtype=torch.float64),
        "W_U": torch.from_numpy(eu.copy()),
        "W_Q": _stack_padded([a for a, _ in qk_factors], (V, d_head_qk)),       # (H, D, K), D = V
        "W_K": _stack_padded([b for _, b in qk_factors], (d_head_qk, V)),       # (H, K, D)
        "W_V": _stack_padded([a for a, _ in vo_factors], (V, d_head_vo)),       # (H, D, Z)
        "W_O": _stack_padded([b for _, b in vo_factors], (d_head_vo, V)),       # (H, Z, D)
    }
    stack = AttentionStack.from_weights([config], [weights])
    _check_exact(stack, eu, qk, vo)
    return stack


def _check_exact(stack: AttentionStack, eu: np.ndarray, qk: np.ndarray, vo: np.ndarray, rel: float = 1e-9) -> None:
    """The built layer's circuits must equal the given ones (up to round-off relative to their size)."""
    built = stack.circuits()
    for name, given, got in (("W_EU", eu, built["W_EU"][0]), ("W_QK", qk, built["W_QK"][0]),
                             ("W_VO", vo, built["W_VO"][0])):
        err = float(np.abs(got.numpy() - given).max())
        if err > rel * max(1.0, float(np.abs(given).max())):
            raise ConfigError(f"{name} is too ill-conditioned to rebuild exactly: error {err:.3g} "
                              f"(W_EU has singular values down to the cut-off; raise rtol)")


def circuit_ranks(stack: AttentionStack, model: int = 0, *, rtol: float | None = None) -> dict[str, object]:
    """Matrix ranks of a layer's circuits (float64): ``{"W_EU": int, "W_QK": [..], "W_VO": [..]}``.

    The paper bounds them by the inner dimensions: ``rank(W_EU) <= d_model``,
    ``rank(W_QK^h) <= d_head_qk``, ``rank(W_VO^h) <= d_head_vo`` (sec. 3).
    """
    c = stack.configs[model]
    V, H = c.n_tokens, c.n_heads
    circ = stack.to(dtype=torch.float64).circuits()
    eu = circ["W_EU"][model, :V, :V].numpy()
    qk = circ["W_QK"][model, :H, :V, :V].numpy()
    vo = circ["W_VO"][model, :H, :V, :V].numpy()
    return {"W_EU": _rank(eu, rtol), "W_QK": [_rank(m, rtol) for m in qk],
            "W_VO": [_rank(m, rtol) for m in vo]}


# ---------------------------------------------------------------------- helpers
def _matrix(x: ArrayLike, name: str) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ConfigError(f"{name} must be a matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ConfigError(f"{name} has non-finite entries")
    return a


def _heads(x: ArrayLike, name: str, V: int) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        mats = [_matrix(m, f"{name}[{h}]") for h, m in enumerate(x)]
        if not mats:
            raise ConfigError(f"{name} needs at least one head")
        a = np.stack(mats) if all(m.shape == mats[0].shape for m in mats) else None
        if a is None:
            raise ConfigError(f"{name}: heads have different shapes {[m.shape for m in mats]}")
    else:
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 2:
            a = a[None]
    if a.ndim != 3 or a.shape[1:] != (V, V):
        raise ConfigError(f"{name} must be (n_heads, {V}, {V}) to match W_EU, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ConfigError(f"{name} has non-finite entries")
    return a


def _rank_factorisation(M: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """``M = A B`` with ``A (m, r)``, ``B (r, n)``, r the numerical rank (balanced SVD factors)."""
    U, S, Vt = np.linalg.svd(M)
    r = int((S > rtol * S[0]).sum()) if S[0] > 0 else 0
    root = np.sqrt(S[:r])
    return U[:, :r] * root, root[:, None] * Vt[:r]


def _stack_padded(mats: list[np.ndarray], shape: tuple[int, int]) -> torch.Tensor:
    out = np.zeros((len(mats),) + shape)
    for h, m in enumerate(mats):
        out[h, : m.shape[0], : m.shape[1]] = m
    return torch.from_numpy(out)


def _row_space(M: np.ndarray, rtol: float) -> tuple[int, np.ndarray]:
    """Numerical rank r of ``M`` and an orthonormal basis ``(r, n)`` of its row space."""
    _, S, Vt = np.linalg.svd(M)
    r = int((S > rtol * S[0]).sum()) if S[0] > 0 else 0
    return r, Vt[:r]


def _atol(rtol: float, M: np.ndarray) -> float:
    """Absolute round-off tolerance for entries of a product the size of ``M``."""
    return 1e3 * rtol * max(float(np.abs(M).max()), 1.0)


def _rank(M: np.ndarray, rtol: float | None) -> int:
    """Numerical rank: numpy's default cut-off, or singular values above ``rtol · σ_max``."""
    if rtol is None:
        return int(np.linalg.matrix_rank(M))
    return _row_space(M, rtol)[0]
