"""What the engine asks of a model family, a data source and a compiled step.

The engine (:func:`factlab.training.engine.train`) names no family, no weight and no
config field: everything it needs is written down here as ``typing.Protocol`` s, and a new
family or data source is a new class that satisfies them. The model families of
:mod:`factlab.models` inherit most of :class:`ModelStack` from
:class:`factlab.models.stack.Stack`; the data sources are in :mod:`factlab.training.data`.

A step of the engine, for a chunk of M models:

1. the data source gives a :class:`Batch`: per model, input sequences, the positions that
   are scored, the target output at each and a loss weight;
2. the model stack maps its weights and the inputs to its *readout*: the features at
   the scored positions and the unembedding (logits are ``features @ W_out`` over each
   model's own outputs, :meth:`ModelStack.output_mask`);
3. the engine takes each model's weighted cross-entropy, its gradient with respect to the
   trained weights (:meth:`ModelStack.update_masks`), and steps the optimizer.

Where a family has a faster way to do 2-3 on some device (a compiled pass per model), it
offers a :class:`CompiledStep` for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
import torch


@dataclass(frozen=True)
class Batch:
    """One step's data for M models.

    ``inputs (M, B, n)``: token ids of B sequences per model (a model with fewer real
    sequences is padded). ``positions``: the P positions of the inputs that are scored,
    the same for every model and sequence; only they are unembedded. ``targets (M, B, P)``:
    the output id due at each scored position; ``weight (M, B, P)``: its loss weight, each
    model's weights summing to 1 over its real positions (0 on padding), so a model's loss
    is its mean cross-entropy. ``evaluated (M, B)``: the real sequences; accuracy is
    measured on each one's last scored position.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    weight: torch.Tensor
    evaluated: torch.Tensor
    positions: tuple[int, ...]
    has_data: torch.Tensor = field(init=False, repr=False)   # (M,) bool: some real sequence

    def __post_init__(self):
        object.__setattr__(self, "has_data", self.evaluated.any(dim=1))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Batch":
        """The batch on ``device`` with the loss weights in ``dtype``."""
        return Batch(self.inputs.to(device), self.targets.to(device), self.weight.to(device=device, dtype=dtype),
                     self.evaluated.to(device), self.positions)

    def take(self, index: torch.Tensor) -> "Batch":
        """The data of the models at ``index``."""
        return Batch(self.inputs.index_select(0, index), self.targets.index_select(0, index),
                     self.weight.index_select(0, index), self.evaluated.index_select(0, index), self.positions)


@runtime_checkable
class ModelStack(Protocol):
    """A stack of M models of one family with padded weights (:class:`factlab.models.stack.Stack`)."""

    params: dict[str, torch.Tensor]          # every weight, padded, with a leading model axis

    @property
    def n_models(self) -> int: ...

    def readout(self, params: dict[str, torch.Tensor], inputs: torch.Tensor,
                positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (M, B, P, D), W_out (M, D, V))``: the features at ``positions`` and the
        unembedding, logits being ``features @ W_out``; computed from ``params`` (the
        stored weights, or tensors being trained in their place: the family multiplies them
        by its own-entry masks, so padding stays inert)."""
        ...

    def output_mask(self) -> torch.Tensor:
        """``(M, V)`` bool: the outputs each model has."""
        ...

    def update_masks(self) -> dict[str, torch.Tensor]:
        """For each trained weight, a bool mask ``(M, ...)`` of the entries that train."""
        ...

    @property
    def partially_frozen(self) -> bool:
        """Whether a trained weight has frozen entries beyond padding."""
        ...

    def chunk_sizes(self) -> np.ndarray:
        """``(M, k)``: sizes whose padding costs work; the engine trains models of similar
        sizes together."""
        ...

    def chunk_cost(self, sizes: np.ndarray) -> np.ndarray:
        """The work of one sequence at padded ``sizes (n, k)`` (rows of chunk sizes)."""
        ...

    def select(self, index: Sequence[int]) -> "ModelStack":
        """The models at ``index``, re-padded to their own largest sizes."""
        ...

    def take(self, index: torch.Tensor) -> "ModelStack":
        """The models at ``index``, same padding (cheap)."""
        ...

    def with_params(self, params: dict[str, torch.Tensor]) -> "ModelStack":
        """The same models with the weights in ``params`` replaced."""
        ...

    def to(self, device=None, dtype=None) -> "ModelStack": ...


@runtime_checkable
class DataSource(Protocol):
    """One dataset, or one stream of batches, per model (:mod:`factlab.training.data`).

    Every random draw is keyed by the model's own key and the step (or epoch), so a model's
    data do not depend on the other models, the chunking or the threads."""

    @property
    def n_models(self) -> int: ...

    @property
    def per_epoch(self) -> bool:
        """Whether the data are a fixed dataset that has epochs (else a stream of steps)."""
        ...

    def sizes(self) -> np.ndarray:
        """``(M,)``: sequences per model per step (the engine's chunk planner reads it)."""
        ...

    def epoch(self, epoch: int) -> Sequence[Batch]:
        """The batches of an epoch (fixed datasets)."""
        ...

    def step(self, step: int) -> Batch:
        """The batch of a step: a stream's fresh draw; a fixed dataset's batch of that step
        in each model's own cycle of epochs."""
        ...

    def eval_batch(self) -> Batch:
        """The data accuracy is measured on: the training set, a held-out set, or one fixed
        sample of a stream."""
        ...

    def take(self, index: torch.Tensor) -> "DataSource": ...

    def to(self, device: str | torch.device, dtype: torch.dtype) -> "DataSource": ...


class StepOutput(NamedTuple):
    """What a step computes per model: ``loss (M,)`` float64, ``nll`` and ``argmax``
    ``(M, B, P)`` at the scored positions (argmax None unless asked), ``grad (M, P)`` or None."""

    loss: torch.Tensor
    nll: torch.Tensor
    argmax: torch.Tensor | None
    grad: torch.Tensor | None


class CompiledStep(Protocol):
    """A family's own way to compute a step on one device (the attention layers' compiled
    CPU pass). It works on the engine's one row of trained weights per model, ``flat (M,
    P)``: the trained weights in :meth:`ModelStack.update_masks` order, padded, flattened
    and concatenated. ``models`` (bool ``(M,)``) limits the work; the others get loss 0.
    With ``update = (stepping (M,) bool, KernelUpdate)`` (:class:`factlab._updates.KernelUpdate`,
    from :meth:`factlab.training.optim.StackedOptimizer.kernel_state`) the step applies the
    optimizer to ``flat`` in place, for the models where ``stepping`` is true and the loss
    is finite, instead of returning the gradient."""

    def __call__(self, flat: torch.Tensor, batch: Batch, *, grad: bool, metrics: bool,
                 models: torch.Tensor | None, threads: int, update: tuple | None = None) -> StepOutput: ...
