"""The shared-attribute bijection task of Ravfogel, Yehudai, Bruna & Bietti (2026), "Geometric
Factual Recall in Transformers": one-hop facts and k-hop compositions, with and without chain
of thought.

N subjects, R relations (their Section 2.1); relation r is a uniformly random permutation
``pi_r`` of the subjects onto the shared attribute set, which is the subject set itself, so
relations compose: the k-hop answer of subject s along the chain (r_1, ..., r_k) is
``pi_{r_k}(... pi_{r_1}(s))``.

Token layout (one vocabulary for inputs and answers):

- subjects, and with shared attributes also the attributes: ids ``0 .. N-1`` (attribute a is
  token a);
- relations: ids ``N .. N+R-1`` (relation r is token N + r);
- ``disjoint=True`` (their Appendix F, the setting of Nichani, Lee & Bietti 2024 without noise
  tokens): relation r owns its attributes, attribute a of relation r is token ``N+R + r·N + a``,
  so the vocabulary is ``N + R + R·N``; answers of different relations never coincide and
  k-hop composition is not defined (k > 1 raises :class:`~factlab.errors.ConfigError`).

Sequences (every function is deterministic for a seed):

- one hop: ``(s, r, pi_r(s))`` for every s and r, s-major (N·R sequences);
- k hops without chain of thought: ``(s, r_1, ..., r_k, a)``, length k + 2, the answer last;
- k hops with chain of thought: ``(s, r_1, a_1, r_2, a_2, ..., r_k, a_k)``, length 2k + 1,
  every intermediate answer ``a_i = pi_{r_i}(a_{i-1})`` written (a_0 = s).

All N·R^k (subject, chain) pairs are listed subject-major, then chains in lexicographic order
(r_1 most significant); ``max_sequences`` keeps a seeded subsample of distinct ones, in that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from factlab.errors import ConfigError

_INT64_MAX = 2 ** 63 - 1


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class BijectionTask:
    """N subjects, R relations, each a bijection of the subjects onto the attributes; the
    attributes are the subjects themselves (Section 2.1) or, if ``disjoint``, R separate
    blocks of N tokens, one per relation (Appendix F)."""

    n_subjects: int
    n_relations: int
    disjoint: bool = False

    def __post_init__(self):
        _check_int("n_subjects", self.n_subjects, 1)
        _check_int("n_relations", self.n_relations, 1)
        if not isinstance(self.disjoint, (bool, np.bool_)):
            raise ConfigError(f"disjoint must be a bool, got {self.disjoint!r}")

    @property
    def first_relation(self) -> int:
        """Token id of relation 0: N."""
        return self.n_subjects

    @property
    def first_attribute(self) -> int:
        """Token id of attribute 0 (of relation 0): 0 if shared, N + R if disjoint."""
        return self.n_subjects + self.n_relations if self.disjoint else 0

    @property
    def vocab_size(self) -> int:
        """N + R, or N + R + R·N if disjoint."""
        n, r = self.n_subjects, self.n_relations
        return n + r + (r * n if self.disjoint else 0)

    def relation_token(self, r):
        """Token id(s) of relation(s) ``r``."""
        return self.n_subjects + np.asarray(r, dtype=np.int64)

    def attribute_token(self, r, a):
        """Token id(s) of attribute(s) ``a`` as answers of relation(s) ``r`` (broadcast)."""
        a = np.asarray(a, dtype=np.int64)
        if not self.disjoint:
            return a + 0 * np.asarray(r, dtype=np.int64)
        return self.first_attribute + np.asarray(r, dtype=np.int64) * self.n_subjects + a


def draw_bijections(task: BijectionTask, seed: int = 0) -> np.ndarray:
    """``(R, N)`` int64: row r is ``pi_r``, a uniformly random permutation of ``0..N-1``.

    The same seed gives the same permutations as :func:`factlab.databases.generators.bijections`."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(task.n_subjects) for _ in range(task.n_relations)]).astype(np.int64)


def _check_perms(task: BijectionTask, perms) -> np.ndarray:
    perms = np.asarray(perms)
    shape = (task.n_relations, task.n_subjects)
    if perms.shape != shape:
        raise ConfigError(f"perms must have shape {shape} (R, N), got {perms.shape}")
    if not (np.sort(perms, axis=1) == np.arange(task.n_subjects)).all():
        bad = int(np.flatnonzero((np.sort(perms, axis=1) != np.arange(task.n_subjects)).any(1))[0])
        raise ConfigError(f"perms row {bad} is not a permutation of 0..{task.n_subjects - 1}: {perms[bad].tolist()}")
    return perms.astype(np.int64)


