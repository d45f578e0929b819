"""What a paper package declares, and the units of work the core runs for it.

A paper package (``factlab.experiments.wong2025``, ``...completions``, ...) is a subclass of
:class:`Paper`: its config class and scales, the tables its results go to, its *plan* (the
units of work still to do, given what the store holds), how to run one unit, its claims
and its figures. The core (:mod:`factlab.experiments.core.runner`) does everything else:
the store, resuming, the backends, provenance, claims.json and report.html.

A plan reads the store: :meth:`Paper.plan` returns the units whose rows are not stored yet,
and it may be adaptive, planning the next round from the results of the last (a binary
search over sizes plans its next probes from the last ones). The runner calls it until it
returns nothing. Since every unit's result depends
only on (config, unit), and a unit's rows are committed in one transaction with its record,
a run killed at any point resumes to the same final results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import pandas as pd

from factlab.errors import ConfigError
from factlab.experiments.core.config import RunnerSpec, config_from_dict


@dataclass(frozen=True)
class Table:
    """A result table: DuckDB column types (in order) and the primary key."""

    columns: dict[str, str]
    key: tuple[str, ...]

    def ddl(self, name: str) -> str:
        cols = ", ".join(f"{c} {t}" for c, t in self.columns.items())
        return f"CREATE TABLE {name} ({cols}, PRIMARY KEY ({', '.join(self.key)}))"


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``id`` unique within the experiment (the store's ``units`` table
    records it, with its timing and provenance, when its rows are committed), ``payload``
    what :meth:`Paper.run_unit` needs (picklable: it may travel to a Ray worker), ``size``
    its share of the progress bar, ``round`` the plan's round that asked for it."""

    id: str
    payload: Any = None
    size: int = 1
    round: int = 0


@dataclass(frozen=True)
class Rendered:
    """What a paper draws from its store: figure files (PNG, an SVG beside each), claims,
    one summary sentence and the config as text for the report."""

    figures: list[Path]
    claims: list[dict]
    summary: str
    config_text: str
    extra: dict = field(default_factory=dict)   # more keys for claims.json


class Paper:
    """The declarations of one paper's reproduction (see the module docstring)."""

    #: the name on the command line (``factlab reproduce NAME``)
    name: ClassVar[str] = ""
    #: one line for ``factlab reproduce --list``
    title: ClassVar[str] = ""
    #: the source cited in claims.json
    source: ClassVar[str] = ""
    scales: ClassVar[tuple[str, ...]] = ("quick", "paper")
    #: the config class: a frozen dataclass with a ``name`` field
    config_class: ClassVar[type] = object

    # ------------------------------------------------------------------ config
    def config(self, scale: str):
        """The config of a scale."""
        raise NotImplementedError

    def check_scale(self, scale: str) -> None:
        if scale not in self.scales:
            raise ConfigError(f"unknown scale {scale!r} for {self.name}; use one of {list(self.scales)}")

    def config_from_dict(self, data: dict, *, source: str = "<config>"):
        return config_from_dict(self.config_class, data, source=source)

    def threads(self, config) -> int:
        """Torch threads per unit (0: leave torch's setting); the Ray backend reserves as many
        CPUs. By default the config's ``runner.threads`` (:class:`RunnerSpec`), else 0."""
        runner = getattr(config, "runner", None)
        return runner.threads if isinstance(runner, RunnerSpec) else 0

    # ------------------------------------------------------------------ results
    def tables(self, config) -> dict[str, Table]:
        """The result tables of a store made for ``config``."""
        raise NotImplementedError

    def prepare(self, config, store, *, log: Callable[[str], None], progress: bool) -> None:
        """Work done in the driver before any unit (static rows); each step committed on its
        own and skipped when already stored."""

    def plan(self, config, store) -> list[Unit]:
        """The units still to run, given what ``store`` holds (may be adaptive)."""
        raise NotImplementedError

    @staticmethod
    def run_unit(config, unit: Unit) -> dict[str, list[dict]]:
        """Run one unit: rows per table. A pure function of (config, unit), picklable."""
        raise NotImplementedError

    def render(self, config, store, figdir: Path) -> Rendered:
        """Figures, claims and the summary sentence from a store."""
        raise NotImplementedError

    def frames(self, store) -> dict[str, pd.DataFrame]:
        """Joined views exported beside the tables (``factlab summary --export``)."""
        return {}

    def summary_lines(self, config, store) -> list[tuple[str, str]]:
        """Paper-specific lines of ``factlab summary``, after the generic counts."""
        return []
