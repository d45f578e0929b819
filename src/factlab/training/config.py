"""The engine's two configs and its results.

:class:`TrainConfig` says *what* to train (results depend on it), :class:`RunConfig` *how*
to run it (results do not, beyond floating-point rounding; see :class:`RunConfig`).
:class:`TrainResult` holds a :class:`ModelResult` per model and the trained stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from factlab.errors import ConfigError
from factlab.training.optim import Adam, OptimizerConfig

DEFAULT_TAUS = (0.5, 0.75, 0.95, 0.99)
DTYPES = ("float32", "float64")
KERNELS = ("auto", "fused", "autograd")
DEFAULT_EPOCHS = 2000   # Wong (2025, sec. 4): at most 2,000 epochs


@dataclass(frozen=True)
class TrainConfig:
    """What to train. The budget is ``max_epochs`` (fixed datasets) or ``max_steps`` (any
    source; a stream has only steps), not both; with neither, 2,000 epochs (Wong 2025,
    sec. 4). ``eval_every``, ``curve_every`` and ``plateau_patience`` count in the budget's
    unit. Accuracy is recorded with argmax and softmax >= tau for each of ``taus``, on the
    last scored position of each evaluated sequence, or (``accuracy_on="every"``) on all its
    scored positions: a chain of thought counts as right when every answer in it is."""

    max_epochs: int | None = None
    max_steps: int | None = None
    optimizer: OptimizerConfig = Adam()
    batch_size: int | None = None        # None: full-batch epochs (fixed data); a stream's own size
    eval_every: int = 10                 # epochs (or steps) between checks
    stop_tau: float | None = 0.99        # stop once softmax >= stop_tau accuracy is 1; None: never
    stop_accuracy: float | None = None   # stop once argmax accuracy >= this; None: never
    plateau_patience: int | None = None  # stop after this long without relative loss improvement
    plateau_tol: float = 1e-4
    curve_every: int | None = None       # record loss and accuracy every this many epochs (steps)
    taus: tuple[float, ...] = DEFAULT_TAUS
    accuracy_on: str = "last"            # "last" scored position, or "every": a sequence right at all of them

    def __post_init__(self):
        if self.max_epochs is None and self.max_steps is None:
            object.__setattr__(self, "max_epochs", DEFAULT_EPOCHS)
        if self.max_epochs is not None and self.max_steps is not None:
            raise ConfigError(f"give max_epochs or max_steps, not both (got {self.max_epochs} and {self.max_steps})")
        if self.budget < 1:
            raise ConfigError(f"{self.unit_name} must be >= 1, got {self.budget}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.curve_every is not None and (self.curve_every < 1 or self.curve_every % self.eval_every):
            raise ConfigError(f"curve_every ({self.curve_every}) must be a multiple of eval_every ({self.eval_every})")
        for tau in self.taus + ((self.stop_tau,) if self.stop_tau is not None else ()):
            if not 0.5 <= tau <= 1.0:
                raise ConfigError(f"tau must be in [0.5, 1], got {tau}")
        if self.stop_accuracy is not None and not 0 < self.stop_accuracy <= 1:
            raise ConfigError(f"stop_accuracy must be in (0, 1], got {self.stop_accuracy}")
        if self.plateau_patience is not None and self.plateau_patience < 1:
            raise ConfigError(f"plateau_patience must be >= 1, got {self.plateau_patience}")
        if self.accuracy_on not in ("last", "every"):
            raise ConfigError(f"accuracy_on must be 'last' or 'every', got {self.accuracy_on!r}")

    @property
    def budget(self) -> int:
        return self.max_epochs if self.max_epochs is not None else self.max_steps

    @property
    def unit_name(self) -> str:
        return "max_epochs" if self.max_epochs is not None else "max_steps"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["optimizer"] = self.optimizer.to_dict()
        d["taus"] = list(self.taus)
        return d


@dataclass(frozen=True)
class RunConfig:
    """How to run. ``kernel``: ``"fused"`` takes the model family's compiled step (an error
    where it has none for the device), ``"autograd"`` torch's autograd, ``"auto"`` the
    compiled step wherever it applies.

    On CPU with ``deterministic`` (the default) training runs under
    ``torch.use_deterministic_algorithms(True)``, restored afterwards, so that the same
    seed gives the same weights bit for bit on a loaded machine too (docs/performance.md
    tells the hunt that led here). On CUDA the setting is left to the caller, since
    deterministic CUDA kernels need ``CUBLAS_WORKSPACE_CONFIG`` set before start-up.

    What a model's weights depend on besides its own config, data key and seed: with the
    compiled step (Wong's attention layers on CPU) nothing, bit for bit, whatever the
    stack, chunking and thread count. On the autograd path, torch's batched matmuls sum in
    an order that depends on the padded shapes of the chunk a model lands in, so the same
    model alone and in a stack agree to rounding only (the tests bound the gap: 1e-12 in
    float64 after a few steps; a few 1e-7 in float32). The same stack and run config
    give the same weights bit for bit."""

    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None           # torch intra-op threads; None leaves torch's setting
    deterministic: bool = True
    kernel: str = "auto"
    chunk_size: int = 1024               # models trained together at most
    compact_below: float = 0.75          # drop finished models once the active fraction falls below this

    def __post_init__(self):
        check_dtype(self.dtype)
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {self.kernel!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or None, got {self.threads}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_dtype(dtype: str) -> None:
    """Refuse a dtype name the engine does not train in (it trains in float32 or float64)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


@dataclass(frozen=True)
class ModelResult:
    """The outcome for one model. ``status``: ``memorized`` (stop_tau accuracy reached 1),
    ``accurate`` (argmax accuracy reached stop_accuracy), ``plateau``, ``max_epochs`` or
    ``max_steps`` (the budget ran out), ``diverged`` (loss NaN or infinite; weights kept
    as they were before it). ``epochs`` (or ``steps``, whichever the budget counts) is the
    point it stopped at; the metrics are those of the evaluation batch there, and
    ``best_accuracy`` the best argmax accuracy over every check."""

    status: str
    epochs: int | None
    steps: int | None
    loss: float
    accuracy: float                     # argmax accuracy on the last scored position
    tau_accuracy: dict[float, float]    # softmax >= tau accuracy (eq. 14), softmax over the model's outputs
    best_accuracy: float = float("nan")
    curve: dict[str, list] | None = None


@dataclass
class TrainResult:
    results: list[ModelResult]
    model: object                        # the trained stack, models in the input order
    config: TrainConfig
    run: RunConfig
    seconds: float
    model_rounds: int                    # epochs (or steps) run, summed over models
    kernel: str = "autograd"             # the step that ran: "fused" or "autograd"

    def to_frame(self):
        import pandas as pd

        rows = []
        for i, r in enumerate(self.results):
            row = {"model": i, "status": r.status, "epochs": r.epochs, "steps": r.steps, "loss": r.loss,
                   "accuracy": r.accuracy, "best_accuracy": r.best_accuracy}
            row.update({f"acc_tau_{tau:g}": a for tau, a in r.tau_accuracy.items()})
            rows.append(row)
        return pd.DataFrame(rows)
