"""One database, three mechanisms: how each stores facts, and the ladder of its model sizes.

A database's facts (k, q, v) are stored by

- ``attention``: Wong (2025)'s attention-only layer with its own embeddings, trained on v
  after (k, q) (ours: Wong trains every next token, but q after k is not a fact, and the
  other two mechanisms are not asked for it); rung d has ``d_model = d`` and 4 heads with
  query-key and value-output size max(1, d/2) (ours: with one head of size d, measured on
  the quick databases, training stalls below accuracy 1 at every d up to 64, and a wider
  head is no better, so success is not monotone in d; with 4 heads it is);
- ``recall``: Nichani et al. (2024)'s recall transformer over frozen random embeddings, on
  the sequences (k, q, EOS) -> v (no noise tokens: ours; the facts are not hidden among
  distractors, so the comparison is of storage, not of retrieval); rung d has 2 heads of
  size max(1, d/2) and an MLP of width 2d;
- ``geometric``: Ravfogel et al. (2026)'s learned-embedding transformer, one layer, one head
  of size d, an MLP of width 4d, pre-LN, trained on v given (k, q) (the loss on the answer,
  as in our geometric2026 protocol).

Sizes grow along one ladder per mechanism (``LADDER``, d = 2 to 96) and the parameters
counted are the ones that train: the attention layer's and the geometric model's embeddings
store facts and count; the recall transformer's random embeddings are frozen and do not
(its count is Nichani et al.'s ``4·H·d_h·d + 2·m·d``, plus the MLP bias).
"""

from __future__ import annotations

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionLayerConfig
from factlab.models.recall_transformer import RecallTransformerConfig
from factlab.models.transformer import TransformerConfig

MECHANISMS = ("attention", "recall", "geometric")
LADDER = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96)


def check_mechanisms(names) -> tuple[str, ...]:
    names = tuple(names)
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown or not names:
        raise ConfigError(f"unknown mechanism(s) {unknown or names}; choose among {', '.join(MECHANISMS)}")
    return names


def model_config(mechanism: str, d: int, db: Database):
    """The model of ``mechanism`` at width ``d`` for the facts of ``db``."""
    T = db.n_tokens
    if mechanism == "attention":
        h = max(1, d // 2)
        return AttentionLayerConfig(n_tokens=T, d_model=d, n_heads=4, d_head_qk=h, d_head_vo=h)
    if mechanism == "recall":
        return RecallTransformerConfig(n_tokens=T + 1, n_answers=len(db.objects), d=d, n_heads=2,
                                       d_head=max(1, d // 2), width=2 * d)
    if mechanism == "geometric":
        return TransformerConfig(n_tokens=T, seq_len=2, d=d, n_layers=1, n_heads=1, d_head=d, width=4 * d)
    raise ConfigError(f"unknown mechanism {mechanism!r}")


def trained_params(mechanism: str, config) -> int:
    """The parameters that train (see the module docstring)."""
    if mechanism == "attention":
        T, d = config.n_tokens, config.d_model
        return 2 * T * d + config.non_embedding_params
    if mechanism == "recall":
        return config.params + config.width
    return config.params


def describe(mechanism: str, config) -> dict:
    """The model's sizes, for tables and JSON."""
    if mechanism == "attention":
        return {"d_model": config.d_model, "n_heads": config.n_heads, "d_head_qk": config.d_head_qk,
                "d_head_vo": config.d_head_vo}
    if mechanism == "recall":
        return {"d": config.d, "n_heads": config.n_heads, "d_head": config.d_head, "width": config.width}
    return {"d": config.d, "n_layers": config.n_layers, "n_heads": config.n_heads, "d_head": config.d_head,
            "width": config.width}
