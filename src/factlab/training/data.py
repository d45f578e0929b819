"""Data sources of the engine: fixed datasets in epochs, and streams of fresh batches.

Both give :class:`~factlab.training.interfaces.Batch` objects for M models at once, and
both key every random draw by each model's own key and the step or epoch
(:mod:`factlab.keyed_random`): a model's data are the same whether it trains alone, in a
stack of 50, in another chunk or on another number of threads.

- :class:`FixedData`: one dataset per model, in full-batch or minibatch epochs (each
  model's sequences shuffled by its own key per epoch); evaluated on its training set or
  on a held-out dataset per model. :meth:`FixedData.from_databases` makes the fact
  sequences ``(k, q, v)`` of Wong (2025): every next token is trained, the last evaluated.
- :class:`StreamData`: a sampler (:class:`Sampler`) draws a fresh batch every step, keyed by
  ``(model key, step)``; accuracy is measured on one fixed sample drawn from its own stream.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from factlab import keyed_random
from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.training.interfaces import Batch

#: the stream number of evaluation samples (training steps use stream 0)
EVAL_STREAM = 7


def default_keys(n: int) -> np.ndarray:
    """Keys of models 0..n-1 when the caller names none: models are known by their index."""
    return keyed_random.model_keys(0, range(n))


def _check_keys(keys, n: int) -> np.ndarray:
    keys = default_keys(n) if keys is None else np.asarray(keys, dtype=np.uint64).reshape(-1)
    if len(keys) != n:
        raise ConfigError(f"{len(keys)} model keys for {n} models")
    return keys


def uniform_weight(valid: torch.Tensor, n_positions: int) -> torch.Tensor:
    """``(M, B, P)`` float64: 1 / (real sequences · P) on each model's real sequences, 0 on
    padding, so each model's weights sum to 1 (its loss is its mean cross-entropy)."""
    per_model = (valid.sum(dim=1, keepdim=True) * n_positions).clamp(min=1)             # (M, 1)
    return (valid.double() / per_model)[..., None].expand(*valid.shape, n_positions).contiguous()


