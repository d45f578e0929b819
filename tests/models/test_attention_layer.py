"""The batched attention stack against independent references (Wong 2025, eq. 2-3)."""

import itertools

import numpy as np
import pytest
import torch

from factlab.errors import ConfigError
from factlab.models.attention_layer import WEIGHT_NAMES, AttentionLayerConfig, AttentionStack

# all-distinct sizes, so that a transposed or mixed-up axis cannot pass unnoticed
CONFIGS = [
    AttentionLayerConfig(n_tokens=11, d_model=7, n_heads=3, d_head_qk=5, d_head_vo=2),
    AttentionLayerConfig(n_tokens=5, d_model=3, n_heads=1, d_head_qk=1, d_head_vo=3),
    AttentionLayerConfig(n_tokens=7, d_model=5, n_heads=2, d_head_qk=3, d_head_vo=1),
]


def some_sequences(n_tokens: int, n_long: int = 60, seed: int = 0) -> list[torch.Tensor]:
    """Every sequence of length 1 and 2 over n_tokens tokens, and random ones of length 3 and 5."""
    g = torch.Generator().manual_seed(seed)
    return [torch.tensor(list(itertools.product(range(n_tokens), repeat=n))) for n in (1, 2)] + [
        torch.randint(0, n_tokens, (n_long, n), generator=g) for n in (3, 5)]


def eq2_reference(w: dict[str, torch.Tensor], tokens: np.ndarray) -> np.ndarray:
    """Z(x) = X W_EU + Σ_h Δ(X W_QK^h X^T) X W_VO^h from one-hot X, in float64 numpy (eq. 2, 3)."""
    W = {n: t.detach().double().numpy() for n, t in w.items()}
    V = W["W_E"].shape[0]
    W_EU = W["W_E"] @ W["W_U"]
    X = np.eye(V)[tokens]  # (C, V)
    n = len(tokens)
    Z = X @ W_EU
    for h in range(W["W_Q"].shape[0]):
        W_QK = W["W_E"] @ W["W_Q"][h] @ W["W_K"][h] @ W["W_E"].T
        W_VO = W["W_E"] @ W["W_V"][h] @ W["W_O"][h] @ W["W_U"]
        S = X @ W_QK @ X.T
        pattern = np.zeros((n, n))
        for i in range(n):  # Δ: row i is a softmax over positions j <= i
            e = np.exp(S[i, : i + 1] - S[i, : i + 1].max())
            pattern[i, : i + 1] = e / e.sum()
        Z = Z + pattern @ X @ W_VO
    return Z


@pytest.fixture(scope="module")
def stack():
    return AttentionStack.init(CONFIGS, seed=7, dtype=torch.float64)


def test_padded_model_equals_model_alone(stack):
    for i, c in enumerate(CONFIGS):
        alone = AttentionStack.from_weights([c], [stack.model_weights(i)])
        assert alone.params["W_E"].shape == (1, c.n_tokens, c.d_model)
        for tokens in some_sequences(c.n_tokens):
            padded = stack.logits(tokens)[i, ..., : c.n_tokens]
            torch.testing.assert_close(padded, alone.logits(tokens)[0], rtol=0, atol=1e-12)


def test_logits_match_eq2_brute_force(stack):
    rng = np.random.default_rng(0)
    for i, c in enumerate(CONFIGS):
        w = stack.model_weights(i)
        for n in (1, 2, 3, 4):
            tokens = rng.integers(0, c.n_tokens, size=(6, n))
            ours = stack.logits(torch.from_numpy(tokens))[i, ..., : c.n_tokens].numpy()
            ref = np.stack([eq2_reference(w, t) for t in tokens])
            np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)


def test_logits_beyond_vocabulary_are_minus_inf(stack):
    tokens = torch.tensor([[0, 1, 2], [2, 1, 0]])
    z = stack.logits(tokens)  # (M, B, C, V)
    for i, c in enumerate(CONFIGS):
        assert torch.isfinite(z[i, ..., : c.n_tokens]).all()
        assert (z[i, ..., c.n_tokens:] == float("-inf")).all()
        p = z[i].softmax(-1)
        assert (p[..., c.n_tokens:] == 0).all()


