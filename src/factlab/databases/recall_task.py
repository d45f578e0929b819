"""The synthetic factual recall task of Nichani, Lee & Bietti (2024), "Understanding Factual
Recall in Transformers via Associative Memories", as their public code defines it.

A fact is a (subject, relation) pair and its answer. A sequence hides the subject and the
relation among noise tokens and ends with EOS; the model must emit the answer at EOS. The
token vocabulary holds S subjects (ids 0..S-1), R relations (S..S+R-1), ``n_noise`` noise
tokens (S+R..) and one EOS (the last id). Answers are a separate output vocabulary: relation
r owns the block ``r·D .. r·D+D-1`` and each (s, r) has one answer in it, drawn uniformly
(:func:`answer_table`) or, for the paper's Figure 5, ``floor(s·D/S) + r·D``.

:class:`RecallTasks` draws fresh sequences for a stack of models (one task each) as a pure
function of each model's key, the step and a stream (:mod:`factlab.keyed_random`), so a
model sees the same data alone or in any stack; ``factlab.training.data.LastTokenSampler``
turns its draws into the engine's batches. Sample j of a draw uses numbers
``j·(T+3) .. j·(T+3)+T+2`` of the model's stream: subject, relation, subject position,
relation position, then one noise token per position 0..T-2 (the two overwritten ones are
drawn and discarded, which keeps the layout fixed); a smaller draw is a prefix of a larger.
This module keeps the paper's letters (S, R, D, T = ``seq_len``); as model dimensions
(docs/engine.md, "Names of dimensions") a sequence has C = T positions, the model's input
vocabulary V = S + R + n_noise + 1 and its output vocabulary O = R·D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from factlab import keyed_random as kr
from factlab._numba import njit
from factlab._threads import run_split
from factlab.errors import ConfigError

_HEAD = 4                      # numbers a sample draws before its noise tokens
_TO_UNIT = 1.0 / 9007199254740992.0   # 2^-53: the upper 53 bits of a number as a uniform in [0, 1)


@dataclass(frozen=True)
class RecallTaskConfig:
    """One recall task (Nichani et al. 2024): S subjects, R relations, D answers per relation,
    ``n_noise`` noise tokens (None: S + R, as in their code), sequences of ``seq_len`` tokens,
    subjects Zipf-distributed with exponent ``zipf`` (P(s) ∝ (s+1)^-zipf; 0 is uniform) and
    the Figure 5 answer table if ``structured``."""

    n_subjects: int
    n_relations: int
    n_answers: int = 8
    n_noise: int | None = None
    seq_len: int = 32
    zipf: float = 0.0
    structured: bool = False

    def __post_init__(self):
        if self.n_noise is None:
            object.__setattr__(self, "n_noise", self.n_subjects + self.n_relations)
        for name in ("n_subjects", "n_relations", "n_answers", "n_noise"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {getattr(self, name)}")
        if int(self.seq_len) != self.seq_len or self.seq_len < 3:
            raise ConfigError(f"seq_len must be an integer >= 3 (subject, relation, EOS), got {self.seq_len}")
        if not (math.isfinite(self.zipf) and self.zipf >= 0):
            raise ConfigError(f"zipf must be a finite exponent >= 0, got {self.zipf}")

    @property
    def first_relation(self) -> int:
        """Token id of relation 0."""
        return self.n_subjects

    @property
    def first_noise(self) -> int:
        """Token id of noise token 0."""
        return self.n_subjects + self.n_relations

    @property
    def eos(self) -> int:
        """Token id of EOS, the last of the vocabulary."""
        return self.first_noise + self.n_noise

    @property
    def vocab_size(self) -> int:
        """Input tokens: S + R + n_noise + 1."""
        return self.eos + 1

    @property
    def n_outputs(self) -> int:
        """Answers in all: D·R."""
        return self.n_answers * self.n_relations

    def answer_block(self, r: int) -> range:
        """The answers relation ``r`` owns."""
        return range(r * self.n_answers, (r + 1) * self.n_answers)

    def subject_probs(self) -> np.ndarray:
        """``(S,)`` float64: P(s) ∝ (s+1)^-zipf."""
        w = np.arange(1, self.n_subjects + 1, dtype=np.float64) ** -float(self.zipf)
        return w / w.sum()


def answer_table(config: RecallTaskConfig, seed: int = 0) -> np.ndarray:
    """``(S, R)`` int64: the answer of each (s, r), uniform in r's block (with replacement
    across pairs, from ``seed``), or ``floor(s·D/S) + r·D`` if ``config.structured``
    (Figure 5; the seed is then unused)."""
    S, R, D = config.n_subjects, config.n_relations, config.n_answers
    block = np.arange(R, dtype=np.int64)[None, :] * D                                  # (1, R)
    if config.structured:
        return np.arange(S, dtype=np.int64)[:, None] * D // S + block                  # (S, R)
    return np.random.default_rng(seed).integers(D, size=(S, R)).astype(np.int64) + block


def facts(config: RecallTaskConfig, table: np.ndarray) -> np.ndarray:
    """``(S·R, 3)`` int64: every fact as (subject token, relation token, answer id), s-major."""
    S, R = config.n_subjects, config.n_relations
    s, r = np.divmod(np.arange(S * R, dtype=np.int64), R)
    return np.stack([s, config.first_relation + r, np.asarray(table, dtype=np.int64)[s, r]], axis=1)


def _draw_models(share, keys, counter, stream, size, T, dims, cdf, cdf_at, table, table_at, inputs, targets):
    """Fill ``inputs[m] (size, T)`` and ``targets[m] (size,)`` for each model m of ``share``;
    ``dims[m] = (S, R, n_noise, zipf?)``. Compiled (GIL-free) where numba is installed."""
    W = np.uint64(T + 3)
    for m in share:
        base = kr.stream_base(keys[m], counter, stream)
        S, R, V, zipf = dims[m, 0], dims[m, 1], dims[m, 2], dims[m, 3]
        noise0, eos = S + R, S + R + V
        for j in range(size):
            i0 = np.uint64(j) * W
            if zipf:                                   # inverse CDF: first s with cdf[s] > u
                u = np.float64(kr.bits(base, i0) >> np.uint64(11)) * _TO_UNIT
                lo, hi = cdf_at[m], cdf_at[m] + S - 1
                while lo < hi:
                    mid = (lo + hi) // 2
                    if cdf[mid] > u:
                        hi = mid
                    else:
                        lo = mid + 1
                s = lo - cdf_at[m]
            else:
                s = np.int64(kr.below(base, i0, S))
            r = np.int64(kr.below(base, i0 + np.uint64(1), R))
            p = np.int64(kr.below(base, i0 + np.uint64(2), T - 1))
            q = np.int64(kr.below(base, i0 + np.uint64(3), T - 2))
            if q >= p:                                 # uniform over the T-2 other positions
                q += 1
            row = inputs[m, j]
            for t in range(T - 1):
                row[t] = noise0 + np.int64(kr.below(base, i0 + np.uint64(_HEAD + t), V))
            row[p], row[q], row[T - 1] = s, S + r, eos
            targets[m, j] = table[table_at[m] + s * R + r]


def _draw_numpy(share, keys, counter, stream, size, T, dims, cdf, cdf_at, table, table_at, inputs, targets):
    """The same numbers as :func:`_draw_models`, one model at a time in bulk numpy (the path
    where numba is missing)."""
    idx = (np.arange(size, dtype=np.uint64)[:, None] * np.uint64(T + 3)
           + np.arange(T + 3, dtype=np.uint64)[None, :])                               # (size, T+3)
    rows = np.arange(size)
    with np.errstate(over="ignore"):
        for m in share:
            base = np.uint64(kr.stream_base(keys[m], counter, stream))
            S, R, V, zipf = (int(d) for d in dims[m])
            if zipf:
                u = (kr.bits(base, idx[:, 0]) >> np.uint64(11)).astype(np.float64) * _TO_UNIT   # (size,)
                s = np.minimum(np.searchsorted(cdf[cdf_at[m]:cdf_at[m] + S], u, side="right"), S - 1)
            else:
                s = kr.below(base, idx[:, 0], S).astype(np.int64)
            r, p, q = (kr.below(base, idx[:, k], h).astype(np.int64) for k, h in ((1, R), (2, T - 1), (3, T - 2)))
            q += q >= p
            inputs[m, :, :T - 1] = S + R + kr.below(base, idx[:, _HEAD:], V).astype(np.int64)   # (size, T-1)
            inputs[m, rows, p], inputs[m, rows, q], inputs[m, :, T - 1] = s, S + r, S + R + V
            targets[m] = table[table_at[m] + s * R + r]


if njit is not None:
    _draw_models = njit(cache=True, nogil=True, error_model="numpy")(_draw_models)


class RecallTasks:
    """Fresh recall sequences for M models, one task each: ``inputs (M, size, C)`` token ids
    (C = ``seq_len``, the T of the module docstring) and the answer due at EOS, the last
    position. Models may differ in every size but ``seq_len``. Model m's sequences are a pure function of ``(keys[m], counter, stream)``.
    ``threads`` share the models, one whole model per thread."""

    def __init__(self, configs: Sequence[RecallTaskConfig], tables: Sequence[np.ndarray], *, threads: int = 1):
        self.configs, self.tables = tuple(configs), tuple(np.asarray(t, dtype=np.int64) for t in tables)
        if not self.configs or len(self.configs) != len(self.tables):
            raise ConfigError(f"need one answer table per config, got {len(self.configs)} configs and "
                              f"{len(self.tables)} tables")
        lengths = sorted({c.seq_len for c in self.configs})
        if len(lengths) > 1:
            raise ConfigError(f"all models of a sampler must share seq_len, got {lengths}")
        for m, (c, t) in enumerate(zip(self.configs, self.tables)):
            if t.shape != (c.n_subjects, c.n_relations):
                raise ConfigError(f"model {m}: answer table of shape {t.shape}, expected "
                                  f"{(c.n_subjects, c.n_relations)}")
            if not (t // c.n_answers == np.arange(c.n_relations)[None, :]).all():
                raise ConfigError(f"model {m}: an answer lies outside its relation's block of {c.n_answers}")
        self.seq_len, self.threads = lengths[0], threads
        self._dims = np.array([(c.n_subjects, c.n_relations, c.n_noise, c.zipf > 0) for c in self.configs],
                              dtype=np.int64)                                                  # (M, 4)
        cdfs = [np.cumsum(c.subject_probs()) for c in self.configs]
        for c in cdfs:
            c[-1] = 1.0                                  # every u < 1 finds a subject
        self._cdf, self._cdf_at = np.concatenate(cdfs), np.cumsum([0] + [len(c) for c in cdfs])[:-1].astype(np.int64)
        self._table = np.concatenate([t.ravel() for t in self.tables])
        self._table_at = np.cumsum([0] + [t.size for t in self.tables])[:-1].astype(np.int64)

    @property
    def n_models(self) -> int:
        return len(self.configs)

    def take(self, index: np.ndarray) -> "RecallTasks":
        """The tasks of the models at ``index``."""
        index = np.asarray(index).reshape(-1)
        return RecallTasks([self.configs[i] for i in index], [self.tables[i] for i in index], threads=self.threads)

    def draw(self, keys: np.ndarray, counter: int, size: int, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``(inputs (M, size, C), answers (M, size))`` int64: ``size`` sequences per model,
        keyed by ``(keys[m], counter, stream)``."""
        keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
        if len(keys) != self.n_models:
            raise ConfigError(f"{len(keys)} model keys for {self.n_models} models")
        if size < 1:
            raise ConfigError(f"size must be >= 1, got {size}")
        M, T = self.n_models, self.seq_len
        inputs = np.empty((M, size, T), dtype=np.int64)
        targets = np.empty((M, size), dtype=np.int64)
        args = (keys, np.uint64(counter), np.uint64(stream), int(size), T, self._dims, self._cdf,
                self._cdf_at, self._table, self._table_at, inputs, targets)
        models = np.arange(M, dtype=np.int64)
        if njit is not None:
            run_split(_draw_models, models, np.ones(M), self.threads, *args)
        else:  # pragma: no cover - exercised only where numba is missing
            _draw_numpy(models, *args)
        return inputs, targets
