"""The recall transformer and Figure 5's linear attention against direct per-position references."""

import numpy as np
import pytest
import torch

from factlab.errors import ConfigError
from factlab.models.recall_transformer import (LinearAttentionConfig, LinearAttentionStack, RecallTransformerConfig,
                                               RecallTransformerStack, token_counts)
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import SGD, AdamW

# (n_tokens, n_answers, d, n_heads, d_head, width): all different, so a swapped axis shows
SIZES = [(9, 6, 5, 2, 3, 7), (13, 10, 7, 3, 2, 4), (6, 4, 3, 1, 5, 2), (11, 8, 4, 4, 1, 3)]


def stack(dtype=torch.float64, seed=0):
    configs = [RecallTransformerConfig(*s) for s in SIZES]
    return RecallTransformerStack.init(configs, seed=seed, dtype=dtype)


def sequences(st, B=17, C=6, seed=1):
    """Random sequences over each model's vocabulary, ending with its query token, (M, B, C)."""
    g = torch.Generator().manual_seed(seed)
    vocab = torch.tensor([c.n_tokens for c in st.configs])
    tokens = (torch.rand(st.n_models, B, C, generator=g) * vocab[:, None, None]).long()
    tokens[:, :, -1] = torch.tensor([c.query for c in st.configs])[:, None]
    return tokens


def direct(w, c, tokens):
    """One model, position by position as the authors compute it: project every position,
    score it against the last position's query, softmax over positions. (B, O) logits."""
    X = w["E"][tokens]                                                  # (B, C, D)
    heads = []
    for h in range(c.n_heads):
        k, v = X @ w["W_K"][h], X @ w["W_V"][h]                          # (B, C, K)
        q = X[:, -1] @ w["W_Q"][h]                                      # (B, K)
        a = torch.softmax((k * q[:, None]).sum(-1) / c.d_head ** 0.5, dim=-1)   # (B, C)
        heads.append((a[..., None] * v).sum(1))
    z = torch.cat(heads, -1) @ w["W_O"].reshape(c.n_heads * c.d_head, c.d)
    h = z + torch.relu(z @ w["W1"].T + w["b1"]) @ w["W2"].T
    return h @ w["U"].T


def test_counts_and_tables_equal_the_per_position_computation_values_and_gradients():
    st = stack()
    tokens = sequences(st)
    params = {n: p.clone().requires_grad_(True) for n, p in st.params.items() if n not in st.frozen}
    h, W_out = st.readout(params, tokens, (tokens.shape[-1] - 1,))
    ours = torch.bmm(h[:, :, 0], W_out)                                # (M, B, O)
    for i, c in enumerate(st.configs):
        own = {n: w.clone().requires_grad_(n in params) for n, w in st.model_weights(i).items()}
        ref = direct(own, c, tokens[i])
        torch.testing.assert_close(ours[i, :, :c.n_answers], ref, rtol=1e-12, atol=1e-12)
        up = torch.randn(ref.shape, generator=torch.Generator().manual_seed(i), dtype=ref.dtype)
        got = torch.autograd.grad((ours[i, :, :c.n_answers] * up).sum(), list(params.values()), retain_graph=True)
        want = torch.autograd.grad((ref * up).sum(), [own[n] for n in params])
        for name, g, r in zip(params, got, want):
            torch.testing.assert_close(g[i][st._block(i, name)[1:]], r, rtol=1e-10, atol=1e-12)
            outside = g[i].clone()
            outside[st._block(i, name)[1:]] = 0
            assert (outside == 0).all(), f"{name}: gradient in the padding"


def test_counts_are_token_histograms():
    tokens = torch.tensor([[[0, 2, 2, 1], [3, 3, 3, 3]]])
    assert token_counts(tokens, 5).tolist() == [[[1, 1, 2, 0, 0], [0, 0, 0, 4, 0]]]


