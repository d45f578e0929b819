"""A toy paper for the core's tests: capacity searches against planted monotone oracles.

Search i looks for the largest size in [lo, hi] at which oracle i succeeds, the oracle
succeeding exactly up to ``thresholds[i]``. Its plan is adaptive (each round probes the
midpoints the stored outcomes call for, all searches at once, one unit a round), so it
exercises what a real capacity search does: rounds planned from stored results, resumed
after a kill.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factlab.experiments.core.config import RUN_ONLY
from factlab.experiments.core.paper import Paper, Rendered, Table, Unit
from factlab.experiments.core.claims import claim
from factlab.experiments.core.search import bisect


@dataclass(frozen=True)
class ToyConfig:
    name: str = "toy"
    seed: int = 0
    thresholds: tuple[int, ...] = (5, 17, 40, 0, 64, 23)
    lo: int = 1
    hi: int = 64
    ratio: float | None = None
    sleep: float = field(default=0.0, metadata=RUN_ONLY)   # seconds per unit, to be killed in


class Toy(Paper):
    name = "toy"
    title = "a toy capacity search"
    source = "the test suite"
    scales = ("quick",)
    config_class = ToyConfig

    def config(self, scale):
        return ToyConfig()

    def tables(self, config):
        return {"probes": Table({"search": "INTEGER", "size": "INTEGER", "ok": "BOOLEAN", "value": "DOUBLE"},
                                ("search", "size"))}

    def searches(self, config, store):
        rows = store.frame("probes")
        out = []
        for i in range(len(config.thresholds)):
            mine = rows[rows["search"] == i]
            out.append(bisect(config.lo, config.hi, dict(zip(mine["size"], mine["ok"])), ratio=config.ratio))
        return out

    def plan(self, config, store):
        probes = [(i, b.probe) for i, b in enumerate(self.searches(config, store)) if not b.done]
        if not probes:
            return []
        made = store.count("probes")
        return [Unit("round:" + ",".join(f"{i}@{n}" for i, n in probes), probes, size=len(probes),
                     round=made)]

    @staticmethod
    def run_unit(config, unit):
        time.sleep(config.sleep)
        rows = []
        for i, n in unit.payload:
            value = float(np.random.default_rng([config.seed, i, n]).normal())  # a result that depends on the probe
            rows.append({"search": i, "size": n, "ok": n <= config.thresholds[i], "value": value})
        return {"probes": rows}

    def render(self, config, store, figdir: Path):
        answers = [b.answer for b in self.searches(config, store)]
        claims = [claim(f"search_{i}", "-", "finds the planted threshold", t, a, "answer == threshold",
                        a == (t if t >= config.lo else None))
                  for i, (t, a) in enumerate(zip(config.thresholds, answers))]
        return Rendered([], claims, "toy", "")


PAPER = Toy()