class FixedData:
    """One fixed dataset per model, padded: ``inputs (M, B, C)``, ``targets (M, B, P)`` at the
    P scored ``positions``, ``valid (M, B)``, B the largest dataset's number of sequences.

    ``keys (M,)`` (uint64) key each model's minibatch shuffles (default: by index,
    :func:`default_keys`); ``held_out``, a FixedData of the same models, is evaluated on
    instead of the training data."""

    per_epoch = True

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, positions: Sequence[int],
                 *, keys=None, held_out: "FixedData | None" = None, weight_dtype: torch.dtype = torch.float64):
        if inputs.dim() != 3 or targets.dim() != 3 or targets.shape[:2] != inputs.shape[:2]:
            raise ConfigError(f"inputs (M, B, C) and targets (M, B, P) must agree, got {tuple(inputs.shape)} "
                              f"and {tuple(targets.shape)}")
        self.positions = tuple(int(p) for p in positions)
        if targets.shape[2] != len(self.positions) or not all(0 <= p < inputs.shape[2] for p in self.positions):
            raise ConfigError(f"positions {self.positions} do not fit inputs of length {inputs.shape[2]} and "
                              f"targets for {targets.shape[2]} positions")
        self.inputs, self.targets, self.valid = inputs, targets, valid
        self.keys = _check_keys(keys, inputs.shape[0])
        if held_out is not None and held_out.n_models != inputs.shape[0]:
            raise ConfigError(f"held-out data for {held_out.n_models} models, training data for {inputs.shape[0]}")
        self.held_out = held_out
        self.weight_dtype = weight_dtype
        self._full = self._batch(inputs, targets, valid)

    @classmethod
    def from_databases(cls, databases: Sequence[Database], *, keys=None, held_out: Sequence[Database] | None = None,
                       device: str | torch.device = "cpu") -> "FixedData":
        """The facts of one database per model as sequences ``(k, q, v)`` (Wong 2025, sec. 4):
        inputs ``(k, q)``, targets ``(q, v)`` at positions 0 and 1, so each model learns q
        after k and v after (k, q), and is evaluated on v (footnote 5). Token ids are each
        database's own: pair ``databases[i]`` with a model whose vocabulary is its tokens.
        ``held_out`` (one database per model, same vocabularies) is evaluated on instead."""
        if not databases:
            raise ConfigError("need at least one database")
        N = max(max(len(db) for db in databases), 1)
        seq = np.zeros((len(databases), N, 3), dtype=np.int64)
        valid = np.zeros((len(databases), N), dtype=bool)
        for i, db in enumerate(databases):
            seq[i, : len(db)] = db.sequences()
            valid[i, : len(db)] = True
        seq_t = torch.from_numpy(seq).to(device)
        other = None if held_out is None else cls.from_databases(held_out, keys=keys, device=device)
        return cls(seq_t[..., :2], seq_t[..., 1:], torch.from_numpy(valid).to(device), (0, 1), keys=keys,
                   held_out=other)

    # ------------------------------------------------------------------ the protocol
    @property
    def n_models(self) -> int:
        return self.inputs.shape[0]

    def sizes(self) -> np.ndarray:
        """``(M,)`` number of sequences of each model."""
        return self.valid.sum(dim=1).cpu().numpy()

    def full_batch(self) -> Batch:
        """Every sequence of every model (the same object on every call)."""
        return self._full

    def epoch(self, epoch: int, batch_size: int | None = None) -> list[Batch]:
        """The batches of ``epoch``: the full batch, or minibatches of ``batch_size``
        sequences per model. With minibatches each model's sequences are shuffled by its
        own key and the epoch (:func:`factlab.keyed_random.permutations`) and cut into
        ``ceil(N_m / batch_size)`` batches; a model whose data are used up gets empty
        batches (``has_data`` false), on which the engine does not step it."""
        if batch_size is None or batch_size >= self.inputs.shape[1]:
            return [self._full]
        order = self._order(np.full(self.n_models, epoch))
        inputs, targets, valid = self._gather(order)
        top = int(self.sizes().max())
        return [self._batch(inputs[:, s:s + batch_size], targets[:, s:s + batch_size], valid[:, s:s + batch_size])
                for s in range(0, top, batch_size)]

    def step(self, step: int, batch_size: int | None = None) -> Batch:
        """The batch of optimizer step ``step`` when training is counted in steps: model m
        cycles through its own epochs of ``ceil(N_m / batch_size)`` minibatches, so step s
        is batch ``s mod K_m`` of its epoch ``s div K_m``."""
        if batch_size is None or batch_size >= self.inputs.shape[1]:
            return self._full
        sizes = np.maximum(self.sizes(), 1)
        per_epoch = -(-sizes // batch_size)                                          # K_m
        order = self._order(step // per_epoch)
        start = torch.from_numpy((step % per_epoch) * batch_size).to(self.inputs.device)     # (M,)
        rows = start[:, None] + torch.arange(batch_size, device=self.inputs.device)[None, :]  # (M, b)
        inside = rows < torch.from_numpy(sizes).to(rows.device)[:, None]
        inputs, targets, valid = self._gather(order.gather(1, rows.clamp(max=self.inputs.shape[1] - 1)))
        valid = valid & inside
        return self._batch(inputs, targets, valid)

    def eval_batch(self) -> Batch:
        """The held-out data if given, else every training sequence."""
        return self.held_out.full_batch() if self.held_out is not None else self._full

    def take(self, index: torch.Tensor) -> "FixedData":
        """The datasets of the models at ``index``, padding trimmed to the longest kept."""
        valid = self.valid.index_select(0, index.to(self.valid.device))
        n = max(int(valid.sum(dim=1).max()), 1)
        idx = index.to(self.inputs.device)
        return FixedData(self.inputs.index_select(0, idx)[:, :n], self.targets.index_select(0, idx)[:, :n],
                         valid[:, :n], self.positions, keys=self.keys[index.cpu().numpy()],
                         held_out=None if self.held_out is None else self.held_out.take(index),
                         weight_dtype=self.weight_dtype)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "FixedData":
        """The data on ``device``, with loss weights in ``dtype`` (default: as they are)."""
        return FixedData(self.inputs.to(device), self.targets.to(device), self.valid.to(device), self.positions,
                         keys=self.keys, held_out=None if self.held_out is None else self.held_out.to(device, dtype),
                         weight_dtype=dtype or self.weight_dtype)

    # ------------------------------------------------------------------ helpers
    def _order(self, counters: np.ndarray) -> torch.Tensor:
        """``(M, B)``: each model's shuffle of its sequences for its epoch ``counters[m]``."""
        perm = keyed_random.permutations(self.keys, counters, self.sizes())
        full = np.tile(np.arange(self.inputs.shape[1]), (self.n_models, 1))
        full[:, :perm.shape[1]] = perm
        return torch.from_numpy(full).to(self.inputs.device)

    def _gather(self, order: torch.Tensor):
        C, P = self.inputs.shape[2], self.targets.shape[2]
        M, B = order.shape
        return (self.inputs.gather(1, order[..., None].expand(M, B, C)),
                self.targets.gather(1, order[..., None].expand(M, B, P)),
                self.valid.gather(1, order))

    def _batch(self, inputs, targets, valid) -> Batch:
        return Batch(inputs.contiguous(), targets.contiguous(),
                     uniform_weight(valid, len(self.positions)).to(self.weight_dtype), valid.contiguous(),
                     self.positions)


# ============================================================================ streams
@runtime_checkable
class Sampler(Protocol):
    """Draws batches for M models as a pure function of each model's key, a counter and a
    stream number (:mod:`factlab.keyed_random`): the recall task of Nichani et al. (2024),
    the multi-hop sequences of the geometric paper."""

    @property
    def n_models(self) -> int: ...

    def draw(self, keys: np.ndarray, counter: int, size: int, stream: int) -> Batch:
        """``size`` sequences per model."""
        ...

    def take(self, index: np.ndarray) -> "Sampler": ...


class LastTokenSampler:
    """A :class:`Sampler` from tasks that draw sequences and the answer due at their last
    position (``tasks.draw(keys, counter, size, stream) -> (inputs (M, size, C), answers (M,
    size))``, numpy, as :class:`factlab.databases.recall_task.RecallTasks`): only the last
    position is scored, each model's loss is its mean cross-entropy there."""

    def __init__(self, tasks):
        self.tasks = tasks

    @property
    def n_models(self) -> int:
        return self.tasks.n_models

    def draw(self, keys: np.ndarray, counter: int, size: int, stream: int) -> Batch:
        inputs, answers = self.tasks.draw(keys, counter, size, stream)
        M, B, C = inputs.shape
        valid = torch.ones(M, B, dtype=torch.bool)
        return Batch(torch.from_numpy(inputs), torch.from_numpy(answers)[..., None],   # (M, B, C), (M, B, 1)
                     uniform_weight(valid, 1), valid, (C - 1,))

    def take(self, index: np.ndarray) -> "LastTokenSampler":
        return LastTokenSampler(self.tasks.take(index))


class StreamData:
    """A fresh batch every step from ``sampler``, keyed by ``(keys[m], step)``; accuracy on
    one fixed sample of ``eval_size`` sequences per model, drawn from its own stream
    (:data:`EVAL_STREAM`)."""

    per_epoch = False

    def __init__(self, sampler: Sampler, *, batch_size: int, eval_size: int, keys=None,
                 device: str | torch.device = "cpu", weight_dtype: torch.dtype = torch.float64):
        if batch_size < 1 or eval_size < 1:
            raise ConfigError(f"batch_size and eval_size must be >= 1, got {batch_size} and {eval_size}")
        self.sampler, self.batch_size, self.eval_size = sampler, batch_size, eval_size
        self.keys = _check_keys(keys, sampler.n_models)
        self.device, self.weight_dtype = torch.device(device), weight_dtype
        self._eval = self._draw(0, eval_size, EVAL_STREAM)

    @property
    def n_models(self) -> int:
        return self.sampler.n_models

    def sizes(self) -> np.ndarray:
        return np.full(self.n_models, self.batch_size)

    def epoch(self, epoch: int, batch_size: int | None = None) -> list[Batch]:
        raise ConfigError("a stream of fresh batches has no epochs: count training in steps (max_steps)")

    def step(self, step: int, batch_size: int | None = None) -> Batch:
        """The fresh batch of ``step`` (``batch_size`` overrides the source's own)."""
        return self._draw(step, batch_size or self.batch_size, 0)

    def eval_batch(self) -> Batch:
        return self._eval

    def take(self, index: torch.Tensor) -> "StreamData":
        idx = index.cpu().numpy()
        return StreamData(self.sampler.take(idx), batch_size=self.batch_size, eval_size=self.eval_size,
                          keys=self.keys[idx], device=self.device, weight_dtype=self.weight_dtype)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "StreamData":
        return StreamData(self.sampler, batch_size=self.batch_size, eval_size=self.eval_size, keys=self.keys,
                          device=device, weight_dtype=dtype or self.weight_dtype)

    def _draw(self, counter: int, size: int, stream: int) -> Batch:
        return self.sampler.draw(self.keys, counter, size, stream).to(self.device, self.weight_dtype)
