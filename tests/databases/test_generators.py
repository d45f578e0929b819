"""Random databases: determinism, the knobs steer what they say, the paper population."""

import numpy as np
import pytest

from factlab.databases.generators import (
    PAPER_POPULATION_RANGES,
    RandomDatabaseConfig,
    bijections,
    paper_population,
    random_database,
)
from factlab.errors import ConfigError
from factlab.tensors.database_tensor import proposition_2_1


def test_same_seed_same_database_and_different_seed_differs():
    cfg = RandomDatabaseConfig(n_subjects=30, n_predicates=5, n_objects=12, density=0.4, share=0.3)
    assert random_database(cfg, seed=4) == random_database(cfg, seed=4)
    assert random_database(cfg, seed=4) != random_database(cfg, seed=5)


def test_values_per_predicate_bounds_the_objects_of_each_predicate():
    cfg = RandomDatabaseConfig(n_subjects=40, n_predicates=6, n_objects=30, density=0.8, values_per_predicate=3)
    db = random_database(cfg, seed=0)
    assert db.objects_per_predicate().max() <= 3
    assert proposition_2_1(db) <= 6 * 3


def test_density_one_defines_every_pair_and_max_facts_caps():
    db = random_database(RandomDatabaseConfig(n_subjects=9, n_predicates=4, n_objects=5, density=1.0), seed=1)
    assert len(db) == 36
    capped = random_database(RandomDatabaseConfig(n_subjects=9, n_predicates=4, n_objects=5, density=1.0,
                                                  max_facts=10), seed=1)
    assert len(capped) == 10


def test_share_one_makes_each_subject_repeat_its_first_object_where_allowed():
    db = random_database(RandomDatabaseConfig(n_subjects=20, n_predicates=5, n_objects=8, density=1.0,
                                              share=1.0), seed=2)
    # with every predicate ranging over all objects, every subject has one object only
    assert np.all(db.objects_per_subject() == 1)
    assert proposition_2_1(db) == db.shape[0]


def test_zipf_concentrates_objects():
    flat = random_database(RandomDatabaseConfig(n_subjects=200, n_predicates=1, n_objects=50, density=1.0), seed=3)
    skew = random_database(RandomDatabaseConfig(n_subjects=200, n_predicates=1, n_objects=50, density=1.0,
                                                zipf_exponent=2.0), seed=3)
    top = lambda db: np.bincount(db.tensor_index()[:, 2]).max()  # noqa: E731
    assert top(skew) > 2 * top(flat)


@pytest.mark.parametrize("bad", [dict(n_subjects=0), dict(density=0.0), dict(density=1.5), dict(share=-0.1),
                                 dict(values_per_predicate=0), dict(zipf_exponent=-1), dict(max_facts=0)])
def test_bad_knobs_are_rejected(bad):
    with pytest.raises(ConfigError):
        RandomDatabaseConfig(**bad)


def test_paper_population_matches_the_papers_description():
    pop = paper_population()
    assert len(pop) == PAPER_POPULATION_RANGES["n_databases"] == 548
    sizes = np.array([len(db) for db in pop])
    bounds = np.array([proposition_2_1(db) for db in pop])
    assert sizes.max() <= 200 and sizes.min() >= 1
    assert bounds.min() == 1 and bounds.max() > 100              # a wide range of rank bounds
    slope = (sizes * bounds).sum() / (bounds * bounds).sum()     # least squares through 0
    assert 1.5 < slope < 2.2                                     # the paper reports about 1.8
    assert paper_population(n=5) == pop[:5]                      # database i does not depend on n


def test_bijections_are_bijections():
    db = bijections(7, 3, seed=0)
    assert len(db) == 21 and db.shape == (7, 3, 7)
    idx = db.tensor_index()
    for r in range(3):
        assert sorted(idx[idx[:, 1] == r, 2].tolist()) == list(range(7))
