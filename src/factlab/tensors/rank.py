"""Rank intervals of database tensors and of real 3-tensors (Wong 2025, sec. 2).

Tensor (CP) rank is NP-hard to compute (Hillar & Lim 2013) and hard to approximate
(Swernofsky 2018), so we report an interval whose two ends are both proven:

- lower: the largest matrix rank of the three flattenings (unfoldings). For an integer
  tensor (a database tensor D is 0/1) the ranks are computed exactly, by Gaussian
  elimination modulo the prime p = 2^31 - 1: the rank over GF(p) never exceeds the rank
  over Q, so it is a proven lower bound (and equals it except in rare cases). For a real
  tensor (an attention layer's L) it is the number of singular values above
  ``eps * sqrt(I J K)`` with ``eps = tol * max(1, max|T|)``: any tensor within the exactness
  tolerance of T (entry-wise error <= eps, hence Frobenius error <= eps sqrt(IJK)) has at
  least that many flattening singular values, so the bound holds for every "exact" fit
  and the interval can never invert.
- upper: the least of ``|D|``, Proposition 2.1 ``min(Σ_k |V_k|, Σ_q |V_q|)``, the sum of
  the ranks of the object slices ``Σ_v rank D[:, :, v]`` (the same argument as Prop. 2.1,
  in mode 3), for a real tensor the trivial ``min(r1 r2, r1 r3, r2 r3)`` over its
  multilinear rank, and the least rank at which an *exact* CP decomposition was found
  numerically (see :mod:`factlab.tensors.cp_search` for what exact means). An
  approximate fit never lowers the upper bound.

The interval is certified when the two ends meet (Example 2.2: |D| = 8, Proposition 2.1
gives 6, the interval is [5, 5]).

Before searching, a tensor is split into direct summands (blocks of entries sharing no
index in any mode; ranks of flattenings add over blocks, upper bounds add over blocks) and
each block is replaced by its subtensor on a basis of its slices in every mode, which has
the same rank (T = core x1 C1 x2 C2 x3 C3 with C_m injective) and whose shape is the
multilinear rank. Rank search schedule, per block with proven bounds [lo, hi]: round 1
tries lo (a hit certifies) and hi - 1; while the last try at some r succeeded, the next
round bisects between the largest failed rank and r. All blocks of all tensors of a
round are fitted in one batched stack (:func:`~factlab.tensors.cp_search.fit_exact`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.tensors.cp_search import (CPSearchConfig, Factors, FiberProblem, Problem, SparseTensor, exact_error,
                                       fit_exact, fit_fibers, kernel_used, problem_seed)
from factlab.tensors.database_tensor import proposition_2_1

PRIME = 2**31 - 1  # modulus of the exact flattening ranks

__all__ = ["CPSearchConfig", "RankBound", "RankInterval", "cp_decompose_exact", "effective_rank",
           "flattening_ranks", "rank_interval", "rank_intervals"]


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


# ---------------------------------------------------------------------------- blocks
@dataclass
class _Block:
    """One direct summand of a tensor: its entries (original indices), its compressed core
    ``core`` and the maps ``lift`` with ``block = core x1 lift[0] x2 lift[1] x3 lift[2]``."""

    tensor: SparseTensor  # the block in its own index space (positions ``index[m]``)
    index: tuple[np.ndarray, np.ndarray, np.ndarray]  # original positions of its slices
    core: SparseTensor
    lift: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (I_m, r_m)
    flattening: tuple[int, int, int]
    hi: int = 0
    hi_method: str = ""
    found: tuple[Factors, float] | None = None  # best exact factors at rank hi, on the block
    failed: int = -1  # largest rank tried without an exact fit

    @property
    def lo(self) -> int:
        return max(self.flattening)


def _components(coords: np.ndarray, shape) -> list[np.ndarray]:
    """Row indices of ``coords`` grouped into direct summands (connected in k, q or v)."""
    offsets = np.cumsum([0, shape[0], shape[1]])
    nodes = coords + offsets  # (n, 3) node ids
    parent = np.arange(sum(shape))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, c in nodes.tolist():
        ra, rb, rc = find(a), find(b), find(c)
        parent[rb] = ra
        parent[rc] = ra
    roots = np.array([find(a) for a in nodes[:, 0].tolist()])
    return [np.flatnonzero(roots == r) for r in np.unique(roots)]


def _make_block(T: np.ndarray, exact: bool, config: CPSearchConfig, index) -> _Block:
    """Compress the dense block ``T`` to its core on a basis of slices in every mode."""
    rank_fn = (lambda M: _rank_mod_p(M)) if exact else (lambda M: _rank_svd(M, _svd_atol(T, config.tol)))
    flattening, lifts, core = [], [], T
    for m in range(3):
        r, rows = rank_fn(_unfold(core, m))
        flattening.append(r)
        sub = np.take(core, rows, axis=m)
        full = _unfold(core, m)
        cols = full.any(0)  # zero columns carry no constraint
        S, F = _unfold(sub, m)[:, cols], full[:, cols]  # (r, n), (I_m, n)
        coef = np.linalg.solve(S @ S.T, S @ F.T).T if len(S) else np.zeros((len(F), 0))  # (I_m, r)
        ok = np.abs(coef @ S - F).max(initial=0) <= 1e-9 * max(1, np.abs(T).max())
        if not (config.compress and ok):
            sub, coef = core, np.eye(core.shape[m])
        lifts.append(torch.from_numpy(coef))
        core = sub
    return _Block(_sparse(T), index, _sparse(core), tuple(lifts), tuple(flattening))


def _sparse(T: np.ndarray) -> SparseTensor:
    nz = np.argwhere(T != 0)
    return SparseTensor(torch.from_numpy(nz).long().reshape(-1, 3),
                        torch.from_numpy(T[tuple(nz.T)]).double(), tuple(int(s) for s in T.shape))


def _prepare(x, config: CPSearchConfig):
    """Proven bounds of one input and its blocks with their own starting upper bounds."""
    T = _as_dense(x)
    exact = _is_integer(T)
    tag = "exact mod 2^31-1" if exact else f"SVD, singular values > {_svd_atol(T, config.tol):.1e}"
    coords = np.argwhere(T != 0)
    groups = _components(coords, T.shape) if config.split_components and len(coords) else [np.arange(len(coords))]
    blocks = []
    for g in groups if len(coords) else []:
        index = tuple(np.unique(coords[g, m]) for m in range(3))
        sub = T[np.ix_(*index)]
        if len(groups) > 1:  # keep only this block's entries
            mask = np.zeros(T.shape, dtype=bool)
            mask[tuple(coords[g].T)] = True
            sub = np.where(mask[np.ix_(*index)], sub, 0.0)
        b = _make_block(sub, exact, config, index)
        b.hi, b.hi_method = _block_upper(b, sub, exact)
        blocks.append(b)
    flat = [sum(b.flattening[m] for b in blocks) for m in range(3)]
    mode = int(np.argmax(flat))
    lower = RankBound(flat[mode], f"flattening (mode {mode + 1}, {tag})")
    core = [sum(b.core.shape[m] for b in blocks) for m in range(3)]
    uppers = [RankBound(min(core[0] * core[1], core[0] * core[2], core[1] * core[2]),
                        "multilinear rank (least product of two core dimensions)")]
    if isinstance(x, Database):
        uppers = [RankBound(len(x), "|D|"), RankBound(proposition_2_1(x), "Proposition 2.1")] + uppers
    return T, lower, uppers, blocks


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


def _block_upper(b: _Block, T: np.ndarray, exact: bool) -> tuple[int, str]:
    """Proven upper bounds of one block: pair products of its core shape; the number of
    nonzero entries; Proposition 2.1 (the rank of a slice is at most its number of nonzero
    columns, which for a database slice D[k] is |V_k|); and for an integer tensor the sum of
    the exact ranks of the mode-3 slices, Σ_v rank T[:, :, v]."""
    r1, r2, r3 = b.core.shape
    nz = np.argwhere(T != 0)
    kv, qv = (len(np.unique(nz[:, m] * T.shape[2] + nz[:, 2])) for m in (0, 1))  # distinct (k, v), (q, v)
    cands = [(min(r1 * r2, r1 * r3, r2 * r3), "multilinear rank"), (len(nz), "|D|"),
             (min(kv, qv), "Proposition 2.1")]
    if exact:
        cands.append((_slice_ranks(T), "object-slice ranks"))
    return min(cands, key=lambda t: t[0])


# ---------------------------------------------------------------------------- search
def _content_key(t: SparseTensor) -> int:
    """A key from the tensor's entries, so that a tensor gets the same random starts alone
    or among others (the batched and the one-at-a-time paths agree)."""
    h = hashlib.blake2b(digest_size=8)
    for part in (t.coords.numpy(), t.values.numpy(), np.asarray(t.shape)):
        h.update(np.ascontiguousarray(part).tobytes())
    return int.from_bytes(h.digest(), "little") >> 1


def _lift(b: _Block, factors: Factors) -> Factors:
    """Factors of the core mapped to factors of the block, ``A = C1 A_core`` etc."""
    return tuple(L @ f for L, f in zip(b.lift, factors))


def _bisect(targets: list, fit_round, label: str, max_rank: int) -> None:
    """The rank schedule: lower each target's proven ``hi`` by exact fits.

    Ranks above ``max_rank`` are never tried; let ``top = min(hi, max_rank + 1)``. Round 1
    tries ``lo`` (a hit certifies) and ``top - 1``; later rounds try the midpoint of
    ``[max(lo, largest failed rank + 1), top - 1]`` until that range is empty. A failure is
    not a proof, only a reason to stop looking below it. ``fit_round`` maps
    ``{target: [ranks]}`` to ``{(target, rank): (factors, max error)}`` for the exact hits.
    """
    def top(t):  # least rank not to try: the proven upper bound, or just above the cap
        return min(t.hi, max_rank + 1)

    tries = {i: [t.lo] + ([top(t) - 1] if top(t) - 1 > t.lo else []) for i, t in enumerate(targets)
             if t.lo < top(t)}
    while tries:
        hits = fit_round(tries)
        nxt = {}
        for i, ranks in tries.items():
            t = targets[i]
            for r in sorted(ranks):
                if (i, r) in hits and r < t.hi:
                    t.hi, t.found = r, hits[(i, r)]
                    t.hi_method = f"{label}, max error {t.found[1]:.1e})"
                elif (i, r) not in hits:
                    t.failed = max(t.failed, r)
            lo = max(t.lo, t.failed + 1)
            if lo < top(t):
                nxt[i] = [(lo + top(t)) // 2]
        tries = nxt


def _search(blocks: list[_Block], config: CPSearchConfig, seed: int, keys: list[int]) -> None:
    """Lower every block's ``hi`` by exact fits on its core, all blocks batched per round."""

    # lifting multiplies entry errors by at most the product of the lifts' max row sums
    atol = [config.tol * max(1.0, b.tensor.max_abs)
            / float(np.prod([max(1.0, L.abs().sum(1).max().item()) if L.numel() else 1.0 for L in b.lift]))
            for b in blocks]

    def fit_round(tries):
        problems, owner = [], []
        for i, ranks in tries.items():
            for r in ranks:
                for s in range(config.restarts):
                    problems.append(Problem(blocks[i].core, r, problem_seed(seed, keys[i], r, s), atol[i]))
                    owner.append((i, r))
        hits = {}
        for key, res in zip(owner, fit_exact(problems, config, groups=[i for i, _ in owner])):
            if res is not None and key not in hits:
                factors = _lift(blocks[key[0]], res[0])
                err = exact_error(blocks[key[0]].tensor, factors, config)  # checked on the block itself
                if err is not None:
                    hits[key] = (factors, err)
        return hits

    label = f"exact CP (Levenberg-Marquardt, {kernel_used(config)} iteration"
    _bisect(blocks, fit_round, label, config.max_search_rank)


