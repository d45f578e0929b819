"""Random databases, one function per family.

Wong (2025, sec. 4) trains on "randomly generated databases" of at most 200 triples without
fixing their distribution. :func:`random_database` exposes the knobs that steer the rank
of the result, and :func:`paper_population` fixes one distribution over those knobs for
the 548-database population of the paper's experiments (documented in its docstring).
Everything is deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from factlab.databases.database import Database
from factlab.errors import ConfigError


@dataclass(frozen=True)
class RandomDatabaseConfig:
    """Knobs of :func:`random_database`; none of them is fixed by the paper.

    - ``n_subjects``, ``n_predicates``, ``n_objects``: sizes of the token pools for K, Q, V
      (the database uses a subset: a subject with no defined pair does not occur).
    - ``density``: probability that a pair (k, q) is defined.
    - ``values_per_predicate``: each predicate draws its objects from its own random subset
      of this many objects (``None``: all objects), like ``currency`` ranging over currencies.
      Small ranges lower ``Σ_q |V_q|`` and so the Proposition 2.1 bound.
    - ``zipf_exponent``: objects within a predicate's range are drawn with probability
      proportional to ``rank^-s``; 0 is uniform.
    - ``share``: probability that a pair copies the object of another defined pair of the
      same subject (when that object is in its predicate's range), like ``born_in`` and
      ``lives_in`` agreeing; shared values across slices lower the tensor rank (Example 2.2).
    - ``max_facts``: defined pairs beyond this are dropped at random (the paper: 200).
    """

    n_subjects: int = 20
    n_predicates: int = 4
    n_objects: int = 20
    density: float = 0.5
    values_per_predicate: int | None = None
    zipf_exponent: float = 0.0
    share: float = 0.0
    max_facts: int | None = None

    def __post_init__(self):
        for field in ("n_subjects", "n_predicates", "n_objects"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be >= 1, got {getattr(self, field)}")
        if not 0.0 < self.density <= 1.0:
            raise ConfigError(f"density must be in (0, 1], got {self.density}")
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"share must be in [0, 1], got {self.share}")
        if self.values_per_predicate is not None and self.values_per_predicate < 1:
            raise ConfigError(f"values_per_predicate must be >= 1, got {self.values_per_predicate}")
        if self.zipf_exponent < 0:
            raise ConfigError(f"zipf_exponent must be >= 0, got {self.zipf_exponent}")
        if self.max_facts is not None and self.max_facts < 1:
            raise ConfigError(f"max_facts must be >= 1, got {self.max_facts}")


def random_database(config: RandomDatabaseConfig = RandomDatabaseConfig(), *, seed: int = 0,
                    name: str | None = None) -> Database:
    """A random database drawn with the knobs of ``config``; the same seed gives the same facts.

    Tokens are ``s000…`` (subjects), ``p0…`` (predicates) and ``o000…`` (objects), so K, Q
    and V are disjoint. At least one fact is always drawn.
    """
    c = config
    rng = np.random.default_rng(seed)
    defined = rng.random((c.n_subjects, c.n_predicates)) < c.density  # (K, Q)
    pairs = np.argwhere(defined)
    if len(pairs) == 0:
        pairs = np.array([[rng.integers(c.n_subjects), rng.integers(c.n_predicates)]])
    if c.max_facts is not None and len(pairs) > c.max_facts:
        pairs = pairs[np.sort(rng.choice(len(pairs), c.max_facts, replace=False))]

    width = c.values_per_predicate or c.n_objects
    width = min(width, c.n_objects)
    ranges = np.stack([rng.choice(c.n_objects, width, replace=False) for _ in range(c.n_predicates)])
    weights = np.arange(1, width + 1, dtype=np.float64) ** -c.zipf_exponent
    weights /= weights.sum()

    objects = ranges[pairs[:, 1], rng.choice(width, size=len(pairs), p=weights)]  # (n,)
    copy = rng.random(len(pairs)) < c.share  # pairs that try to copy an earlier object
    if copy.any():
        range_sets = [set(r.tolist()) for r in ranges]
        pick = rng.random(len(pairs))
        first_of_subject = np.r_[True, pairs[1:, 0] != pairs[:-1, 0]]  # pairs are sorted by k
        start = 0
        for i in range(len(pairs)):
            if first_of_subject[i]:
                start = i
            if copy[i]:
                candidates = [v for v in objects[start:i].tolist() if v in range_sets[pairs[i, 1]]]
                if candidates:
                    objects[i] = candidates[int(pick[i] * len(candidates))]

    nk, nq, nv = (len(str(n - 1)) for n in (c.n_subjects, c.n_predicates, c.n_objects))
    tokens = ([f"s{i:0{nk}d}" for i in range(c.n_subjects)]
              + [f"p{j:0{nq}d}" for j in range(c.n_predicates)]
              + [f"o{v:0{nv}d}" for v in range(c.n_objects)])
    facts = np.stack([pairs[:, 0], c.n_subjects + pairs[:, 1],
                      c.n_subjects + c.n_predicates + objects], axis=1)
    return Database.from_ids(tokens, facts, name=name)


#: Ranges of the knobs that :func:`paper_population` draws from (documented choice).
PAPER_POPULATION_RANGES = {
    "n_databases": 548,
    "max_facts": 200,
    "n_subjects": "log-uniform integer in [2, 120]",
    "n_predicates": "uniform integer in [1, 8]",
    "n_objects": "log-uniform integer in [2, 100]",
    "density": "uniform in [0.15, 1]",
    "values_per_predicate": "None (all objects) with probability 1/2, else uniform integer in [1, n_objects]",
    "zipf_exponent": "0 or 1 with equal probability",
    "share": "uniform in [0, 0.5]",
}


def paper_population_configs(n: int = 548, *, seed: int = 0, max_facts: int = 200) -> list[RandomDatabaseConfig]:
    """The knob settings of :func:`paper_population`, one per database."""
    rng = np.random.default_rng([seed, 548])

    def log_uniform(lo: int, hi: int) -> int:
        return int(round(np.exp(rng.uniform(np.log(lo), np.log(hi)))))

    configs = []
    for _ in range(n):
        n_objects = log_uniform(2, 100)
        configs.append(RandomDatabaseConfig(
            n_subjects=log_uniform(2, 120),
            n_predicates=int(rng.integers(1, 9)),
            n_objects=n_objects,
            density=float(rng.uniform(0.15, 1.0)),
            values_per_predicate=None if rng.random() < 0.5 else int(rng.integers(1, n_objects + 1)),
            zipf_exponent=float(rng.integers(0, 2)),
            share=float(rng.uniform(0.0, 0.5)),
            max_facts=max_facts,
        ))
    return configs


def paper_population(n: int = 548, *, seed: int = 0, max_facts: int = 200) -> list[Database]:
    """The population of random databases for the Wong (2025) experiments.

    The paper reports 548 databases of at most 200 triples and leaves their distribution
    open. Ours draws the knobs of :class:`RandomDatabaseConfig` independently per database
    from :data:`PAPER_POPULATION_RANGES`, which spreads the Proposition 2.1 bound from 1 to
    about 150 with more small databases than large ones. Database i is named ``db{i:03d}``
    and drawn with seed ``(seed, i)``, so any one can be regenerated alone.
    """
    return [
        random_database(cfg, seed=_child_seed(seed, i), name=f"db{i:03d}")
        for i, cfg in enumerate(paper_population_configs(n, seed=seed, max_facts=max_facts))
    ]


def bijections(n_subjects: int, n_relations: int, *, seed: int = 0, name: str | None = None) -> Database:
    """The shared-attribute task (Ravfogel et al. 2026, sec. 3): each relation a random bijection
    from the N subjects onto one shared attribute set, which is the subject set itself so that
    relations compose. Tokens ``e000…`` (entities) and ``r0…`` (relations); N·R facts."""
    if n_subjects < 1 or n_relations < 1:
        raise ConfigError(f"need n_subjects, n_relations >= 1, got {n_subjects}, {n_relations}")
    rng = np.random.default_rng(seed)
    ne, nr = len(str(n_subjects - 1)), len(str(n_relations - 1))
    tokens = [f"e{i:0{ne}d}" for i in range(n_subjects)] + [f"r{j:0{nr}d}" for j in range(n_relations)]
    rows = []
    for r in range(n_relations):
        perm = rng.permutation(n_subjects)
        rows.append(np.stack([np.arange(n_subjects), np.full(n_subjects, n_subjects + r), perm], axis=1))
    return Database.from_ids(tokens, np.concatenate(rows), name=name)


def config_dict(config: RandomDatabaseConfig) -> dict:
    """The knobs as a plain dict, for result provenance."""
    return asdict(config)


def _child_seed(seed: int, i: int) -> int:
    """An independent, reproducible seed for item ``i`` of a population drawn with ``seed``."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
