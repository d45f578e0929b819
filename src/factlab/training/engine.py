"""Train a stack of models on a stack of datasets, all at once.

The engine knows nothing of any one model family. A model stack provides ``weights``
(a dict of tensors with a leading model axis), ``residual(tokens, weights)`` (the residual
stream and the unembedding), ``token_mask``, ``select``/``take(index)``, ``with_weights``
and ``to(device, dtype)`` (see :class:`~factlab.models.attention_layer.AttentionStack`);
a data stack provides ``epoch(batch_size, generator)`` yielding
:class:`~factlab.training.data.Batch` objects, ``full_batch()`` and ``take(index)``.

A model family may also offer a compiled CPU step, ``has_fused_step(device)`` and
``fused_loss_and_grad(flat, batch, ..., step=None)`` (the attention layers do; see
:mod:`factlab.models.attention_kernel`), which the engine then uses in place of autograd
(``TrainConfig.kernel``). Given ``step``, that function also takes the Adam step itself
(:meth:`~factlab.training.adam.StackedAdam.kernel_state`); the engine asks for it on
every epoch but those where it checks the models, whose decisions must come between the
gradient and the step.

Each model's loss is its own mean next-token cross-entropy; the engine sums them, so every
model gets exactly its own gradient, and :class:`~factlab.training.adam.StackedAdam` steps
each model as Adam would alone. Models are trained in chunks (grouped by the sizes that set
the padding); inside a chunk, a model that memorizes (its ``stop_tau``-accuracy reaches 1),
plateaus, or whose loss turns NaN or infinite leaves the stack, so the work shrinks.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.training.adam import AdamConfig, StackedAdam
from factlab.training.loss import unembed_cross_entropy, vocab_bias

DEFAULT_TAUS = (0.5, 0.75, 0.95, 0.99)
KERNELS = ("auto", "fused", "autograd")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Defaults follow Wong (2025, sec. 4) where it says: at most 2,000 epochs,
    accuracy recorded with argmax and tau = 0.5, 0.75, 0.95, 0.99. The rest is our choice."""

    max_epochs: int = 2000
    adam: AdamConfig = AdamConfig()
    batch_size: int | None = None      # None: full-batch epochs (our choice; the paper says "epochs")
    stop_tau: float | None = 0.99      # stop a model once its tau-accuracy at this tau is 1; None: never
    plateau_patience: int | None = None  # stop after this many epochs without relative loss improvement
    plateau_tol: float = 1e-4
    eval_every: int = 10               # epochs between stopping checks (and the minimum curve stride)
    curve_every: int | None = None     # record loss/accuracy curves every this many epochs
    taus: tuple[float, ...] = DEFAULT_TAUS
    chunk_size: int = 1024             # models trained together at most
    compact_below: float = 0.75        # drop finished models once the active fraction falls below this
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None         # torch intra-op threads; None leaves torch's setting
    deterministic: bool = True         # on CPU, train under torch's deterministic algorithms (see train())
    kernel: str = "auto"               # "fused", "autograd" or "auto" (see train())
    seed: int = 0                      # for minibatch shuffling

    def __post_init__(self):
        if self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.eval_every < 1:
            raise ConfigError(f"eval_every must be >= 1, got {self.eval_every}")
        if self.curve_every is not None and self.curve_every % self.eval_every:
            raise ConfigError(f"curve_every ({self.curve_every}) must be a multiple of eval_every ({self.eval_every})")
        for tau in self.taus + ((self.stop_tau,) if self.stop_tau is not None else ()):
            if not 0.5 <= tau <= 1.0:
                raise ConfigError(f"tau must be in [0.5, 1], got {tau}")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(map(repr, KERNELS))}, got {self.kernel!r}")


@dataclass(frozen=True)
class ModelResult:
    """The outcome for one model. ``status`` is ``memorized`` (stop_tau-accuracy reached 1),
    ``plateau``, ``max_epochs`` or ``diverged`` (loss NaN/inf; weights frozen as they were)."""

    status: str
    epochs: int
    loss: float
    accuracy: float                     # argmax accuracy on the last token
    tau_accuracy: dict[float, float]    # softmax >= tau accuracy (eq. 14), softmax over the whole vocabulary
    curve: dict[str, list] | None = None


