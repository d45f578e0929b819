"""The learned-embedding transformer of Ravfogel et al. (2026) against a plain per-model torch module."""

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from factlab.errors import ConfigError
from factlab.models.transformer import TransformerConfig, TransformerStack, stage_names
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train
from factlab.training.optim import AdamW

# (n_tokens, seq_len, d, n_layers, n_heads, d_head, width): all different, so a swapped axis shows
SIZES = [(11, 7, 6, 2, 3, 2, 5), (8, 9, 4, 3, 1, 5, 10), (13, 6, 5, 1, 2, 4, 3), (10, 8, 3, 2, 4, 1, 7)]
NORMS = {"pre": ["pre"] * 4, "none": ["none"] * 4, "mixed": ["pre", "none", "none", "pre"]}
C = 6                                         # input length: every model's seq_len allows it


def configs(norms="mixed"):
    return [TransformerConfig(*s, norm=nm) for s, nm in zip(SIZES, NORMS[norms])]


def randomized(cs, seed=0):
    """A float64 stack whose every weight is noised (gains and biases included: their
    initial 1 and 0 would hide a bug)."""
    st = TransformerStack.init(cs, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 100)
    per = [{n: w + 0.3 * torch.randn(w.shape, generator=g, dtype=w.dtype) for n, w in st.model_weights(i).items()}
           for i in range(len(cs))]
    return TransformerStack.from_weights(cs, per)


def sequences(cs, B=5, C=C, seed=1):
    """``(M, B, C)`` random tokens, each model's from its own vocabulary."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, c.n_tokens, (B, C), generator=g) for c in cs])


class Reference(nn.Module):
    """One model as a textbook writes it: nn.Embedding, nn.LayerNorm, nn.Linear, and attention
    head by head with an explicit causal mask. ``seen`` records every stage."""

    def __init__(self, c: TransformerConfig, w: dict):
        super().__init__()
        f64 = dict(dtype=torch.float64)
        self.c = c
        self.embed, self.pos = nn.Embedding(c.n_tokens, c.d, **f64), nn.Embedding(c.seq_len, c.d, **f64)
        self.W_Q, self.W_K, self.W_V, self.W_O, self.W_U = (nn.Parameter(w[n].clone()) for n in
                                                             ("W_Q", "W_K", "W_V", "W_O", "W_U"))
        self.ln1, self.ln2 = (nn.ModuleList(nn.LayerNorm(c.d, **f64) for _ in range(c.n_layers)) for _ in range(2))
        self.fc1 = nn.ModuleList(nn.Linear(c.d, c.width, **f64) for _ in range(c.n_layers))
        self.fc2 = nn.ModuleList(nn.Linear(c.width, c.d, **f64) for _ in range(c.n_layers))
        self.lnf = nn.LayerNorm(c.d, **f64)
        with torch.no_grad():
            self.embed.weight.copy_(w["W_E"])
            self.pos.weight.copy_(w["W_pos"])
            for l in range(c.n_layers):
                for mod, weight, bias in ((self.fc1, "W1", "b1"), (self.fc2, "W2", "b2"),
                                          (self.ln1, "ln1_g", "ln1_b"), (self.ln2, "ln2_g", "ln2_b")):
                    mod[l].weight.copy_(w[weight][l])
                    mod[l].bias.copy_(w[bias][l])
            self.lnf.weight.copy_(w["lnf_g"])
            self.lnf.bias.copy_(w["lnf_b"])

    def tensors(self, grad=False) -> dict:
        """Our weight names -> this module's tensors (or their gradients), LN ones under pre-LN only."""
        get = (lambda p: p.grad) if grad else (lambda p: p.data)
        rows = lambda mods, attr: torch.stack([get(getattr(m, attr)) for m in mods])
        out = {"W_E": get(self.embed.weight), "W_pos": get(self.pos.weight), "W_Q": get(self.W_Q),
               "W_K": get(self.W_K), "W_V": get(self.W_V), "W_O": get(self.W_O), "W_U": get(self.W_U),
               "W1": rows(self.fc1, "weight"), "b1": rows(self.fc1, "bias"),
               "W2": rows(self.fc2, "weight"), "b2": rows(self.fc2, "bias")}
        if self.c.norm == "pre":
            out.update({"ln1_g": rows(self.ln1, "weight"), "ln1_b": rows(self.ln1, "bias"),
                        "ln2_g": rows(self.ln2, "weight"), "ln2_b": rows(self.ln2, "bias"),
                        "lnf_g": get(self.lnf.weight), "lnf_b": get(self.lnf.bias)})
        return out if grad else {n: t for n, t in out.items() if n not in ("W_E", "W_pos")}

    def forward(self, tokens, seen=None):                                  # tokens (B, C) -> logits (B, C, V)
        seen = {} if seen is None else seen
        c, n = self.c, tokens.shape[1]
        norm = (lambda ln, y: ln(y)) if c.norm == "pre" else (lambda ln, y: y)
        future = torch.ones(n, n, dtype=torch.bool).triu(1)
        x = seen["embed"] = self.embed(tokens) + self.pos(torch.arange(n))
        for l in range(c.n_layers):
            seen[f"resid_pre.{l}"] = x
            y = norm(self.ln1[l], x)
            attn, patterns = 0, []
            for h in range(c.n_heads):
                q, k, v = y @ self.W_Q[l, h], y @ self.W_K[l, h], y @ self.W_V[l, h]        # (B, C, K)
                scores = (q @ k.transpose(1, 2) / math.sqrt(c.d_head)).masked_fill(future, float("-inf"))
                patterns.append(torch.softmax(scores, dim=-1))
                attn = attn + patterns[-1] @ v @ self.W_O[l, h]
            seen[f"attn_pattern.{l}"], seen[f"attn_out.{l}"] = torch.stack(patterns, 1), attn
            x = seen[f"resid_mid.{l}"] = x + attn
            hidden = seen[f"mlp_hidden.{l}"] = torch.relu(self.fc1[l](norm(self.ln2[l], x)))
            out = seen[f"mlp_out.{l}"] = self.fc2[l](hidden)
            x = seen[f"resid_post.{l}"] = x + out
        x = seen["final"] = norm(self.lnf, x)
        return x @ self.W_U


