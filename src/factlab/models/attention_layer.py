"""A stack of single-layer, attention-only transformers (Wong 2025, sec. 3).

Each layer has no layer norm, biases or positional encodings and separate query-key and
value-output head sizes. For a sequence with one-hot rows X its logits are (eq. 2)

    Z(x) = X W_EU + Σ_h Δ(X W_QK^h X^T) X W_VO^h,

with Δ the causally masked row softmax (eq. 3), computed here from the weights:
``W_E (V, D)``, ``W_U (D, V)`` and per head ``W_Q (D, K)``, ``W_K (K, D)``, ``W_V (D, Z)``,
``W_O (Z, D)``, with V = |T| the vocabulary (d_vocab), D = d_model, K = d_head_qk and
Z = d_head_vo (factlab's names of dimensions, docs/engine.md).
Attention scores are *not* scaled by 1/sqrt(d_head): eq. (2) has no such factor.

One implementation, batched: every weight carries a leading model axis M. The M layers
may differ in every size; each weight is zero-padded to the largest size and multiplied
by a fixed 0/1 mask in the forward pass, so a padded entry is zero, receives zero
gradient and stays zero under Adam: padding is inert (``tests/models`` compares each
padded model with the same model alone). Logits of tokens beyond a model's own
vocabulary are ``-inf``, so softmax gives them probability 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from factlab.errors import ConfigError
from factlab.models import attention_kernel
from factlab.models.stack import Stack, check_sizes

WEIGHT_NAMES = ("W_E", "W_U", "W_Q", "W_K", "W_V", "W_O")


@dataclass(frozen=True)
class AttentionLayerConfig:
    """Sizes of one attention layer (Wong 2025, sec. 3).

    The paper requires ``d_head_qk, d_head_vo <= d_model``; it also writes
    ``d_model <= |T|``, which we do not enforce (a tiny database may have fewer tokens
    than the model has dimensions, and the paper pairs layers with databases at random).
    """

    n_tokens: int  # |T|, the vocabulary size: d_vocab, axis V
    d_model: int   # axis D
    n_heads: int = 1    # axis H
    d_head_qk: int = 1  # query-key head size: d_head, axis K
    d_head_vo: int = 1  # value-output head size: d_head_vo, axis Z

    def __post_init__(self):
        check_sizes(self, ("n_tokens", "d_model", "n_heads", "d_head_qk", "d_head_vo"))
        if self.d_head_qk > self.d_model or self.d_head_vo > self.d_model:
            raise ConfigError(
                f"head sizes must not exceed d_model: d_head_qk={self.d_head_qk}, "
                f"d_head_vo={self.d_head_vo}, d_model={self.d_model}"
            )

    @property
    def non_embedding_params(self) -> int:
        """``2 · n_heads · d_model · (d_head_vo + d_head_qk)`` (Wong 2025, sec. 4)."""
        return 2 * self.n_heads * self.d_model * (self.d_head_vo + self.d_head_qk)

    def axis_sizes(self) -> dict[str, int]:
        """The length of each named axis of the weights (:class:`AttentionStack` ``AXES``)."""
        return {"V": self.n_tokens, "D": self.d_model, "H": self.n_heads, "K": self.d_head_qk, "Z": self.d_head_vo}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The unpadded shape of each weight."""
        return AttentionStack.shapes(self)


