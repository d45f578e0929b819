"""The model tensor L = E + Σ_h A^h V^h (Wong 2025, eq. 4-8), Proposition 3.1 and Example 3.3."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.models.circuits import from_circuits
from factlab.models.model_tensor import (
    attention_tensor,
    embedding_tensor,
    head_tensors,
    key_tokens,
    model_tensor,
    model_tensors,
    pair_mask,
    value_tensor,
)
from factlab.tensors.database_tensor import database_tensor
from factlab.tensors.thresholds import row_argmax
from paper_examples import FIGURE_1



def final_logits(stack, db, model):
    """Independent reference: the forward pass (eq. 2) on every prefix (k, q), object columns."""
    K, Q, V = db.subjects, db.predicates, db.objects
    prefixes = torch.tensor([[k, q] for k in K for q in Q])
    z = stack.logits(prefixes)[model, :, -1]  # (|K|·|Q|, V)
    return z[:, torch.from_numpy(V.copy())].reshape(len(K), len(Q), len(V))


def random_database(rng, n_tokens, n_facts):
    """Facts over a small vocabulary where subjects, predicates and objects overlap (k == q occurs)."""
    facts = rng.integers(0, n_tokens, size=(n_facts, 3))
    facts[0, 1] = facts[0, 0]  # at least one prefix (x, x)
    return Database.from_ids([f"t{i}" for i in range(n_tokens)], facts, conflicts="first")


@st.composite
def stacks_and_databases(draw):
    n_models = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    configs, dbs = [], []
    for _ in range(n_models):
        db = random_database(rng, draw(st.integers(2, 9)), draw(st.integers(1, 25)))
        d_model = draw(st.integers(1, 6))
        configs.append(AttentionLayerConfig(
            n_tokens=db.n_tokens + draw(st.integers(0, 2)), d_model=d_model, n_heads=draw(st.integers(1, 4)),
            d_head_qk=draw(st.integers(1, d_model)), d_head_vo=draw(st.integers(1, d_model))))
        dbs.append(db)
    stack = AttentionStack.init(configs, seed=draw(st.integers(0, 1000)), dtype=torch.float64)
    return stack, dbs


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks_and_databases())
def test_proposition_3_1_fibers_are_final_logits(case):
    stack, dbs = case
    for i, db in enumerate(dbs):
        Z = final_logits(stack, db, i)
        L_all = model_tensor(stack, db, i, pairs="all")
        assert L_all.shape == db.shape and L_all.dtype == torch.float64
        torch.testing.assert_close(L_all, Z, rtol=0, atol=1e-10)
        # the paper's L: equal to the logits on the database's pairs, to E elsewhere
        L = model_tensor(stack, db, i)
        on = pair_mask(db)
        torch.testing.assert_close(L[on], Z[on], rtol=0, atol=1e-10)
        torch.testing.assert_close(L[~on], embedding_tensor(stack, db, i)[~on], rtol=0, atol=0)
    for i, L in enumerate(model_tensors(stack, dbs, pairs="all")):
        torch.testing.assert_close(L, model_tensor(stack, dbs[i], i, pairs="all"), rtol=0, atol=1e-12)


def test_proposition_3_1_distinct_sizes():
    rng = np.random.default_rng(5)
    K, Q, V = range(0, 7), range(4, 9), (8, 9, 10)  # overlapping: K∩Q = {4, 5, 6}, Q∩V = {8}
    facts = [(k, q, V[(k + q) % 3]) for k in K for q in Q if rng.random() < 0.7 or k == q]
    db = Database.from_ids([f"t{i}" for i in range(11)], facts + [(0, 4, 8), (1, 5, 9), (2, 6, 10)],
                           conflicts="first")
    assert db.shape == (7, 5, 3)  # distinct sizes: no axis mix-up can pass
    configs = [AttentionLayerConfig(db.n_tokens, 7, 3, 5, 2), AttentionLayerConfig(db.n_tokens + 2, 5, 2, 1, 3)]
    stack = AttentionStack.init(configs, seed=1, dtype=torch.float64)
    for i in range(2):
        torch.testing.assert_close(model_tensor(stack, db, i, pairs="all"), final_logits(stack, db, i),
                                   rtol=0, atol=1e-10)


def test_attention_and_value_tensors_match_eq4_eq5_by_loops():
    rng = np.random.default_rng(3)
    db = random_database(rng, 7, 14)
    config = AttentionLayerConfig(db.n_tokens, 5, 2, 3, 2)
    stack = AttentionStack.init([config], seed=2, dtype=torch.float64)
    circ = stack.circuits()
    QK, VO = circ["W_QK"][0].numpy(), circ["W_VO"][0].numpy()
    keys = list(key_tokens(db))
    assert keys == sorted(set(db.subjects) | set(db.predicates))
    defined = {(int(k), int(q)) for k, q, _ in db.facts}
    A = attention_tensor(stack, db).numpy()  # (H, K, Q, |K∪Q|)
    V = value_tensor(stack, db).numpy()  # (H, |K∪Q|, Q, V)
    assert A.shape == (2, len(db.subjects), len(db.predicates), len(keys))
    assert V.shape == (2, len(keys), len(db.predicates), len(db.objects))
    for h in range(2):
        for a, k in enumerate(db.subjects):
            for b, q in enumerate(db.predicates):
                expected = np.zeros(len(keys))
                if (k, q) in defined:
                    ek, eq = math.exp(QK[h, q, k]), math.exp(QK[h, q, q])
                    expected[keys.index(k)] += ek / (ek + eq)
                    expected[keys.index(q)] += eq / (ek + eq)
                np.testing.assert_allclose(A[h, a, b], expected, rtol=0, atol=1e-12)
                for c, t in enumerate(keys):
                    np.testing.assert_array_equal(V[h, c, b], VO[h, t, db.objects])
    # eq. (6): (A^h V^h)[k,q,v] = Σ_t A^h[k,q,t] V^h[t,q,v]
    AV = np.einsum("hkqt,htqv->hkqv", A, V)
    np.testing.assert_allclose(head_tensors(stack, db).numpy(), AV, rtol=0, atol=1e-12)


def test_prefix_with_the_same_token_twice_attends_with_total_weight_one():
    db = Database.from_triples([("x", "x", "v"), ("y", "x", "w")])
    stack = AttentionStack.init([AttentionLayerConfig(db.n_tokens, 3, 2, 2, 1)], seed=0, dtype=torch.float64)
    A = attention_tensor(stack, db)  # (H, K, Q, |K∪Q|)
    x = list(key_tokens(db)).index(db.token_id("x"))
    k = list(db.subjects).index(db.token_id("x"))
    assert torch.allclose(A[:, k, 0, x], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(model_tensor(stack, db), final_logits(stack, db, 0), rtol=0, atol=1e-12)


def test_vocabulary_too_small_is_refused():
    db = Database.from_triples(FIGURE_1)
    stack = AttentionStack.init([AttentionLayerConfig(db.n_tokens - 1, 3)], seed=0)
    with pytest.raises(ConfigError, match="10 tokens"):
        model_tensor(stack, db)
    with pytest.raises(ConfigError, match="pairs"):
        model_tensor(AttentionStack.init([AttentionLayerConfig(db.n_tokens, 3)]), db, pairs="some")


# ---------------------------------------------------------------------- Example 3.3
def example_3_3_circuits(db, qk_value=1.0):
    """W_QK^1: ones on rows β, λ and columns a, b, c, β, λ; W_VO^1 with columns m, s as in the paper."""
    V = db.n_tokens
    i = db.token_id
    a, b, c, beta, lam, m, s = (i(t) for t in ("Astrid", "Bernard", "Colin", "born_in", "lives_in",
                                               "Malaysia", "Singapore"))
    W_QK = np.zeros((V, V))
    W_QK[np.ix_([beta, lam], [a, b, c, beta, lam])] = qk_value
    W_VO = np.zeros((V, V))
    for t, (vm, vs) in {a: (0, 0), b: (0, 4), c: (4, 0), beta: (0, 2), lam: (2, 0)}.items():
        W_VO[t, m], W_VO[t, s] = vm, vs
    return W_QK, W_VO


@pytest.fixture(scope="module")
def figure_1():
    return Database.from_triples(FIGURE_1)


@pytest.fixture(scope="module")
def people(figure_1):
    """The β and λ slices of Figure 1: K = {a, b, c}, Q = {β, λ}, V = {m, s}, K ∪ Q = {a, b, c, β, λ}."""
    return figure_1.select(np.isin(figure_1.facts[:, 1], [figure_1.token_id("born_in"),
                                                            figure_1.token_id("lives_in")]))


def test_example_3_3_products_and_argmax(figure_1):
    W_QK, W_VO = example_3_3_circuits(figure_1)
    stack = from_circuits(1e-3 * np.eye(figure_1.n_tokens), [W_QK], [W_VO])
    L = model_tensor(stack, figure_1)  # (|K|=5, |Q|=3, |V|=4)
    K = figure_1.names(figure_1.subjects)
    Q = figure_1.names(figure_1.predicates)
    V = figure_1.names(figure_1.objects)
    abc = [K.index(n) for n in ("Astrid", "Bernard", "Colin")]
    ms = [V.index("Malaysia"), V.index("Singapore")]
    beta, lam = Q.index("born_in"), Q.index("lives_in")
    AV = head_tensors(stack, figure_1)[0]  # (K, Q, V)
    expected_beta = torch.tensor([[0.0, 1], [0, 3], [2, 1]], dtype=torch.float64)
    expected_lam = torch.tensor([[1.0, 0], [1, 2], [3, 0]], dtype=torch.float64)
    torch.testing.assert_close(AV[abc, beta][:, ms], expected_beta, rtol=0, atol=1e-9)
    torch.testing.assert_close(AV[abc, lam][:, ms], expected_lam, rtol=0, atol=1e-9)
    # E = eps·W_EU[q, v] vanishes (no predicate is an object), so L = A^1 V^1 there
    D = database_tensor(figure_1)
    for q in (beta, lam):
        torch.testing.assert_close(row_argmax(L[abc, q]), D[abc, q])  # argmax over all of V
    torch.testing.assert_close(model_tensor(stack, figure_1, pairs="all"), final_logits(stack, figure_1, 0),
                               rtol=0, atol=1e-10)


def test_example_3_3_matrix_ranks_and_zero_W_QK(people):
    W_QK, W_VO = example_3_3_circuits(people)
    assert np.linalg.matrix_rank(W_VO) == 2
    assert np.linalg.matrix_rank(W_QK) == 1
    stack = from_circuits(1e-3 * np.eye(people.n_tokens), [W_QK], [W_VO])
    assert stack.configs[0].d_head_qk == 1 and stack.configs[0].d_head_vo == 2
    A = attention_tensor(stack, people)[0]
    assert A.shape == (3, 2, 5)  # a, b, c x β, λ x {a, b, c, β, λ}
    assert torch.allclose(A.sum(-1), torch.ones(3, 2, dtype=torch.float64))
    # "we would have the same A^1 even if all the entries of W_QK^1 were zero"
    zero = from_circuits(1e-3 * np.eye(people.n_tokens), [0 * W_QK], [W_VO])
    torch.testing.assert_close(attention_tensor(zero, people)[0], A, rtol=0, atol=1e-12)


def test_example_3_3_tensor_ranks(people):
    """rank(A^1 V^1) = 3 although rank(W_VO^1) = 2; rank(A^1) = 4 although rank(W_QK^1) = 1."""
    rank = pytest.importorskip("factlab.tensors.rank")
    W_QK, W_VO = example_3_3_circuits(people)
    stack = from_circuits(1e-3 * np.eye(people.n_tokens), [W_QK], [W_VO])
    AV = head_tensors(stack, people)[0]  # (3, 2, 2)
    A = attention_tensor(stack, people)[0]  # (3, 2, 5)
    for tensor, expected in ((AV, 3), (A, 4)):
        interval = rank.rank_interval(tensor, seed=0)
        assert interval.certified, interval
        assert interval.lower.value == interval.upper.value == expected