@dataclass
class TrainResult:
    results: list[ModelResult]
    model: object                        # the trained stack, models in the input order
    config: TrainConfig
    seconds: float
    model_epochs: int                    # epochs run, summed over models
    kernel: str = "autograd"             # the step that ran: "fused" or "autograd" (config.kernel resolved)

    def to_frame(self):
        import pandas as pd

        rows = []
        for i, r in enumerate(self.results):
            row = {"model": i, "status": r.status, "epochs": r.epochs, "loss": r.loss, "accuracy": r.accuracy}
            row.update({f"acc_tau_{tau:g}": a for tau, a in r.tau_accuracy.items()})
            rows.append(row)
        return pd.DataFrame(rows)


def last_token_metrics(nll: torch.Tensor, argmax: torch.Tensor, batch, taus: Sequence[float]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy on the last position of each evaluated sequence, per model.

    ``nll``/``argmax`` ``(M, B, n)`` are the next-token negative log-likelihoods and argmax
    predictions. Returns ``(argmax_acc (M,), tau_acc (M, len(taus)))``: argmax accuracy and
    the softmax >= tau accuracy of eq. (14), softmax over the model's whole vocabulary.
    """
    target = batch.targets[:, :, -1]                             # (M, B)
    ev = batch.evaluated.to(nll.dtype)                           # (M, B)
    n = ev.sum(1).clamp(min=1)
    hit = (argmax[:, :, -1] == target).to(nll.dtype)
    p = torch.exp(-nll[:, :, -1])                                # softmax probability of the target
    tau = torch.tensor(list(taus), dtype=nll.dtype, device=nll.device)
    tau_hit = (p[..., None] >= tau).to(nll.dtype)                # (M, B, n_tau)
    return (hit * ev).sum(1) / n, (tau_hit * ev[..., None]).sum(1) / n[:, None]


def forward_loss(model, weights, batch, bias, metrics: bool = True):
    """Per-model loss ``(M,)`` with gradient, and ``nll``, ``argmax`` ``(M, B, n)`` for metrics
    (``argmax`` is computed only when ``metrics`` is true)."""
    resid, W_U = model.residual(batch.inputs, weights)           # (M, B, n, D), (M, D, T)
    M, B, n, D = resid.shape
    loss, nll, argmax = unembed_cross_entropy(
        resid.reshape(M, B * n, D), W_U, bias,
        batch.targets.reshape(M, B * n), batch.weight.reshape(M, B * n).to(resid.dtype), metrics)
    return loss, nll.view(M, B, n), (argmax.view(M, B, n) if metrics else None)


def train(model, data, config: TrainConfig = TrainConfig(), *,
          progress: Callable[[int], None] | None = None) -> TrainResult:
    """Train every model of ``model`` on its own dataset of ``data``; returns per-model results.

    Models are cut into chunks of similar padded size (:func:`plan_chunks`), each trained
    to the end before the next; ``progress(n)`` is called with the number of models done.

    ``config.kernel`` picks how each step's loss and gradient are computed. ``"autograd"``:
    the model's ``residual`` and the fused unembedding cross-entropy, differentiated by
    torch, on any device. ``"fused"``: the model family's compiled CPU step
    (``model.fused_loss_and_grad``; the attention layers have one, see
    :mod:`factlab.models.attention_kernel`), which computes the same quantities without
    padding; an error where the family or device has none. ``"auto"`` (default): fused
    where available, else autograd.

    On CPU with ``config.deterministic`` (the default) training runs under
    ``torch.use_deterministic_algorithms(True)``, restored afterwards. Without it, some CPU
    kernel accumulates in an order that follows thread timing: on a loaded machine, runs
    with the same seed and 2 threads drifted apart (first at 1e-7, in one model, after
    20-80 epochs; 3 of 4 runs under load differed from the first). With it, 4 of 4 agreed
    bit for bit, at about 2% of throughput. (The mode switches, among others, the
    accumulating ``index_put_`` of the embedding lookup's backward to a sorted path; which
    kernel was at fault is not pinned down.) On CUDA the setting is left to the caller, since
    deterministic CUDA kernels need ``CUBLAS_WORKSPACE_CONFIG`` set before start-up.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    with _deterministic(config.deterministic and torch.device(config.device).type == "cpu"):
        if not _use_fused(model, config):
            return _train(model, data, config, progress, fused=False, threads=torch.get_num_threads())
        # The compiled steps run on their own threads; torch, left with only small
        # bookkeeping, runs on one, so that its idle OpenMP workers (which spin for a
        # while after each parallel region) do not take the cores from them. Measured on
        # 2 cores: half the time per epoch.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _train(model, data, config, progress, fused=True, threads=threads)
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


def _train(model, data, config: TrainConfig, progress, fused: bool, threads: int) -> TrainResult:
    dtype = getattr(torch, config.dtype)
    M = model.n_models
    if data.n_models != M:
        raise ConfigError(f"{M} models but {data.n_models} datasets")
    start = time.perf_counter()
    sizes = data.sizes().tolist()
    vocab = [c.n_tokens for c in model.configs]
    results: list[ModelResult | None] = [None] * M
    trained_w: dict[str, torch.Tensor] = {}  # the trained weights at the input stack's padded shapes
    model_epochs = 0
    done = 0
    # padding costs the fused step memory only, not time: plain slices of the sorted order
    chunks = _slices(sizes, vocab, config.chunk_size) if fused else plan_chunks(sizes, vocab, config.chunk_size)
    for chunk_no, idx in enumerate(chunks):
        sub_model = model.select(idx).to(config.device, dtype)  # re-padded to the chunk's own sizes
        sub_data = data.take(torch.tensor(idx, dtype=torch.long, device=data.sequences.device)).to(config.device)
        chunk_results, weights, epochs = _train_chunk(sub_model, sub_data, config, seed=config.seed + chunk_no,
                                                      fused=fused, threads=threads)
        model_epochs += epochs
        trained_chunk = sub_model.with_weights(weights).to("cpu")
        rows = torch.tensor(idx, dtype=torch.long)
        for name, w in trained_chunk.weights.items():  # the chunk's padding fits inside the stack's
            full = trained_w.setdefault(name, torch.zeros(model.weights[name].shape, dtype=w.dtype))
            full[(rows,) + tuple(slice(0, n) for n in w.shape[1:])] = w
        for j, i in enumerate(idx):
            results[i] = chunk_results[j]
        done += len(idx)
        if progress is not None:
            progress(done)
    trained = model.to("cpu", dtype).with_weights(trained_w)
    return TrainResult(results, trained, config, time.perf_counter() - start, model_epochs,
                       kernel="fused" if fused else "autograd")


def _use_fused(model, config: TrainConfig) -> bool:
    has = getattr(model, "has_fused_step", None)
    available = has is not None and has(config.device)
    if config.kernel == "fused" and not available:
        raise ConfigError(f"kernel='fused': {type(model).__name__} has no fused step on {config.device!r} "
                          "(it needs a CPU device and numba); use kernel='autograd' or 'auto'")
    return available and config.kernel != "autograd"


def _size_order(sizes: Sequence[int], vocab: Sequence[int]) -> list[int]:
    """Model indices sorted by (dataset size, vocabulary size), the order chunks are cut from."""
    return sorted(range(len(sizes)), key=lambda i: (sizes[i], vocab[i]))


def _slices(sizes: Sequence[int], vocab: Sequence[int], max_chunk: int) -> list[list[int]]:
    """Models in :func:`_size_order`, cut into runs of ``max_chunk``."""
    order = _size_order(sizes, vocab)
    return [order[i:i + max_chunk] for i in range(0, len(order), max_chunk)]


# Cost model of one training step of a chunk, fitted on 2 CPU cores: a fixed overhead
# (kernel launches, Python) plus a cost per padded logit (sequence position x vocabulary).
STEP_OVERHEAD_S = 4e-3
PER_LOGIT_S = 1.5e-8


def plan_chunks(sizes: Sequence[int], vocab: Sequence[int], max_chunk: int) -> list[list[int]]:
    """Cut models into chunks that train together, trading padding against per-step overhead.

    Models are sorted by (dataset size, vocabulary size); a cut is placed wherever the
    modelled step time ``STEP_OVERHEAD_S + PER_LOGIT_S · M_c · N_max · T_max`` of the two
    halves beats that of the whole (dynamic programming over the sorted order, chunks of at
    most ``max_chunk`` models).
    """
    order = _size_order(sizes, vocab)
    n = len(order)
    N = np.array([max(sizes[i], 1) for i in order], dtype=np.float64)
    T = np.array([vocab[i] for i in order], dtype=np.float64)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        lo = max(0, end - max_chunk)
        starts = np.arange(lo, end)
        # chunk [s, end): N is sorted so N_max = N[end-1]; T_max = running max from the right
        t_max = np.maximum.accumulate(T[lo:end][::-1])[::-1]
        cost = best[starts] + STEP_OVERHEAD_S + PER_LOGIT_S * (end - starts) * N[end - 1] * t_max
        k = int(np.argmin(cost))
        best[end], cut[end] = cost[k], starts[k]
    chunks = []
    end = n
    while end > 0:
        chunks.append(order[cut[end]:end])
        end = cut[end]
    return chunks[::-1]


def _train_chunk(model, data, cfg: TrainConfig, seed: int, fused: bool, threads: int):
    """Train one chunk; returns (results in chunk order, final weights, model-epochs run)."""
    M = model.n_models
    device = model.weights["W_E"].device
    gen = torch.Generator().manual_seed(seed)
    params = _FlatParams(model.weights)  # every weight of a model in one row: one Adam update per step
    adam = StackedAdam({"flat": params.flat}, cfg.adam)
    bias = vocab_bias(model.token_mask, model.weights["W_E"].dtype)  # (M, 1, T)
    ids = torch.arange(M, device=device)          # chunk positions of the rows still in the stack
    active = torch.ones(M, dtype=torch.bool, device=device)
    out_weights = {n: w.detach().clone() for n, w in params.views().items()}
    results: list[ModelResult | None] = [None] * M
    best = torch.full((M,), math.inf, dtype=torch.float64, device=device)
    since_best = torch.zeros(M, dtype=torch.long, device=device)
    curves = {i: {"epoch": [], "loss": [], "accuracy": [], **{f"tau_{t:g}": [] for t in cfg.taus}}
              for i in range(M)} if cfg.curve_every else None
    # the taus evaluated at each check: the reported ones, and stop_tau if it is not among them
    eval_taus = cfg.taus + ((cfg.stop_tau,) if cfg.stop_tau is not None and cfg.stop_tau not in cfg.taus else ())
    stop_j = eval_taus.index(cfg.stop_tau) if cfg.stop_tau is not None else None
    model_epochs = 0
    n_active = M
    full_batch = cfg.batch_size is None or cfg.batch_size >= data.sequences.shape[1]

    # The attention kernel can apply the Adam step itself, in the same pass, to the models'
    # own weights only; it does so where no decision is taken between gradient and step.
    fused_adam = fused and adam.can_compile({"flat": params.flat}, {"flat": params.flat})

    def objective(batch, want_grad: bool, metrics: bool, step: bool = False):
        """At the current weights: ``(loss (M,), nll, argmax, grad (M, P) or None)``.
        A model whose loss is not finite gets no usable gradient (Adam skips it). With
        ``step``, the Adam step is taken in the same pass (see above) and grad is None."""
        if fused:
            adam_step = (active & batch.has_data, adam.kernel_state("flat")) if step else None
            return model.fused_loss_and_grad(params.flat, batch, grad=want_grad, metrics=metrics,
                                             models=active, threads=threads, step=adam_step)
        with torch.set_grad_enabled(want_grad):
            loss, nll, argmax = forward_loss(model, params.views(), batch, bias, metrics)
        grad = None
        if want_grad:
            finite = torch.isfinite(loss.detach())
            (grad,) = torch.autograd.grad(loss.where(finite, 0).sum(), [params.flat])
        return loss.detach(), nll, argmax, grad

    def retire(rows: torch.Tensor, status: str, epoch: int, loss, acc, tau_acc):
        if not len(rows):
            return
        chunk_rows = ids[rows]
        for n, w in params.views().items():
            out_weights[n][chunk_rows] = w[rows].detach()
        for i, lo, ac, ta in zip(chunk_rows.tolist(), loss[rows].tolist(), acc[rows].tolist(),
                                 tau_acc[rows].tolist()):
            results[i] = ModelResult(status=status, epochs=epoch, loss=lo, accuracy=ac,
                                     tau_accuracy=dict(zip(cfg.taus, ta)), curve=curves[i] if curves else None)

    for epoch in range(cfg.max_epochs + 1):
        last = epoch == cfg.max_epochs
        check = epoch % cfg.eval_every == 0 or last
        batches = [data.full_batch()] if full_batch else data.epoch(cfg.batch_size, gen)
        for b_i, batch in enumerate(batches):
            stepped = fused_adam and not check  # at a check, models may retire before the step
            if full_batch:
                loss, nll, argmax, grad = objective(batch, want_grad=not last, metrics=check, step=stepped)
            if check and b_i == 0:
                # every decision is taken on the weights as they are before this epoch's updates
                if full_batch:
                    ev, eval_loss, nll_e, argmax_e = batch, loss, nll, argmax
                else:
                    ev = data.full_batch()
                    eval_loss, nll_e, argmax_e, _ = objective(ev, want_grad=False, metrics=True)
                acc, all_tau = last_token_metrics(nll_e, argmax_e, ev, eval_taus)
                tau_acc = all_tau[:, :len(cfg.taus)]
                stop = ~torch.isfinite(eval_loss) & active
                retire(torch.nonzero(stop).flatten(), "diverged", epoch, eval_loss, acc, tau_acc)
                if curves is not None and epoch % cfg.curve_every == 0:
                    _record(curves, ids, active & ~stop, epoch, eval_loss, acc, tau_acc, cfg.taus)
                if cfg.stop_tau is not None:
                    now = active & ~stop & (all_tau[:, stop_j] >= 1.0)
                    retire(torch.nonzero(now).flatten(), "memorized", epoch, eval_loss, acc, tau_acc)
                    stop |= now
                if cfg.plateau_patience is not None:
                    improved = eval_loss.double() < best * (1 - cfg.plateau_tol)
                    best = torch.where(improved, eval_loss.double(), best)
                    since_best = torch.where(improved, 0, since_best + cfg.eval_every)
                    now = active & ~stop & (since_best >= cfg.plateau_patience)
                    retire(torch.nonzero(now).flatten(), "plateau", epoch, eval_loss, acc, tau_acc)
                    stop |= now
                active &= ~stop
                if last:
                    retire(torch.nonzero(active).flatten(), "max_epochs", epoch, eval_loss, acc, tau_acc)
                    active[:] = False
                n_active = int(active.sum())  # active changes only here
            if not n_active:
                break
            if not full_batch:
                stepped = fused_adam                # the check, if any, was taken on its own batch
                loss, _, _, grad = objective(batch, want_grad=True, metrics=False, step=stepped)
            if not stepped:
                adam.step({"flat": params.flat}, {"flat": grad}, active & torch.isfinite(loss) & batch.has_data,
                          threads=threads)
        if not n_active:
            break
        model_epochs += n_active
        if check and n_active < cfg.compact_below * len(active):
            keep = torch.nonzero(active).flatten()
            model, data, adam = model.take(keep), data.take(keep), adam.take(keep)
            params = params.take(keep)
            ids, active, bias = ids[keep], active[keep], bias[keep]
            best, since_best = best[keep], since_best[keep]
    return results, out_weights, model_epochs


class _FlatParams:
    """All weights of a chunk as one leaf tensor ``(M, P)``, with a view per named weight."""

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


def _record(curves, ids, rows, epoch, loss, acc, tau_acc, taus):
    for r in torch.nonzero(rows).flatten().tolist():
        cv = curves[int(ids[r])]
        cv["epoch"].append(epoch)
        cv["loss"].append(float(loss[r]))
        cv["accuracy"].append(float(acc[r]))
        for j, t in enumerate(taus):
            cv[f"tau_{t:g}"].append(float(tau_acc[r, j]))