def init_weights(config: AttentionLayerConfig, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights of one layer, at its own sizes.

    The paper leaves the initialisation open. Ours: ``W_E`` has N(0, 1) entries, so an
    embedded token has norm about sqrt(d_model); every other weight is N(0, 1/fan_in) with
    fan_in its input size (d_model for W_Q, W_K, W_V, W_U; d_head_vo for W_O), so that
    logits at initialisation are O(1) whatever the sizes.
    """
    c = config
    fan_in = {"W_E": 1, "W_U": c.d_model, "W_Q": c.d_model, "W_K": c.d_model,
              "W_V": c.d_model, "W_O": c.d_head_vo}
    return {
        name: torch.randn(shape, generator=generator, dtype=torch.float64).div_(fan_in[name] ** 0.5).to(dtype)
        for name, shape in c.shapes().items()
    }


class AttentionStack(Stack):
    """M attention layers of possibly different sizes, padded and masked into one set of tensors
    (:class:`~factlab.models.stack.Stack`).

    ``params`` maps each name of :data:`WEIGHT_NAMES` to a tensor with a leading model
    axis: ``W_E (M, V, D)``, ``W_U (M, D, V)``, ``W_Q (M, H, D, K)``, ``W_K (M, H, K, D)``,
    ``W_V (M, H, D, Z)``, ``W_O (M, H, Z, D)`` where V, D, H, K, Z are the largest
    vocabulary, d_model, n_heads, d_head_qk and d_head_vo of the stack. ``masks`` has the
    same shapes with 1 where a model has the entry and 0 in its padding.
    """

    AXES = {"W_E": "VD", "W_U": "DV", "W_Q": "HDK", "W_K": "HKD", "W_V": "HDZ", "W_O": "HZD"}
    OUTPUT_AXIS = "V"       # logits over the model's whole vocabulary (O = V)
    CHUNK_AXES = "V"        # the unembedding over the vocabulary is most of the work

    @classmethod
    def init_weights(cls, config: "AttentionLayerConfig", generator: torch.Generator,
                     dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        return init_weights(config, generator, dtype)

    @property
    def token_mask(self) -> torch.Tensor:
        """``(M, V)`` bool: the tokens of each layer's vocabulary (its inputs and outputs)."""
        return self.output_mask()

    # ------------------------------------------------------------------ forward
    def logits(self, tokens: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Z(x) of eq. (2) at every position: ``(M, B, C, V)`` for tokens ``(M, B, C)``.

        ``tokens`` of shape ``(B, C)`` feeds the same sequences to every model. ``weights``
        (any of :attr:`params`, same shapes) replace the stored ones, e.g. by tensors being
        trained; they are masked here, so padding stays inert under any update.
        """
        w = self.masked(weights)
        if tokens.dim() == 2:
            tokens = tokens.expand(self.n_models, *tokens.shape)
        return attention_logits(w, self.token_mask, tokens.to(self.device))

    def readout(self, params: dict[str, torch.Tensor] | None, inputs: torch.Tensor,
                positions: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (M, B, P, D), W_U (M, D, V))``: the residual stream at the P scored
        ``positions`` of ``inputs (M, B, C)`` and the unembedding. The logits of
        :meth:`logits` at those positions are ``features @ W_U`` with tokens beyond each vocabulary
        (:attr:`token_mask`) set to -inf. ``params`` (any subset of the weights, e.g. tensors
        being trained) replace the stored ones; they are masked here, so padding stays inert."""
        w = self.masked(params)
        if inputs.dim() == 2:
            inputs = inputs.expand(self.n_models, *inputs.shape)
        resid = attention_residual(w, inputs.to(self.device))                     # (M, B, C, D)
        if tuple(positions) != tuple(range(inputs.shape[-1])):
            resid = resid[:, :, list(positions)]
        return resid, w["W_U"]

    def compiled_step(self, device: str | torch.device) -> "attention_kernel.CompiledAttentionStep | None":
        """The compiled CPU step (:mod:`factlab.models.attention_kernel`) for this stack, or
        None where it cannot run: another device, numba missing, or some weight not trained
        (the kernel updates every weight of a model)."""
        if torch.device(device).type != "cpu" or not attention_kernel.available():
            return None
        if self.frozen or self.train_masks:
            return None
        return attention_kernel.CompiledAttentionStep(self)

    def circuits(self) -> dict[str, torch.Tensor]:
        """The circuits of each layer (Wong 2025, sec. 3), padded to the largest vocabulary V:

        ``W_EU = W_E W_U`` ``(M, V, V)``; ``W_QK^h = W_E W_Q^h W_K^h W_E^T`` and
        ``W_VO^h = W_E W_V^h W_O^h W_U``, each ``(M, H, V, V)`` (zero for padded heads).
        """
        W = self.params
        E = W["W_E"][:, None]  # (M, 1, V, D)
        return {
            "W_EU": W["W_E"] @ W["W_U"],                                            # (M, V, V)
            "W_QK": E @ W["W_Q"] @ W["W_K"] @ E.transpose(-1, -2),                   # (M, H, V, V)
            "W_VO": E @ W["W_V"] @ W["W_O"] @ W["W_U"][:, None],                     # (M, H, V, V)
        }


def attention_logits(W: dict[str, torch.Tensor], token_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Eq. (2) from masked weights: logits ``(M, B, C, V)`` for tokens ``(M, B, C)``."""
    M, B, C = tokens.shape
    resid = attention_residual(W, tokens).reshape(M, B * C, -1)                 # (M, B·C, D)
    logits = torch.bmm(resid, W["W_U"]).view(M, B, C, -1)                       # (M, B, C, V)
    return logits.masked_fill(~token_mask[:, None, None, :], float("-inf"))


def attention_residual(W: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The residual stream before unembedding, ``X W_E + Σ_h Δ(·) X W_E W_V^h W_O^h``:
    ``(M, B, C, D)`` for tokens ``(M, B, C)``; logits are this times ``W_U``.

    Every product is a batched matmul over the model axis with the heads folded into the
    inner dimension, so no weight is ever broadcast (copied) along the sequence axis.
    """
    M, B, C = tokens.shape
    H, D, K = W["W_Q"].shape[1:]
    Z = W["W_V"].shape[-1]
    x = W["W_E"][torch.arange(M, device=tokens.device)[:, None, None], tokens]  # (M, B, C, D)
    xf = x.reshape(M, B * C, D)                                                 # (M, B·C, D)
    q = torch.bmm(xf, W["W_Q"].permute(0, 2, 1, 3).reshape(M, D, H * K)).view(M, B, C, H, K)
    k = torch.bmm(xf, W["W_K"].permute(0, 3, 1, 2).reshape(M, D, H * K)).view(M, B, C, H, K)
    v = torch.bmm(xf, W["W_V"].permute(0, 2, 1, 3).reshape(M, D, H * Z)).view(M, B, C, H, Z)
    # Sequences are short (C <= 3 for facts): broadcast products beat millions of tiny
    # matmuls. Row 0 of the causal softmax Δ is always [1], so position 0 reads its own
    # value and only positions 1..C-1 need scores.
    z = v                                                                       # (M, B, C, H, Z)
    if C > 1:
        scores = (q[:, :, 1:, None] * k[:, :, None]).sum(-1)                    # (M, B, C-1, C, H)
        causal = torch.ones(C, C, dtype=torch.bool, device=tokens.device).tril()[1:, :, None]
        pattern = scores.masked_fill(~causal, float("-inf")).softmax(dim=3)     # Δ, eq. (3)
        z = torch.cat([v[:, :, :1], (pattern[..., None] * v[:, :, None]).sum(3)], dim=2)
    z = z.reshape(M, B * C, H * Z)                                              # (M, B·C, H·Z)
    heads = torch.bmm(z, W["W_O"].reshape(M, H * Z, D))                         # (M, B·C, D)
    return (xf + heads).view(M, B, C, D)


def paper_layer_grid(max_d_model: int = 6, max_heads: int = 4) -> list[dict[str, int]]:
    """The 364 layer sizes of Wong (2025, sec. 4): ``1 <= d_head_vo, d_head_qk <= d_model <= 6``
    and ``1 <= n_heads <= 4``, as dicts of AttentionLayerConfig fields (without n_tokens,
    which comes from the database a layer is paired with)."""
    return [
        {"d_model": d, "n_heads": h, "d_head_qk": a, "d_head_vo": b}
        for d in range(1, max_d_model + 1)
        for h in range(1, max_heads + 1)
        for a in range(1, d + 1)
        for b in range(1, d + 1)
    ]
