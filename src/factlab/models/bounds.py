"""Rank bounds of an attention layer and the memorization condition (Wong 2025, sec. 3.1, sec. 4).

- Proposition 3.5: ``rank(L) <= d_model + n_heads · d_head_vo · |Q|``.
- The lower estimate (9): ``d_model + n_heads · d_head_vo <= rank(L)``, assuming each head
  contributes to at least one predicate and the spans of E and the V^h barely meet. Not a
  theorem: the paper's working estimate of a layer's capacity.
- The memorization condition (10): Proposition 2.1 of the database <= (9) of the layer.
- Non-embedding parameters ``2 · n_heads · d_model · (d_head_vo + d_head_qk)`` (sec. 4), the
  x axis of Figure 2(b).

d_head_qk appears in none of the rank bounds: W_QK only selects which pairs a head
attends to (Example 3.3), while W_EU and the W_VO^h store the values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.models.model_tensor import Pairs, model_tensor
from factlab.tensors.database_tensor import proposition_2_1


def proposition_3_5(config: AttentionLayerConfig, n_predicates: int) -> int:
    """``d_model + n_heads · d_head_vo · |Q|``, the upper bound on rank(L) of Proposition 3.5."""
    _check_predicates(n_predicates)
    return config.d_model + config.n_heads * config.d_head_vo * int(n_predicates)


def lower_estimate(config: AttentionLayerConfig) -> int:
    """``d_model + n_heads · d_head_vo``, the estimated lower bound (9) on rank(L)."""
    return config.d_model + config.n_heads * config.d_head_vo


def non_embedding_params(config: AttentionLayerConfig) -> int:
    """``2 · n_heads · d_model · (d_head_vo + d_head_qk)`` (Wong 2025, sec. 4)."""
    return config.non_embedding_params


def memorization_condition(config: AttentionLayerConfig, db: Database) -> bool:
    """Condition (10): ``min(Σ_k |V_k|, Σ_q |V_q|) <= d_model + n_heads · d_head_vo``.

    Proposition 2.1 of the database against the lower estimate (9) of the layer. The paper
    calls it sufficient only under L = D exactly; argmax and softmax let layers beat it
    (sec. 3.2 and Figure 3).
    """
    return proposition_2_1(db) <= lower_estimate(config)


@dataclass(frozen=True)
class LayerBounds:
    """A layer's bounds against one database (Wong 2025, Prop. 2.1, Prop. 3.5, eq. 9, 10)."""

    params: int  # non-embedding parameters
    prop35: int  # Proposition 3.5 upper bound on rank(L), with |Q| of the database
    lower_estimate: int  # eq. (9)
    database_bound: int  # Proposition 2.1 upper bound on rank(D)
    condition_10: bool  # database_bound <= lower_estimate


def bounds(config: AttentionLayerConfig, db: Database) -> LayerBounds:
    """Every bound of a layer against a database, in one record."""
    db_bound = proposition_2_1(db)
    low = lower_estimate(config)
    return LayerBounds(params=non_embedding_params(config), prop35=proposition_3_5(config, db.shape[1]),
                       lower_estimate=low, database_bound=db_bound, condition_10=db_bound <= low)


def layer_bounds(d_model: int, n_heads: int, d_head_qk: int, d_head_vo: int, n_predicates: int) -> dict[str, int]:
    """The numbers of ``factlab layer-bounds``: ``{"params", "prop35", "lower_estimate"}``.

    Sizes are validated as an :class:`AttentionLayerConfig` (positive, head sizes <= d_model);
    the vocabulary does not enter any of these bounds.
    """
    config = AttentionLayerConfig(n_tokens=1,  # unused by the bounds; keeps errors about the sizes given
                                  d_model=d_model, n_heads=n_heads, d_head_qk=d_head_qk, d_head_vo=d_head_vo)
    return {"params": non_embedding_params(config),
            "prop35": proposition_3_5(config, n_predicates),
            "lower_estimate": lower_estimate(config)}


def model_rank_interval(stack: AttentionStack, db: Database, model: int = 0, *, pairs: Pairs = "database",
                        config=None, seed: int = 0):
    """The rank interval of the model tensor L (eq. 8) of one model of a stack on ``db``.

    L comes from :func:`~factlab.models.model_tensor.model_tensor` (``pairs`` as there);
    its rank is bracketed by :func:`factlab.tensors.rank.rank_interval` (flattening lower
    bounds, an exact CP decomposition found numerically as upper bound) with the
    ``CPSearchConfig`` ``config`` (its default when None) and ``seed``.
    """
    from factlab.tensors.rank import rank_interval  # tensors.rank is optional at import time

    L = model_tensor(stack, db, model, pairs=pairs)  # (|K|, |Q|, |V|)
    if config is None:
        return rank_interval(L, seed=seed)
    return rank_interval(L, config=config, seed=seed)


def _check_predicates(n_predicates: int) -> None:
    if isinstance(n_predicates, bool) or not isinstance(n_predicates, (int, np.integer)) or n_predicates < 1:
        raise ConfigError(f"the number of predicates |Q| must be a positive integer, got {n_predicates!r}")
