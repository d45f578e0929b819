"""The database tensor D (eq. 1), its slices and fibers, and Proposition 2.1."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from factlab.databases.database import Database
from factlab.errors import ConfigError
from factlab.tensors.database_tensor import (
    database_tensor,
    fiber,
    object_slice,
    predicate_slice,
    proposition_2_1,
    sparse_database_tensor,
    subject_slice,
)
from paper_examples import FIGURE_1



def test_example_2_2_sizes_and_proposition_2_1():
    db = Database.from_triples(FIGURE_1)
    assert len(db) == 8 and db.shape == (5, 3, 4)
    assert proposition_2_1(db) == 6
    D = database_tensor(db)
    assert D.shape == (5, 3, 4) and D.sum() == 8
    # D_a:: of Example 2.2: rows born_in, currency, lives_in (sorted), columns Dollar, Malaysia, Ringgit, Singapore
    a = subject_slice(db, "Astrid")
    assert a.tolist() == [[0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]]
    assert predicate_slice(db, "currency").sum() == 2
    assert object_slice(db, "Singapore").sum() == 3
    assert fiber(db, subject="Colin", predicate="born_in").tolist() == [0, 1, 0, 0]
    assert fiber(db, subject="Colin", predicate="currency").sum() == 0
    assert fiber(db, predicate="lives_in", obj="Malaysia").sum() == 2


@st.composite
def databases(draw):
    n = draw(st.integers(1, 40))
    k = draw(st.lists(st.integers(0, 7), min_size=n, max_size=n))
    q = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    v = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    return Database.from_triples([(f"k{a}", f"q{b}", f"v{c}") for a, b, c in zip(k, q, v)], conflicts="first")


@given(databases())
@settings(max_examples=60, deadline=None)
def test_proposition_2_1_equals_the_sum_of_slice_matrix_ranks(db):
    D = database_tensor(db).numpy()
    by_k = sum(np.linalg.matrix_rank(D[i]) for i in range(D.shape[0]))
    by_q = sum(np.linalg.matrix_rank(D[:, j]) for j in range(D.shape[1]))
    assert proposition_2_1(db) == min(by_k, by_q) <= len(db)
    assert torch.equal(sparse_database_tensor(db).to_dense(), database_tensor(db))


def test_dense_tensor_refuses_beyond_its_memory_budget():
    db = Database.from_triples(FIGURE_1)
    with pytest.raises(ConfigError, match="max_bytes"):
        database_tensor(db, max_bytes=100)


def test_proposition_2_1_on_a_large_database_without_densifying():
    rng = np.random.default_rng(0)
    n_k, n_q, n_v, n = 100_000, 50, 100_000, 200_000
    tokens = [f"k{i}" for i in range(n_k)] + [f"q{i}" for i in range(n_q)] + [f"v{i}" for i in range(n_v)]
    kq = rng.choice(n_k * n_q, n, replace=False)
    facts = np.stack([kq // n_q, n_k + kq % n_q, n_k + n_q + rng.integers(0, n_v, n)], axis=1)
    db = Database.from_ids(tokens, facts)
    assert proposition_2_1(db) <= len(db) == n
    with pytest.raises(ConfigError):
        database_tensor(db)  # 1e5 x 50 x 1e5 would not fit
