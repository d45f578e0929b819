"""argmax, softmax and thresholds of logit tensors (Wong 2025, sec. 3.2, eq. 11-14).

Row-wise operations act on the last axis, so they apply alike to a matrix M and to a
model tensor L ``(|K|, |Q|, |V|)`` whose fibers ``L[k, q, :]`` are logits.

- ``argmax(M)[i, j] = 1`` if ``M[i, j] = max(M[i, :])`` (eq. 11): every maximum of a tied
  row gets 1, as in the paper's definition.
- ``softmax_{>=τ}(M)[i, j] = 1`` if ``softmax(M)[i, j] >= τ``, τ in [0.5, 1] (eq. 13).
- ``acc_{>=τ}(L, D)``, the fraction of facts (k, q, v) with ``softmax(L[k, q, :])[v] >= τ``
  (eq. 14); a layer τ-memorizes D when it is 1.

Propositions 3.6 and 3.7 as constructions: for 2 <= r <= n, the Gram matrix M of n
distinct unit vectors in R^r has rank r while argmax(M), and softmax(cM) for c large
enough, have rank n.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError

Columns = Literal["objects", "tokens"]


def row_argmax(M: torch.Tensor) -> torch.Tensor:
    """Eq. (11): 1 where an entry equals the maximum of its row (last axis), else 0; ties all 1."""
    M = torch.as_tensor(M)
    return (M == M.amax(-1, keepdim=True)).to(M.dtype if M.is_floating_point() else torch.float64)


def softmax_threshold(M: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. (13): ``softmax_{>=τ}(M)``, 1 where the row softmax (last axis) is at least τ."""
    tau = check_tau(tau)
    M = torch.as_tensor(M)
    return (M.softmax(-1) >= tau).to(M.dtype)


def check_tau(tau: float) -> float:
    """τ as a float; :class:`ConfigError` unless ``0.5 <= τ <= 1`` (eq. 13)."""
    try:
        t = float(tau)
    except (TypeError, ValueError):
        raise ConfigError(f"tau must be a number in [0.5, 1], got {tau!r}") from None
    if not 0.5 <= t <= 1.0:
        raise ConfigError(f"tau must be in [0.5, 1] (eq. 13: then p >= tau implies p is the "
                          f"largest), got {tau!r}")
    return t


def fact_probabilities(L: torch.Tensor, db: Database, *, columns: Columns = "objects") -> torch.Tensor:
    """``softmax(L[k, q, :])[v]`` for each fact (k, q, v) of ``db``, in fact order: ``(|D|,)``.

    ``L`` is ``(|K|, |Q|, C)`` on the database's subject and predicate axes. With
    ``columns="objects"`` (the paper's L, eq. 8) the last axis is V and the softmax runs
    over the objects only; with ``columns="tokens"`` the last axis is the model's whole
    vocabulary, indexed by token id, and the softmax is the model's real next-token
    distribution.
    """
    idx = _fact_index(L, db, columns)  # (|D|, 3)
    P = torch.as_tensor(L).softmax(-1)  # (K, Q, C)
    return P[idx[:, 0], idx[:, 1], idx[:, 2]]


def tau_accuracy(L: torch.Tensor, db: Database, tau: float, *, columns: Columns = "objects") -> float:
    """``acc_{>=τ}(L, D)`` of Wong 2025, eq. (14): fraction of facts with ``softmax(L[k,q,:])[v] >= τ``.

    See :func:`fact_probabilities` for ``columns``.
    """
    tau = check_tau(tau)
    return float((fact_probabilities(L, db, columns=columns) >= tau).double().mean())


def argmax_accuracy(L: torch.Tensor, db: Database, *, columns: Columns = "objects") -> float:
    """Fraction of facts (k, q, v) where v is the *unique* maximum of ``L[k, q, :]``.

    Stricter than summing eq. (11) over the facts: a tied row (e.g. all-zero logits) does
    not count as correct, since an argmax that returns one token could return another.
    """
    idx = _fact_index(L, db, columns)
    L = torch.as_tensor(L)
    fibers = L[idx[:, 0], idx[:, 1]]  # (|D|, C)
    target = fibers[torch.arange(len(idx)), idx[:, 2]]  # (|D|,)
    others = fibers.clone()
    others[torch.arange(len(idx)), idx[:, 2]] = -torch.inf
    return float((target > others.amax(-1)).double().mean())


def memorizes(L: torch.Tensor, db: Database, tau: float, *, columns: Columns = "objects") -> bool:
    """Whether L τ-memorizes the database: ``acc_{>=τ}(L, D) = 1`` (eq. 14)."""
    tau = check_tau(tau)
    return bool((fact_probabilities(L, db, columns=columns) >= tau).all())


