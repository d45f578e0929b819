"""Artifacts of a trained layer: generalizations and hallucinations (Wong 2025b, arXiv 2502.17305).

A model's next-token probabilities on every prefix (k, q) in K x Q complete the training
database tensor (sec. 4, ``pairs="all"``). An *artifact* is a novel sentence (k, q, v),
one that is not a training fact, that the model predicts with probability at
least τ (default 0.5). Against held-out facts an artifact is a *generalization* if it is
a true (held-out) fact and a *hallucination* otherwise: the same mechanism makes both.

Choices the source leaves open, made here:

- Prefixes (``prefixes``): ``"kq"``, all of K x Q of the *training* database, including its
  own pairs (where an artifact is a confident wrong answer, counted in
  ``on_training_pairs``): the completed database tensor. Or ``"tt"``, every prefix
  (t1, t2) in T x T of the database's tokens: the completed 3-tensor of sentences over the
  whole vocabulary, of which the database tensor is one block; there an artifact may be
  any novel sentence, such as (v, k, q). The source's text is not at hand to decide which
  it counts; at τ >= 0.5 a ratio of artifacts to triples above |K||Q|/|D| is only possible
  with ``"tt"``.
- Probabilities: softmax over the model's whole vocabulary, i.e. its real next-token
  distribution from :meth:`AttentionStack.logits`, not only over the objects V as in the
  paper's L (eq. 8); v ranges over every token, so a confident non-object answer is an
  artifact too. With τ >= 0.5 there is at most one artifact per prefix.
- Held-out facts are matched to the training vocabulary by their strings. One whose
  subject is not in the training K, whose predicate is not in the training Q, or whose
  object is not a token of the model, lies outside what the model is asked and can
  neither be nor miss an artifact: it is listed in ``held_out_outside`` and left out of
  the generalization rate. A held-out fact equal to a training fact is not novel and is
  ignored; one that gives a training pair another object contradicts the training data
  and raises :class:`~factlab.errors.ConflictError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from factlab.databases.database import Conflict, Database
from factlab.errors import ConfigError, ConflictError
from factlab.models.attention_layer import AttentionStack

Triple = tuple[str, str, str]


@dataclass(frozen=True)
class Artifacts:
    """The artifacts of one model on one training database (Wong 2025b).

    ``artifacts`` are all novel sentences predicted with probability >= ``tau``, in
    (k, q) order, with their ``probabilities``; ``generalizations`` and
    ``hallucinations`` split them against held-out facts (both None when none were
    given). ``held_out_outside`` lists held-out facts outside the training K x Q (see the
    module docstring).
    """

    tau: float
    n_training: int  # |D_train|
    n_prefixes: int  # |K| · |Q| (or |T|² with prefixes "tt") of the training database
    artifacts: tuple[Triple, ...]
    probabilities: tuple[float, ...]
    on_training_pairs: int  # artifacts at a training (k, q): confident wrong answers
    generalizations: tuple[Triple, ...] | None = None
    hallucinations: tuple[Triple, ...] | None = None
    n_held_out: int = 0  # held-out facts given (novel ones, i.e. not training facts)
    held_out_outside: tuple[Triple, ...] = ()

    @property
    def n_artifacts(self) -> int:
        return len(self.artifacts)

    @property
    def n_generalizations(self) -> int | None:
        return None if self.generalizations is None else len(self.generalizations)

    @property
    def n_hallucinations(self) -> int | None:
        return None if self.hallucinations is None else len(self.hallucinations)

    @property
    def ratio(self) -> float:
        """Artifacts per training triple (the second paper reports several)."""
        return self.n_artifacts / self.n_training

    @property
    def generalization_rate(self) -> float | None:
        """Held-out facts inside K x Q that the model predicts (as artifacts), as a fraction."""
        inside = self.n_held_out - len(self.held_out_outside)
        if self.generalizations is None or inside == 0:
            return None
        return len(self.generalizations) / inside


PREFIXES = ("kq", "tt")


def artifacts(stack: AttentionStack, train: Database, *, model: int = 0, held_out: Database | None = None,
              tau: float = 0.5, prefixes: str = "kq") -> Artifacts:
    """The artifacts of model ``model`` of ``stack`` trained on ``train`` (Wong 2025b).

    ``tau`` is the probability threshold (any value in (0, 1]; below 0.5 a prefix may have
    several artifacts). ``held_out`` is a database of true facts not trained on, e.g.
    ``db.select(test_rows)``; its vocabulary may differ from ``train``'s. ``prefixes``: the
    prefixes completed, ``"kq"`` (K x Q) or ``"tt"`` (T x T; see the module docstring).
    """
    tau = float(tau)
    if not 0.0 < tau <= 1.0:
        raise ConfigError(f"tau must be in (0, 1], got {tau!r}")
    if prefixes not in PREFIXES:
        raise ConfigError(f"prefixes must be one of {PREFIXES}, got {prefixes!r}")
    if not 0 <= model < stack.n_models:
        raise ConfigError(f"model index {model} is out of range for a stack of {stack.n_models}")
    n_vocab = stack.configs[model].n_tokens
    if train.n_tokens > n_vocab:
        raise ConfigError(f"training database has {train.n_tokens} tokens but model {model} has a "
                          f"vocabulary of only {n_vocab}")
    P = next_token_probabilities(stack, train, model, prefixes=prefixes)  # (first, second prefix token, V)
    if prefixes == "kq":
        K, Q = train.subjects, train.predicates  # token ids of the prefixes' two axes
        idx = train.tensor_index()
    else:
        K = Q = np.arange(train.n_tokens)
        idx = train.facts[:, :2]
    trained = np.zeros(P.shape, dtype=bool)  # (first, second, V): training facts
    trained[idx[:, 0], idx[:, 1], train.facts[:, 2]] = True
    hit = (P.numpy() >= tau) & ~trained  # (first, second, V)
    ki, qi, vi = np.nonzero(hit)  # in prefix order
    names = _names(train, n_vocab)
    found = tuple((names[K[a]], names[Q[b]], names[c]) for a, b, c in zip(ki, qi, vi))
    probs = tuple(float(p) for p in P.numpy()[ki, qi, vi])
    pair_defined = np.zeros(P.shape[:2], dtype=bool)
    pair_defined[idx[:, 0], idx[:, 1]] = True
    result = dict(tau=tau, n_training=len(train), n_prefixes=len(K) * len(Q), artifacts=found,
                  probabilities=probs, on_training_pairs=int(pair_defined[ki, qi].sum()))
    if held_out is None:
        return Artifacts(**result)

    inside, outside = _held_out(train, held_out, n_vocab)
    true = set(inside)
    gen = tuple(t for t in found if t in true)
    hal = tuple(t for t in found if t not in true)
    return Artifacts(**result, generalizations=gen, hallucinations=hal, n_held_out=len(inside) + len(outside),
                     held_out_outside=tuple(outside))


def next_token_probabilities(stack: AttentionStack, db: Database, model: int = 0, *,
                             prefixes: str = "kq") -> torch.Tensor:
    """``softmax(Z(k, q)_2)`` over the model's vocabulary for every (k, q) in K x Q of ``db``.

    ``(|K|, |Q|, n_tokens)`` float64, from the model's own forward pass (eq. 2); the full
    next-token distribution, of which the model tensor L (eq. 8, ``pairs="all"``) holds
    the logits of the object columns. With ``prefixes="tt"``, for every (t1, t2) in
    T x T of the database's tokens: ``(|T|, |T|, n_tokens)``.
    """
    one = stack.select([model]).to(dtype=torch.float64)
    if prefixes == "tt":
        K = Q = np.arange(db.n_tokens)
    else:
        K, Q = db.subjects, db.predicates
    prefixes = torch.from_numpy(np.stack(np.meshgrid(K, Q, indexing="ij"), -1).reshape(-1, 2))  # (|K|·|Q|, 2)
    with torch.no_grad():
        z = one.logits(prefixes)[0, :, -1, : stack.configs[model].n_tokens]  # (|K|·|Q|, V)
    return z.softmax(-1).reshape(len(K), len(Q), -1)  # (|K|, |Q|, V)


# ---------------------------------------------------------------------- internals
def _names(db: Database, n_vocab: int) -> list[str]:
    """Token names of the model's vocabulary: the database's, then ``<token i>`` for extra ids."""
    return list(db.tokens) + [f"<token {i}>" for i in range(db.n_tokens, n_vocab)]


def _held_out(train: Database, held_out: Database, n_vocab: int) -> tuple[list[Triple], list[Triple]]:
    """Split held-out facts into novel ones inside the training K x Q and those outside it."""
    K = set(train.names(train.subjects))
    Q = set(train.names(train.predicates))
    vocab = set(_names(train, n_vocab))
    inside, outside, conflicts = [], [], []
    for k, q, v in held_out.triples():
        seen = train.get(k, q) if k in K and q in Q else None
        if seen == v:
            continue  # a training fact: not novel
        if seen is not None:
            conflicts.append(Conflict(k, q, ((seen, "training"), (v, "held-out"))))
        elif k in K and q in Q and v in vocab:
            inside.append((k, q, v))
        else:
            outside.append((k, q, v))
    if conflicts:
        raise ConflictError(conflicts, source="training + held-out facts")
    return inside, outside