def rank_intervals(xs: Sequence[Database | torch.Tensor], *, config: CPSearchConfig = CPSearchConfig(),
                   seed: int = 0) -> list[RankInterval]:
    """Rank intervals of many databases or 3-tensors at once (the batched path).

    All blocks of all inputs share each round of the search, so 548 databases cost a few
    batched fits rather than thousands of small ones. Same result as calling
    :func:`rank_interval` on each input with the same seed, up to floating-point order.
    """
    prepared = [_prepare(x, config) for x in xs]
    blocks = [b for _, _, _, bl in prepared for b in bl]
    _search(blocks, config, seed, [_content_key(b.core) for b in blocks])
    return [_interval(lower, uppers, bl) for _, lower, uppers, bl in prepared]


def rank_interval(x: Database | torch.Tensor, *, config: CPSearchConfig = CPSearchConfig(),
                  seed: int = 0) -> RankInterval:
    """The rank interval of a database tensor D (Wong 2025, sec. 2) or of a real 3-tensor.

    >>> rank_interval(figure_1_database)  # Example 2.2 # doctest: +SKIP
    RankInterval(lower=RankBound(5, 'flattening (mode 1, ...)'), upper=RankBound(5, 'exact CP ...'))
    """
    return rank_intervals([x], config=config, seed=seed)[0]


