"""The config of our reproduction of Ravfogel, Yehudai, Bruna and Bietti (2026), and its scales.

The paper's experimental details (its Appendix B) are not available to us: every size and
training choice here is ours, a named field, and documented as ours (docs/geometric2026.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from factlab.errors import ConfigError
from factlab.experiments.core.config import RUN_ONLY, Hashed, RunnerSpec
from factlab.training.config import check_dtype

SCALES = ("quick", "paper")


def _positive(owner: str, **values) -> None:
    for name, value in values.items():
        bad = any(v <= 0 for v in value) or not value if isinstance(value, tuple) else value <= 0
        if bad:
            raise ConfigError(f"{owner}.{name} must be positive (a non-empty list of positive numbers), got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """The transformer every experiment trains (ours): ``n_layers`` layers of ``n_heads``
    heads whose size is d / n_heads, a ReLU MLP of width ``width_factor · d``, pre-LN and a
    final LN; d is what the searches vary."""

    n_layers: int = 1
    n_heads: int = 1
    width_factor: float = 4.0
    norm: str = "pre"

    def __post_init__(self):
        _positive("model", n_layers=self.n_layers, n_heads=self.n_heads, width_factor=self.width_factor)
        if self.norm not in ("pre", "none"):
            raise ConfigError(f"model.norm must be 'pre' or 'none', got {self.norm!r}")


@dataclass(frozen=True)
class TrainingSpec:
    """How a model trains (ours): AdamW, full-batch epochs over every sequence (minibatches of
    ``batch_size`` when there are more), stopped once the argmax accuracy on the final answer
    of every training sequence is 1 (every answer of a chain of thought; the facts are
    memorized) or after ``max_steps``.

    ``loss_on``: the causal language-modelling loss on the answer tokens only ("answers",
    ours) or on every next token ("all"). The next token after a subject is a uniformly
    random relation, which no model can predict; measured (N = 256, R = 4, d = 32 and 64, 5
    seeds each, lr 1e-2), with that loss 9 of 10 models stayed at the uniform loss for 1,500
    steps, while on the answers alone all 10 memorized within 200 steps."""

    lr: float = 1e-2
    weight_decay: float = 0.0
    max_steps: int = 4000
    batch_size: int = 4096
    eval_every: int = 50
    loss_on: str = "answers"

    def __post_init__(self):
        _positive("training", lr=self.lr, max_steps=self.max_steps, batch_size=self.batch_size,
                  eval_every=self.eval_every)
        if self.weight_decay < 0:
            raise ConfigError(f"training.weight_decay must be >= 0, got {self.weight_decay}")
        if self.loss_on not in ("answers", "all"):
            raise ConfigError(f"training.loss_on must be 'answers' or 'all', got {self.loss_on!r}")


@dataclass(frozen=True)
class ThresholdSpec:
    """Theorem 4.1's threshold: for each R and N, the smallest d at which every one-hop fact is
    memorized, with learned embeddings and with frozen random token embeddings (Appendix D's
    control); bisection over d in [d_min, d_max]."""

    subjects: tuple[int, ...] = (8, 32, 128, 512, 2048)
    relations: tuple[int, ...] = (2, 4, 8)
    d_min: int = 2
    d_max: int = 256
    controls: bool = True
    control_max_subjects: int = 2048      # controls only up to this N (their d is large: ours)

    def __post_init__(self):
        _positive("threshold", subjects=self.subjects, relations=self.relations, d_min=self.d_min, d_max=self.d_max,
                  control_max_subjects=self.control_max_subjects)


@dataclass(frozen=True)
class AnalysisSpec:
    """The trained models the probes, interventions and transfers study (ours): N subjects, R
    relations, embedding dimension d (comfortably above the threshold), ``replicates`` seeds,
    each trained for ``steps`` steps (no early stop) with AdamW's ``weight_decay``; the
    transfers (freeze-and-swap, scratch) get the same budget and stop at full accuracy.

    The decay is ours: measured at N = 256, R = 4, d = 32 over 2,000 steps, without it the
    superposition probe's held-out R² was -0.62 and the readouts 0.17-0.23; with 0.1, 0.25 and
    0.28-0.53 (with 0.3 the model no longer memorized)."""

    n_subjects: int = 512
    n_relations: int = 4
    d: int = 48
    replicates: int = 3
    interventions: int = 100        # (subject, relation, new attribute) triples per replicate
    steps: int = 4000
    weight_decay: float = 0.1

    def __post_init__(self):
        _positive("analysis", n_subjects=self.n_subjects, n_relations=self.n_relations, d=self.d,
                  replicates=self.replicates, interventions=self.interventions, steps=self.steps)
        if self.weight_decay < 0:
            raise ConfigError(f"analysis.weight_decay must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class MultiHopSpec:
    """Theorems 4.2-4.4: for k = 1..max_hops, with and without chain of thought, the smallest d
    at which every k-hop query is answered (without CoT: the final answer given the query;
    with CoT: the final answer after the model writes every intermediate one itself)."""

    n_subjects: int = 32
    n_relations: int = 3
    max_hops: int = 4
    d_min: int = 2
    d_max: int = 256
    max_sequences: int = 20000      # k-hop sequences beyond this: a seeded subsample (ours)

    def __post_init__(self):
        _positive("multihop", n_subjects=self.n_subjects, n_relations=self.n_relations, max_hops=self.max_hops,
                  d_min=self.d_min, d_max=self.d_max, max_sequences=self.max_sequences)


@dataclass(frozen=True)
class GeometricConfig(Hashed):
    """Every experiment of our reproduction; the defaults are the paper scale (ours)."""

    name: str = "geometric2026-paper"
    seed: int = 0
    model: ModelSpec = ModelSpec()
    training: TrainingSpec = TrainingSpec()
    threshold: ThresholdSpec = ThresholdSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    multihop: MultiHopSpec = MultiHopSpec()
    dtype: str = "float32"
    runner: RunnerSpec = field(default=RunnerSpec(), metadata=RUN_ONLY)

    def __post_init__(self):
        check_dtype(self.dtype)


def scale_config(scale: str) -> GeometricConfig:
    """``paper``: our full sizes (N up to 2,048, R up to 8, k up to 4). ``quick``: minutes on 2
    cores, with N in {8, 32, 128, 800} (two orders of magnitude), R in {2, 4}, d <= 64, the
    frozen-embedding controls up to N = 128; the analyses at N = 256, R = 4, d = 32 with 2
    seeds; multi-hop at N = 16, R = 2, k <= 3; at most 2,000 steps."""
    if scale == "paper":
        return GeometricConfig()
    if scale == "quick":
        return GeometricConfig(
            name="geometric2026-quick",
            training=TrainingSpec(max_steps=2000),
            threshold=ThresholdSpec(subjects=(8, 32, 128, 800), relations=(2, 4), d_max=64, control_max_subjects=128),
            analysis=AnalysisSpec(n_subjects=256, n_relations=4, d=32, replicates=2, steps=2000),
            multihop=MultiHopSpec(n_subjects=16, n_relations=2, max_hops=3, d_max=64),
        )
    raise ConfigError(f"unknown scale {scale!r}; use one of {list(SCALES)}")


def with_runner(config: GeometricConfig, **changes) -> GeometricConfig:
    return replace(config, runner=replace(config.runner, **changes))
