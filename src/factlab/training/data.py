"""Training data for a stack of models: one dataset per model, padded and weighted.

A :class:`Batch` holds, per model, input sequences, next-token targets, a loss weight per
position and the position each sequence is evaluated on. A padded sequence has weight 0
and is never evaluated, so padding adds nothing to any loss, gradient or metric. Any
data source that yields such batches (fixed databases here; data sampled afresh every
step later) plugs into :func:`factlab.training.engine.train`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterator, Sequence

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError


@dataclass(frozen=True)
class Batch:
    """One step's data for M models.

    ``inputs``/``targets`` ``(M, B, n)`` token ids (the target at position i is the token
    after input position i); ``weight`` ``(M, B, n)``, each model's weights summing to 1 over
    its real positions (0 on padding), so a model's loss is its mean next-token
    cross-entropy; ``evaluated`` ``(M, B)`` marks the real sequences, scored on their last
    position (paper 002, footnote 5: trained on every next token, evaluated on the last).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    weight: torch.Tensor
    evaluated: torch.Tensor

    @cached_property
    def has_data(self) -> torch.Tensor:
        """``(M,)`` bool: models with at least one real sequence in this batch (computed once;
        a batch is not changed after it is made)."""
        return self.evaluated.any(dim=1)


class FactSequences:
    """The facts of one database per model as sequences ``(k, q, v)``, padded to ``(M, N, 3)``.

    Each model learns to predict q after k and v after (k, q); accuracy is measured on v.
    Token ids are those of each model's own database, so a model's vocabulary is its
    database's: pair ``databases[i]`` with a layer of ``n_tokens = databases[i].n_tokens``.
    """

    def __init__(self, sequences: torch.Tensor, valid: torch.Tensor):
        self.sequences = sequences  # (M, N, 3)
        self.valid = valid          # (M, N) bool
        self._full: Batch | None = None

    @classmethod
    def from_databases(cls, databases: Sequence[Database], *, device: str | torch.device = "cpu") -> "FactSequences":
        if not databases:
            raise ConfigError("need at least one database")
        N = max(len(db) for db in databases)
        seq = np.zeros((len(databases), N, 3), dtype=np.int64)
        valid = np.zeros((len(databases), N), dtype=bool)
        for i, db in enumerate(databases):
            seq[i, : len(db)] = db.sequences()
            valid[i, : len(db)] = True
        return cls(torch.from_numpy(seq).to(device), torch.from_numpy(valid).to(device))

    @property
    def n_models(self) -> int:
        return self.sequences.shape[0]

    def sizes(self) -> torch.Tensor:
        """``(M,)`` number of sequences of each model."""
        return self.valid.sum(dim=1)

    def take(self, index: torch.Tensor) -> "FactSequences":
        """The datasets of the models at ``index``, same padding."""
        valid = self.valid.index_select(0, index)
        n = max(int(valid.sum(dim=1).max()), 1)  # trim padding to the longest dataset kept
        return FactSequences(self.sequences.index_select(0, index)[:, :n], valid[:, :n])

    def to(self, device) -> "FactSequences":
        return FactSequences(self.sequences.to(device), self.valid.to(device))

    def full_batch(self) -> Batch:
        """Every sequence of every model (made once, then the same object every call)."""
        if self._full is None:
            self._full = self._batch(self.sequences, self.valid)
        return self._full

    def epoch(self, batch_size: int | None, generator: torch.Generator | None = None) -> Iterator[Batch]:
        """One epoch: the full batch, or minibatches of ``batch_size`` sequences per model.

        With minibatches each model's sequences are shuffled independently and split into
        ``ceil(N_m / batch_size)`` batches; a model whose data is used up gets empty batches
        (``has_data`` false), on which the engine does not step it.
        """
        if batch_size is None or batch_size >= self.sequences.shape[1]:
            yield self.full_batch()
            return
        M, N, _ = self.sequences.shape
        keys = torch.rand(M, N, generator=generator).to(self.valid.device)
        keys = keys.masked_fill(~self.valid, 2.0)  # padding sorts last
        order = keys.argsort(dim=1)               # (M, N)
        seq = self.sequences.gather(1, order[..., None].expand(M, N, 3))
        valid = self.valid.gather(1, order)
        for start in range(0, int(self.sizes().max()), batch_size):
            yield self._batch(seq[:, start:start + batch_size], valid[:, start:start + batch_size])

    @staticmethod
    def _batch(seq: torch.Tensor, valid: torch.Tensor) -> Batch:
        inputs, targets = seq[..., :-1].contiguous(), seq[..., 1:].contiguous()  # (M, B, 2)
        per_model = (valid.sum(dim=1, keepdim=True) * inputs.shape[-1]).clamp(min=1)  # (M, 1)
        weight = (valid.double() / per_model)[..., None].expand(inputs.shape)  # float64; cast by the engine
        return Batch(inputs, targets, weight.contiguous(), valid)
