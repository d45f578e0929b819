"""The papers factlab reproduces, by name: the one place that knows every paper package.

The experiment core never imports a paper package; the command line asks here.
"""

from __future__ import annotations

import importlib

from factlab.errors import ConfigError
from factlab.experiments.core.paper import Paper

#: name -> the package whose ``PAPER`` declares it, in the order ``--list`` shows them
PACKAGES = {
    "wong2025": "factlab.experiments.wong2025",
    "completions": "factlab.experiments.completions",
    "nichani2024": "factlab.experiments.nichani2024",
    "geometric2026": "factlab.experiments.geometric2026",
    "mechanisms": "factlab.experiments.mechanisms",
}


def paper(name: str) -> Paper:
    """The paper called ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
    if name not in PACKAGES:
        raise ConfigError(f"unknown paper {name!r}; reproducible: {', '.join(PACKAGES)}")
    return importlib.import_module(PACKAGES[name]).PAPER


def papers() -> dict[str, Paper]:
    """Every paper, by name."""
    return {name: paper(name) for name in PACKAGES}
