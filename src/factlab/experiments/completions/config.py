"""The config of the completions study (artifacts, generalization and hallucination).

The second paper's text (Wong 2025b, arXiv 2502.17305) is not at hand, so every choice is
ours and a field of :class:`CompletionsConfig` (docs/completions.md):

- Databases: latent classes (:mod:`factlab.databases.latent_classes`); class counts and noise
  levels vary across databases, which moves the effective-rank gap. Pairs are defined with
  probability ``density`` (0.3), so K x Q has room for artifacts. ``kind = "random"`` draws
  purely random databases of the same sizes instead: one class per subject and no noise, so
  every (k, q) gets its own uniform value.
- Artifacts over the prefixes K x Q (``artifact_prefixes = "kq"``) or T x T (``"tt"``).
- Held out: ``round(held_out · |D|)`` facts drawn uniformly without replacement (20%).
- Effective rank: the upper end of :func:`factlab.tensors.rank.effective_rank`, with the search
  budget of ``rank_restarts`` / ``rank_max_iter`` / ``rank_max_search_rank``.
- Training length: runs of the same (database, layer) differ only in ``max_epochs`` and start
  from the same initialisation; full-batch Adam without early stopping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from factlab.databases.database import Database
from factlab.databases.latent_classes import (LatentClassConfig, LatentClassDatabase, latent_class_database,
                                              split_held_out)
from factlab.errors import ConfigError
from factlab.experiments.core.config import OMIT_AT_DEFAULT, RUN_ONLY, Hashed, config_dict
from factlab.models.attention_layer import AttentionLayerConfig
from factlab.tensors.cp_search import CPSearchConfig

SCALES = ("quick", "paper")
Layer = tuple[int, int, int, int]  # (d_model, n_heads, d_head_qk, d_head_vo)

#: Layers of increasing lower estimate (9), d_model + n_heads · d_head_vo = 2, 3, 5, 8, 12, 14, 18, 30;
#: all inside the paper's grid (d_model <= 6, n_heads <= 4).
PAPER_LAYERS: tuple[Layer, ...] = ((1, 1, 1, 1), (2, 1, 1, 1), (3, 1, 2, 2), (4, 2, 2, 2), (4, 2, 4, 4),
                                   (5, 3, 3, 3), (6, 4, 3, 3), (6, 4, 6, 6))
QUICK_LAYERS: tuple[Layer, ...] = ((2, 1, 1, 1), (3, 1, 2, 2), (4, 2, 2, 2), (6, 4, 3, 3))


@dataclass(frozen=True)
class CompletionsConfig(Hashed):
    """Everything the results depend on; the defaults are the ``paper`` scale (our choices:
    the second paper's text is not at hand). ``shard_size`` only says how many runs train
    together and is left out of :attr:`hash`."""

    name: str = "completions-paper"
    seed: int = 0
    # databases: one per (n_classes, noise, replicate)
    classes: tuple[int, ...] = (1, 2, 4, 8)
    noise: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5)
    replicates: int = 3
    database: LatentClassConfig = LatentClassConfig()  # n_classes and noise are replaced per database
    held_out: float = 0.2             # fraction of each database's facts held out
    # layers x training lengths
    layers: tuple[Layer, ...] = PAPER_LAYERS
    epochs: tuple[int, ...] = (100, 300, 1000, 3000)
    lr: float = 0.03                  # Adam; full-batch epochs, no early stopping
    tau: float = 0.5                  # artifact threshold (our default)
    # effective-rank search budget (CPSearchConfig)
    rank_restarts: int = 4
    rank_max_iter: int = 300
    rank_max_search_rank: int = 40
    shard_size: int = field(default=96, metadata=RUN_ONLY)  # runs trained together (not in the hash)
    # added later: in the hash only when changed, so older stores keep theirs
    kind: str = field(default="latent", metadata=OMIT_AT_DEFAULT)              # latent or random databases
    artifact_prefixes: str = field(default="kq", metadata=OMIT_AT_DEFAULT)     # kq (K x Q) or tt (T x T)

    def __post_init__(self):
        if not (self.classes and self.noise and self.layers and self.epochs) or self.replicates < 1:
            raise ConfigError("classes, noise, layers and epochs must be non-empty and replicates >= 1")
        if list(self.epochs) != sorted(set(self.epochs)) or self.epochs[0] < 1:
            raise ConfigError(f"epochs must be increasing and >= 1, got {self.epochs}")
        if not 0.5 <= self.tau <= 1.0:
            raise ConfigError(f"tau must be in [0.5, 1] (at most one artifact per prefix), got {self.tau}")
        if not 0.0 < self.held_out < 1.0:
            raise ConfigError(f"held_out must be in (0, 1), got {self.held_out}")
        if self.shard_size < 1:
            raise ConfigError(f"shard_size must be >= 1, got {self.shard_size}")
        for layer in self.layers:
            AttentionLayerConfig(1, *layer)  # validates the sizes
        if self.kind not in ("latent", "random"):
            raise ConfigError(f"kind must be 'latent' or 'random', got {self.kind!r}")
        if self.artifact_prefixes not in ("kq", "tt"):
            raise ConfigError(f"artifact_prefixes must be 'kq' or 'tt', got {self.artifact_prefixes!r}")

    def to_dict(self) -> dict:
        return config_dict(self)

    def rank_config(self) -> CPSearchConfig:
        return CPSearchConfig(restarts=self.rank_restarts, max_iter=self.rank_max_iter,
                              max_search_rank=self.rank_max_search_rank)

    def databases(self) -> list[tuple[int, LatentClassConfig, int]]:
        """``(db_id, generator config, replicate)`` of every database, classes-major (with
        ``kind = "random"`` every cell draws a random database: one class per subject, no noise)."""
        out = []
        for c in self.classes:
            for nz in self.noise:
                for rep in range(self.replicates):
                    gen = replace(self.database, n_classes=c, noise=nz)
                    if self.kind == "random":
                        gen = replace(gen, n_classes=gen.n_subjects, noise=0.0)
                    out.append((len(out), gen, rep))
        return out

    def runs(self) -> list[tuple[int, int, int, int]]:
        """``(run_id, db_id, layer_id, epochs)`` of every planned run."""
        nl, ne = len(self.layers), len(self.epochs)
        n_db = len(self.classes) * len(self.noise) * self.replicates
        return [((d * nl + li) * ne + ei, d, li, e) for d in range(n_db) for li in range(nl)
                for ei, e in enumerate(self.epochs)]


def scale_config(scale: str) -> CompletionsConfig:
    """``paper``: the defaults (48 databases, 8 layers, 4 training lengths, 1,536 runs). ``quick``:
    24 databases, 4 layers, 3 training lengths (288 runs) and 2 restarts per effective-rank
    trial, so that it finishes in a few minutes on 2 CPU cores."""
    if scale == "paper":
        return CompletionsConfig()
    if scale == "quick":
        return CompletionsConfig(name="completions-quick", noise=(0.0, 0.2, 0.5), replicates=2,
                                 layers=QUICK_LAYERS, epochs=(100, 300, 1000), rank_restarts=2)
    raise ConfigError(f"unknown scale {scale!r}; use one of {list(SCALES)}")


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1)[0])


def build_database(config: CompletionsConfig, db_id: int) -> tuple[LatentClassDatabase, Database, Database, np.ndarray]:
    """Database ``db_id`` of the config with its split: ``(drawn, train, held_out, held-out mask)``."""
    _, gen, rep = config.databases()[db_id]
    drawn = latent_class_database(gen, seed=_seed(config.seed, 1, db_id),
                                  name=f"db{db_id:03d}-c{gen.n_classes}-n{gen.noise:g}-r{rep}")
    return drawn, *split_held_out(drawn.database, config.held_out, seed=_seed(config.seed, 2, db_id))


def init_seed(config: CompletionsConfig, db_id: int, layer_id: int) -> int:
    """Initialisation of a (database, layer): the same for every training length."""
    return _seed(config.seed, 3, db_id, layer_id)
