"""What the engine asks of a model family, a data source and a compiled step.

The engine (:func:`factlab.training.engine.train`) names no family, no weight and no
config field: everything it calls is written down here as ``typing.Protocol`` s, and a new
family or data source is a new class that satisfies them: :class:`ModelStack` (and,
optionally, :class:`HasChunkCost` and :class:`HasCompiledStep`), :class:`DataSource`, and
the :class:`CompiledStep` a family may offer. The model families of :mod:`factlab.models`
inherit all of :class:`ModelStack` but :meth:`~ModelStack.readout` from
:class:`factlab.models.stack.Stack`; the data sources are in :mod:`factlab.training.data`.
The protocols are ``runtime_checkable``, so ``isinstance(stack, ModelStack)`` checks that
every member is there (not its signature: ``tests/training/test_interfaces.py`` checks
those, for every family and data source). Shapes use factlab's names of dimensions
(docs/engine.md): M models, B sequences, C positions, P scored positions, D the width of
the features, O the outputs.

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

    ``inputs (M, B, C)``: token ids of B sequences of C positions per model (a model with
    fewer real sequences is padded). ``positions``: the P positions of the inputs that are scored,
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
    """A stack of M models of one family with padded weights: everything the engine calls
    on one (:class:`factlab.models.stack.Stack` provides all of it but :meth:`readout`).

    The engine trains one row of numbers per model: the trained weights
    (:meth:`trained_names`, in that order) at their padded shapes, flattened and
    concatenated, ``(M, n_params)``. It hands the family views of that row as ``params``
    and never looks inside a weight; padding and frozen entries stay where they are because
    the family masks what it computes with and the optimizer steps only the entries of
    :meth:`update_masks`.
    """

    params: dict[str, torch.Tensor]
    """Every weight, padded to the stack's largest sizes, with a leading model axis M: the
    engine reads the trained ones to start from and writes the trained stack's back."""

    @property
    def n_models(self) -> int:
        """M, checked against the data source's."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the weights are: the engine puts its per-model bookkeeping there."""
        ...

    @property
    def dtype(self) -> torch.dtype:
        """The weights' dtype: the logits' out-of-vocabulary bias is made in it."""
        ...

    @property
    def partially_frozen(self) -> bool:
        """Whether some trained weight has frozen entries beyond its padding (a train mask).
        If not, the engine steps the whole row without a mask (padding starts at 0 and gets
        gradient 0, so it stays 0) and a compiled step may take the optimizer step itself."""
        ...

    def trained_names(self) -> list[str]:
        """The weights that train, in the order of the engine's flat row; the others are
        frozen whole (never in the row, never stepped)."""
        ...

    def update_masks(self) -> dict[str, torch.Tensor]:
        """For each name of :meth:`trained_names`, a bool mask ``(M, ...)`` (the weight's
        padded shape): true on the entries that train. Read only when
        :attr:`partially_frozen`; the optimizer (weight decay included) touches nothing else."""
        ...

    def masked(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every weight to compute with: those in ``params`` (any subset of the weights, e.g.
        the engine's views of its row) times the family's own-entry masks, the stored
        weights for the rest. Gradients flow through it to ``params``."""
        ...

    def readout(self, params: dict[str, torch.Tensor], inputs: torch.Tensor,
                positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (M, B, P, D), W_out (M, D, O))`` for ``inputs (M, B, C)``: the features
        at the P scored ``positions`` only (no unembedding work elsewhere) and the
        unembedding, logits being ``features @ W_out``; computed from ``params`` (the
        engine's masked weights; the family masks them again, so padding stays inert)."""
        ...

    def output_mask(self) -> torch.Tensor:
        """``(M, O)`` bool: the outputs each model has (its vocabulary or its answer set);
        the engine gives the others probability 0."""
        ...

    def chunk_sizes(self) -> np.ndarray:
        """``(M, k)`` int: each model's sizes along the axes whose padding costs work; the
        engine sorts models by them and trains models of similar sizes together."""
        ...

    def select(self, index: Sequence[int]) -> "ModelStack":
        """The models at ``index`` (ints), re-padded to their own largest sizes: a chunk."""
        ...

    def take(self, index: torch.Tensor) -> "ModelStack":
        """The models at ``index`` (a long tensor on :attr:`device`) keeping this stack's
        padded shapes: cheap, for dropping the models that stopped."""
        ...

    def with_params(self, params: dict[str, torch.Tensor]) -> "ModelStack":
        """The same models with the weights in ``params`` (padded shapes, any subset, e.g.
        the trained ones) replaced: the trained stack, and what a monitor sees."""
        ...

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "ModelStack":
        """A copy on ``device`` in ``dtype`` (None keeps it): a chunk goes to the run's
        device and dtype, the trained stack comes back to the CPU."""
        ...


@runtime_checkable
class HasChunkCost(Protocol):
    """Optional for a :class:`ModelStack`: the family's cost model for the chunk planner
    (:func:`factlab.training.chunks.plan_chunks`, autograd path only). Without it a step of
    one sequence costs a fixed 1.5e-8 s times the product of the chunk sizes."""

    def chunk_cost(self, sizes: np.ndarray) -> np.ndarray:
        """``(n,)`` estimated seconds of one training step of one sequence for models padded
        to each row of ``sizes (n, k)`` (rows of largest :meth:`ModelStack.chunk_sizes`)."""
        ...


@runtime_checkable
class HasCompiledStep(Protocol):
    """Optional for a :class:`ModelStack`: a faster step than autograd on some device."""

    def compiled_step(self, device: str | torch.device) -> "CompiledStep | None":
        """A :class:`CompiledStep` for this stack on ``device``, or None where there is none
        (another device, a frozen weight...). Asked for the whole stack when the engine
        chooses its path, then for each chunk and after each compaction."""
        ...


@runtime_checkable
class DataSource(Protocol):
    """One dataset, or one stream of batches, per model (:mod:`factlab.training.data`).

    Every random draw is keyed by the model's own key and the step (or epoch), so a model's
    data do not depend on the other models, the chunking or the threads."""

    @property
    def n_models(self) -> int:
        """M, the number of models (one dataset or stream each)."""
        ...

    @property
    def per_epoch(self) -> bool:
        """Whether the data are a fixed dataset that has epochs (else a stream of steps only:
        the engine refuses ``max_epochs`` for it)."""
        ...

    def sizes(self) -> np.ndarray:
        """``(M,)``: sequences per model per step (the engine's chunk planner reads it)."""
        ...

    def epoch(self, epoch: int, batch_size: int | None) -> Sequence[Batch]:
        """The batches of ``epoch`` (fixed datasets): the full batch when ``batch_size`` is
        None, else minibatches of that many sequences per model."""
        ...

    def step(self, step: int, batch_size: int | None) -> Batch:
        """The batch of optimizer step ``step``: a stream's fresh draw (``batch_size`` None:
        the source's own size); a fixed dataset's batch of that step in each model's own
        cycle of epochs."""
        ...

    def eval_batch(self) -> Batch:
        """The data accuracy and the stopping rules are measured on: the training set, a
        held-out set, or one fixed sample of a stream. When an epoch is one batch and that
        very object (``is``) is the evaluation batch, the engine reuses the step's forward
        pass for the check instead of computing it twice."""
        ...

    def take(self, index: torch.Tensor) -> "DataSource":
        """The data of the models at ``index`` (a long tensor on the CPU), for a chunk or
        after its finished models are dropped."""
        ...

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "DataSource":
        """The data on ``device``, loss weights in ``dtype`` (None keeps them)."""
        ...


class StepOutput(NamedTuple):
    """What a step computes per model: ``loss (M,)`` float64, ``nll`` and ``argmax``
    ``(M, B, P)`` at the scored positions (argmax None unless asked), ``grad (M, n_params)``
    (the gradient of the engine's flat row, :class:`ModelStack`) or None."""

    loss: torch.Tensor
    nll: torch.Tensor
    argmax: torch.Tensor | None
    grad: torch.Tensor | None


@runtime_checkable
class CompiledStep(Protocol):
    """A family's own way to compute a step on one device (the attention layers' compiled
    CPU pass), from :meth:`HasCompiledStep.compiled_step`. It works on the engine's one row
    of trained weights per model, ``flat (M, n_params)`` (see :class:`ModelStack`), and
    gives the same loss, metrics and gradient as the autograd path."""

    def supports(self, batch: Batch) -> bool:
        """Whether it computes ``batch`` (asked with the evaluation batch before the engine
        picks this path; e.g. the attention kernel needs every position scored)."""
        ...

    def __call__(self, flat: torch.Tensor, batch: Batch, *, grad: bool, metrics: bool,
                 models: torch.Tensor | None, threads: int, update: tuple | None = None) -> StepOutput:
        """The :class:`StepOutput` of ``batch`` at weights ``flat``. ``models`` (bool
        ``(M,)``) limits the work; the others get loss 0. ``grad``: return the gradient
        ``(M, n_params)``; ``metrics``: the argmax. With ``update = (stepping (M,) bool,
        KernelUpdate)`` (:class:`factlab._updates.KernelUpdate`, from
        :meth:`factlab.training.optim.StackedOptimizer.kernel_state`) it applies the
        optimizer to ``flat`` in place, for the models where ``stepping`` is true and the
        loss is finite, instead of returning the gradient."""
        ...
