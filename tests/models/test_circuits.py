"""Layers built from circuits (W_E = I, d_model = |T|) reproduce them exactly."""

import numpy as np
import pytest
import torch

from factlab.errors import ConfigError
from factlab.models.circuits import circuit_ranks, from_circuits

V = 7


def low_rank(rng, rank, shape=(V, V)):
    return rng.standard_normal((shape[0], rank)) @ rng.standard_normal((rank, shape[1]))


def built_circuits(stack):
    c = stack.circuits()
    return c["W_EU"][0].numpy(), c["W_QK"][0].numpy(), c["W_VO"][0].numpy()


def test_random_circuits_are_reproduced_exactly():
    rng = np.random.default_rng(0)
    W_EU = rng.standard_normal((V, V))
    W_QK = [low_rank(rng, 2), np.zeros((V, V)), low_rank(rng, 5)]
    W_VO = [low_rank(rng, 1), low_rank(rng, 3), low_rank(rng, 2)]
    stack = from_circuits(W_EU, W_QK, W_VO)
    (c,) = stack.configs
    assert (c.n_tokens, c.d_model, c.n_heads, c.d_head_qk, c.d_head_vo) == (V, V, 3, 5, 3)
    assert stack.dtype == torch.float64
    eu, qk, vo = built_circuits(stack)
    np.testing.assert_allclose(eu, W_EU, rtol=0, atol=1e-10)
    np.testing.assert_allclose(qk, np.stack(W_QK), rtol=0, atol=1e-10)
    np.testing.assert_allclose(vo, np.stack(W_VO), rtol=0, atol=1e-10)
    assert torch.equal(stack.model_weights(0)["W_E"], torch.eye(V, dtype=torch.float64))
    assert circuit_ranks(stack) == {"W_EU": V, "W_QK": [2, 0, 5], "W_VO": [1, 3, 2]}


def test_low_rank_W_EU_with_W_VO_in_its_row_space():
    rng = np.random.default_rng(1)
    W_EU = low_rank(rng, 3)
    W_VO = rng.standard_normal((V, V)) @ W_EU  # every row in the row space of W_EU
    stack = from_circuits(W_EU, np.zeros((V, V)), W_VO)
    (c,) = stack.configs
    assert (c.n_heads, c.d_head_qk, c.d_head_vo) == (1, 1, 3)  # zero W_QK still gets one dimension
    eu, qk, vo = built_circuits(stack)
    np.testing.assert_allclose(eu, W_EU, rtol=0, atol=1e-10)
    np.testing.assert_allclose(qk[0], 0, atol=0)
    np.testing.assert_allclose(vo[0], W_VO, rtol=0, atol=1e-10)


def test_W_VO_outside_the_row_space_of_W_EU_is_refused():
    W_EU = np.diag([1.0, 1, 1, 0, 0, 0, 0])
    W_VO = np.zeros((V, V))
    W_VO[2, 5] = 1.0  # writes a column W_U cannot produce
    with pytest.raises(ConfigError, match=r"rows \[2\] of W_VO\^1.*rank 3 of 7.*eps"):
        from_circuits(W_EU, [np.zeros((V, V))], [W_VO])
    # W_EU = eps·I makes it expressible
    stack = from_circuits(1e-3 * np.eye(V), [np.zeros((V, V))], [W_VO])
    np.testing.assert_allclose(built_circuits(stack)[2][0], W_VO, rtol=0, atol=1e-10)


def test_logits_follow_the_circuits():
    """Eq. (2) with W_E = I: a one-token sequence gives W_EU[x] + Σ_h W_VO^h[x]."""
    rng = np.random.default_rng(2)
    W_EU, W_QK, W_VO = rng.standard_normal((V, V)), [low_rank(rng, 1)], [low_rank(rng, 2)]
    stack = from_circuits(W_EU, W_QK, W_VO)
    z = stack.logits(torch.arange(V)[:, None])[0, :, 0].numpy()  # (V, V)
    np.testing.assert_allclose(z, W_EU + W_VO[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("bad, match", [
    (dict(W_EU=np.zeros((V, 5))), "square"),
    (dict(W_QK=np.zeros((2, V, V))), "2 heads"),
    (dict(W_VO=np.zeros((1, 5, 5))), r"\(n_heads, 7, 7\)"),
    (dict(W_VO=[np.full((V, V), np.nan)]), "non-finite"),
])
def test_shape_errors(bad, match):
    args = dict(W_EU=np.eye(V), W_QK=np.zeros((1, V, V)), W_VO=np.zeros((1, V, V)))
    args.update(bad)
    with pytest.raises(ConfigError, match=match):
        from_circuits(**args)