def next_token_data(cs, B=12, seed=3):
    """FixedData of random sequences of C + 1 tokens: every next token scored."""
    seq = sequences(cs, B=B, C=C + 1, seed=seed)
    return FixedData(seq[..., :-1], seq[..., 1:], torch.ones(len(cs), B, dtype=torch.bool), tuple(range(C)))


# ---------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("norms", NORMS)
def test_logits_and_gradients_equal_a_plain_torch_module_per_model(norms):
    cs = configs(norms)
    st = randomized(cs)
    tokens = sequences(cs)
    params = {n: p.clone().requires_grad_(True) for n, p in st.params.items()}
    logits = st.logits(tokens, params)                                     # (M, B, C, V)
    for i, c in enumerate(cs):
        ref = Reference(c, st.model_weights(i))
        want = ref(tokens[i])
        got = logits[i, :, :, :c.n_tokens]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        assert (logits[i, :, :, c.n_tokens:] == float("-inf")).all()
        up = torch.randn(want.shape, generator=torch.Generator().manual_seed(i), dtype=want.dtype)
        grads = torch.autograd.grad((got * up).sum(), list(params.values()), retain_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params.values(), grads)]  # no LN at all
        (want * up).sum().backward()
        wanted = ref.tensors(grad=True)
        for name, g in zip(params, grads):
            if name in wanted:
                torch.testing.assert_close(g[i][st._block(i, name)[1:]], wanted[name], rtol=1e-10, atol=1e-12)
            assert (g[i][st.masks[name][i] == 0] == 0).all(), f"{name}: gradient in the padding"


@pytest.mark.parametrize("norms", NORMS)
def test_a_padded_model_is_the_same_model_alone(norms):
    cs = configs(norms)
    st = randomized(cs, seed=4)
    tokens = sequences(cs, seed=5)
    logits = st.logits(tokens)
    for i, c in enumerate(cs):
        alone = st.select([i])
        assert alone.params["W_Q"].shape == (1, c.n_layers, c.n_heads, c.d, c.d_head)
        torch.testing.assert_close(alone.logits(tokens[i:i + 1])[0], logits[i, ..., :c.n_tokens],
                                   rtol=1e-12, atol=1e-12)


