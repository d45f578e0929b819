"""The rank interval's types and the matrix ranks that its proven ends rest on.

:class:`RankInterval` pairs two ends, each a :class:`RankBound` with its proof. The lower end is
the largest matrix rank of the three flattenings (unfoldings). For an integer tensor (a
database tensor D is 0/1) the ranks are computed exactly, by Gaussian elimination modulo
the prime p = 2^31 - 1: the rank over GF(p) never exceeds the rank over Q, so it is a
proven lower bound (and equals it except in rare cases). For a real tensor (an attention
layer's L) it is the number of singular values above ``eps * sqrt(I J K)`` with
``eps = tol * max(1, max|T|)``: any tensor within the exactness tolerance of T (entry-wise
error <= eps, hence Frobenius error <= eps sqrt(IJK)) has at least that many flattening
singular values, so the bound holds for every "exact" fit and the interval can never invert.

Exact ranks over Q of small integer matrices (Bareiss elimination) serve an upper bound,
the sum of the ranks of the object slices. These are plain matrix computations, shared by
the blocks (:mod:`factlab.tensors.rank_blocks`) and the public functions of
:mod:`factlab.tensors.rank`, hence a module of their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.tensors.cp_problem import CPSearchConfig

PRIME = 2**31 - 1  # modulus of the exact flattening ranks


@dataclass(frozen=True)
class RankBound:
    """One end of a rank interval and how it was proven, e.g. ``RankBound(6, "Proposition 2.1")``."""

    value: int
    method: str


@dataclass(frozen=True)
class RankInterval:
    """``lower <= rank <= upper``, each end with its proof; certified when they meet."""

    lower: RankBound
    upper: RankBound

    @property
    def certified(self) -> bool:
        return self.lower.value == self.upper.value

    def to_dict(self) -> dict:
        return {"lower": asdict(self.lower), "upper": asdict(self.upper), "certified": self.certified}

    def __str__(self) -> str:
        tag = "certified" if self.certified else "interval"
        return f"[{self.lower.value}, {self.upper.value}] ({tag}; lower: {self.lower.method}; upper: {self.upper.method})"


# ---------------------------------------------------------------------------- matrix ranks
def _rank_mod_p(M: np.ndarray) -> tuple[int, list[int]]:
    """Rank of an integer matrix over GF(p) and the rows of an echelon basis (original indices).

    Sparse shortcut first: a row that is the only nonzero of some column is independent of
    the other rows, so it is a pivot and leaves; what remains is eliminated densely.
    """
    M = np.mod(np.asarray(M, dtype=np.int64), PRIME)
    first: dict[bytes, int] = {}
    for i, row in enumerate(M):  # equal rows add nothing: keep the first of each
        first.setdefault(row.tobytes(), i)
    rows = np.array(sorted(first.values()), dtype=np.int64)
    rows = rows[M[rows].any(1)]
    pivots: list[int] = []
    while len(rows):
        nz = M[rows] != 0  # (r, n)
        single = nz.sum(0) == 1  # columns with one nonzero among the remaining rows
        peel = nz[:, single].any(1)
        if not peel.any():
            break
        pivots += rows[peel].tolist()
        rows = rows[~peel]
    A = M[rows][:, (M[rows] != 0).any(0)] if len(rows) else np.zeros((0, 0), dtype=np.int64)  # (r, n)
    active = np.ones(len(rows), dtype=bool)
    for c in range(A.shape[1]):
        cand = np.flatnonzero(active & (A[:, c] != 0))
        if len(cand) == 0:
            continue
        piv, others = cand[0], cand[1:]
        active[piv] = False
        pivots.append(int(rows[piv]))
        if len(others):
            factor = (A[others, c] * pow(int(A[piv, c]), PRIME - 2, PRIME)) % PRIME  # (h,)
            A[others] = (A[others] - (factor[:, None] * A[piv][None, :]) % PRIME) % PRIME
        if not active.any():
            break
    return len(pivots), sorted(pivots)


def _rank_svd(M: np.ndarray, atol: float) -> tuple[int, list[int]]:
    """Numerical rank (singular values above ``atol``) and independent rows (pivoted QR)."""
    if M.size == 0 or not np.any(M):
        return 0, []
    s = np.linalg.svd(M, compute_uv=False)
    r = int((s > atol).sum())
    _, R = np.linalg.qr(M.T)  # cheap row choice: greedy on the largest remaining norms
    order = np.argsort(-np.abs(np.diag(R))) if R.shape[0] == M.shape[0] else np.arange(M.shape[0])
    return r, sorted(int(i) for i in order[:r])


def _unfold(T: np.ndarray, mode: int) -> np.ndarray:
    return np.moveaxis(T, mode, 0).reshape(T.shape[mode], -1)  # (I_m, prod of the others)


def _is_integer(T: np.ndarray) -> bool:
    return bool(np.all(T == np.round(T)) and np.abs(T).max(initial=0) < PRIME // 2)


def flattening_ranks(tensor, *, tol: float = CPSearchConfig.tol) -> tuple[int, int, int]:
    """Matrix ranks of the three flattenings of a 3-tensor (a Database, a torch tensor or an
    array): exact (modulo 2^31 - 1, a lower bound on the rank over Q) for an integer tensor,
    else the number of singular values above ``_svd_atol(T, tol)`` (module docstring)."""
    T = _as_dense(tensor)
    exact = _is_integer(T)
    return tuple(_rank_mod_p(_unfold(T, m))[0] if exact else _rank_svd(_unfold(T, m), _svd_atol(T, tol))[0]
                 for m in range(3))


def _svd_atol(T: np.ndarray, tol: float) -> float:
    """Singular values at or below this are within the exactness tolerance of zero."""
    return tol * max(1.0, float(np.abs(T).max(initial=0))) * float(np.sqrt(T.size))


def _as_dense(x) -> np.ndarray:
    if isinstance(x, Database):
        T = np.zeros(x.shape)
        idx = x.tensor_index()
        T[idx[:, 0], idx[:, 1], idx[:, 2]] = 1
        return T
    T = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if T.ndim != 3:
        raise ConfigError(f"a rank interval needs a 3-way tensor, got shape {tuple(T.shape)}")
    if not np.all(np.isfinite(T)):
        raise ConfigError("the tensor has non-finite entries (nan or inf)")
    return T


def _rank_exact(rows: list[tuple[int, ...]]) -> int:
    """Rank over Q of a small integer matrix given as rows, by fraction-free (Bareiss)
    elimination in Python integers (exact; used where a rank enters an upper bound)."""
    A = [list(r) for r in {r for r in rows if any(r)}]
    if len(A) <= 1:
        return len(A)
    if len(A) > len(A[0]):
        A = [list(c) for c in zip(*A)]
    rank, prev, n = 0, 1, len(A[0])
    for c in range(n):
        piv = next((i for i in range(rank, len(A)) if A[i][c] != 0), None)
        if piv is None:
            continue
        A[rank], A[piv] = A[piv], A[rank]
        p = A[rank][c]
        for i in range(rank + 1, len(A)):
            A[i] = [(p * A[i][j] - A[i][c] * A[rank][j]) // prev for j in range(n)]
        prev, rank = p, rank + 1
    return rank


def _slice_ranks(T: np.ndarray) -> int:
    """``Σ_v rank T[:, :, v]`` over the nonzero rows and columns of each object slice."""
    total = 0
    for v in range(T.shape[2]):
        S = T[:, :, v]
        S = S[S.any(1)][:, S.any(0)]
        total += _rank_exact([tuple(int(x) for x in row) for row in S.tolist()]) if S.size else 0
    return total
