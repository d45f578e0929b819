"""Export to TransformerLens (extra ``factlab[lens]``): same logits, related circuits.

Skipped when transformer_lens is not installed. Importing it takes ~10 s (paid at collection).
"""

import itertools

import pytest
import torch

pytest.importorskip("transformer_lens", reason="the 'lens' extra (transformer-lens) is not installed")
pytest.importorskip("transformer_lens.model_bridge.sources.native")  # TL >= 4: boot_native

from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack  # noqa: E402
from factlab.models.lens import lens_scale, to_transformer_lens  # noqa: E402

# d_head_qk > d_head_vo in one model, < in the other: both paddings are exercised
CONFIGS = [AttentionLayerConfig(n_tokens=5, d_model=7, n_heads=3, d_head_qk=4, d_head_vo=2),
           AttentionLayerConfig(n_tokens=3, d_model=2, n_heads=2, d_head_qk=1, d_head_vo=2)]


def sequences(n_tokens):
    """All sequences of length 1, 2 and 3 over the vocabulary, one tensor per length."""
    return [torch.tensor(list(itertools.product(range(n_tokens), repeat=n))) for n in (1, 2, 3)]


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_exported_logits_equal_ours(dtype, atol):
    stack = AttentionStack.init(CONFIGS, seed=11, dtype=dtype)
    for model, c in enumerate(CONFIGS):
        bridge = to_transformer_lens(stack, model)
        assert bridge.cfg.d_head == max(c.d_head_qk, c.d_head_vo)
        for tokens in sequences(c.n_tokens):
            ours = stack.logits(tokens)[model, ..., : c.n_tokens]
            with torch.no_grad():
                theirs = bridge(tokens)
            assert theirs.dtype == dtype
            torch.testing.assert_close(theirs, ours, rtol=0, atol=atol)


def test_circuits_relation():
    """W_EU = W_E W_U; W_QK^h = W_E QK^h W_E^T / s; W_VO^h = W_E OV^h W_U (TL's QK = W_Q W_K^T)."""
    stack = AttentionStack.init(CONFIGS, seed=12, dtype=torch.float64)
    circ = stack.circuits()
    for model, c in enumerate(CONFIGS):
        bridge = to_transformer_lens(stack, model)
        T, H = c.n_tokens, c.n_heads
        s = lens_scale(bridge)
        assert s == pytest.approx(max(c.d_head_qk, c.d_head_vo) ** 0.5)
        W_E, W_U = bridge.W_E.detach(), bridge.W_U.detach()
        QK, OV = bridge.QK.AB[0].detach(), bridge.OV.AB[0].detach()  # (H, d_model, d_model)
        torch.testing.assert_close(W_E @ W_U, circ["W_EU"][model, :T, :T], rtol=0, atol=1e-12)
        torch.testing.assert_close(W_E @ QK @ W_E.T / s, circ["W_QK"][model, :H, :T, :T], rtol=0, atol=1e-12)
        torch.testing.assert_close(W_E @ OV @ W_U, circ["W_VO"][model, :H, :T, :T], rtol=0, atol=1e-12)
        # biases and positional embedding are zero
        for name in ("b_Q", "b_K", "b_V", "b_O", "b_U", "W_pos"):
            assert (getattr(bridge, name) == 0).all(), name
