"""Direct summands of a tensor, their compressed cores and their proven bounds.

Before searching, a tensor is split into direct summands (blocks of entries sharing no
index in any mode; ranks of flattenings add over blocks, upper bounds add over blocks) and
each block is replaced by its subtensor on a basis of its slices in every mode, which has
the same rank (T = core x1 C1 x2 C2 x3 C3 with C_m injective) and whose shape is the
multilinear rank. Each block carries its combinatorial upper bounds (``|D|``,
Proposition 2.1, the object-slice ranks, the multilinear rank), the factors that realise
them (:func:`_constructive`), and the state of the search on it; :func:`_interval` sums
the blocks back into the interval of the whole tensor.

The rank interval (:mod:`factlab.tensors.rank`), the exact search
(:mod:`factlab.tensors.rank_search`) and the effective rank
(:mod:`factlab.tensors.rank_effective`) all start from these blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.tensors.cp_problem import CPSearchConfig, Factors, SparseTensor
from factlab.tensors.database_tensor import proposition_2_1
from factlab.tensors.rank_bounds import (RankBound, RankInterval, _as_dense, _is_integer, _rank_mod_p, _rank_svd,
                                         _slice_ranks, _svd_atol, _unfold)


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
