"""Export an attention layer to TransformerLens (optional extra ``factlab[lens]``).

TransformerLens 4 has no HookedTransformer: a tiny model is built natively from a
``TransformerBridgeConfig`` (``TransformerBridge.boot_native``, no download). Its layer
differs from ours (Wong 2025, eq. 2) in three ways, each neutralised on export:

- one head size ``d_head`` for QK and OV: ``d_head = max(d_head_qk, d_head_vo)`` and the
  smaller head is zero-padded (zero columns of W_Q, W_V; zero rows of W_K^T, W_O), which
  adds nothing to any score or output;
- biases (b_Q, b_K, b_V, b_O, b_U) and a learned positional embedding: all set to zero;
  no layer norm (``normalization_type=None``), no MLP (``attn_only=True``);
- attention scores always divided by a scale s (``sqrt(d_head)`` by default; an explicit
  ``attn_scale = 1`` is refused for d_head > 1): compensated by exporting ``s · W_Q``.

Circuits. With TL's right-multiplying convention (``W_K`` is ``d_model x d_head``, ours
is its transpose) and its per-head ``QK = W_Q W_K^T`` and ``OV = W_V W_O``
(``bridge.QK``, ``bridge.OV``, ``d_model x d_model``), our token circuits are

    W_EU   = W_E W_U                      (TL's W_E, W_U: identical to ours)
    W_QK^h = W_E · QK^h · W_E^T / s       (TL's QK carries the compensating factor s)
    W_VO^h = W_E · OV^h · W_U             (identical)

so TL's full QK circuit ``W_E QK W_E^T`` is s times ours, and its full OV circuit equals
ours. The extra's requirement is ``transformer-lens>=4.0``.
"""

from __future__ import annotations

from typing import Any

import torch

from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionStack

LENS_REQUIREMENT = "transformer-lens>=4.0"


def to_transformer_lens(stack: AttentionStack, model: int = 0, *, n_ctx: int = 3,
                        dtype: torch.dtype | None = None) -> Any:
    """A ``TransformerBridge`` computing exactly the logits of model ``model`` of ``stack``.

    ``n_ctx`` is the longest sequence it accepts (3 covers the paper's (k, q, v)).
    ``dtype`` defaults to the stack's. Raises :class:`ImportError` naming the extra when
    TransformerLens is not installed.
    """
    try:
        from transformer_lens import TransformerBridgeConfig
        from transformer_lens.model_bridge.sources.native import boot
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"exporting to TransformerLens needs the extra: pip install "
                          f"'factlab[lens]' ({LENS_REQUIREMENT})") from e
    if not 0 <= model < stack.n_models:
        raise ConfigError(f"model index {model} is out of range for a stack of {stack.n_models}")
    if n_ctx < 1:
        raise ConfigError(f"n_ctx must be >= 1, got {n_ctx}")
    c = stack.configs[model]
    dtype = stack.dtype if dtype is None else dtype
    d_head = max(c.d_head_qk, c.d_head_vo)
    cfg = TransformerBridgeConfig(
        d_model=c.d_model, d_head=d_head, n_layers=1, n_ctx=n_ctx, n_heads=c.n_heads,
        d_vocab=c.n_tokens, attn_only=True, normalization_type=None,
        positional_embedding_type="standard", seed=0,  # seeded init: leaves the global RNG alone
    )
    bridge = boot(cfg, dtype=dtype)
    scale = float(bridge.original_model.layers[0].attn.scale)  # the forced divisor s
    state = {name: torch.zeros_like(p) for name, p in bridge.state_dict().items()}
    state.update(_tl_weights(stack, model, d_head, scale, dtype))
    bridge.load_state_dict(state, strict=True)
    bridge.eval()
    return bridge


def lens_scale(bridge: Any) -> float:
    """The divisor s TransformerLens applies to the attention scores of an exported layer."""
    return float(bridge.original_model.layers[0].attn.scale)


def _tl_weights(stack: AttentionStack, model: int, d_head: int, scale: float,
                dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Our weights in the bridge's state-dict layout (``nn.Linear`` weights are ``out x in``)."""
    c = stack.configs[model]
    w = {n: t.detach().to(torch.float64) for n, t in stack.model_weights(model).items()}
    H, D, K, Z = c.n_heads, c.d_model, c.d_head_qk, c.d_head_vo
    W_Q = torch.zeros(H, D, d_head, dtype=torch.float64)  # (H, D, d_head), zero-padded
    W_K = torch.zeros(H, D, d_head, dtype=torch.float64)  # TL's W_K = ours transposed
    W_V = torch.zeros(H, D, d_head, dtype=torch.float64)
    W_O = torch.zeros(H, d_head, D, dtype=torch.float64)
    W_Q[:, :, :K] = w["W_Q"] * scale                      # compensates scores / s
    W_K[:, :, :K] = w["W_K"].transpose(1, 2)
    W_V[:, :, :Z] = w["W_V"]
    W_O[:, :Z, :] = w["W_O"]
    # q = x @ q.weight.T with q.weight (H·d_head, D): head h owns rows h·d_head:(h+1)·d_head
    out = {
        "embed.weight": w["W_E"],                                        # (V, D)
        "unembed.weight": w["W_U"].T,                                    # (V, D)
        "blocks.0.attn.q.weight": W_Q.permute(0, 2, 1).reshape(H * d_head, D),
        "blocks.0.attn.k.weight": W_K.permute(0, 2, 1).reshape(H * d_head, D),
        "blocks.0.attn.v.weight": W_V.permute(0, 2, 1).reshape(H * d_head, D),
        "blocks.0.attn.o.weight": W_O.reshape(H * d_head, D).T,          # (D, H·d_head)
    }
    return {n: t.to(dtype).contiguous() for n, t in out.items()}