def test_gradient_of_padding_is_exactly_zero(stack):
    weights = {n: stack.params[n].clone().requires_grad_(True) for n in WEIGHT_NAMES}
    tokens = torch.tensor([[0, 1, 2], [3, 4, 0], [2, 2, 1]])
    z = stack.logits(tokens, weights=weights)
    loss = torch.where(torch.isfinite(z), z, torch.zeros_like(z)).pow(2).sum()
    loss.backward()
    for n in WEIGHT_NAMES:
        pad = stack.masks[n] == 0
        assert pad.any(), n  # the stack does pad every weight
        assert (weights[n].grad[pad] == 0).all(), n
        assert (weights[n].grad[~pad] != 0).any(), n


def test_select_keeps_models_and_repads(stack):
    sub = stack.select([2, 1])
    assert sub.configs == (CONFIGS[2], CONFIGS[1])
    assert sub.params["W_E"].shape == (2, 7, 5)  # re-padded to the largest of the two
    for j, i in enumerate([2, 1]):
        for name, w in stack.model_weights(i).items():
            assert torch.equal(sub.model_weights(j)[name], w)
        tokens = torch.tensor([[0, 1, 4], [4, 3, 2]])
        c = CONFIGS[i]
        torch.testing.assert_close(sub.logits(tokens)[j, ..., : c.n_tokens],
                                   stack.logits(tokens)[i, ..., : c.n_tokens], rtol=0, atol=1e-12)


def test_init_is_deterministic_and_per_model():
    a = AttentionStack.init(CONFIGS, seed=3)
    b = AttentionStack.init(CONFIGS, seed=3)
    c = AttentionStack.init(CONFIGS, seed=4)
    for n in WEIGHT_NAMES:
        assert torch.equal(a.params[n], b.params[n])
        assert not torch.equal(a.params[n], c.params[n])


def test_circuits_are_products_of_weights(stack):
    circ = stack.circuits()
    for i, c in enumerate(CONFIGS):
        w = {n: t.numpy() for n, t in stack.model_weights(i).items()}
        T = c.n_tokens
        np.testing.assert_allclose(circ["W_EU"][i, :T, :T].numpy(), w["W_E"] @ w["W_U"], atol=1e-12)
        for h in range(c.n_heads):
            np.testing.assert_allclose(circ["W_QK"][i, h, :T, :T].numpy(),
                                       w["W_E"] @ w["W_Q"][h] @ w["W_K"][h] @ w["W_E"].T, atol=1e-12)
            np.testing.assert_allclose(circ["W_VO"][i, h, :T, :T].numpy(),
                                       w["W_E"] @ w["W_V"][h] @ w["W_O"][h] @ w["W_U"], atol=1e-12)
        assert (circ["W_QK"][i, c.n_heads:] == 0).all()  # padded heads are zero
        assert np.linalg.matrix_rank(circ["W_EU"][i].numpy()) <= c.d_model


def test_config_and_shape_errors():
    with pytest.raises(ConfigError, match="d_head_qk=4"):
        AttentionLayerConfig(n_tokens=5, d_model=3, d_head_qk=4)
    with pytest.raises(ConfigError, match="n_heads"):
        AttentionLayerConfig(n_tokens=5, d_model=3, n_heads=0)
    with pytest.raises(ConfigError, match="d_model must be a positive integer, got True"):
        AttentionLayerConfig(n_tokens=5, d_model=True)              # a bool is not a size, as in every family
    c = CONFIGS[1]
    w = {n: torch.zeros(s) for n, s in c.shapes().items()}
    w["W_U"] = torch.zeros(5, 3)  # transposed
    with pytest.raises(ConfigError, match="W_U"):
        AttentionStack.from_weights([c], [w])


def test_non_embedding_params():
    c = CONFIGS[0]
    assert c.non_embedding_params == 2 * 3 * 7 * (2 + 5)