def test_a_padded_model_is_the_same_model_alone_and_trains_alike():
    st = stack()
    tokens = sequences(st, B=23, seed=4)
    logits = st.logits(tokens)
    for i in range(st.n_models):
        alone = st.select([i])
        torch.testing.assert_close(alone.logits(tokens[i:i + 1])[0], logits[i, :, :st.configs[i].n_answers],
                                   rtol=1e-12, atol=1e-12)
    g = torch.Generator().manual_seed(5)
    targets = torch.stack([torch.randint(0, c.n_answers, (23, 1), generator=g) for c in st.configs])
    valid = torch.ones(st.n_models, 23, dtype=torch.bool)
    data = FixedData(tokens, targets, valid, (tokens.shape[-1] - 1,))
    cfg = TrainConfig(max_epochs=25, stop_tau=None, optimizer=AdamW(lr=0.05, weight_decay=0.1))
    together = train(st, data, cfg, RunConfig(dtype="float64"))
    for i in (0, 3):
        alone = train(st.select([i]), data.take(torch.tensor([i])), cfg, RunConfig(dtype="float64"))
        for n, w in alone.model.model_weights(0).items():
            torch.testing.assert_close(together.model.model_weights(i)[n], w, rtol=1e-9, atol=1e-9)
    for i in range(st.n_models):                                       # the random embeddings never move
        for n in ("E", "U"):
            assert torch.equal(together.model.model_weights(i)[n], st.model_weights(i)[n])
    assert together.results[0].loss < train(st, data, TrainConfig(max_epochs=1, stop_tau=None),
                                            RunConfig(dtype="float64")).results[0].loss


def test_an_underflowing_float32_softmax_is_recomputed_in_float64():
    """Token 0 scores 200/sqrt(2) ~ 141 above every other token; for sequences without it,
    the shift by the vocabulary's best score leaves e^-141 = 0 in float32: without the
    float64 recomputation every head would divide 0 by 0 (NaN)."""
    c = RecallTransformerConfig(8, 5, 4, 1, 2, 3)
    st = RecallTransformerStack.init([c], seed=2, dtype=torch.float32)
    w = {n: t.clone() for n, t in st.model_weights(0).items()}
    w["E"][:, 0] = 0.0
    w["E"][0] = torch.tensor([1.0, 0, 0, 0])                            # token 0: the only one with a first coordinate
    w["E"][c.query] = torch.tensor([0, 1.0, 0, 0])
    w["W_Q"][0] = 0.0
    w["W_Q"][0, 1, 0] = 1.0                                             # q = (1, 0)
    w["W_K"][0] = 0.0
    w["W_K"][0, 0, 0] = 200.0                                           # key of token 0 = (200, 0), the others 0
    st = RecallTransformerStack.from_weights([c], [w])
    scores, _ = st.tables(st.params)
    assert float(scores[0, 0, 0] - scores[0, 1:, 0].max()) > 140
    tokens = torch.tensor([[[2, 3, 4, c.query], [5, 5, 1, c.query]]])
    ours = st.logits(tokens)[0]
    assert torch.isfinite(ours).all()
    ref = direct({n: t.double() for n, t in st.model_weights(0).items()}, c, tokens[0])
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)


def test_parameter_count_and_config_checks():
    c = RecallTransformerConfig(n_tokens=129, n_answers=256, d=32, n_heads=8, d_head=8, width=64)
    assert c.params == 4 * 8 * 8 * 32 + 2 * 64 * 32 and c.query == 128
    for bad in (dict(d=0), dict(n_heads=-1), dict(query_token=200)):
        with pytest.raises(ConfigError):
            RecallTransformerConfig(**{**dict(n_tokens=129, n_answers=256, d=32), **bad})
    st = stack()
    with pytest.raises(ConfigError, match="last position"):
        st.readout(None, sequences(st), (2,))
    bad = sequences(st)
    bad[0, 0, -1] = 0
    with pytest.raises(ConfigError, match="query token"):
        st.logits(bad)


# ---------------------------------------------------------------------------- linear attention

