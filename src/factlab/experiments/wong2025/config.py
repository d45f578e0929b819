"""The spec of Wong (2025, sec. 4)'s experiment: a TOML file parsed into frozen dataclasses.

A spec names everything a run's results depend on: the database population, the layer
grid, how layers and databases are paired, how each pair is trained and the thresholds it
is scored at, and the seed. Every default is the paper's (548 databases of at most 200
triples, the 364 layer sizes, 3,947 random pairs, at most 2,000 epochs, argmax and
τ = 0.5, 0.75, 0.95, 0.99). The ``[runner]`` table says how to run (shard size, threads,
device, training step); it does not enter the spec hash: results do not depend on it beyond
floating-point rounding, and each run records the step that trained it (``kernel_used``
and ``numba_version`` in its ``train_config``).

Example (every key optional)::

    paper = "wong2025"
    name = "wong2025"
    seed = 0

    [databases]
    source = "paper_population"
    n = 548
    max_facts = 200
    seed = 0
    rank_interval = true      # also compute the rank interval of each database
    rank_restarts = 0         # 0: CPSearchConfig's default number of restarts
    rank_max_iter = 0         # 0: CPSearchConfig's default iterations per start

    [layers]
    grid = "paper"
    max_d_model = 6
    max_heads = 4

    [pairing]
    method = "random"
    n_pairs = 3947

    [training]
    max_epochs = 2000
    lr = 0.01
    stop_tau = 0.99
    eval_every = 10
    dtype = "float32"

    [thresholds]
    taus = [0.5, 0.75, 0.95, 0.99]
    memorized = 0.9

    [runner]
    shard_size = 512
    kernel = "auto"           # training step: "auto", "fused" (compiled, CPU) or "autograd"
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from factlab.errors import ConfigError
from factlab.experiments.core.config import (OMIT_AT_DEFAULT, RUN_ONLY, Hashed, config_dict, config_from_dict,
                                             config_to_toml, read_toml)
from factlab.training.engine import KERNELS


def _choice(key: str, value, options) -> None:
    if value not in options:
        raise ConfigError(f"{key} must be one of {list(options)}, got {value!r}")


def _at_least(key: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class DatabasesSpec:
    """The database population: :func:`~factlab.databases.generators.paper_population`."""

    source: str = "paper_population"
    n: int = 548                     # Wong 2025, sec. 4: 548 databases
    max_facts: int = 200             # "with at most 200 triples"
    seed: int = 0
    rank_interval: bool = True       # compute rank intervals (tensors.rank); |D| and Prop. 2.1 always
    rank_restarts: int = 0           # CP-search restarts for the rank interval; 0: the module's default
    rank_max_iter: int = 0           # CP-search iterations per start; 0: the module's default

    def __post_init__(self):
        _choice("databases.source", self.source, ("paper_population",))
        _at_least("databases.n", self.n, 1)
        _at_least("databases.max_facts", self.max_facts, 1)
        _at_least("databases.rank_restarts", self.rank_restarts, 0)
        _at_least("databases.rank_max_iter", self.rank_max_iter, 0)


@dataclass(frozen=True)
class LayersSpec:
    """The layer grid: ``1 <= d_head_vo, d_head_qk <= d_model <= max_d_model``,
    ``1 <= n_heads <= max_heads`` (364 sizes with the paper's 6 and 4)."""

    grid: str = "paper"
    max_d_model: int = 6
    max_heads: int = 4

    def __post_init__(self):
        _choice("layers.grid", self.grid, ("paper",))
        _at_least("layers.max_d_model", self.max_d_model, 1)
        _at_least("layers.max_heads", self.max_heads, 1)


@dataclass(frozen=True)
class PairingSpec:
    """How (layer, database) pairs are drawn: ``random`` draws ``n_pairs`` distinct pairs
    uniformly (the paper: "3,947 random pairs"); ``all`` takes every pair."""

    method: str = "random"
    n_pairs: int = 3947

    def __post_init__(self):
        _choice("pairing.method", self.method, ("random", "all"))
        _at_least("pairing.n_pairs", self.n_pairs, 1)


@dataclass(frozen=True)
class TrainingSpec:
    """Training of each pair (see :class:`~factlab.training.engine.TrainConfig`). The paper
    fixes only ``max_epochs`` = 2,000; the optimiser, its learning rate, the initialisation's
    scale and the stopping rule are our choices (``factlab robustness wong2025`` varies them).
    The fields after ``dtype`` were added later: a store made before them keeps its hash
    (they enter it only when changed)."""

    max_epochs: int = 2000
    lr: float = 1e-2                 # learning rate (our choice)
    stop_tau: float = 0.99           # stop a model once its softmax>=stop_tau accuracy is 1 (our choice)
    eval_every: int = 10
    dtype: str = "float32"
    optimizer: str = field(default="adam", metadata=OMIT_AT_DEFAULT)       # adam, adamw or sgd (our choice)
    weight_decay: float | None = field(default=None, metadata=OMIT_AT_DEFAULT)  # None: the optimizer's default
    momentum: float = field(default=0.0, metadata=OMIT_AT_DEFAULT)          # SGD's momentum
    init_scale: float = field(default=1.0, metadata=OMIT_AT_DEFAULT)        # every initial weight times this
    early_stop: bool = field(default=True, metadata=OMIT_AT_DEFAULT)        # stop at stop_tau memorization

    def __post_init__(self):
        _at_least("training.max_epochs", self.max_epochs, 1)
        _at_least("training.eval_every", self.eval_every, 1)
        if not (isinstance(self.lr, float) and self.lr > 0):
            raise ConfigError(f"training.lr must be a positive number, got {self.lr!r}")
        if not 0.5 <= self.stop_tau <= 1.0:
            raise ConfigError(f"training.stop_tau must be in [0.5, 1], got {self.stop_tau!r}")
        _choice("training.dtype", self.dtype, ("float32", "float64"))
        _choice("training.optimizer", self.optimizer, ("adam", "adamw", "sgd"))
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError(f"training.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.momentum < 0 or (self.momentum and self.optimizer != "sgd"):
            raise ConfigError(f"training.momentum is SGD's and must be >= 0, got {self.momentum!r} "
                              f"with optimizer {self.optimizer!r}")
        if not self.init_scale > 0:
            raise ConfigError(f"training.init_scale must be positive, got {self.init_scale!r}")

    def optimizer_config(self):
        """The engine's optimizer: ``torch.optim``'s Adam, AdamW (default decay 0.01) or SGD."""
        from factlab.training.optim import SGD, Adam, AdamW

        decay = {} if self.weight_decay is None else {"weight_decay": self.weight_decay}
        if self.optimizer == "sgd":
            return SGD(lr=self.lr, momentum=self.momentum, **decay)
        return (AdamW if self.optimizer == "adamw" else Adam)(lr=self.lr, **decay)


@dataclass(frozen=True)
class ThresholdsSpec:
    """Thresholds: accuracy is recorded with argmax and with softmax >= τ for each τ
    (Wong 2025, eq. 14); ``memorized`` is the mean accuracy at which a cell of Figure 3
    counts as memorized in claims.json (our operational choice)."""

    taus: tuple[float, ...] = (0.5, 0.75, 0.95, 0.99)
    memorized: float = 0.9

    def __post_init__(self):
        if not self.taus:
            raise ConfigError("thresholds.taus must not be empty")
        for t in self.taus:
            if not (isinstance(t, float) and 0.5 <= t <= 1.0):
                raise ConfigError(f"thresholds.taus: each tau must be in [0.5, 1], got {t!r}")
        if len(set(self.taus)) != len(self.taus):
            raise ConfigError(f"thresholds.taus has duplicates: {list(self.taus)}")
        if not 0.0 < self.memorized <= 1.0:
            raise ConfigError(f"thresholds.memorized must be in (0, 1], got {self.memorized!r}")


@dataclass(frozen=True)
class RunnerSpec:
    """How to run; not part of the spec hash (results do not depend on it)."""

    shard_size: int = 512            # pairs per shard: the unit of work, commit and resume
    chunk_size: int = 1024           # models the engine trains together at most
    threads: int = 0                 # torch threads per worker; 0: leave torch's setting
    device: str = "cpu"
    kernel: str = "auto"             # the training step: "auto", "fused" or "autograd" (TrainConfig.kernel)

    def __post_init__(self):
        _at_least("runner.shard_size", self.shard_size, 1)
        _at_least("runner.chunk_size", self.chunk_size, 1)
        _at_least("runner.threads", self.threads, 0)
        if self.kernel not in KERNELS:
            raise ConfigError(f"runner.kernel must be one of {', '.join(map(repr, KERNELS))}, got {self.kernel!r}")


@dataclass(frozen=True)
class ExperimentSpec(Hashed):
    """A whole experiment. Defaults reproduce Wong (2025, sec. 4) at the paper's scale."""

    name: str = "wong2025"
    seed: int = 0                    # pairing and per-pair initialisation
    databases: DatabasesSpec = DatabasesSpec()
    layers: LayersSpec = LayersSpec()
    pairing: PairingSpec = PairingSpec()
    training: TrainingSpec = TrainingSpec()
    thresholds: ThresholdsSpec = ThresholdsSpec()
    runner: RunnerSpec = field(default=RunnerSpec(), metadata=RUN_ONLY)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        _at_least("seed", self.seed, 0)
        if self.training.stop_tau not in self.thresholds.taus:
            raise ConfigError(f"training.stop_tau = {self.training.stop_tau} must be one of "
                              f"thresholds.taus = {list(self.thresholds.taus)}")

    def to_dict(self, *, runner: bool = True) -> dict:
        d = config_dict(self)
        if not runner:
            d.pop("runner")
        return d

    def to_toml(self) -> str:
        """The spec as TOML text that :func:`parse_spec` reads back to an equal spec."""
        return config_to_toml(self)


def parse_spec(text: str, *, source: str = "<spec>") -> ExperimentSpec:
    """Parse TOML text into an :class:`ExperimentSpec`; unknown keys and bad values raise
    :class:`~factlab.errors.ConfigError` naming the source, key and value."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    return spec_from_dict(data, source=source)


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a spec file (TOML)."""
    return spec_from_dict(read_toml(path), source=str(path))


def spec_from_dict(data: dict, *, source: str = "<spec>") -> ExperimentSpec:
    """A spec from a dict (a parsed TOML file); a ``paper = "wong2025"`` key is allowed."""
    data = dict(data)
    paper = data.pop("paper", "wong2025")
    if paper != "wong2025":
        raise ConfigError(f"{source}: a spec of paper {paper!r}, not wong2025")
    return config_from_dict(ExperimentSpec, data, source=source)


SCALES = ("quick", "paper")


def scale_spec(scale: str) -> ExperimentSpec:
    """The spec of a scale: ``paper`` is :class:`ExperimentSpec`'s defaults (the paper's sizes);
    ``quick`` keeps the 548 databases (with their rank intervals) and the 364 layers (Figures
    2a and 2b are the paper's) but trains 768 pairs for at most 500 epochs, with a larger
    learning rate so that they still converge, in a few minutes on 2 CPU cores."""
    if scale == "paper":
        return ExperimentSpec(name="wong2025-paper")
    if scale == "quick":
        return ExperimentSpec(
            name="wong2025-quick",
            pairing=PairingSpec(n_pairs=768),
            training=TrainingSpec(max_epochs=500, lr=0.03),
            runner=RunnerSpec(shard_size=128),
        )
    raise ConfigError(f"unknown scale {scale!r}; use one of {list(SCALES)}")


def with_runner(spec: ExperimentSpec, **changes) -> ExperimentSpec:
    """The spec with runner settings changed (does not change its hash)."""
    return replace(spec, runner=replace(spec.runner, **changes))