def _interval(lower: RankBound, uppers: list[RankBound], blocks: list[_Block]) -> RankInterval:
    total = sum(b.hi for b in blocks)
    methods = sorted({b.hi_method.split(" (")[0] for b in blocks})
    if len(blocks) == 1:
        method = blocks[0].hi_method
    else:
        errs = [b.found[1] for b in blocks if b.found is not None]
        detail = f", max error {max(errs):.1e}" if errs else ""
        method = f"sum over {len(blocks)} direct summands ({' + '.join(methods)}{detail})"
    uppers = uppers + [RankBound(total, method)]
    best = min(u.value for u in uppers)
    return RankInterval(lower, next(u for u in uppers if u.value == best))


def cp_decompose_exact(x: Database | torch.Tensor, rank: int, *, config: CPSearchConfig = CPSearchConfig(),
                       seed: int = 0) -> Factors | None:
    """An exact CP decomposition with at most ``rank`` terms, or None when none was found.

    Returns factors ``(I, rank)``, ``(J, rank)``, ``(K, rank)`` (unused columns are zero)
    whose reconstruction differs from the tensor by at most ``config.tol * max(1, max|T|)``
    in every entry. Each block takes the factors of the least rank the search reached, or
    of the construction behind its combinatorial bound; the direct sum is checked again.
    """
    T, lower, _, blocks = _prepare(x, config)
    if rank < lower.value:
        return None
    _search(blocks, config, seed, [_content_key(b.core) for b in blocks])
    if sum(b.hi for b in blocks) > rank:
        return None
    out = [torch.zeros(n, rank, dtype=torch.float64) for n in T.shape]
    col = 0
    for b in blocks:
        factors = b.found[0] if b.found is not None else _constructive(b)
        r = factors[0].shape[1]
        for m in range(3):
            out[m][torch.from_numpy(b.index[m])[:, None], torch.arange(col, col + r)[None, :]] = factors[m]
        col += r
    return tuple(out) if exact_error(_sparse(T), tuple(out), config) is not None else None