def test_garbage_in_the_padding_changes_nothing_and_gets_zero_gradient():
    cs = configs("mixed")
    st = randomized(cs, seed=6)
    tokens = sequences(cs, seed=7)
    logits = st.logits(tokens)
    noisy = {n: (w + 5.0 * (1 - st.masks[n])).requires_grad_(True) for n, w in st.params.items()}
    again = st.logits(tokens, noisy)
    assert torch.equal(again, logits)
    again[torch.isfinite(again)].sum().backward()
    for n, w in noisy.items():
        assert (w.grad[st.masks[n] == 0] == 0).all(), n
        assert w.grad.abs().sum() > 0, n
    for i, c in enumerate(cs):                       # a model without normalisation has no LN weights
        if c.norm == "none":
            assert all((st.params[n][i] == 0).all() and (st.masks[n][i] == 0).all() for n in ("ln1_g", "lnf_g"))


# ---------------------------------------------------------------------------------- hooks
def test_every_stage_reads_what_the_reference_computes_there():
    cs = configs("mixed")
    st = randomized(cs, seed=8)
    tokens = sequences(cs, seed=9)
    L = max(c.n_layers for c in cs)
    got = st.stages(tokens, stage_names(L))
    assert set(got) == set(stage_names(L))
    for i, c in enumerate(cs):
        seen = {}
        Reference(c, st.model_weights(i))(tokens[i], seen)
        last = f"resid_post.{c.n_layers - 1}"
        for name, x in got.items():
            stage, _, layer = name.partition(".")
            if layer and int(layer) >= c.n_layers:      # a padded layer is the identity
                if stage in ("attn_out", "mlp_out"):
                    assert (x[i] == 0).all(), name
                elif stage.startswith("resid"):
                    torch.testing.assert_close(x[i, ..., :c.d], seen[last], rtol=1e-12, atol=1e-12)
                continue
            if stage == "attn_pattern":
                own = x[i, :, :c.n_heads]
            elif stage == "mlp_hidden":
                own = x[i, ..., :c.width]
            else:
                own = x[i, ..., :c.d]
                assert (x[i, ..., c.d:] == 0).all(), f"{name}: padding not 0"
            torch.testing.assert_close(own, seen[name], rtol=1e-12, atol=1e-12, msg=f"model {i}, {name}")


