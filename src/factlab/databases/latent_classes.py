"""Databases with latent classes: facts whose objects follow the subject's hidden class.

A purely random database has nothing to generalize from, so the completions study (Wong
2025b) draws ours with structure: subject k belongs to a latent class c(k); predicate q
ranges over its own random subset of a shared object pool; the object of a defined pair
(k, q) is f(c(k), q), except for a fraction of *noise facts* whose object is another value
of q's range. Class counts and noise levels move the database's effective rank. Every
knob is a field of :class:`LatentClassConfig`; all of them are our choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factlab.databases.database import Database
from factlab.errors import ConfigError


@dataclass(frozen=True)
class LatentClassConfig:
    """Knobs of :func:`latent_class_database` (our choice; the paper's databases are random)."""

    n_subjects: int = 40
    n_predicates: int = 6
    n_objects: int = 16            # the shared object pool
    values_per_predicate: int = 8  # each predicate's range: a random subset of the pool of this size
    n_classes: int = 4             # latent classes of subjects
    density: float = 0.3           # probability that a pair (k, q) is defined
    noise: float = 0.0             # fraction of defined pairs whose object is not f(c(k), q)

    def __post_init__(self):
        for name in ("n_subjects", "n_predicates", "n_objects", "values_per_predicate", "n_classes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.values_per_predicate > self.n_objects:
            raise ConfigError(f"values_per_predicate ({self.values_per_predicate}) exceeds n_objects ({self.n_objects})")
        if not 0.0 < self.density <= 1.0:
            raise ConfigError(f"density must be in (0, 1], got {self.density}")
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"noise must be in [0, 1], got {self.noise}")
        if self.noise > 0 and self.values_per_predicate < 2:
            raise ConfigError("noise facts need values_per_predicate >= 2 (another value than f(c, q))")


@dataclass(frozen=True)
class LatentClassDatabase:
    """A database drawn by :func:`latent_class_database` and the structure it was drawn from.

    Token names carry the indices: subject i is ``s{i}``, predicate j ``p{j}``, pool object o
    ``o{o}`` (zero-padded); tokens that occur in no fact are not in the vocabulary.
    """

    database: Database
    classes: np.ndarray  # (n_subjects,) latent class c(k)
    table: np.ndarray    # (n_classes, n_predicates) pool index of f(c, q)
    noise: np.ndarray    # (|D|,) bool, aligned with database.facts: object != f(c(k), q)
    config: LatentClassConfig


def latent_class_database(config: LatentClassConfig = LatentClassConfig(), *, seed: int = 0,
                          name: str | None = None) -> LatentClassDatabase:
    """Facts ``(k, q, f(c(k), q))`` over subjects in latent classes, a fraction of them noise.

    Each subject gets a uniform class; each predicate a random range of
    ``values_per_predicate`` pool objects and, per class, a uniform value f(c, q) in it; each
    pair is defined with probability ``density`` (at least one pair always); a defined pair
    is a noise fact with probability ``noise``, its object then uniform over q's range
    without f(c(k), q). The same seed gives the same database.
    """
    c = config
    rng = np.random.default_rng(seed)
    classes = rng.integers(c.n_classes, size=c.n_subjects)
    ranges = np.stack([rng.choice(c.n_objects, c.values_per_predicate, replace=False)
                       for _ in range(c.n_predicates)])                        # (Q, r)
    table = ranges[np.arange(c.n_predicates)[None, :],
                   rng.integers(c.values_per_predicate, size=(c.n_classes, c.n_predicates))]  # (C, Q)
    pairs = np.argwhere(rng.random((c.n_subjects, c.n_predicates)) < c.density)  # (n, 2), sorted by (k, q)
    if len(pairs) == 0:
        pairs = np.array([[rng.integers(c.n_subjects), rng.integers(c.n_predicates)]])
    true = table[classes[pairs[:, 0]], pairs[:, 1]]                              # (n,)
    noise = rng.random(len(pairs)) < c.noise
    # a noise object: uniform over the other values of q's range (shift by 1..r-1 within the range)
    r = c.values_per_predicate
    where = np.argmax(ranges[pairs[:, 1]] == true[:, None], axis=1)             # position of f in q's range
    other = ranges[pairs[:, 1], (where + rng.integers(1, max(r, 2), size=len(pairs))) % r]
    objects = np.where(noise, other, true)
    nk, nq, nv = (len(str(n - 1)) for n in (c.n_subjects, c.n_predicates, c.n_objects))
    tokens = ([f"s{i:0{nk}d}" for i in range(c.n_subjects)] + [f"p{j:0{nq}d}" for j in range(c.n_predicates)]
              + [f"o{v:0{nv}d}" for v in range(c.n_objects)])
    facts = np.stack([pairs[:, 0], c.n_subjects + pairs[:, 1], c.n_subjects + c.n_predicates + objects], axis=1)
    db = Database.from_ids(tokens, facts, name=name)  # drops unused pool tokens, keeps the order
    # one object per pair and pairs sorted by (k, q): db.facts lists the facts in our order, so noise stays aligned
    assert all(np.array_equal(np.array(db.tokens)[db.facts[:, m]], np.array(tokens)[facts[:, m]]) for m in range(3))
    return LatentClassDatabase(db, classes, table, noise, c)


def split_held_out(db: Database, fraction: float, *, seed: int = 0) -> tuple[Database, Database, np.ndarray]:
    """``(train, held_out, mask)``: ``round(fraction · |D|)`` facts (``mask``) held out, drawn
    uniformly without replacement; both keep ``db``'s vocabulary."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"held-out fraction must be in [0, 1), got {fraction}")
    n_out = int(round(fraction * len(db)))
    mask = np.zeros(len(db), dtype=bool)
    mask[np.random.default_rng(seed).choice(len(db), n_out, replace=False)] = True
    return db.select(~mask), db.select(mask), mask
