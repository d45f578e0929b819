"""Proposition 3.5, the lower estimate (9) and the memorization condition (10)."""

import numpy as np
import pytest
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.models.bounds import (
    LayerBounds,
    bounds,
    layer_bounds,
    lower_estimate,
    memorization_condition,
    model_rank_interval,
    non_embedding_params,
    proposition_3_5,
)
from factlab.models.model_tensor import embedding_tensor, head_tensors, model_tensor
from paper_examples import FIGURE_1



def flattening_lower_bound(L: torch.Tensor) -> int:
    """Largest matrix rank of the three unfoldings of a 3-tensor (a lower bound on its CP rank)."""
    X = L.numpy()
    return max(np.linalg.matrix_rank(np.moveaxis(X, m, 0).reshape(X.shape[m], -1)) for m in range(3))


def test_formulas():
    c = AttentionLayerConfig(n_tokens=11, d_model=7, n_heads=3, d_head_qk=2, d_head_vo=5)
    assert proposition_3_5(c, 4) == 7 + 3 * 5 * 4
    assert lower_estimate(c) == 7 + 3 * 5
    assert non_embedding_params(c) == 2 * 3 * 7 * (5 + 2)


def test_layer_bounds_for_the_cli():
    assert layer_bounds(6, 4, 2, 3, 5) == {"params": 240, "prop35": 66, "lower_estimate": 18}
    # d_head_qk enters the parameter count only
    a, b = layer_bounds(6, 2, 1, 3, 5), layer_bounds(6, 2, 6, 3, 5)
    assert a["prop35"] == b["prop35"] and a["lower_estimate"] == b["lower_estimate"]
    assert a["params"] < b["params"]
    with pytest.raises(ConfigError, match="d_head_vo=7"):
        layer_bounds(6, 2, 1, 7, 5)
    with pytest.raises(ConfigError, match="predicates.*0"):
        layer_bounds(6, 2, 1, 3, 0)
    with pytest.raises(ConfigError, match="n_heads"):
        layer_bounds(6, 0, 1, 3, 2)


def test_condition_10_on_figure_1():
    db = Database.from_triples(FIGURE_1)  # Proposition 2.1 gives 6 (Example 2.2)
    small = AttentionLayerConfig(db.n_tokens, d_model=3, n_heads=1, d_head_qk=1, d_head_vo=2)  # (9): 5
    large = AttentionLayerConfig(db.n_tokens, d_model=2, n_heads=2, d_head_qk=1, d_head_vo=2)  # (9): 6
    assert not memorization_condition(small, db)
    assert memorization_condition(large, db)
    record = bounds(large, db)
    assert record == LayerBounds(params=2 * 2 * 2 * 3, prop35=2 + 2 * 2 * 3, lower_estimate=6,
                                 database_bound=6, condition_10=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposition_3_5_bounds_the_flattening_ranks(seed):
    """rank(L) <= d_model + n_heads·d_head_vo·|Q|: with few predicates and many subjects and
    objects the bound bites, and the flattening lower bound of L stays below it. The proof's
    steps hold too: each q-slice of Σ_h A^h V^h has rank <= n_heads·d_head_vo, E has rank <= d_model."""
    rng = np.random.default_rng(seed)
    K, Q, V = [f"k{i}" for i in range(11)], ["p", "r"], [f"v{i}" for i in range(13)]
    facts = [(k, q, V[rng.integers(len(V))]) for k in K for q in Q]
    db = Database.from_triples(facts)
    c = AttentionLayerConfig(db.n_tokens, d_model=2, n_heads=2, d_head_qk=1, d_head_vo=1)
    stack = AttentionStack.init([c], seed=seed, dtype=torch.float64)
    bound = proposition_3_5(c, db.shape[1])
    assert bound == 6 < min(db.shape[0], db.shape[2])
    for pairs in ("database", "all"):
        L = model_tensor(stack, db, pairs=pairs)
        assert 4 <= flattening_lower_bound(L) <= bound
        heads = head_tensors(stack, db, pairs=pairs).sum(0)  # Σ_h A^h V^h, (K, Q, V)
        for q in range(db.shape[1]):
            assert np.linalg.matrix_rank(heads[:, q, :].numpy()) <= c.n_heads * c.d_head_vo
        E = embedding_tensor(stack, db)
        assert flattening_lower_bound(E) <= c.d_model


def test_model_rank_interval_is_consistent_with_the_bounds():
    rank = pytest.importorskip("factlab.tensors.rank")
    db = Database.from_triples(FIGURE_1)
    c = AttentionLayerConfig(db.n_tokens, d_model=3, n_heads=2, d_head_qk=1, d_head_vo=1)
    stack = AttentionStack.init([c], seed=4, dtype=torch.float64)
    interval = model_rank_interval(stack, db)
    L = model_tensor(stack, db)
    assert interval.lower.value >= flattening_lower_bound(L)
    assert interval.lower.value <= interval.upper.value
    assert interval.lower.value <= proposition_3_5(c, db.shape[1])
    same = rank.rank_interval(L, seed=0)
    assert (same.lower.value, same.upper.value) == (interval.lower.value, interval.upper.value)