# ---------------------------------------------------------------------- Propositions 3.6 / 3.7
def unit_vectors(n: int, r: int, *, seed: int = 0) -> np.ndarray:
    """n distinct unit vectors spanning R^r, ``(n, r)`` float64 (2 <= r <= n).

    r = 2: evenly spread on the unit circle, at angles ``2πi/n`` (``πi/2`` for n = 2, so
    the two are not antipodal and span the plane). r > 2: the first r are the standard
    basis (so they span R^r), the rest normalised Gaussian draws (distinct almost surely,
    checked; redrawn otherwise).
    """
    _check_nr(n, r)
    if r == 2:
        step = math.pi / 2 if n == 2 else 2 * math.pi / n
        theta = step * np.arange(n)
        return np.stack([np.cos(theta), np.sin(theta)], axis=1)
    rng = np.random.default_rng(seed)
    while True:
        extra = rng.standard_normal((n - r, r))
        X = np.concatenate([np.eye(r), extra / np.linalg.norm(extra, axis=1, keepdims=True)])
        G = X @ X.T
        if (G - np.eye(n)).max() < 1 - 1e-6:  # distinct: no off-diagonal inner product near 1
            return X


def argmax_rank_construction(n: int, r: int, seed: int = 0) -> np.ndarray:
    """Proposition 3.6: an ``(n, n)`` matrix of rank r whose row argmax (eq. 11) has rank n.

    The Gram matrix ``M[i, j] = <v_i, v_j>`` of the n distinct unit vectors of
    :func:`unit_vectors`: rank r, ones on the diagonal and off-diagonal entries < 1, so
    ``argmax(M)`` is the identity.
    """
    X = unit_vectors(n, r, seed=seed)  # (n, r)
    return X @ X.T  # (n, n)


def minimal_softmax_scale(M: np.ndarray) -> float:
    """The least c with ``exp(c M_ii) >= Σ_{j≠i} exp(c M_ij)`` for every row i (Prop. 3.7).

    With gaps ``g_ij = M_ii - M_ij > 0`` the condition reads ``f_i(c) = Σ_{j≠i} exp(-c g_ij) <= 1``;
    each f_i decreases in c, so the least c is the largest root over the rows, found by
    bisection on ``[0, log(n-1) / min g]`` (where every f_i <= 1). 0 for n = 2.
    """
    M = np.asarray(M, dtype=np.float64)
    n = M.shape[0]
    if n < 2:
        return 0.0
    gaps = np.diag(M)[:, None] - M  # (n, n), g_ij = M_ii - M_ij
    off = ~np.eye(n, dtype=bool)
    if (gaps[off] <= 0).any():
        raise ConfigError("every diagonal entry must be strictly larger than the rest of its row, "
                          f"got a smallest gap of {gaps[off].min():.3g}")

    def worst(c: float) -> float:  # max_i f_i(c) - 1
        return float(np.where(off, np.exp(-c * gaps), 0.0).sum(1).max() - 1.0)

    lo, hi = 0.0, math.log(n - 1) / gaps[off].min()
    if worst(lo) <= 0:
        return 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if worst(mid) <= 0 else (mid, hi)
    return hi


def softmax_rank_construction(n: int, r: int, *, seed: int = 0, safety: float = 2.0) -> tuple[np.ndarray, float]:
    """Proposition 3.7: ``(M, c)`` with rank(M) = r and rank(softmax(cM)) = n.

    M is the matrix of :func:`argmax_rank_construction`; c is ``safety`` times
    :func:`minimal_softmax_scale` (the least c with ``(e^{M_ii})^c > Σ_{j≠i} (e^{M_ij})^c``,
    making softmax(cM) strictly diagonally dominant, hence invertible); for n = 2, where
    any c > 0 works, c = ``safety``.
    """
    if not safety > 1:
        raise ConfigError(f"safety must be > 1 (the minimal c only reaches equality), got {safety!r}")
    M = argmax_rank_construction(n, r, seed=seed)
    c_min = minimal_softmax_scale(M)
    return M, safety * (c_min if c_min > 0 else 1.0)


def row_softmax(M: np.ndarray) -> np.ndarray:
    """Eq. (12), row-wise, numerically stable, float64."""
    M = np.asarray(M, dtype=np.float64)
    e = np.exp(M - M.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------- internals
def _check_nr(n: int, r: int) -> None:
    if not (isinstance(n, (int, np.integer)) and isinstance(r, (int, np.integer)) and 2 <= r <= n):
        raise ConfigError(f"need integers 2 <= r <= n, got n={n!r}, r={r!r}")


def _fact_index(L: torch.Tensor, db: Database, columns: Columns) -> torch.Tensor:
    """``(|D|, 3)`` indices of the facts into L, after checking L's shape."""
    L = torch.as_tensor(L)
    K, Q, V = db.shape
    if columns == "objects":
        expected = (K, Q, V)
        if tuple(L.shape) != expected:
            raise ConfigError(f"L has shape {tuple(L.shape)}, expected (|K|, |Q|, |V|) = {expected}")
        return torch.from_numpy(db.tensor_index().copy())
    if columns == "tokens":
        if L.dim() != 3 or tuple(L.shape[:2]) != (K, Q) or L.shape[2] < db.n_tokens:
            raise ConfigError(f"L has shape {tuple(L.shape)}, expected (|K|, |Q|, >= |T|) = "
                              f"({K}, {Q}, >= {db.n_tokens})")
        idx = db.tensor_index().copy()
        idx[:, 2] = db.facts[:, 2]
        return torch.from_numpy(idx)
    raise ConfigError(f"columns must be 'objects' or 'tokens', got {columns!r}")
