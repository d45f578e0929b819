"""What Nichani et al. (2024)'s reproduction trains: capacity searches, the trade-off grid, Figure 5.

A *search* looks for the largest size (N associations for a memory, S = R for the recall
transformer) whose facts a model stores (accuracy >= 0.99 at some check). Its *probes*
(size, learning rate) are stored in the ``probes`` table; :func:`state` reads them and, with
:func:`factlab.experiments.core.search.bisect`, gives the next size to probe. Every round
of the plan trains, as stacks, all the probes that are pending (every search's next size,
at every learning rate of the ladder): a round is many searches advancing at once, and a
killed search resumes where the store says it was.

Every probe's random draws (embeddings, initial weights, answer table, training data) are
keyed by (config seed, search, size): the same at every learning rate, whatever unit or
stack it trains in.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from factlab.experiments.core.config import stable_key as key
from factlab.experiments.core.paper import Unit
from factlab.experiments.core.search import Bisection, bisect
from factlab.experiments.nichani2024.config import NichaniConfig

MEMORY_EXPERIMENTS = ("linear", "mlp", "mlp_classes")


@dataclass(frozen=True)
class Search:
    """One capacity search: ``experiment`` (linear, mlp, mlp_classes or capacity), the fixed
    sizes (``d``, ``alpha``, ``beta``, replicate ``seed``), the interval and stopping rule,
    and the learning rates tried at every size."""

    id: str
    experiment: str
    d: int
    lo: int
    hi: int
    ratio: float | None
    lrs: tuple[float, ...]
    alpha: float = 0.0
    beta: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Probe:
    """One model to train: a search's size at one learning rate."""

    search: Search
    size: int
    lr: float

    @property
    def id(self) -> str:
        return f"{self.search.id}/size={self.size}/lr={self.lr:g}"


def searches(config: NichaniConfig) -> list[Search]:
    """Every search of the config, in a fixed order."""
    out = []
    lin = config.linear
    for d in lin.ds:
        for s in range(lin.seeds):
            out.append(Search(f"linear/d={d}/seed={s}", "linear", d, d, max(d, d * d // 2), lin.ratio, (lin.lr,),
                              seed=s))
    for name in ("mlp", "mlp_classes"):
        spec = getattr(config, name)
        for d in spec.ds:
            for a in spec.alphas:
                for s in range(spec.seeds):
                    lo = max(d, spec.classes or 0)
                    out.append(Search(f"{name}/d={d}/alpha={a}/seed={s}", name, d, lo, max(lo, a * d * d),
                                      spec.ratio, (spec.lr,), alpha=a, seed=s))
    cap = config.capacity
    pairs = cap.pairs or tuple((a, b) for a in cap.alphas for b in cap.betas)
    for d in cap.ds:
        for a, b in pairs:
            if int(a * d / cap.n_heads) < 1 or int(b * d) < 1:
                continue                         # d_h or m would be 0: no such model (skipped, as documented)
            out.append(Search(f"capacity/d={d}/alpha={a:g}/beta={b:g}", "capacity", d, cap.s_min, cap.s_max,
                              cap.ratio, tuple(config.training.lrs), alpha=a, beta=b))
    return out


def outcomes(probes: pd.DataFrame, search: Search) -> tuple[dict[int, bool], list[tuple[int, float]]]:
    """``(size -> stored, missing)``: a size whose every learning rate is stored counts as
    stored if any of them stored its facts; ``missing`` lists (size, lr) probes of sizes
    only partly stored (a unit cut between learning rates)."""
    mine = probes[probes["search"] == search.id] if len(probes) else probes
    done, missing = {}, []
    for size, rows in (mine.groupby("size") if len(mine) else []):
        have = set(rows["lr"].round(12))
        lacking = [lr for lr in search.lrs if round(lr, 12) not in have]
        if lacking:
            missing += [(int(size), lr) for lr in lacking]
        else:
            done[int(size)] = bool(rows["ok"].any())
    return done, missing


def state(probes: pd.DataFrame, search: Search) -> Bisection:
    """Where ``search`` stands given the stored probes."""
    done, _ = outcomes(probes, search)
    return bisect(search.lo, search.hi, done, ratio=search.ratio)


def pending(config: NichaniConfig, probes: pd.DataFrame) -> list[Probe]:
    """Every probe the stored results call for now: each unfinished search's next size at
    every learning rate, and the missing learning rates of partly stored sizes."""
    out = []
    for s in searches(config):
        _, missing = outcomes(probes, s)
        if missing:
            out += [Probe(s, size, lr) for size, lr in missing]
            continue
        b = state(probes, s)
        if not b.done:
            out += [Probe(s, b.probe, lr) for lr in s.lrs]
    return out


def units(config: NichaniConfig, probes: pd.DataFrame, grid_done: set[tuple[int, int]], curves_done: bool
          ) -> list[Unit]:
    """The units of the next round: pending probes grouped by experiment and cut by size
    into stacks of at most ``runner.unit_models``; the trade-off grid's missing cells; and
    Figure 5's run if its curves are not stored. Unit ids name their contents."""
    out = []
    todo = pending(config, probes)
    round_no = len(probes)
    limit = config.runner.unit_models
    for experiment in MEMORY_EXPERIMENTS + ("capacity",):
        mine = sorted((p for p in todo if p.search.experiment == experiment), key=lambda p: (p.size, p.id))
        for i in range(0, len(mine), limit):
            part = mine[i:i + limit]
            out.append(Unit(f"{experiment}:{key(*(p.id for p in part)):x}", part, size=len(part), round=round_no))
    t = config.tradeoff
    cells = [(h, m) for h in t.heads for m in t.widths if (h, m) not in grid_done]
    cells.sort(key=lambda c: (c[0] * t.d_head, c[1]))
    for i in range(0, len(cells), limit):
        part = cells[i:i + limit]
        out.append(Unit(f"tradeoff:{key(*part):x}", part, size=len(part)))
    if not curves_done:
        out.append(Unit("sequential", None, size=1))
    return out


def params(config: NichaniConfig, s: Search) -> int:
    """The parameters a search's models count: d^2 (linear memory), 2·m·d (MLP memory),
    4·H·d_h·d + 2·m·d (recall transformer)."""
    if s.experiment == "linear":
        return s.d * s.d
    if s.experiment in ("mlp", "mlp_classes"):
        return 2 * int(s.alpha * s.d) * s.d
    H = config.capacity.n_heads
    return 4 * H * int(s.alpha * s.d / H) * s.d + 2 * int(s.beta * s.d) * s.d


def capacities(config: NichaniConfig, probes: pd.DataFrame) -> pd.DataFrame:
    """One row per search: its sizes, whether it is done, its capacity (the largest size
    stored; NaN while running or if even the smallest failed), the facts it stands for
    (N associations; S·R = S^2 for the recall transformer) and the models' parameters."""
    rows = []
    for s in searches(config):
        b = state(probes, s)
        cap = b.answer if b.done else None
        facts = None if cap is None else (cap * cap if s.experiment == "capacity" else cap)
        rows.append({"search": s.id, "experiment": s.experiment, "d": s.d, "alpha": s.alpha, "beta": s.beta,
                     "seed": s.seed, "done": b.done, "capacity": cap, "facts": facts, "probes": b.probes,
                     "lo": s.lo, "hi": s.hi, "params": params(config, s)})
    return pd.DataFrame(rows).astype({"capacity": float, "facts": float}) if rows else pd.DataFrame()


def model_seed(config: NichaniConfig, probe_search: str, size: int) -> int:
    """The seed of a probe's random draws (shared by its learning rates)."""
    return key(config.seed, probe_search, size)
