"""The model tensor L of an attention layer (Wong 2025, sec. 3.1, eq. 4-8).

On sequences of length at most 3 a layer is a 3-tensor over the database's axes: its
logits after the prefix (k, q). Per head h,

- ``V^h[t, q, v] = W_VO^h[t, v]`` for t in K ∪ Q (eq. 4): every q-slice is the same
  submatrix of the value-output circuit;
- ``A^h[k, q, t]`` = the attention weight the last position of (k, q) puts on token t, for
  (k, q) in the database, 0 otherwise (eq. 5): ``softmax(W_QK^h[q, k], W_QK^h[q, q])``;
- ``(A^h V^h)[k, q, v] = Σ_t A^h[k, q, t] V^h[t, q, v]`` (eq. 6);
- ``E[k, q, v] = W_EU[q, v]`` (eq. 7);
- ``L = E + Σ_h A^h V^h`` (eq. 8).

Axes. k runs over ``db.subjects``, q over ``db.predicates``, v over ``db.objects`` (sorted
token ids, as in the database tensor D), and t over :func:`key_tokens`, the sorted union
of the subject and predicate ids (the paper's K ∪ Q). When a token is both subject and
predicate and the prefix is (x, x), both positions hold the same token t = x, so
``A^h[x, x, x]`` is the sum of the two weights, i.e. 1; this keeps Proposition 3.1
(``L[k, q, :]`` = the final logits on (k, q)) true for every pair. Shapes over these axes
are written with the paper's set sizes ``(|K|, |Q|, |V|)``; V, H and the other single
letters are factlab's names of dimensions (docs/engine.md), e.g. the circuits ``(H, V, V)``
over the model's whole vocabulary V.

``pairs="database"`` is the paper's definition (A^h is zero off the database's pairs, so
there ``L = E``); ``pairs="all"`` fills A^h on all of K x Q, giving the model's answers to
pairs that are not facts as well (Remark 2.5; sec. 9 counts artifacts on them).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.models.attention_layer import AttentionStack

Pairs = Literal["database", "all"]
PAIRS = ("database", "all")


def key_tokens(db: Database) -> np.ndarray:
    """Token ids of K ∪ Q, sorted: the t axis of V^h and A^h (eq. 4, 5)."""
    return np.union1d(db.subjects, db.predicates)


def pair_mask(db: Database, pairs: Pairs = "database") -> torch.Tensor:
    """``(|K|, |Q|)`` bool: True at the pairs (k, q) where A^h is filled."""
    if pairs not in PAIRS:
        raise ConfigError(f"pairs must be one of {PAIRS}, got {pairs!r}")
    n_k, n_q, _ = db.shape
    if pairs == "all":
        return torch.ones(n_k, n_q, dtype=torch.bool)
    idx = torch.from_numpy(db.tensor_index()[:, :2].copy())
    mask = torch.zeros(n_k, n_q, dtype=torch.bool)
    mask[idx[:, 0], idx[:, 1]] = True
    return mask


def value_tensor(stack: AttentionStack, db: Database, model: int = 0) -> torch.Tensor:
    """``V^h[t, q, v] = W_VO^h[t, v]`` (Wong 2025, eq. 4): ``(n_heads, |K ∪ Q|, |Q|, |V|)``."""
    vo = _circuits(stack, db, model)["W_VO"]  # (H, V, V)
    t, v = _ids(key_tokens(db)), _ids(db.objects)
    sub = vo[:, t][:, :, v]  # (H, |K∪Q|, |V|)
    return sub[:, :, None, :].expand(-1, -1, db.shape[1], -1).clone()  # (H, |K∪Q|, |Q|, |V|)


def attention_tensor(stack: AttentionStack, db: Database, model: int = 0, *,
                     pairs: Pairs = "database") -> torch.Tensor:
    """A^h of Wong 2025, eq. (5): ``(n_heads, |K|, |Q|, |K ∪ Q|)``.

    ``A^h[k, q, t]`` is the weight the last position of the prefix (k, q) puts on token t:
    ``(A[k,q,k], A[k,q,q]) = softmax(W_QK^h[q, k], W_QK^h[q, q])`` (rows of W_QK are the
    query token, columns the key token), summed when k and q are the same token; zero for
    every other t, and for pairs outside ``pairs`` (see the module docstring).
    """
    return _attention(_circuits(stack, db, model)["W_QK"], db, pair_mask(db, pairs))


def embedding_tensor(stack: AttentionStack, db: Database, model: int = 0) -> torch.Tensor:
    """``E[k, q, v] = W_EU[q, v]`` (Wong 2025, eq. 7): ``(|K|, |Q|, |V|)``."""
    eu = _circuits(stack, db, model)["W_EU"]  # (V, V)
    sub = eu[_ids(db.predicates)][:, _ids(db.objects)]  # (|Q|, |V|)
    return sub[None].expand(db.shape[0], -1, -1).clone()  # (|K|, |Q|, |V|)


def head_tensors(stack: AttentionStack, db: Database, model: int = 0, *,
                 pairs: Pairs = "database") -> torch.Tensor:
    """``(A^h V^h)[k, q, v] = Σ_t A^h[k,q,t] V^h[t,q,v]`` (Wong 2025, eq. 6): ``(n_heads, |K|, |Q|, |V|)``."""
    circ = _circuits(stack, db, model)
    A = _attention(circ["W_QK"], db, pair_mask(db, pairs))  # (H, |K|, |Q|, |K∪Q|)
    vo = circ["W_VO"][:, _ids(key_tokens(db))][:, :, _ids(db.objects)]  # (H, |K∪Q|, |V|) = V^h[:, q, :]
    return torch.einsum("hkqt,htv->hkqv", A, vo)  # (H, |K|, |Q|, |V|)


def model_tensor(stack: AttentionStack, db: Database, model: int = 0, *,
                 pairs: Pairs = "database") -> torch.Tensor:
    """``L = E + Σ_h A^h V^h`` (Wong 2025, eq. 8): ``(|K|, |Q|, |V|)``, float64.

    Proposition 3.1: ``L[k, q, :]`` is the final logits of ``stack.logits`` on the prefix
    (k, q), restricted to the object columns, for every (k, q) in ``pairs``. Token ids of
    ``db`` index the model's vocabulary, which must be at least as large.
    """
    return embedding_tensor(stack, db, model) + head_tensors(stack, db, model, pairs=pairs).sum(0)


def model_tensors(stack: AttentionStack, dbs: Sequence[Database], *,
                  pairs: Pairs = "database") -> list[torch.Tensor]:
    """:func:`model_tensor` of every model of a stack, model i on ``dbs[i]``.

    The circuits of the whole stack are computed once (one batched product); the
    per-model tensors have different shapes, so they come back as a list.
    """
    if len(dbs) != stack.n_models:
        raise ConfigError(f"{len(dbs)} databases for a stack of {stack.n_models} models")
    circ = _all_circuits(stack)
    out = []
    for i, db in enumerate(dbs):
        c = _model_circuits(circ, stack, db, i)
        A = _attention(c["W_QK"], db, pair_mask(db, pairs))  # (H, |K|, |Q|, |K∪Q|)
        vo = c["W_VO"][:, _ids(key_tokens(db))][:, :, _ids(db.objects)]  # (H, |K∪Q|, |V|)
        E = c["W_EU"][_ids(db.predicates)][:, _ids(db.objects)]  # (|Q|, |V|)
        out.append(E[None] + torch.einsum("hkqt,htv->kqv", A, vo))  # (|K|, |Q|, |V|)
    return out


# ---------------------------------------------------------------------- internals
def _ids(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())


def _all_circuits(stack: AttentionStack) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return stack.to(dtype=torch.float64).circuits()


def _model_circuits(circ: dict[str, torch.Tensor], stack: AttentionStack, db: Database,
                    model: int, row: int | None = None) -> dict[str, torch.Tensor]:
    """Model ``model``'s circuits at its own vocabulary and heads; ``row`` indexes ``circ``."""
    c = stack.configs[model]
    if db.n_tokens > c.n_tokens:
        raise ConfigError(f"database has {db.n_tokens} tokens but model {model} has a vocabulary "
                          f"of only {c.n_tokens}")
    V, H, i = c.n_tokens, c.n_heads, model if row is None else row
    return {"W_EU": circ["W_EU"][i, :V, :V],           # (V, V)
            "W_QK": circ["W_QK"][i, :H, :V, :V],       # (H, V, V)
            "W_VO": circ["W_VO"][i, :H, :V, :V]}       # (H, V, V)


