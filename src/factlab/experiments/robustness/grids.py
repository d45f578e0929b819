"""The choices each paper leaves open, as grids of settings over its config.

A grid is a list of axes. Each axis names one open choice, its values, and how a value
changes the paper's config. A setting takes one value per axis (the full product), and
its config is the paper's config at the chosen scale with those changes. Everything else
stays as the reproduction has it.

- ``wong2025`` (the paper fixes only the 2,000 epochs): the optimizer (Adam; AdamW with
  torch's default weight decay 0.01; plain gradient descent), the learning rate, the
  initialisation scale (every initial weight times it) and early stopping at softmax >= 0.99
  memorization (on or off). 3 x 4 x 3 x 2 = 72 settings.
- ``completions`` (the paper's text is not at hand): which prefixes artifacts are counted
  over (K x Q or T x T), latent-class or purely random databases, the density of defined
  pairs, and the artifact threshold τ. 2 x 2 x 3 x 2 = 24 settings.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from factlab.errors import ConfigError


@dataclass(frozen=True)
class Axis:
    """One open choice: its ``name``, its ``values`` and ``apply(config, value) -> config``."""

    name: str
    values: tuple
    apply: Callable[[Any, Any], Any]
    why: str = ""


@dataclass(frozen=True)
class Setting:
    """One value per axis (``choices``, in axis order) and the config they make."""

    choices: dict
    config: Any

    @property
    def slug(self) -> str:
        """A directory name: ``optimizer-adam_lr-0.01_…`` (values as written, booleans on/off)."""
        return "_".join(f"{k}-{value_text(v)}" for k, v in self.choices.items())


def value_text(v) -> str:
    """A choice as written in names and tables: booleans on/off, floats in short form."""
    if isinstance(v, (bool, np.bool_)):
        return "on" if v else "off"
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def _training(field: str):
    return lambda config, v: replace(config, training=replace(config.training, **{field: v}))


def _field(field: str):
    return lambda config, v: replace(config, **{field: v})


def _density(config, v):
    return replace(config, database=replace(config.database, density=v))


GRIDS: dict[str, tuple[Axis, ...]] = {
    "wong2025": (
        Axis("optimizer", ("adam", "adamw", "sgd"), _training("optimizer"),
             "Adam; AdamW at torch's default weight decay (0.01); plain full-batch gradient descent"),
        Axis("lr", (1e-3, 3e-3, 1e-2, 3e-2), _training("lr"), "the learning rate"),
        Axis("init_scale", (0.3, 1.0, 3.0), _training("init_scale"), "every initial weight times this"),
        Axis("early_stop", (True, False), _training("early_stop"),
             "stop a model once its softmax >= 0.99 accuracy is 1, or train every epoch"),
    ),
    "completions": (
        Axis("prefixes", ("kq", "tt"), _field("artifact_prefixes"),
             "artifacts counted over the prefixes K x Q or T x T"),
        Axis("databases", ("latent", "random"), _field("kind"),
             "latent-class databases, or purely random ones of the same sizes"),
        Axis("density", (0.15, 0.3, 0.6), _density, "the probability that a pair (k, q) is defined"),
        Axis("tau", (0.5, 0.9), _field("tau"), "the artifact threshold"),
    ),
}


def axes(paper: str) -> tuple[Axis, ...]:
    if paper not in GRIDS:
        raise ConfigError(f"no robustness grid for {paper!r}; grids exist for {', '.join(GRIDS)}")
    return GRIDS[paper]


def settings(paper: str, base) -> list[Setting]:
    """Every setting of ``paper``'s grid over the config ``base``, in product order (the first
    axis slowest)."""
    grid = axes(paper)
    out = []
    for values in itertools.product(*(a.values for a in grid)):
        config = base
        for a, v in zip(grid, values):
            config = a.apply(config, v)
        out.append(Setting({a.name: v for a, v in zip(grid, values)}, config))
    return out
