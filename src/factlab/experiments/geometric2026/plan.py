"""What our reproduction of Ravfogel et al. (2026) trains: threshold searches, analyses, multi-hop.

A *search* looks for the smallest embedding dimension d whose model memorizes its facts
(every final answer right, argmax): the one-hop facts of N subjects and R relations with
learned or frozen random embeddings (Theorem 4.1 and Appendix D), or the k-hop queries with
or without chain of thought (Theorems 4.2-4.4). Its probes are stored in the ``probes``
table; :func:`factlab.experiments.core.search.bisect_up` reads them and says which d to try
next; every round of the plan trains every pending probe as stacks. The *analysis* units
(one per replicate) train a model well above the threshold and study it (superposition
probe, readouts, intervention, freeze-and-swap transfer).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from factlab.experiments.core.config import stable_key as key
from factlab.experiments.core.paper import Unit
from factlab.experiments.core.search import Threshold, bisect_up
from factlab.experiments.geometric2026.config import GeometricConfig


@dataclass(frozen=True)
class Search:
    """One threshold search: ``experiment`` "threshold" (N, R, ``embed`` "learned" or
    "frozen") or "multihop" (N, R, ``hops`` k, ``cot``); d searched in [lo, hi]."""

    id: str
    experiment: str
    n_subjects: int
    n_relations: int
    lo: int
    hi: int
    embed: str = "learned"
    hops: int = 1
    cot: bool = False


@dataclass(frozen=True)
class Probe:
    search: Search
    d: int

    @property
    def id(self) -> str:
        return f"{self.search.id}/d={self.d}"


def searches(config: GeometricConfig) -> list[Search]:
    out = []
    t = config.threshold
    for R in t.relations:
        for N in t.subjects:
            embeds = ("learned", "frozen") if t.controls and N <= t.control_max_subjects else ("learned",)
            for e in embeds:
                out.append(Search(f"threshold/{e}/N={N}/R={R}", "threshold", N, R, t.d_min, t.d_max, embed=e))
    h = config.multihop
    for cot in (False, True):
        for k in range(1, h.max_hops + 1):
            out.append(Search(f"multihop/{'cot' if cot else 'direct'}/k={k}", "multihop", h.n_subjects,
                              h.n_relations, h.d_min, h.d_max, hops=k, cot=cot))
    return out


def state(probes: pd.DataFrame, search: Search) -> Threshold:
    mine = probes[probes["search"] == search.id] if len(probes) else probes
    return bisect_up(search.lo, search.hi, {int(d): bool(ok) for d, ok in zip(mine.get("d", []), mine.get("ok", []))})


def units(config: GeometricConfig, probes: pd.DataFrame, analyses_done: set[int]) -> list[Unit]:
    """Every unfinished search's next probe, by experiment, cut into stacks of at most
    ``runner.unit_models`` (ids name their contents), and the analyses not yet stored."""
    todo = []
    for s in searches(config):
        b = state(probes, s)
        if not b.done:
            todo.append(Probe(s, b.probe))
    out = []
    limit = config.runner.unit_models
    groups: dict[tuple, list[Probe]] = {}
    for p in todo:     # a stack shares its sequence length and answer positions, and how embeddings train
        s = p.search
        groups.setdefault((s.experiment, s.embed, s.hops, s.cot), []).append(p)
    for (experiment, *_), mine in groups.items():
        mine.sort(key=lambda p: (p.search.n_subjects * p.search.n_relations, p.d, p.id))
        for i in range(0, len(mine), limit):
            part = mine[i:i + limit]
            out.append(Unit(f"{experiment}:{key(*(p.id for p in part)):x}", part, size=len(part),
                            round=len(probes)))
    for rep in range(config.analysis.replicates):
        if rep not in analyses_done:
            out.append(Unit(f"analysis:{rep}", rep, size=1))
    return out


def thresholds(config: GeometricConfig, probes: pd.DataFrame) -> pd.DataFrame:
    """One row per search: its kind, sizes, whether done, and its threshold d (the smallest d
    that memorized; NaN while running or if even d_max did not)."""
    rows = []
    for s in searches(config):
        b = state(probes, s)
        rows.append({"search": s.id, "experiment": s.experiment, "n_subjects": s.n_subjects,
                     "n_relations": s.n_relations, "embed": s.embed, "hops": s.hops, "cot": s.cot,
                     "done": b.done, "threshold": b.answer if b.done else None, "probes": b.probes, "d_max": s.hi})
    return pd.DataFrame(rows).astype({"threshold": float})