def _constructive(b: _Block) -> Factors:
    """Factors of the block realising its combinatorial bound ``b.hi_method``."""
    T = b.tensor.dense()  # (I, J, K)
    I, J, K = T.shape
    eye = [torch.eye(n, dtype=torch.float64) for n in (I, J, K)]
    terms: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    if b.hi_method == "|D|":
        terms = [(eye[0][i], eye[1][j], T[i, j, k] * eye[2][k]) for i, j, k in b.tensor.coords.tolist()]
    elif b.hi_method == "Proposition 2.1":  # one term per nonzero fiber T[k, :, v] or T[:, q, v]
        kv = torch.unique(b.tensor.coords[:, [0, 2]], dim=0)
        qv = torch.unique(b.tensor.coords[:, [1, 2]], dim=0)
        if len(kv) <= len(qv):
            terms = [(eye[0][k], T[k, :, v], eye[2][v]) for k, v in kv.tolist()]
        else:
            terms = [(T[:, q, v], eye[1][q], eye[2][v]) for q, v in qv.tolist()]
    elif b.hi_method == "object-slice ranks":  # T[:, :, v] = C T[S, :, v] on a row basis S
        for v in range(K):
            r, rows = _rank_mod_p(T[:, :, v].numpy())
            if r:
                basis = T[rows, :, v]  # (r, J)
                coef = torch.linalg.lstsq(basis.T, T[:, :, v].T).solution.T  # (I, r)
                terms += [(coef[:, i], basis[i], eye[2][v]) for i in range(r)]
    else:  # multilinear rank: the core as a sum of fibers along its largest mode, lifted
        core = b.core.dense()
        m = int(np.argmax(core.shape))
        a, c = [x for x in range(3) if x != m]
        ce = [torch.eye(n, dtype=torch.float64) for n in core.shape]
        for i in range(core.shape[a]):
            for j in range(core.shape[c]):
                fiber = core.select(c, j).select(a, i) if a < c else core.select(a, i).select(c, j)
                t = [None, None, None]
                t[a], t[c], t[m] = ce[a][i], ce[c][j], fiber
                terms.append(tuple(b.lift[x] @ t[x] for x in range(3)))
    return tuple(torch.stack([t[m] for t in terms], dim=1) for m in range(3))


