"""Train a stack of models, each on its own data, all at once.

The engine knows no model family: it asks a model stack and a data source for what
:mod:`factlab.training.interfaces` writes down, and nothing else. Two configs say what it
does: :class:`TrainConfig` *what to train* (the budget in epochs or steps, the optimizer,
the batch size, the stopping rules, what to record), :class:`RunConfig` *how to run it*
(device, dtype, threads, chunk size, compiled step or autograd). Results depend on the
first; on the second only up to floating-point rounding (on CPU, not even that: see
:class:`RunConfig`).

Each model's loss is its own weighted mean cross-entropy at the scored positions; the
engine sums them, so every model gets exactly its own gradient, and
:class:`~factlab.training.optim.StackedOptimizer` steps each model as ``torch.optim`` would
step it alone, touching only the entries that train (padding and frozen entries never
move). Models are trained in chunks of similar sizes; inside a chunk a model leaves the
stack when a stopping rule fires or its loss turns NaN or infinite, so the work shrinks.

Stopping rules, evaluated every ``eval_every`` epochs (or steps) on the data source's
evaluation batch (the training set, a held-out set, or a fixed sample of a stream):
``memorized`` (softmax >= ``stop_tau`` accuracy reaches 1, eq. 14 of Wong 2025),
``accurate`` (argmax accuracy reaches ``stop_accuracy``), ``plateau`` (no relative loss
improvement for ``plateau_patience``), and the budget (``max_epochs`` / ``max_steps``).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.training.interfaces import Batch
from factlab.training.loss import unembed_cross_entropy, vocab_bias
from factlab.training.optim import Adam, OptimizerConfig, StackedOptimizer

DEFAULT_TAUS = (0.5, 0.75, 0.95, 0.99)
KERNELS = ("auto", "fused", "autograd")
DEFAULT_EPOCHS = 2000   # Wong (2025, sec. 4): at most 2,000 epochs


@dataclass(frozen=True)
class TrainConfig:
    """What to train. The budget is ``max_epochs`` (fixed datasets) or ``max_steps`` (any
    source; a stream has only steps), not both; with neither, 2,000 epochs (Wong 2025,
    sec. 4). ``eval_every``, ``curve_every`` and ``plateau_patience`` count in the budget's
    unit. Accuracy is recorded with argmax and softmax >= tau for each of ``taus``."""

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
    deterministic CUDA kernels need ``CUBLAS_WORKSPACE_CONFIG`` set before start-up."""

    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None           # torch intra-op threads; None leaves torch's setting
    deterministic: bool = True
    kernel: str = "auto"
    chunk_size: int = 1024               # models trained together at most
    compact_below: float = 0.75          # drop finished models once the active fraction falls below this

    def __post_init__(self):
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {self.kernel!r}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or None, got {self.threads}")

    def to_dict(self) -> dict:
        return asdict(self)


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


Monitor = Callable[[object, torch.Tensor], dict]