def compose(perms, chains, subjects=None, *, steps: bool = False) -> np.ndarray:
    """The answers of subjects along chains of relations, composing ``perms (R, N)`` hop by hop.

    ``chains (n_chains, k)`` relation indices, r_1 first. Without ``subjects``, every subject
    with every chain: ``(N, n_chains)``, entry [s, c] = ``pi_{r_k}(... pi_{r_1}(s))``; with
    ``subjects (n_chains,)``, subject c with chain c: ``(n_chains,)``. ``steps=True`` adds a last axis of length k holding every
    intermediate answer a_1 .. a_k (a_k the final one)."""
    perms, chains = np.asarray(perms, dtype=np.int64), np.asarray(chains, dtype=np.int64)
    if perms.ndim != 2 or chains.ndim != 2:
        raise ConfigError(f"perms must be (R, N) and chains (n_chains, k), got shapes {perms.shape} and {chains.shape}")
    if subjects is None:
        cur, rel = np.broadcast_to(np.arange(perms.shape[1])[:, None], (perms.shape[1], len(chains))), chains[None]
    else:
        cur, rel = np.asarray(subjects, dtype=np.int64), chains
        if cur.shape != (len(chains),):
            raise ConfigError(f"subjects must have shape ({len(chains)},), one per chain, got {cur.shape}")
    hops = []
    for i in range(chains.shape[1]):
        cur = perms[rel[..., i], cur]
        hops.append(cur)
    if steps:
        return np.stack(hops, axis=-1) if hops else np.empty(cur.shape + (0,), dtype=np.int64)
    return np.array(cur, dtype=np.int64)


class HopSequences(NamedTuple):
    """``sequences (n, C)`` int64 (C positions) and the positions that hold answers (the final
    one last)."""

    sequences: np.ndarray
    answer_positions: tuple[int, ...]

    @property
    def final_position(self) -> int:
        """Position of the final answer: C - 1."""
        return self.answer_positions[-1]


def hop_sequences(task: BijectionTask, perms, k: int = 1, *, cot: bool = False,
                  max_sequences: int | None = None, seed: int = 0) -> HopSequences:
    """Every (subject, chain of ``k`` relations) as a token sequence, N·R^k of them, or a seeded
    subsample of ``max_sequences`` distinct ones (all if that is not fewer).

    Without ``cot``: ``(s, r_1, ..., r_k, a_k)``, C = k + 2 positions, answer positions
    ``(k+1,)``. With ``cot``: ``(s, r_1, a_1, ..., r_k, a_k)``, C = 2k + 1, answer positions
    ``(2, 4, ..., 2k)``."""
    perms = _check_perms(task, perms)
    _check_int("k", k, 1)
    k = int(k)
    if task.disjoint and k > 1:
        raise ConfigError(f"k-hop composition is not defined with disjoint attributes (Appendix F), got k={k}")
    if max_sequences is not None:
        _check_int("max_sequences", max_sequences, 1)
    N, R = task.n_subjects, task.n_relations
    total = N * R ** k
    if total > _INT64_MAX:
        raise ConfigError(f"N·R^k = {N}·{R}^{k} sequences do not fit int64 indices")
    if max_sequences is None or max_sequences >= total:
        index = np.arange(total, dtype=np.int64)
    else:
        index = np.sort(np.random.default_rng(seed).choice(total, int(max_sequences), replace=False)).astype(np.int64)
    subjects, c = np.divmod(index, R ** k)
    place = R ** np.arange(k - 1, -1, -1, dtype=np.int64)                 # r_1 most significant
    chains = (c[:, None] // place[None, :]) % R                           # (n, k)
    answers = task.attribute_token(chains, compose(perms, chains, subjects, steps=True))   # (n, k)
    relations = task.relation_token(chains)
    if cot:
        body = np.stack([relations, answers], axis=2).reshape(len(index), 2 * k)
        return HopSequences(np.concatenate([subjects[:, None], body], axis=1), tuple(range(2, 2 * k + 1, 2)))
    return HopSequences(np.concatenate([subjects[:, None], relations, answers[:, -1:]], axis=1), (k + 1,))


def one_hop_sequences(task: BijectionTask, perms) -> np.ndarray:
    """``(N·R, 3)`` int64: every fact ``(s, r, pi_r(s))`` as tokens, s-major."""
    return hop_sequences(task, perms, 1).sequences


def final_answer(sequences) -> tuple[np.ndarray, np.ndarray]:
    """What to feed a trained model and what it must answer: ``(inputs (n, C-1), targets (n,))``,
    inputs = sequence[:-1] (with chain of thought, the intermediate answers included) and
    target = sequence[-1], the final answer."""
    sequences = np.asarray(sequences, dtype=np.int64)
    if sequences.ndim != 2 or sequences.shape[1] < 2:
        raise ConfigError(f"sequences must be (n, C) with C >= 2 positions, got shape {sequences.shape}")
    return sequences[:, :-1], sequences[:, -1]