@dataclass
class _Target:
    lo: int
    hi: int
    hi_method: str
    found: tuple[Factors, float] | None = None
    failed: int = -1


def effective_rank(db: Database, *, config: CPSearchConfig = CPSearchConfig(), seed: int = 0) -> RankInterval:
    """An interval for the effective rank of a database (Wong 2025, sec. 2.1, Example 2.4):
    the least rank of a tensor E with ``E[k, q, :] = D[k, q, :]`` for every pair (k, q) in the
    database, the other fibers free.

    lower: ``|V|``, because the mode-3 flattening of any such E contains the column
    ``e_v`` for every object v. upper: the least of the proven upper bounds on rank(D) (an
    exact decomposition of D represents D) and the least rank at which a masked CP fit
    reproduced every observed fiber exactly (same schedule and tolerance as for the rank).
    """
    if not isinstance(db, Database):
        raise ConfigError(f"effective_rank() takes a Database, got {type(db).__name__}")
    _, lower_d, uppers, blocks = _prepare(db, config)
    upper = _interval(lower_d, uppers, blocks).upper  # combinatorial bounds only: no search on D
    target = _Target(lo=db.shape[2], hi=upper.value, hi_method=f"upper bound on rank(D): {upper.method}")
    facts = torch.from_numpy(db.tensor_index().copy())

    def fit_round(tries):
        (ranks,) = tries.values()
        problems = [FiberProblem(facts, db.shape, r, problem_seed(seed, 17, r, s))
                    for r in ranks for s in range(config.restarts)]
        hits = {}
        for p, res in zip(problems, fit_fibers(problems, config)):
            if res is not None:
                hits.setdefault((0, p.rank), res)
        return hits

    _bisect([target], fit_round, "masked CP on the observed fibers (ALS", config.max_search_rank)
    lower = RankBound(db.shape[2], "|V| distinct objects (mode-3 flattening on observed fibers)")
    return RankInterval(lower, RankBound(target.hi, target.hi_method))
