"""Associative memories of Nichani, Lee and Bietti (2024), as stacks of M models.

"Understanding Factual Recall in Transformers via Associative Memories" (arXiv:2412.06538)
stores N associations i -> f(i) with fixed random embeddings: inputs e_1..e_N and outputs
u_1..u_K, each a Gaussian vector normalised to unit length in R^d (sec. 3), frozen; only
the memory between them trains, with the cross-entropy of the logits

    linear memory (Figure 1, left):   z_j(i) = u_j^T W e_i,                W in R^{d x d}
    MLP memory (Figure 1, right):     z_j(i) = u_j^T W2 relu(W1 e_i + b1),  W1 in R^{m x d}, W2 in R^{d x m}

over the K outputs. Figure 1 stores f(i) = i (K = N); Figure 6 maps N inputs onto K fixed
classes, f(i) = floor(i K / N) (:func:`memory_targets`). Their capacities scale with the
parameter counts d^2 and 2 m d (Theorems 1-2). The paper's N, K, d and m are the axes V
(the input vocabulary), O (the output vocabulary), D and F of factlab's names of dimensions
(docs/engine.md): ``E (V, D)``, ``U (O, D)``.

Both families are :class:`~factlab.models.stack.Stack` s: every weight carries a leading
model axis, padded to the stack's largest sizes and multiplied by its own-entry mask in the
forward pass, so padding is inert (the tests compare a padded model with the same model
alone, in training too). E and U are frozen by default (``DEFAULT_FROZEN``); the engine
(:mod:`factlab.training`) trains a stack through :meth:`MemoryStack.readout`, on the data of
:func:`memory_dataset` wrapped in ``FixedData``.

The paper leaves the memory's initialisation open; ours is W, W1 ~ N(0, 1/d), b1 = 0,
W2 ~ N(0, 1/m) (LeCun-normal layers with a zero bias). The authors' training: AdamW without
weight decay, learning rate 1000 (linear) and 3e-2 (MLP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from factlab.errors import ConfigError
from factlab.models.stack import Stack, check_sizes

#: the scored positions of :func:`memory_dataset`: each sequence is one input
POSITIONS = (0,)


@dataclass(frozen=True)
class LinearMemoryConfig:
    """A linear associative memory: N inputs, K outputs, dimension d (one trained d x d W)."""

    n_inputs: int   # N: d_vocab, axis V
    n_outputs: int  # K: d_vocab_out, axis O
    d: int          # d_model, axis D

    def __post_init__(self):
        check_sizes(self, ("n_inputs", "n_outputs", "d"))

    @property
    def non_embedding_params(self) -> int:
        """``d^2``, the entries of W (the x-axis of Figure 1, left)."""
        return self.d * self.d

    def axis_sizes(self) -> dict[str, int]:
        """The length of each named axis (:class:`LinearMemoryStack` ``AXES``)."""
        return {"V": self.n_inputs, "O": self.n_outputs, "D": self.d}


@dataclass(frozen=True)
class MLPMemoryConfig:
    """An MLP associative memory x -> W2 relu(W1 x + b1) of hidden width m."""

    n_inputs: int   # N: d_vocab, axis V
    n_outputs: int  # K: d_vocab_out, axis O
    d: int          # d_model, axis D
    width: int      # m: d_mlp, axis F

    def __post_init__(self):
        check_sizes(self, ("n_inputs", "n_outputs", "d", "width"))

    @property
    def non_embedding_params(self) -> int:
        """``2 m d``, the entries of W1 and W2 (the paper's count, Figure 1, right); the m
        biases b1 are not counted."""
        return 2 * self.width * self.d

    def axis_sizes(self) -> dict[str, int]:
        """The length of each named axis (:class:`MLPMemoryStack` ``AXES``)."""
        return {"V": self.n_inputs, "O": self.n_outputs, "D": self.d, "F": self.width}


def unit_rows(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, d)`` float64: Gaussian vectors normalised to unit length (uniform on the sphere)."""
    x = torch.randn((n, d), generator=generator, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


class MemoryStack(Stack):
    """What both memories share: frozen unit embeddings E ``(M, V, D)`` and U ``(M, O, D)``,
    the readout, logits over each model's own outputs. Subclasses add :meth:`memory`."""

    OUTPUT_AXIS = "O"
    DEFAULT_FROZEN = ("E", "U")

    @classmethod
    def init_weights(cls, config, generator: torch.Generator, dtype: torch.dtype = torch.float32
                     ) -> dict[str, torch.Tensor]:
        """E, then U (unit rows, :func:`unit_rows`), then the memory (:meth:`init_memory`),
        drawn in that order from ``generator`` in float64, then cast to ``dtype``."""
        w = {"E": unit_rows(config.n_inputs, config.d, generator),
             "U": unit_rows(config.n_outputs, config.d, generator)}
        w.update(cls.init_memory(config, generator))
        return {name: t.to(dtype) for name, t in w.items()}

    @classmethod
    def init_memory(cls, config, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def memory(self, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The memory's output ``(M, B·P, D)`` for embedded inputs ``x (M, B·P, D)`` (masked weights)."""
        raise NotImplementedError

    def readout(self, params: dict[str, torch.Tensor] | None, inputs: torch.Tensor,
                positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (M, B, P, D), U^T (M, D, O))``: the memory's output for the inputs
        ``inputs[:, :, positions]`` (input ids ``(M, B, C)``; ``(B, C)`` feeds every model the same), so
        that ``features @ U^T`` are the logits ``u_j . memory(e_i)``. ``params`` (any subset
        of the weights, e.g. tensors being trained) replace the stored ones; they are masked
        here, so padding stays inert."""
        w = self.masked(params)
        M = self.n_models
        if inputs.dim() == 2:
            inputs = inputs.expand(M, *inputs.shape)
        ids = inputs.to(self.device)[:, :, list(positions)]                       # (M, B, P)
        _, B, P = ids.shape
        x = w["E"][torch.arange(M, device=self.device)[:, None, None], ids]       # (M, B, P, D)
        features = self.memory(w, x.reshape(M, B * P, -1)).view(M, B, P, -1)     # (M, B, P, D)
        return features, w["U"].transpose(1, 2)                                  # (M, D, O)

    def logits(self, inputs: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``(M, B, O)``: the logits of input ids ``inputs (M, B)`` (``(B,)``: the same ids for
        every model), -inf beyond each model's own outputs. ``weights`` as in :meth:`readout`."""
        if inputs.dim() == 1:
            inputs = inputs.expand(self.n_models, *inputs.shape)
        features, W_out = self.readout(weights, inputs[..., None], POSITIONS)
        z = torch.bmm(features[:, :, 0], W_out)                                  # (M, B, O)
        return z.masked_fill(~self.output_mask()[:, None, :], float("-inf"))


class LinearMemoryStack(MemoryStack):
    """M linear associative memories ``z_j(i) = u_j^T W e_i`` (Nichani et al. 2024, Figure 1,
    left): ``E (M, V, D)``, ``U (M, O, D)`` frozen, ``W (M, D, D)`` trained (both of its
    axes pad to the largest d)."""

    AXES = {"E": "VD", "U": "OD", "W": "DD"}
    CHUNK_AXES = "OD"

    @classmethod
    def chunk_cost(cls, sizes: np.ndarray) -> np.ndarray:
        """Seconds per input at padded sizes ``(O, D)``: ``D·D`` multiply-adds for W e_i,
        ``D·O`` for the logits, three times for the backward pass, at about 10^10 a second."""
        return 3e-10 * sizes[:, 1] * (sizes[:, 1] + sizes[:, 0])

    @classmethod
    def init_memory(cls, config: LinearMemoryConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """W ~ N(0, 1/d) entrywise (ours: the paper leaves it open)."""
        d = config.d
        return {"W": torch.randn((d, d), generator=generator, dtype=torch.float64) / d ** 0.5}

    def memory(self, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``W e_i`` for each row e_i of ``x (M, B·P, D)``: ``x @ W^T``."""
        return torch.bmm(x, w["W"].transpose(1, 2))                              # (M, B·P, D)


class MLPMemoryStack(MemoryStack):
    """M MLP associative memories ``z_j(i) = u_j^T W2 relu(W1 e_i + b1)`` (Nichani et al.
    2024, Figure 1, right, and Figure 6): ``E (M, V, D)``, ``U (M, O, D)`` frozen,
    ``W1 (M, F, D)``, ``b1 (M, F)``, ``W2 (M, D, F)`` trained. A padded hidden unit has
    W1 row, b1 and W2 column all 0, so it adds nothing."""

    AXES = {"E": "VD", "U": "OD", "W1": "FD", "b1": "F", "W2": "DF"}
    CHUNK_AXES = "ODF"

    @classmethod
    def chunk_cost(cls, sizes: np.ndarray) -> np.ndarray:
        """Seconds per input at padded sizes ``(O, D, F)``: ``2·F·D`` multiply-adds for the
        MLP, ``D·O`` for the logits, three times for the backward pass, at about 10^10 a second."""
        return 3e-10 * sizes[:, 1] * (sizes[:, 0] + 2 * sizes[:, 2])

    @classmethod
    def init_memory(cls, config: MLPMemoryConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """W1 ~ N(0, 1/d), b1 = 0, W2 ~ N(0, 1/m) entrywise (ours: the paper leaves it open)."""
        d, m = config.d, config.width
        W1 = torch.randn((m, d), generator=generator, dtype=torch.float64) / d ** 0.5
        W2 = torch.randn((d, m), generator=generator, dtype=torch.float64) / m ** 0.5
        return {"W1": W1, "b1": torch.zeros(m, dtype=torch.float64), "W2": W2}

    def memory(self, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``W2 relu(W1 e_i + b1)`` for each row e_i of ``x (M, B·P, D)``."""
        h = torch.relu(torch.baddbmm(w["b1"][:, None, :], x, w["W1"].transpose(1, 2)))  # (M, B·P, F)
        return torch.bmm(h, w["W2"].transpose(1, 2))                             # (M, B·P, D)


def memory_targets(n_inputs: int, n_outputs: int) -> np.ndarray:
    """``(n_inputs,)`` int64: the output stored for each input, ``f(i) = floor(i K / N)``. With
    K = N this is f(i) = i (Figure 1); with K < N, K classes of consecutive inputs whose
    sizes differ by at most one (Figure 6, where the authors write ``int(i * M / N)``)."""
    if isinstance(n_inputs, bool) or not isinstance(n_inputs, (int, np.integer)) or n_inputs < 1:
        raise ConfigError(f"n_inputs must be a positive integer, got {n_inputs!r}")
    if isinstance(n_outputs, bool) or not isinstance(n_outputs, (int, np.integer)) or n_outputs < 1:
        raise ConfigError(f"n_outputs must be a positive integer, got {n_outputs!r}")
    return np.arange(n_inputs, dtype=np.int64) * int(n_outputs) // int(n_inputs)


def memory_dataset(stack: MemoryStack) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every association of every model of ``stack``, as one full batch on its device:
    ``inputs (M, B, 1)`` the input ids 0..N_m - 1 (B = the largest n_inputs, one sequence
    per input), ``targets (M, B, 1)`` their :func:`memory_targets`, ``valid (M, B)``; a
    model's rows beyond its N_m are
    padding (input and target 0, not valid). Wrap them as
    ``FixedData(inputs, targets, valid, POSITIONS)`` to train with the engine."""
    n = [c.n_inputs for c in stack.configs]
    inputs = np.zeros((len(n), max(n), 1), dtype=np.int64)
    targets = np.zeros_like(inputs)
    valid = np.zeros((len(n), max(n)), dtype=bool)
    for m, c in enumerate(stack.configs):
        inputs[m, :c.n_inputs, 0] = np.arange(c.n_inputs)
        targets[m, :c.n_inputs, 0] = memory_targets(c.n_inputs, c.n_outputs)
        valid[m, :c.n_inputs] = True
    return tuple(torch.from_numpy(a).to(stack.device) for a in (inputs, targets, valid))
