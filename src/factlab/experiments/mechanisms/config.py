"""The config of the mechanisms comparison: which databases, which mechanisms, how they train.

No paper does this comparison; every choice is ours (docs/mechanisms.md). ``factlab
capacity PATH`` makes a config whose databases are the user's files; ``factlab reproduce
mechanisms`` one of random databases of growing size and rank plus the real table
``examples/countries.csv``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

from factlab.errors import ConfigError
from factlab.experiments.core.config import OMIT_AT_DEFAULT, RUN_ONLY, Hashed, RunnerSpec
from factlab.experiments.mechanisms.ladders import LADDER, MECHANISMS, check_mechanisms

SCALES = ("quick", "paper")
COUNTRIES = "examples/countries.csv"


@dataclass(frozen=True)
class PopulationSpec:
    """Random databases (``factlab.databases.generators.random_database``): for each number of
    subjects and each size of the predicates' value ranges (few values: low rank; many: high
    rank), ``replicates`` databases over ``predicates`` predicates at ``density``."""

    subjects: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    values: tuple[int, ...] = (4, 12, 32)
    predicates: int = 4
    density: float = 0.6
    replicates: int = 2

    def __post_init__(self):
        if any(x < 1 for x in self.subjects + self.values) or self.predicates < 1 or self.replicates < 0:
            raise ConfigError(f"population sizes must be positive, got {self}")
        if not 0 < self.density <= 1:
            raise ConfigError(f"population.density must be in (0, 1], got {self.density}")


@dataclass(frozen=True)
class TrainingSpec:
    """Every probe: ``restarts`` models from different initialisations, full-batch steps,
    Adam (the attention layer, as in our Wong 2025 runs) or AdamW without decay, each stopped
    at argmax accuracy 1 on every fact; the probe memorizes if one restart does (ours: one
    unlucky initialisation that stalls at 0.99 would otherwise make a rung fail that a
    narrower one passed, and the search assumes success is monotone in d)."""

    steps: int = 3000
    restarts: int = 2
    lr: float = 1e-2
    eval_every: int = 25
    taus: tuple[float, ...] = (0.5, 0.75, 0.95, 0.99)

    def __post_init__(self):
        if self.steps < 1 or self.eval_every < 1 or self.restarts < 1 or not self.lr > 0:
            raise ConfigError(f"training: steps, restarts, eval_every and lr must be positive, got {self}")


@dataclass(frozen=True)
class MechanismsConfig(Hashed):
    """Databases (files ``sources`` with their SHA-256 and the ``reader`` options they are read
    with, e.g. ``(("format", "csv"), ("conflicts", "drop"), ("table", "facts"))``, and a
    random ``population``), the mechanisms compared, the ladder of widths d, the training."""

    name: str = "mechanisms-paper"
    seed: int = 0
    sources: tuple[str, ...] = (COUNTRIES,)
    source_sha256: tuple[str, ...] = ()
    reader: tuple[tuple[str, str], ...] = field(default=(), metadata=OMIT_AT_DEFAULT)
    population: PopulationSpec = PopulationSpec()
    mechanisms: tuple[str, ...] = MECHANISMS
    ladder: tuple[int, ...] = LADDER
    training: TrainingSpec = TrainingSpec()
    runner: RunnerSpec = field(default=RunnerSpec(), metadata=RUN_ONLY)

    def __post_init__(self):
        check_mechanisms(self.mechanisms)
        if list(self.ladder) != sorted(set(self.ladder)) or self.ladder[0] < 1:
            raise ConfigError(f"ladder must be increasing positive widths, got {list(self.ladder)}")
        if self.source_sha256 and len(self.source_sha256) != len(self.sources):
            raise ConfigError("one SHA-256 per source file")


def resolve(path: str) -> Path:
    """A source file: as given (relative to the working directory), or relative to the
    repository that holds this factlab (for the shipped ``examples/``)."""
    p = Path(path)
    if p.exists():
        return p
    repo = Path(__file__).resolve().parents[4] / path
    if repo.exists():
        return repo
    raise ConfigError(f"{path}: no such file (looked in the working directory and beside factlab)")


def sha256(path: str) -> str:
    return hashlib.sha256(resolve(path).read_bytes()).hexdigest()


def with_hashes(config: MechanismsConfig) -> MechanismsConfig:
    """The config with the SHA-256 of each source file: a store then refuses other contents."""
    return replace(config, source_sha256=tuple(sha256(p) for p in config.sources))


def scale_config(scale: str) -> MechanismsConfig:
    """``paper``: 36 random databases (6 sizes x 3 value ranges x 2 seeds) and the countries
    table, 3,000 steps. ``quick``: 10 random databases (5 sizes x 2 value ranges), the
    countries table, the ladder up to d = 64, 1,500 steps."""
    if scale == "paper":
        return with_hashes(MechanismsConfig())
    if scale == "quick":
        return with_hashes(MechanismsConfig(name="mechanisms-quick",
                                            population=PopulationSpec(subjects=(8, 16, 32, 64, 128), values=(4, 24),
                                                                      replicates=1),
                                            ladder=LADDER[:11], training=TrainingSpec(steps=1500)))
    raise ConfigError(f"unknown scale {scale!r}; use one of {list(SCALES)}")


def capacity_config(paths, mechanisms=MECHANISMS, *, name: str = "capacity", steps: int = 3000,
                    reader: dict[str, str] | None = None) -> MechanismsConfig:
    """The config of ``factlab capacity``: the user's files only (read with ``reader``'s
    options: format, conflicts, table, query), no random population."""
    return with_hashes(MechanismsConfig(name=name, sources=tuple(str(resolve(str(p)).resolve()) for p in paths),
                                        reader=tuple(sorted((reader or {}).items())),
                                        population=PopulationSpec(replicates=0),
                                        mechanisms=check_mechanisms(mechanisms), training=TrainingSpec(steps=steps)))