def last_position_metrics(nll: torch.Tensor, argmax: torch.Tensor, batch: Batch, taus: Sequence[float]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy on the last scored position of each evaluated sequence, per model.

    ``nll``/``argmax`` ``(M, B, P)``: negative log-likelihoods and argmax predictions at the
    scored positions. Returns ``(argmax_acc (M,), tau_acc (M, len(taus)))``: argmax accuracy
    and the softmax >= tau accuracy of eq. (14) of Wong (2025)."""
    target = batch.targets[:, :, -1]                             # (M, B)
    ev = batch.evaluated.to(nll.dtype)                           # (M, B)
    n = ev.sum(1).clamp(min=1)
    hit = (argmax[:, :, -1] == target).to(nll.dtype)
    p = torch.exp(-nll[:, :, -1])                                # softmax probability of the target
    tau = torch.tensor(list(taus), dtype=nll.dtype, device=nll.device)
    tau_hit = (p[..., None] >= tau).to(nll.dtype)                # (M, B, n_tau)
    return (hit * ev).sum(1) / n, (tau_hit * ev[..., None]).sum(1) / n[:, None]


def forward_loss(model, params: dict[str, torch.Tensor], batch: Batch, bias: torch.Tensor, metrics: bool = True):
    """Per-model loss ``(M,)`` with gradient, and ``nll``, ``argmax`` ``(M, B, P)`` for metrics
    (``argmax`` only when ``metrics``): the family's readout, then the fused unembedding
    cross-entropy (:mod:`factlab.training.loss`)."""
    features, W_out = model.readout(params, batch.inputs, batch.positions)     # (M, B, P, D), (M, D, V)
    M, B, P, D = features.shape
    loss, nll, argmax = unembed_cross_entropy(
        features.reshape(M, B * P, D), W_out, bias, batch.targets.reshape(M, B * P),
        batch.weight.reshape(M, B * P).to(features.dtype), metrics)
    return loss, nll.view(M, B, P), (argmax.view(M, B, P) if metrics else None)


def train(model, data, config: TrainConfig = TrainConfig(), run: RunConfig = RunConfig(), *,
          progress: Callable[[int], None] | None = None, monitor: Monitor | None = None) -> TrainResult:
    """Train every model of ``model`` on its own data of ``data``; returns per-model results.

    Models are cut into chunks of similar padded size (:func:`plan_chunks`), each trained
    to the end before the next; ``progress(n)`` is called with the number of models done.
    ``monitor(stack, ids)``, if given, is called at every curve point (``curve_every``)
    with the chunk's current stack and the input indices of its models, and returns a dict
    of name -> ``(M_chunk,)`` values recorded in the curves beside loss and accuracy.
    """
    if data.n_models != model.n_models:
        raise ConfigError(f"{model.n_models} models but {data.n_models} datasets")
    if config.max_epochs is not None and not data.per_epoch:
        raise ConfigError("this data source is a stream of fresh batches: count training in max_steps")
    if monitor is not None and config.curve_every is None:
        raise ConfigError("a monitor is called at curve points: set curve_every")
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    with _deterministic(run.deterministic and torch.device(run.device).type == "cpu"):
        fused = _use_compiled(model, data, run)
        if not fused:
            return _train(model, data, config, run, progress, monitor, fused=False, threads=torch.get_num_threads())
        # A compiled step runs on its own threads; torch, left with only small bookkeeping,
        # runs on one, so that its idle OpenMP workers (which spin for a while after each
        # parallel region) do not take the cores (half the time per epoch on 2 cores).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _train(model, data, config, run, progress, monitor, fused=True, threads=threads)
        finally:
            torch.set_num_threads(threads)


@contextmanager
def _deterministic(on: bool):
    """Turn torch's deterministic algorithms on for the block (never off), then restore them."""
    before, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if on and not before:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def _use_compiled(model, data, run: RunConfig) -> bool:
    """Whether to take the family's compiled step (see :class:`RunConfig`)."""
    factory = getattr(model, "compiled_step", None)
    step = factory(run.device) if factory is not None else None
    available = step is not None and step.supports(data.eval_batch())
    if run.kernel == "fused" and not available:
        raise ConfigError(f"kernel='fused': {type(model).__name__} has no compiled step for this stack and data "
                          f"on {run.device!r} (it needs a CPU device and numba, every weight trained and every "
                          "position scored); use kernel='autograd' or 'auto'")
    return available and run.kernel != "autograd"


def _train(model, data, config: TrainConfig, run: RunConfig, progress, monitor, fused: bool,
           threads: int) -> TrainResult:
    dtype = getattr(torch, run.dtype)
    start = time.perf_counter()
    sizes = data.sizes()
    chunk_sizes = model.chunk_sizes()
    results: list[ModelResult | None] = [None] * model.n_models
    trained: dict[str, torch.Tensor] = {}  # trained weights at the input stack's padded shapes
    rounds = done = 0
    # padding costs a compiled step memory only, not time: plain slices of the sorted order
    chunks = _slices(sizes, chunk_sizes, run.chunk_size) if fused else plan_chunks(sizes, chunk_sizes, run.chunk_size)
    for idx in chunks:
        sub_model = model.select(idx).to(run.device, dtype)      # re-padded to the chunk's own sizes
        sub_data = data.take(torch.tensor(idx, dtype=torch.long)).to(run.device, dtype)
        chunk = _Chunk(sub_model, sub_data, config, run, fused, threads, torch.tensor(idx, dtype=torch.long), monitor)
        chunk_results, weights, n = chunk.run()
        rounds += n
        trained_chunk = sub_model.with_params(weights).to("cpu")
        rows = torch.tensor(idx, dtype=torch.long)
        for name, w in trained_chunk.params.items():  # the chunk's padding fits inside the stack's
            full = trained.setdefault(name, torch.zeros(model.params[name].shape, dtype=w.dtype))
            full[(rows,) + tuple(slice(0, s) for s in w.shape[1:])] = w
        for j, i in enumerate(idx):
            results[i] = chunk_results[j]
        done += len(idx)
        if progress is not None:
            progress(done)
    out = model.to("cpu", dtype).with_params(trained)
    return TrainResult(results, out, config, run, time.perf_counter() - start, rounds,
                       kernel="fused" if fused else "autograd")


def _size_order(sizes: np.ndarray, chunk_sizes: np.ndarray) -> list[int]:
    """Model indices sorted by (data size, the family's chunk sizes), the order chunks are cut from."""
    keys = [sizes] + [chunk_sizes[:, k] for k in range(chunk_sizes.shape[1])]
    return np.lexsort(keys[::-1]).tolist()


def _slices(sizes, chunk_sizes, max_chunk: int) -> list[list[int]]:
    """Models in :func:`_size_order`, cut into runs of ``max_chunk``."""
    order = _size_order(np.asarray(sizes), np.asarray(chunk_sizes).reshape(len(sizes), -1))
    return [order[i:i + max_chunk] for i in range(0, len(order), max_chunk)]


# Cost model of one training step of a chunk, fitted on 2 CPU cores (attention layers): a
# fixed overhead (kernel launches, Python) plus a cost per padded unit of work (sequence
# x the product of the family's chunk sizes, e.g. the vocabulary).
STEP_OVERHEAD_S = 4e-3
PER_UNIT_S = 1.5e-8


def plan_chunks(sizes, chunk_sizes, max_chunk: int) -> list[list[int]]:
    """Cut models into chunks that train together, trading padding against per-step overhead.

    Models are sorted by (data size, chunk sizes); a cut is placed wherever the modelled step
    time ``STEP_OVERHEAD_S + PER_UNIT_S · M_c · N_max · Π_k max_k`` of the two halves beats
    that of the whole (dynamic programming over the sorted order, at most ``max_chunk``
    models a chunk). ``chunk_sizes (M, k)`` are the family's (:meth:`ModelStack.chunk_sizes`).
    """
    sizes = np.asarray(sizes)
    chunk_sizes = np.asarray(chunk_sizes).reshape(len(sizes), -1)
    order = _size_order(sizes, chunk_sizes)
    n = len(order)
    N = np.array([max(sizes[i], 1) for i in order], dtype=np.float64)
    C = chunk_sizes[order].astype(np.float64)                     # (n, k)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        lo = max(0, end - max_chunk)
        starts = np.arange(lo, end)
        # chunk [s, end): N is sorted so N_max = N[end-1]; the others: running max from the right
        c_max = np.maximum.accumulate(C[lo:end][::-1], axis=0)[::-1].prod(axis=1)
        cost = best[starts] + STEP_OVERHEAD_S + PER_UNIT_S * (end - starts) * N[end - 1] * c_max
        k = int(np.argmin(cost))
        best[end], cut[end] = cost[k], starts[k]
    chunks = []
    end = n
    while end > 0:
        chunks.append(order[cut[end]:end])
        end = cut[end]
    return chunks[::-1]


class _FlatParams:
    """The trained weights of a chunk as one leaf tensor ``(M, P)``, with a view per weight."""

    def __init__(self, weights: dict[str, torch.Tensor], flat: torch.Tensor | None = None):
        self.shapes = {n: tuple(w.shape[1:]) for n, w in weights.items()}
        M = next(iter(weights.values())).shape[0]
        if flat is None:
            flat = torch.cat([w.detach().reshape(M, -1) for w in weights.values()], dim=1)
        self.flat = flat.detach().clone().requires_grad_(True)  # (M, P)

    def views(self) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        M = self.flat.shape[0]
        for n, shape in self.shapes.items():
            size = int(np.prod(shape))
            out[n] = self.flat[:, start:start + size].view(M, *shape)
            start += size
        return out

    def take(self, index: torch.Tensor) -> "_FlatParams":
        out = _FlatParams.__new__(_FlatParams)
        out.shapes = self.shapes
        out.flat = self.flat.detach().index_select(0, index).requires_grad_(True)
        return out


class _Chunk:
    """The training of one chunk: its models, data, optimizer and bookkeeping."""

    def __init__(self, model, data, cfg: TrainConfig, run: RunConfig, fused: bool, threads: int, ids: torch.Tensor,
                 monitor):
        self.model, self.data, self.cfg, self.run_cfg = model, data, cfg, run
        self.threads, self.monitor = threads, monitor
        M = model.n_models
        device = model.device
        names = model.trained_names()
        self.params = _FlatParams({n: model.params[n] for n in names})
        mask = None
        if model.partially_frozen:
            masks = model.update_masks()
            mask = torch.cat([masks[n].reshape(M, -1) for n in names], dim=1)
        self.opt = StackedOptimizer(cfg.optimizer, self.params.flat, mask)
        self.step_fn = model.compiled_step(device) if fused else None
        self.bias = vocab_bias(model.output_mask(), model.dtype)       # (M, 1, V)
        self.rows = torch.arange(M, device=device)   # chunk positions of the rows still in the stack
        self.input_ids = ids                         # input-stack index of each chunk position
        self.active = torch.ones(M, dtype=torch.bool, device=device)
        self.out_weights = {n: w.detach().clone() for n, w in self.params.views().items()}
        self.results: list[ModelResult | None] = [None] * M
        self.best_loss = torch.full((M,), math.inf, dtype=torch.float64, device=device)
        self.since_best = torch.zeros(M, dtype=torch.long, device=device)
        self.best_acc = torch.full((M,), -math.inf, dtype=torch.float64, device=device)
        self.curves = ({i: {"round": [], "loss": [], "accuracy": [], **{f"tau_{t:g}": [] for t in cfg.taus}}
                        for i in range(M)} if cfg.curve_every else None)
        # the taus evaluated at each check: the reported ones, and stop_tau if it is not among them
        self.eval_taus = cfg.taus + ((cfg.stop_tau,) if cfg.stop_tau is not None and cfg.stop_tau not in cfg.taus else ())
        # a compiled step may take the optimizer step itself, in the same pass, where no
        # decision comes between gradient and step and every untrained entry is padding
        self.fused_update = fused and mask is None and self.opt.can_compile(self.params.flat, self.params.flat)

    # ------------------------------------------------------------------ one step's numbers
    def objective(self, batch: Batch, want_grad: bool, metrics: bool, step: bool = False):
        """At the current weights: ``(loss (M,), nll, argmax, grad (M, P) or None)``. A model
        whose loss is not finite gets no usable gradient (the optimizer skips it). With
        ``step`` the compiled step applies the optimizer itself and grad is None."""
        if self.step_fn is not None:
            update = (self.active & batch.has_data, self.opt.kernel_state()) if step else None
            return self.step_fn(self.params.flat, batch, grad=want_grad and not step, metrics=metrics,
                                models=self.active, threads=self.threads, update=update)
        with torch.set_grad_enabled(want_grad):
            loss, nll, argmax = forward_loss(self.model, self.model.masked(self.params.views()), batch, self.bias,
                                             metrics)
        grad = None
        if want_grad:
            finite = torch.isfinite(loss.detach())
            (grad,) = torch.autograd.grad(loss.where(finite, 0).sum(), [self.params.flat])
        return loss.detach(), nll, argmax, grad

    def retire(self, rows: torch.Tensor, status: str, at: int, loss, acc, tau_acc) -> None:
        if not len(rows):
            return
        chunk_rows = self.rows[rows]
        for n, w in self.params.views().items():
            self.out_weights[n][chunk_rows] = w[rows].detach()
        per_epoch = self.cfg.max_epochs is not None
        for i, lo, ac, ta, best in zip(chunk_rows.tolist(), loss[rows].tolist(), acc[rows].tolist(),
                                       tau_acc[rows].tolist(), self.best_acc[rows].tolist()):
            self.results[i] = ModelResult(
                status=status, epochs=at if per_epoch else None, steps=None if per_epoch else at, loss=lo,
                accuracy=ac, tau_accuracy=dict(zip(self.cfg.taus, ta)), best_accuracy=max(best, ac),
                curve=self.curves[i] if self.curves else None)

    # ------------------------------------------------------------------ the loop
    def run(self):
        """Train to the end; returns (results in chunk order, final weights, model-rounds run)."""
        cfg = self.cfg
        last_round = cfg.budget
        budget_status = "max_epochs" if cfg.max_epochs is not None else "max_steps"
        model_rounds = 0
        n_active = self.model.n_models
        for r in range(last_round + 1):
            last = r == last_round
            check = r % cfg.eval_every == 0 or last
            if cfg.max_epochs is not None:
                batches = self.data.epoch(r, cfg.batch_size)
            else:
                batches = [self.data.step(r, cfg.batch_size)]
            full = len(batches) == 1 and batches[0] is self.data.eval_batch()
            for b_i, batch in enumerate(batches):
                stepped = self.fused_update and not check    # at a check, models may retire before the step
                if full:
                    loss, nll, argmax, grad = self.objective(batch, want_grad=not last, metrics=check, step=stepped)
                if check and b_i == 0:
                    # every decision is taken on the weights as they are before this round's updates
                    if full:
                        eval_loss, nll_e, argmax_e, ev = loss, nll, argmax, batch
                    else:
                        ev = self.data.eval_batch()
                        eval_loss, nll_e, argmax_e, _ = self.objective(ev, want_grad=False, metrics=True)
                    n_active = self.check(r, last, ev, eval_loss, nll_e, argmax_e, budget_status)
                if not n_active:
                    break
                if not full:
                    stepped = self.fused_update                  # the check, if any, was taken on its own batch
                    loss, _, _, grad = self.objective(batch, want_grad=True, metrics=False, step=stepped)
                if not stepped:
                    self.opt.step(self.params.flat, grad, self.active & torch.isfinite(loss) & batch.has_data,
                                  threads=self.threads)
            if not n_active:
                break
            model_rounds += n_active
            if check and n_active < self.run_cfg.compact_below * len(self.active):
                self.compact()
        return self.results, self.out_weights, model_rounds

    def check(self, r: int, last: bool, ev: Batch, eval_loss, nll, argmax, budget_status: str) -> int:
        """Evaluate, record, retire the models whose rule fired; returns the models left."""
        cfg = self.cfg
        acc, all_tau = last_position_metrics(nll, argmax, ev, self.eval_taus)
        tau_acc = all_tau[:, :len(cfg.taus)]
        active = self.active
        self.best_acc = torch.where(active, torch.maximum(self.best_acc, acc.double()), self.best_acc)
        stop = ~torch.isfinite(eval_loss) & active
        self.retire(torch.nonzero(stop).flatten(), "diverged", r, eval_loss, acc, tau_acc)
        if self.curves is not None and r % cfg.curve_every == 0:
            self.record(r, active & ~stop, eval_loss, acc, tau_acc)
        rules = []
        if cfg.stop_tau is not None:
            rules.append(("memorized", all_tau[:, self.eval_taus.index(cfg.stop_tau)] >= 1.0))
        if cfg.stop_accuracy is not None:
            rules.append(("accurate", acc >= cfg.stop_accuracy))
        if cfg.plateau_patience is not None:
            improved = eval_loss.double() < self.best_loss * (1 - cfg.plateau_tol)
            self.best_loss = torch.where(improved, eval_loss.double(), self.best_loss)
            self.since_best = torch.where(improved, 0, self.since_best + cfg.eval_every)
            rules.append(("plateau", self.since_best >= cfg.plateau_patience))
        for status, fired in rules:
            now = active & ~stop & fired
            self.retire(torch.nonzero(now).flatten(), status, r, eval_loss, acc, tau_acc)
            stop |= now
        active &= ~stop
        if last:
            self.retire(torch.nonzero(active).flatten(), budget_status, r, eval_loss, acc, tau_acc)
            active[:] = False
        return int(active.sum())

    def record(self, r: int, rows: torch.Tensor, loss, acc, tau_acc) -> None:
        extra = {}
        if self.monitor is not None:
            now = self.model.with_params(self.params.views())
            extra = {k: torch.as_tensor(v) for k, v in self.monitor(now, self.input_ids[self.rows.cpu()]).items()}
        for j in torch.nonzero(rows).flatten().tolist():
            cv = self.curves[int(self.rows[j])]
            cv["round"].append(r)
            cv["loss"].append(float(loss[j]))
            cv["accuracy"].append(float(acc[j]))
            for k, t in enumerate(self.cfg.taus):
                cv[f"tau_{t:g}"].append(float(tau_acc[j, k]))
            for name, values in extra.items():
                cv.setdefault(name, []).append(float(values[j]))

    def compact(self) -> None:
        """Drop the finished models from every per-model tensor."""
        keep = torch.nonzero(self.active).flatten()
        self.model, self.data, self.opt = self.model.take(keep), self.data.take(keep.cpu()), self.opt.take(keep)
        self.params = self.params.take(keep)
        if self.step_fn is not None:
            self.step_fn = self.model.compiled_step(self.model.device)
        self.rows, self.active, self.bias = self.rows[keep], self.active[keep], self.bias[keep]
        self.best_loss, self.since_best, self.best_acc = self.best_loss[keep], self.since_best[keep], self.best_acc[keep]