def test_replacing_the_embedding_acts_only_at_that_position_and_after():
    cs = configs("mixed")
    st = randomized(cs, seed=10)
    tokens = sequences(cs, seed=11)
    logits = st.logits(tokens)
    assert torch.equal(st.logits(tokens, hooks={"embed": lambda x: x}), logits)
    m, b, p = 2, 3, 2
    row = torch.randn(cs[m].d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def swap(x):
        x = x.clone()
        x[m, b, p, :cs[m].d] = row                  # another embedding at (model m, sequence b, position p)
        return x
    changed = st.logits(tokens, hooks={"embed": swap})
    differs = (changed != logits).any(-1)          # (M, B, C)
    expected = torch.zeros_like(differs)
    expected[m, b, p:] = True
    assert torch.equal(differs, expected)


def test_replacing_the_residual_stream_with_another_inputs_gives_that_inputs_output():
    """After a residual stage nothing reads the tokens again: a hook that writes there the
    stream read from other sequences (garbage added in the padding, which the hook's mask must
    remove) makes every model answer as the reference module does on those other sequences.
    Replacing model m's stream alone moves model m alone."""
    cs = configs("mixed")
    st = randomized(cs, seed=14)
    mine, other = sequences(cs, seed=15), sequences(cs, seed=16)
    own_d = torch.stack([torch.arange(st.params["W_E"].shape[2]) < c.d for c in cs])       # (M, D)
    want = [Reference(c, st.model_weights(i))(other[i]) for i, c in enumerate(cs)]
    unpatched = st.logits(mine)
    for i, c in enumerate(cs):
        assert (unpatched[i, ..., :c.n_tokens] - want[i]).abs().max() > 1e-3      # the two inputs differ
    L, m = max(c.n_layers for c in cs), 1
    for stage in [f"{s}.{l}" for l in range(L) for s in ("resid_pre", "resid_mid", "resid_post")]:
        read = st.stages(other, [stage])[stage]                                  # (M, B, C, D)
        garbage = read + 9.0 * ~own_d[:, None, None, :]
        got = st.logits(mine, hooks={stage: lambda x, garbage=garbage: garbage})
        for i, c in enumerate(cs):
            torch.testing.assert_close(got[i, ..., :c.n_tokens], want[i], rtol=1e-12, atol=1e-12,
                                       msg=f"model {i}, {stage}")

        def one_model(x, read=read):
            x = x.clone()
            x[m] = read[m]
            return x
        got = st.logits(mine, hooks={stage: one_model})
        for i, c in enumerate(cs):
            ref = want[i] if i == m else Reference(c, st.model_weights(i))(mine[i])
            torch.testing.assert_close(got[i, ..., :c.n_tokens], ref, rtol=1e-12, atol=1e-12,
                                       msg=f"model {i}, {stage}, only model {m} replaced")


def test_zeroing_mlp_hidden_units_equals_a_reference_whose_w2_drops_them():
    """Zeroing hidden units of layer 0's MLP through the hook equals the reference module with
    those columns of W2 set to 0; zeroing every unit of each model's last layer equals a
    reference whose last MLP writes its bias b2 alone. Garbage in the padded units (beyond a
    model's own width) changes nothing."""
    cs = configs("mixed")
    st = randomized(cs, seed=17)
    tokens = sequences(cs, seed=18)
    widths = [c.width for c in cs]
    units = [0, 2]                                                       # every model has >= 3 units
    last = {f"mlp_hidden.{l}" for l in {c.n_layers - 1 for c in cs}}

    def zero_some(x):
        x = x.clone()
        x[:, :, :, units] = 0
        for i, w in enumerate(widths):
            x[i, :, :, w:] = 7.0                                           # the padding: must stay inert
        return x

    def zero_last(l):
        def hook(x):
            x = x.clone()
            for i, c in enumerate(cs):
                if c.n_layers - 1 == l:
                    x[i] = 0
            return x
        return hook

    def drop_units(w, c):
        w["W2"][0, :, units] = 0                                           # W2 (L, D, width): their columns

    def drop_last(w, c):
        w["W2"][c.n_layers - 1] = 0

    for hooks, edit in (({"mlp_hidden.0": zero_some}, drop_units),
                        ({n: zero_last(int(n.split(".")[1])) for n in last}, drop_last)):
        got = st.logits(tokens, hooks=hooks)
        for i, c in enumerate(cs):
            w = {n: t.clone() for n, t in st.model_weights(i).items()}
            before = Reference(c, w)(tokens[i])
            edit(w, c)
            want = Reference(c, w)(tokens[i])
            assert (want - before).abs().max() > 1e-3, f"model {i}: the edit changes nothing"
            torch.testing.assert_close(got[i, ..., :c.n_tokens], want, rtol=1e-12, atol=1e-12, msg=f"model {i}")


def test_hooks_check_their_names_and_shapes():
    st = randomized(configs())
    tokens = sequences(configs())
    with pytest.raises(ConfigError, match=re.escape("unknown stages ['resid_pre.3']")):
        st.logits(tokens, hooks={"resid_pre.3": lambda x: x})
    with pytest.raises(ConfigError, match="hook 'final' returned shape"):
        st.logits(tokens, hooks={"final": lambda x: x[:, :1]})


# ---------------------------------------------------------------------------------- training
def test_training_in_a_mixed_stack_ends_where_training_alone_ends():
    cs = configs("mixed")
    st = TransformerStack.init(cs, seed=12, dtype=torch.float64)
    data = next_token_data(cs)
    cfg = TrainConfig(max_steps=30, stop_tau=None, eval_every=10, curve_every=10,
                      optimizer=AdamW(lr=0.01, weight_decay=0.1))
    run = RunConfig(dtype="float64")
    chunks = []
    together = train(st, data, cfg, run, monitor=lambda s, ids: chunks.append(sorted(ids.tolist())) or {})
    assert chunks[0] == [0, 1, 2, 3]                # the models trained padded together, in one chunk
    for n in st.AXES:
        assert (together.model.params[n][st.masks[n] == 0] == 0).all()
    for i in range(len(cs)):
        alone = train(st.select([i]), data.take(torch.tensor([i])), cfg, run)
        got = together.model.model_weights(i)
        for n, w in alone.model.model_weights(0).items():
            torch.testing.assert_close(got[n], w, rtol=1e-9, atol=1e-9)
        assert not torch.equal(got["W_E"], st.model_weights(i)["W_E"])
        assert together.results[i].loss == pytest.approx(alone.results[0].loss, rel=1e-9)


def test_freezing_trains_only_the_masked_embedding_rows_and_nothing_frozen_moves():
    """The freeze-and-swap transfer's set-up (Ravfogel et al., 2026): every weight frozen but
    some rows of W_E, weight decay on. The frozen entries keep their values bit for bit; the
    trained rows move exactly as a torch AdamW holding only those rows moves them."""
    cs = configs("mixed")
    st = randomized(cs, seed=4)
    rows = [torch.arange(c.n_tokens) % 2 == 0 for c in cs]                  # each model's even tokens train
    mask = torch.zeros_like(st.params["W_E"], dtype=torch.bool)
    for i, r in enumerate(rows):
        mask[i, :len(r)][r] = st.masks["W_E"][i, :len(r)][r] != 0
    frozen = st.freeze([n for n in st.AXES if n != "W_E"], {"W_E": mask})
    data = next_token_data(cs)
    opt = AdamW(lr=0.02, weight_decay=0.1)
    res = train(frozen, data, TrainConfig(max_steps=15, stop_tau=None, eval_every=5, optimizer=opt),
                RunConfig(dtype="float64"))
    for n in st.AXES:
        before, after = st.params[n], res.model.params[n]
        keep = ~mask if n == "W_E" else torch.ones_like(before, dtype=torch.bool)
        assert torch.equal(after[keep], before[keep]), n
    assert not torch.equal(res.model.params["W_E"][mask], st.params["W_E"][mask])
    i = 1                                                                    # model 1 by hand
    ref = Reference(cs[i], st.model_weights(i))
    base = ref.embed.weight.detach().clone()
    trained = base[rows[i]].clone().requires_grad_(True)

    class RowEmbedding(nn.Module):                                           # W_E with only those rows free
        def forward(self, tokens):
            return nn.functional.embedding(tokens, base.index_put((rows[i].nonzero().flatten(),), trained))

    ref.embed = RowEmbedding()
    adamw = torch.optim.AdamW([trained], lr=opt.lr, weight_decay=opt.weight_decay)
    inputs, targets = data.inputs[i], data.targets[i]
    for _ in range(15):
        adamw.zero_grad()
        logits = ref(inputs)
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()
        adamw.step()
    torch.testing.assert_close(res.model.model_weights(i)["W_E"][rows[i]], trained.detach(), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("norm", ["pre", "none"])
def test_engine_equals_a_torch_optim_adamw_loop(norm):
    c = TransformerConfig(9, 6, 5, 2, 2, 3, 4, norm=norm)
    st = TransformerStack.init([c], seed=13, dtype=torch.float64)
    data = next_token_data([c], B=8, seed=14)
    steps, lr, decay = 25, 0.01, 0.1
    res = train(st, data, TrainConfig(max_steps=steps, stop_tau=None, optimizer=AdamW(lr=lr, weight_decay=decay)),
                RunConfig(dtype="float64"))
    ref = Reference(c, st.model_weights(0))
    opt = torch.optim.AdamW(ref.parameters(), lr=lr, weight_decay=decay)
    inputs, targets = data.inputs[0], data.targets[0]
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(ref(inputs).reshape(-1, c.n_tokens), targets.reshape(-1)).backward()
        opt.step()
    got = res.model.model_weights(0)
    for n, w in ref.tensors(grad=False).items():
        torch.testing.assert_close(got[n], w, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got["W_E"], ref.embed.weight.detach(), rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        loss = float(nn.functional.cross_entropy(ref(inputs).reshape(-1, c.n_tokens), targets.reshape(-1)))
    assert res.results[0].loss == pytest.approx(loss, rel=1e-9)


def test_a_small_model_learns_a_random_bijection_task():
    """Sequences (s, r, r(s)): 6 subjects (tokens 0-5), 2 relations (tokens 6, 7), each a random
    permutation of the subjects; every next token is trained, r(s) evaluated."""
    S, R = 6, 2
    g = torch.Generator().manual_seed(0)
    perms = [torch.randperm(S, generator=g) for _ in range(R)]
    seq = torch.tensor([[s, S + r, int(perms[r][s])] for s in range(S) for r in range(R)])[None]   # (1, 12, 3)
    data = FixedData(seq[..., :2], seq[..., 1:], torch.ones(1, S * R, dtype=torch.bool), (0, 1))
    st = TransformerStack.init([TransformerConfig(S + R, 2, 16, 1, 2, 8, 32)], seed=0)
    res = train(st, data, TrainConfig(max_steps=400, stop_tau=None, stop_accuracy=1.0, eval_every=10,
                                      optimizer=AdamW(lr=0.02, weight_decay=0.0)), RunConfig())
    assert res.results[0].status == "accurate" and res.results[0].accuracy == 1.0 and res.results[0].steps > 0
    assert torch.equal(res.model.logits(seq[..., :2])[0, :, 1].argmax(-1), seq[0, :, 2])


# ---------------------------------------------------------------------------------- the rest
@pytest.mark.parametrize("norm", ["pre", "none"])
def test_parameter_count_is_the_number_of_own_entries_and_the_init_has_its_scale(norm):
    for s in SIZES:
        c = TransformerConfig(*s, norm=norm)
        st = TransformerStack.init([c])
        assert c.params == int(sum(m.sum() for m in st.masks.values()))
        assert c.non_embedding_params == c.params - (2 * c.n_tokens + c.seq_len) * c.d
    c = TransformerConfig(300, 200, 120, 1, 4, 30, 400)
    w = TransformerStack.init([c], seed=1).model_weights(0)
    for name, var in (("W_E", 1), ("W_pos", 1), ("W_Q", 1 / 120), ("W_O", 1 / 120), ("W1", 1 / 120),
                      ("W2", 1 / 400), ("W_U", 1 / 120)):
        assert float(w[name].var()) == pytest.approx(var, rel=0.05), name
    assert (w["ln1_g"] == 1).all() and (w["lnf_g"] == 1).all()
    assert all((w[n] == 0).all() for n in ("ln1_b", "ln2_b", "lnf_b", "b1", "b2"))


def test_chunk_cost_grows_with_every_axis():
    base = np.array([[10, 6, 8, 2, 2, 4, 16]])
    cost = TransformerStack.chunk_cost(base)[0]
    for k in range(base.shape[1]):
        bigger = base.copy()
        bigger[0, k] *= 2
        assert TransformerStack.chunk_cost(bigger)[0] > cost > 0


@pytest.mark.parametrize("bad, message", [
    (dict(d=0), "TransformerConfig.d must be a positive integer, got 0"),
    (dict(n_heads=-1), "TransformerConfig.n_heads must be a positive integer, got -1"),
    (dict(width=2.5), "TransformerConfig.width must be a positive integer, got 2.5"),
    (dict(n_layers=True), "TransformerConfig.n_layers must be a positive integer, got True"),
    (dict(seq_len=0), "TransformerConfig.seq_len must be a positive integer, got 0"),
    (dict(norm="post"), "TransformerConfig.norm must be one of ['pre', 'none'], got 'post'"),
])
def test_bad_configs_raise_config_error_naming_the_value(bad, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        TransformerConfig(**{**dict(n_tokens=5, seq_len=4, d=3), **bad})


def test_inputs_beyond_a_models_length_or_vocabulary_are_refused():
    cs = configs()
    st = randomized(cs)
    with pytest.raises(ConfigError, match="length 7 exceed seq_len 6"):
        st.logits(sequences(cs, C=7))
    tokens = sequences(cs)
    tokens[1, 0, 0] = 8                              # model 1 has 8 tokens
    with pytest.raises(ConfigError, match="model 1: token ids outside its vocabulary of 8"):
        st.logits(tokens)
