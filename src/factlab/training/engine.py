"""Train a stack of models, each on its own data, all at once.

The engine knows no model family: it asks a model stack and a data source for what
:mod:`factlab.training.interfaces` writes down, and nothing else. Two configs say what it
does: :class:`TrainConfig` *what to train* (the budget in epochs or steps, the optimizer,
the batch size, the stopping rules, what to record), :class:`RunConfig` *how to run it*
(device, dtype, threads, chunk size, compiled step or autograd). Results depend on the
first; on the second only up to floating-point rounding (see :class:`RunConfig`).

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

import time
from contextlib import contextmanager
from typing import Callable, Sequence

import torch

from factlab.errors import ConfigError
from factlab.training.chunks import _slices, plan_chunks
from factlab.training.config import (DEFAULT_EPOCHS, DEFAULT_TAUS, KERNELS, ModelResult, RunConfig,  # noqa: F401
                                     TrainConfig, TrainResult)
from factlab.training.loop import Chunk, forward_loss, last_position_metrics  # noqa: F401

Monitor = Callable[[object, torch.Tensor], dict]


def train(model, data, config: TrainConfig = TrainConfig(), run: RunConfig = RunConfig(), *,
          progress: Callable[[int], None] | None = None, monitor: Monitor | None = None,
          lr: Sequence[float] | None = None) -> TrainResult:
    """Train every model of ``model`` on its own data of ``data``; returns per-model results.

    ``lr``: each model's learning rate, in place of the optimizer's (a learning-rate ladder
    trained as one stack: model i steps exactly as it would alone at ``lr[i]``).

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
    if lr is not None and len(lr) != model.n_models:
        raise ConfigError(f"{len(lr)} learning rates for {model.n_models} models")
    if monitor is not None and config.curve_every is None:
        raise ConfigError("a monitor is called at curve points: set curve_every")
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    with _deterministic(run.deterministic and torch.device(run.device).type == "cpu"):
        fused = _use_compiled(model, data, run)
        if not fused:
            return _train(model, data, config, run, progress, monitor, lr, fused=False,
                          threads=torch.get_num_threads())
        # A compiled step runs on its own threads; torch, left with only small bookkeeping,
        # runs on one, so that its idle OpenMP workers (which spin for a while after each
        # parallel region) do not take the cores (docs/performance.md).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _train(model, data, config, run, progress, monitor, lr, fused=True, threads=threads)
        finally:
            torch.set_num_threads(threads)


@contextmanager
def _deterministic(on: bool):
    """Turn torch's deterministic algorithms on for the block (never off), then restore them."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
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


def _train(model, data, config: TrainConfig, run: RunConfig, progress, monitor, lr, fused: bool,
           threads: int) -> TrainResult:
    dtype = getattr(torch, run.dtype)
    start = time.perf_counter()
    sizes = data.sizes()
    chunk_sizes = model.chunk_sizes()
    results: list[ModelResult | None] = [None] * model.n_models
    trained: dict[str, torch.Tensor] = {}  # trained weights at the input stack's padded shapes
    rounds = done = 0
    # padding costs a compiled step memory only, not time: plain slices of the sorted order
    chunks = (_slices(sizes, chunk_sizes, run.chunk_size) if fused else
              plan_chunks(sizes, chunk_sizes, run.chunk_size, getattr(model, "chunk_cost", None)))
    for idx in chunks:
        sub_model = model.select(idx).to(run.device, dtype)      # re-padded to the chunk's own sizes
        sub_data = data.take(torch.tensor(idx, dtype=torch.long)).to(run.device, dtype)
        chunk = Chunk(sub_model, sub_data, config, run, fused, threads, torch.tensor(idx, dtype=torch.long), monitor,
                      None if lr is None else [lr[i] for i in idx])
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