def _circuits(stack: AttentionStack, db: Database, model: int) -> dict[str, torch.Tensor]:
    """One model's circuits, computed from that model alone."""
    if not 0 <= model < stack.n_models:
        raise ConfigError(f"model index {model} is out of range for a stack of {stack.n_models}")
    return _model_circuits(_all_circuits(stack.select([model])), stack, db, model, row=0)


def _attention(qk: torch.Tensor, db: Database, mask: torch.Tensor) -> torch.Tensor:
    """A^h (eq. 5) from the circuits ``qk (H, V, V)``: ``(H, |K|, |Q|, |K ∪ Q|)``."""
    keys = key_tokens(db)
    k_ids, q_ids = _ids(db.subjects), _ids(db.predicates)
    H, (n_k, n_q) = qk.shape[0], (len(k_ids), len(q_ids))
    score_k = qk[:, q_ids][:, :, k_ids].transpose(1, 2)     # (H, |K|, |Q|): W_QK[q, k]
    score_q = qk[:, q_ids, q_ids][:, None, :].expand(H, n_k, n_q)  # (H, |K|, |Q|): W_QK[q, q]
    weights = torch.stack([score_k, score_q], -1).softmax(-1)  # (H, |K|, |Q|, 2): last row of Δ, eq. (3)
    weights = weights * mask[None, :, :, None]
    t_of_k = _ids(np.searchsorted(keys, db.subjects))        # (|K|,) position of k on the t axis
    t_of_q = _ids(np.searchsorted(keys, db.predicates))      # (|Q|,)
    A = torch.zeros(H, n_k, n_q, len(keys), dtype=qk.dtype)      # (H, |K|, |Q|, |K∪Q|)
    t_k = t_of_k[None, :, None, None].expand(H, n_k, n_q, 1)
    t_q = t_of_q[None, None, :, None].expand(H, n_k, n_q, 1)
    A.scatter_add_(3, t_k, weights[..., :1])  # add: when k == q as tokens both weights land on t
    A.scatter_add_(3, t_q, weights[..., 1:])
    return A
