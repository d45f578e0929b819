"""Artifacts, generalizations and hallucinations against a brute-force reference."""

import numpy as np
import pytest
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError, ConflictError
from factlab.models.artifacts import Artifacts, artifacts, next_token_probabilities
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.models.circuits import from_circuits


def brute_force(stack, train, model, tau, prefixes="kq"):
    """Every (k, q, v), k in K, q in Q (or k, q in T), v in the model's vocabulary, one forward
    pass per prefix."""
    n_vocab = stack.configs[model].n_tokens
    names = list(train.tokens) + [f"<token {i}>" for i in range(train.n_tokens, n_vocab)]
    facts = set(train.triples())
    out = {}
    firsts, seconds = ((train.subjects, train.predicates) if prefixes == "kq"
                       else (range(train.n_tokens), range(train.n_tokens)))
    for k in firsts:
        for q in seconds:
            z = stack.logits(torch.tensor([[int(k), int(q)]]))[model, 0, -1, :n_vocab].double()
            p = torch.softmax(z, -1)
            for v in range(n_vocab):
                triple = (names[k], names[q], names[v])
                if p[v] >= tau and triple not in facts:
                    out[triple] = float(p[v])
    return out


@pytest.mark.parametrize("tau", [0.5, 0.3])
def test_artifacts_match_brute_force(tau):
    rng = np.random.default_rng(0)
    tokens = [f"t{i}" for i in range(7)]
    train = Database.from_ids(tokens, rng.integers(0, 7, size=(12, 3)), conflicts="first")
    configs = [AttentionLayerConfig(train.n_tokens + 2, 5, 2, 3, 1),  # two tokens beyond the database's
               AttentionLayerConfig(train.n_tokens, 3, 1, 1, 3)]
    # large weights make confident predictions, so there are artifacts to find
    stack = AttentionStack.init(configs, seed=3, dtype=torch.float64)
    stack = AttentionStack(stack.configs, {n: 3 * w for n, w in stack.params.items()})
    for model in range(2):
        result = artifacts(stack, train, model=model, tau=tau)
        ref = brute_force(stack, train, model, tau)
        assert set(result.artifacts) == set(ref)
        assert len(result.artifacts) == len(ref)  # no duplicates
        for t, p in zip(result.artifacts, result.probabilities):
            assert p == pytest.approx(ref[t], abs=1e-12)
        assert result.n_prefixes == len(train.subjects) * len(train.predicates)
        assert result.ratio == len(ref) / len(train)
        assert result.generalizations is None and result.n_hallucinations is None
    assert any(artifacts(stack, train, model=m, tau=tau).n_artifacts for m in range(2))


def test_artifacts_over_every_prefix_match_brute_force_and_contain_the_kq_block():
    rng = np.random.default_rng(1)
    tokens = [f"t{i}" for i in range(8)]
    train = Database.from_ids(tokens, rng.integers(0, 8, size=(14, 3)), conflicts="first")
    stack = AttentionStack.init([AttentionLayerConfig(train.n_tokens + 1, 4, 2, 2, 2)], seed=5, dtype=torch.float64)
    stack = AttentionStack(stack.configs, {n: 3 * w for n, w in stack.params.items()})
    tt = artifacts(stack, train, tau=0.5, prefixes="tt")
    ref = brute_force(stack, train, 0, 0.5, prefixes="tt")
    assert dict(zip(tt.artifacts, tt.probabilities)) == pytest.approx(ref, abs=1e-12)
    assert len(tt.artifacts) == len(ref) and tt.n_prefixes == train.n_tokens ** 2
    kq = artifacts(stack, train, tau=0.5)
    assert set(kq.artifacts) < set(tt.artifacts)          # K x Q is one block of T x T, and there is more
    assert kq.on_training_pairs == tt.on_training_pairs   # training pairs all lie in the K x Q block
    with pytest.raises(ConfigError, match="prefixes"):
        artifacts(stack, train, prefixes="kv")


def predicate_default_layer(db: Database, answers: dict[str, str], strength: float = 10.0):
    """A layer answering every prefix (k, q) with answers[q], through W_EU alone (W_QK = W_VO = 0)."""
    V = db.n_tokens
    W_EU = np.zeros((V, V))
    for q, v in answers.items():
        W_EU[db.token_id(q), db.token_id(v)] = strength
    return from_circuits(W_EU, [np.zeros((V, V))], [np.zeros((V, V))])


def test_generalizations_and_hallucinations():
    world = Database.from_triples([
        ("a", "p", "x"), ("b", "p", "x"), ("c", "p", "x"), ("d", "p", "y"),
        ("a", "r", "y"), ("b", "r", "y"), ("c", "r", "x"),
        ("e", "p", "x"),  # e is never a training subject
    ])
    train_rows = [i for i, t in enumerate(world.triples()) if t in {("a", "p", "x"), ("b", "p", "x"),
                                                                     ("a", "r", "y"), ("d", "p", "y")}]
    train = world.select(train_rows)
    held_out = world.select([i for i in range(len(world)) if i not in train_rows])
    stack = predicate_default_layer(train, {"p": "x", "r": "y"})
    result = artifacts(stack, train, held_out=held_out, tau=0.5)
    # K = {a, b, d}, Q = {p, r}: prefixes (b, r) and (d, r) are new; (d, p) is trained with y
    assert set(result.artifacts) == {("b", "r", "y"), ("d", "r", "y"), ("d", "p", "x")}
    assert result.on_training_pairs == 1  # (d, p) -> x contradicts the training fact (d, p, y)
    assert set(result.generalizations) == {("b", "r", "y")}
    assert set(result.hallucinations) == {("d", "r", "y"), ("d", "p", "x")}
    # held out: (c,p,x), (b,r,y), (c,r,x), (e,p,x); c and e are not training subjects
    assert result.n_held_out == 4
    assert set(result.held_out_outside) == {("c", "p", "x"), ("c", "r", "x"), ("e", "p", "x")}
    assert result.generalization_rate == 1.0
    assert result.ratio == 3 / 4
    assert all(p > 0.99 for p in result.probabilities)


def test_held_out_training_facts_are_ignored_and_contradictions_refused():
    train = Database.from_triples([("a", "p", "x"), ("b", "p", "y")])
    stack = predicate_default_layer(train, {"p": "x"})
    same = artifacts(stack, train, held_out=train)
    assert same.n_held_out == 0 and same.generalization_rate is None
    contradiction = Database.from_triples([("b", "p", "x")])
    with pytest.raises(ConflictError, match=r"\(b, p\) -> y \(training\), x \(held-out\)"):
        artifacts(stack, train, held_out=contradiction)


def test_threshold_one_and_errors():
    train = Database.from_triples([("a", "p", "x"), ("b", "p", "y")])
    stack = predicate_default_layer(train, {"p": "x"}, strength=5.0)
    assert artifacts(stack, train, tau=1.0).n_artifacts == 0
    with pytest.raises(ConfigError, match="tau"):
        artifacts(stack, train, tau=0.0)
    with pytest.raises(ConfigError, match="model index 1"):
        artifacts(stack, train, model=1)
    P = next_token_probabilities(stack, train)
    assert P.shape == (2, 1, train.n_tokens)
    torch.testing.assert_close(P.sum(-1), torch.ones(2, 1, dtype=torch.float64))
    assert isinstance(artifacts(stack, train), Artifacts)
