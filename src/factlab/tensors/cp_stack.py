"""The padded stack of the CP search: many problems of different sizes in one set of tensors.

Every problem of a batch is padded to the stack's largest ``(I, J, K)``, number of stored
entries ``N`` and rank ``R`` (the letters of :mod:`factlab.tensors.cp_search`); padded
rows, entries (value 0) and rank components (masked to 0) are provably inert: they receive
a zero gradient, a zero step and add nothing to the loss, so a problem fitted in a stack
follows the same iterates as alone (up to the order of floating-point sums). Each problem's
random start comes from its own seed, so it does not depend on the stack either, and
problems are bucketed by size so that padding wastes little work.

Both the exact fits (:mod:`factlab.tensors.cp_lm`) and the masked fits
(:mod:`factlab.tensors.cp_fibers`) run on this stack, hence a module of its own.
"""

from __future__ import annotations

import torch

from factlab.tensors.cp_problem import Factors, Problem


def _start(problem: Problem) -> Factors:
    """Gaussian factors scaled so that E||[[A, B, C]]||^2 = ||T||^2, drawn from the problem's
    own generator so that a problem's start does not depend on the stack it is in."""
    g = torch.Generator().manual_seed(problem.seed)
    I, J, K = problem.tensor.shape
    r = problem.rank
    scale = (max(problem.tensor.norm, 1e-12) ** 2 / (r * I * J * K)) ** (1 / 6)
    return tuple(torch.randn(n, r, generator=g, dtype=torch.float64) * scale for n in (I, J, K))


class _Stack:
    """Problems padded to common sizes; ``select`` keeps a subset of them."""

    def __init__(self, problems: list[Problem], starts: list[Factors], groups: list[int] | None = None):
        P = len(problems)
        self.group = torch.tensor(groups if groups is not None else list(range(P)), dtype=torch.long)  # (P,)
        self.rank = torch.tensor([p.rank for p in problems], dtype=torch.long)  # (P,)
        self.size = torch.tensor([p.rank * sum(p.tensor.shape) for p in problems], dtype=torch.long)  # (P,)
        self.shape = torch.tensor([p.tensor.shape for p in problems], dtype=torch.long).reshape(P, 3)  # (P, 3) own
        self.nnz = torch.tensor([len(p.tensor.values) for p in problems], dtype=torch.long)  # (P,)
        self.dims = tuple(max(p.tensor.shape[m] for p in problems) for m in range(3))
        self.R = max(p.rank for p in problems)
        N = max(max(len(p.tensor.values) for p in problems), 1)
        coords = torch.zeros(P, N, 3, dtype=torch.long)  # (P, N, 3)
        self.values = torch.zeros(P, N, dtype=torch.float64)  # (P, N), padding stores 0
        self.F = [torch.zeros(P, n, self.R, dtype=torch.float64) for n in self.dims]  # (P, I_m, R)
        self.comp = torch.zeros(P, self.R, dtype=torch.float64)  # (P, R), 1 on live components
        for i, (p, f) in enumerate(zip(problems, starts)):
            n = len(p.tensor.values)
            coords[i, :n] = p.tensor.coords
            self.values[i, :n] = p.tensor.values
            self.comp[i, : p.rank] = 1
            for m in range(3):
                self.F[m][i, : p.tensor.shape[m], : p.rank] = f[m]
        self.coords = coords
        self.ids = torch.arange(P)

    def select(self, keep: torch.Tensor) -> None:
        self.coords, self.values, self.comp = self.coords[keep], self.values[keep], self.comp[keep]
        self.group, self.rank, self.size = self.group[keep], self.rank[keep], self.size[keep]
        self.shape, self.nnz = self.shape[keep], self.nnz[keep]
        self.F = [f[keep] for f in self.F]
        self.ids = self.ids[keep]

    def flat(self) -> list[torch.Tensor]:
        P, N = self.values.shape
        return [(self.coords[:, :, m] + torch.arange(P)[:, None] * self.dims[m]).reshape(-1) for m in range(3)]


def _buckets(problems: list[Problem], max_batch: int) -> list[list[int]]:
    """Group problems of similar rank and size so that padding wastes little work."""
    cost = lambda p: (p.rank, sum(p.tensor.shape), len(p.tensor.values))
    order = sorted(range(len(problems)), key=lambda i: cost(problems[i]))
    groups, cur = [], []
    for i in order:
        if cur:
            R = max(problems[j].rank for j in cur + [i])
            S = max(sum(problems[j].tensor.shape) for j in cur + [i])
            padded = (len(cur) + 1) * R * R * (R + S)
            real = sum(problems[j].rank ** 2 * (problems[j].rank + sum(problems[j].tensor.shape)) for j in cur + [i])
            if padded > 1.5 * real + 1e5 or len(cur) >= max_batch:
                groups.append(cur)
                cur = []
        cur.append(i)
    if cur:
        groups.append(cur)
    return groups