def test_linear_attention_equals_its_per_position_definition_and_starts_at_1e_5():
    configs = [LinearAttentionConfig(7, 5), LinearAttentionConfig(10, 3)]
    st = LinearAttentionStack.init(configs)
    assert (st.model_weights(1)["A"] == 1e-5).all() and (st.model_weights(0)["W_V"] == 1e-5).all()
    g = torch.Generator().manual_seed(3)
    w0 = {n: torch.randn(t.shape, generator=g, dtype=torch.float64) for n, t in st.model_weights(0).items()}
    w1 = {n: torch.randn(t.shape, generator=g, dtype=torch.float64) for n, t in st.model_weights(1).items()}
    st = LinearAttentionStack.from_weights(configs, [w0, w1])
    tokens = torch.stack([torch.randint(0, c.n_tokens, (9, 6), generator=g) for c in configs])
    tokens[:, :, -1] = torch.tensor([c.query for c in configs])[:, None]
    logits = st.logits(tokens)
    for i, (c, w) in enumerate(zip(configs, (w0, w1))):
        onehot = torch.eye(c.n_tokens, dtype=torch.float64)[tokens[i]]           # (B, C, V)
        score = onehot @ w["A"] @ onehot[:, -1:].transpose(1, 2)                 # (B, C, 1): e_t^T A e_C
        z = (score * onehot).sum(1)
        torch.testing.assert_close(logits[i, :, :c.n_answers], z @ w["W_V"], rtol=1e-12, atol=1e-12)


def test_linear_attention_trains_by_gradient_descent_as_a_torch_sgd_loop():
    c = LinearAttentionConfig(6, 4, seq_len=5)
    st = LinearAttentionStack.init([c], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 6, (1, 30, 5), generator=g)
    tokens[:, :, -1] = c.query
    targets = torch.randint(0, 4, (1, 30, 1), generator=g)
    data = FixedData(tokens, targets, torch.ones(1, 30, dtype=torch.bool), (4,))
    res = train(st, data, TrainConfig(max_epochs=40, stop_tau=None, optimizer=SGD(lr=0.5)), RunConfig(dtype="float64"))
    W = {n: t.clone().requires_grad_(True) for n, t in st.model_weights(0).items()}
    alone = LinearAttentionStack.from_weights([c], [st.model_weights(0)])
    opt = torch.optim.SGD(list(W.values()), lr=0.5)
    for _ in range(40):
        opt.zero_grad()
        z, Wv = alone.readout({n: w[None] for n, w in W.items()}, tokens, (4,))
        torch.nn.functional.cross_entropy(torch.bmm(z[:, :, 0], Wv)[0], targets[0, :, 0]).backward()
        opt.step()
    for n in W:
        torch.testing.assert_close(res.model.model_weights(0)[n], W[n].detach(), rtol=1e-10, atol=1e-12)
    assert np.isfinite(res.results[0].loss)


def test_a_padded_linear_attention_model_trains_as_it_trains_alone_and_its_padding_stays_zero():
    configs = [LinearAttentionConfig(6, 4, seq_len=5), LinearAttentionConfig(9, 2, seq_len=5),
               LinearAttentionConfig(4, 5, seq_len=5)]
    g = torch.Generator().manual_seed(5)
    weights = [{n: 0.3 * torch.randn(t.shape, generator=g, dtype=torch.float64)
                for n, t in LinearAttentionStack.init([c], dtype=torch.float64).model_weights(0).items()}
               for c in configs]
    stack = LinearAttentionStack.from_weights(configs, weights)
    tokens = torch.stack([torch.randint(0, c.n_tokens, (24, 5), generator=g) for c in configs])
    tokens[:, :, -1] = torch.tensor([c.query for c in configs])[:, None]
    targets = torch.stack([torch.randint(0, c.n_answers, (24, 1), generator=g) for c in configs])
    valid = torch.ones(3, 24, dtype=torch.bool)
    cfg = TrainConfig(max_epochs=30, stop_tau=None, optimizer=SGD(lr=0.3, momentum=0.5))
    together = train(stack, FixedData(tokens, targets, valid, (4,)), cfg, RunConfig(dtype="float64"))
    padded = together.model.params
    for i, c in enumerate(configs):
        alone = train(stack.select([i]), FixedData(tokens[i:i + 1, :, :], targets[i:i + 1], valid[i:i + 1], (4,)),
                      cfg, RunConfig(dtype="float64"))
        for n, w in alone.model.model_weights(0).items():
            torch.testing.assert_close(together.model.model_weights(i)[n], w, rtol=0, atol=1e-12)
            assert not torch.equal(w, weights[i][n])                       # it did train
        assert (padded["A"][i, c.n_tokens:] == 0).all() and (padded["A"][i, :, c.n_tokens:] == 0).all()
        assert (padded["W_V"][i, c.n_tokens:] == 0).all() and (padded["W_V"][i, :, c.n_answers:] == 0).all()
