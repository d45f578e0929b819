"""The config of Nichani, Lee and Bietti (2024)'s experiments, and its two scales.

Defaults are the authors' setup as their public code defines it (sizes, learning rates,
step counts, the figures' constants); where it is silent the choice is ours and says so.
``paper`` is the defaults; ``quick`` (:func:`scale_config`) runs every figure in minutes on
2 CPU cores with smaller grids and fewer steps, each change listed there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from factlab.errors import ConfigError
from factlab.experiments.core.config import RUN_ONLY, Hashed, RunnerSpec
from factlab.training.config import check_dtype

SCALES = ("quick", "paper")
D_GRID = (8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256)
LADDER = (4.0, 2.0, 1.0, 0.5, 0.25)


def _check(owner: str, **values) -> None:
    for name, value in values.items():
        if isinstance(value, tuple):
            if not value or any(v <= 0 for v in value):
                raise ConfigError(f"{owner}.{name} must be a non-empty list of positive numbers, got {list(value)}")
        elif value is not None and value <= 0:
            raise ConfigError(f"{owner}.{name} must be positive, got {value!r}")


@dataclass(frozen=True)
class LinearMemorySpec:
    """Figure 1 (left): the capacity of a linear associative memory ``W (d, d)`` over random
    unit embeddings; binary search on N in [d, d^2/2] (the authors'), AdamW with weight
    decay 0 at lr 1000 for 4,096 full-batch steps, stopped once accuracy reaches 0.99."""

    ds: tuple[int, ...] = D_GRID
    seeds: int = 5
    lr: float = 1000.0
    steps: int = 4096
    eval_every: int = 8               # full-batch accuracy checks (ours; the authors check every step)
    ratio: float | None = None        # None: bisect to the exact capacity (ours)

    def __post_init__(self):
        _check("linear", ds=self.ds, seeds=self.seeds, lr=self.lr, steps=self.steps, eval_every=self.eval_every)


@dataclass(frozen=True)
class MLPMemorySpec:
    """Figure 1 (right) and Figure 6: the capacity of an MLP memory ``W2 ReLU(W1 x + b1)`` of
    width ``alpha·d``; binary search on N in [d, alpha·d^2] to a ratio of 1.01 (the
    authors'), AdamW lr 3e-2 for up to 2^15 full-batch steps. ``classes``: None for N
    output classes (Figure 1), 32 for Figure 6 (targets floor(i·32/N))."""

    ds: tuple[int, ...] = (8, 11, 16, 22, 32, 45, 64, 90)
    alphas: tuple[int, ...] = (1, 2, 4, 8)
    classes: int | None = None
    seeds: int = 1
    lr: float = 3e-2
    steps: int = 2 ** 15
    eval_every: int = 16              # ours
    ratio: float = 1.01

    def __post_init__(self):
        _check("mlp", ds=self.ds, alphas=self.alphas, classes=self.classes, seeds=self.seeds, lr=self.lr,
               steps=self.steps, eval_every=self.eval_every)
        if self.ratio <= 1:
            raise ConfigError(f"mlp.ratio must be > 1, got {self.ratio}")


@dataclass(frozen=True)
class RecallTaskSpec:
    """The factual recall task's fixed sizes: D answers per relation, sequences of T tokens,
    n_noise noise tokens (None: S + R, the authors' default), Zipf exponent of subjects."""

    n_answers: int = 8
    seq_len: int = 32
    n_noise: int | None = None
    zipf: float = 0.0

    def __post_init__(self):
        _check("task", n_answers=self.n_answers, seq_len=self.seq_len, n_noise=self.n_noise)
        if self.seq_len < 3:
            raise ConfigError(f"task.seq_len must be >= 3, got {self.seq_len}")


@dataclass(frozen=True)
class TrainingSpec:
    """How a recall transformer trains (the authors'): AdamW, weight decay 0, fresh batches
    of 1,024 every step, at most 2^14 steps, accuracy checked every 128 steps on one fixed
    set of 1,024 fresh samples, stopped once it reaches 0.99 (the facts count as stored)."""

    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2)   # the ladder: a size is stored if any lr stores it
    steps: int = 2 ** 14
    batch_size: int = 1024
    eval_every: int = 128
    eval_size: int = 1024
    target: float = 0.99

    def __post_init__(self):
        _check("training", lrs=self.lrs, steps=self.steps, batch_size=self.batch_size, eval_every=self.eval_every,
               eval_size=self.eval_size, target=self.target)


@dataclass(frozen=True)
class CapacitySpec:
    """Figure 4 (left): facts stored against parameters. H = 8 heads, d_h = int(alpha·d/H),
    m = int(beta·d), one curve per (alpha, beta) (every pair of the two lists, or ``pairs``);
    binary search on S = R (facts = S·R) with the learning-rate ladder. The search range
    [s_min, s_max] of S is ours."""

    ds: tuple[int, ...] = D_GRID[:10]
    n_heads: int = 8
    alphas: tuple[float, ...] = LADDER
    betas: tuple[float, ...] = LADDER
    pairs: tuple[tuple[float, float], ...] | None = None   # None: every (alpha, beta); else only these
    s_min: int = 2
    s_max: int = 512
    ratio: float | None = None        # None: bisect to the exact S (ours)

    def __post_init__(self):
        _check("capacity", ds=self.ds, n_heads=self.n_heads, alphas=self.alphas, betas=self.betas,
               s_min=self.s_min, s_max=self.s_max)
        if self.s_max < self.s_min:
            raise ConfigError(f"capacity.s_max ({self.s_max}) must be >= s_min ({self.s_min})")


@dataclass(frozen=True)
class TradeoffSpec:
    """Figure 4 (right): S = R = 32, D = 8, 64 noise tokens, d = 32, d_h = 8, lr 1e-2, every
    (H, m) of the two lists (169 runs)."""

    n_subjects: int = 32
    n_noise: int = 64
    d: int = 32
    d_head: int = 8
    lr: float = 1e-2
    heads: tuple[int, ...] = (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)
    widths: tuple[int, ...] = (1, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128)

    def __post_init__(self):
        _check("tradeoff", n_subjects=self.n_subjects, n_noise=self.n_noise, d=self.d, d_head=self.d_head,
               lr=self.lr, heads=self.heads, widths=self.widths)


@dataclass(frozen=True)
class SequentialSpec:
    """Figure 5: S = 16, R = 4, D = 8, 20 noise tokens, T = 32, the structured table
    a*(s, r) = floor(s·D/S) + r·D; one-hot embeddings, linear attention started at 1e-5,
    plain gradient descent lr 0.1 for 8,192 steps of 1,024 fresh samples. Losses are
    recorded every ``curve_every`` steps on 1,024 fixed samples (ours)."""

    n_subjects: int = 16
    n_relations: int = 4
    n_answers: int = 8
    n_noise: int = 20
    seq_len: int = 32
    lr: float = 0.1
    steps: int = 8192
    batch_size: int = 1024
    curve_every: int = 32
    eval_size: int = 1024

    def __post_init__(self):
        _check("sequential", n_subjects=self.n_subjects, n_relations=self.n_relations, n_answers=self.n_answers,
               n_noise=self.n_noise, seq_len=self.seq_len, lr=self.lr, steps=self.steps,
               batch_size=self.batch_size, curve_every=self.curve_every, eval_size=self.eval_size)


@dataclass(frozen=True)
class NichaniConfig(Hashed):
    """Every experiment of the reproduction; the defaults are the paper scale."""

    name: str = "nichani2024-paper"
    seed: int = 0
    linear: LinearMemorySpec = LinearMemorySpec()
    mlp: MLPMemorySpec = MLPMemorySpec()
    mlp_classes: MLPMemorySpec = MLPMemorySpec(classes=32)
    task: RecallTaskSpec = RecallTaskSpec()
    training: TrainingSpec = TrainingSpec()
    capacity: CapacitySpec = CapacitySpec()
    tradeoff: TradeoffSpec = TradeoffSpec()
    sequential: SequentialSpec = SequentialSpec()
    dtype: str = "float32"
    runner: RunnerSpec = field(default=RunnerSpec(), metadata=RUN_ONLY)

    def __post_init__(self):
        check_dtype(self.dtype)


def scale_config(scale: str) -> NichaniConfig:
    """``paper``: the authors' sizes (days of CPU time; see docs/nichani2024.md). ``quick``:
    minutes on 2 cores, with these changes: memories at d <= 32 (linear) and d <= 16 (MLP),
    2 seeds and 2,048 steps (linear), 4,096 (MLP) and 2,048 (32 classes); the recall
    transformer's capacity at d in {8, 16} for (alpha, beta) = (2, 2) and (1, 1), S <= 64;
    the tradeoff grid at S = R = 16, d = 16, d_h = 4, 32 noise tokens over 5 x 5 (H, m); both
    with 2,048 steps of 512 samples and the ladder (3e-3, 1e-2); Figure 5 as in the paper."""
    if scale == "paper":
        return NichaniConfig()
    if scale == "quick":
        return NichaniConfig(
            name="nichani2024-quick",
            linear=LinearMemorySpec(ds=(8, 11, 16, 22, 32), seeds=2, steps=2048),
            mlp=MLPMemorySpec(ds=(8, 11, 16), alphas=(1, 2, 4), steps=4096),
            mlp_classes=MLPMemorySpec(ds=(8, 11, 16), alphas=(1, 2, 4), classes=32, steps=2048),
            training=TrainingSpec(lrs=(3e-3, 1e-2), steps=2048, batch_size=512, eval_size=512),
            capacity=CapacitySpec(ds=(8, 16), alphas=(2.0, 1.0), betas=(2.0, 1.0), pairs=((2.0, 2.0), (1.0, 1.0)),
                                  s_max=64),
            tradeoff=TradeoffSpec(n_subjects=16, n_noise=32, d=16, d_head=4, heads=(1, 2, 4, 8, 16),
                                  widths=(1, 8, 16, 32, 64)),
        )
    raise ConfigError(f"unknown scale {scale!r}; use one of {list(SCALES)}")


def with_runner(config: NichaniConfig, **changes) -> NichaniConfig:
    return replace(config, runner=replace(config.runner, **changes))
