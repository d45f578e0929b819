"""The shared-attribute bijection task of Ravfogel et al. (2026): permutations, one-hop facts,
k-hop compositions with and without chain of thought, subsamples, the disjoint layout, errors."""

import itertools

import numpy as np
import pytest

from factlab.databases.bijections import (
    BijectionTask,
    compose,
    draw_bijections,
    final_answer,
    hop_sequences,
    one_hop_sequences,
)
from factlab.databases.generators import bijections
from factlab.errors import ConfigError


def _brute(perms, s, chain):
    """Every intermediate answer of subject ``s`` along ``chain``, one hop at a time."""
    out, a = [], s
    for r in chain:
        a = int(perms[r][a])
        out.append(a)
    return out


def test_every_relation_is_a_permutation_and_seeds_are_deterministic():
    task = BijectionTask(11, 5)
    perms = draw_bijections(task, seed=3)
    assert perms.shape == (5, 11) and perms.dtype == np.int64
    for row in perms:
        assert sorted(row.tolist()) == list(range(11))
    assert np.array_equal(perms, draw_bijections(task, seed=3))
    assert not np.array_equal(perms, draw_bijections(task, seed=4))
    assert len({tuple(r) for r in draw_bijections(BijectionTask(30, 6), seed=0)}) == 6   # rows differ


def test_same_permutations_as_the_database_generator():
    task = BijectionTask(9, 4)
    perms = draw_bijections(task, seed=7)
    facts = {tuple(f) for f in bijections(9, 4, seed=7).facts.tolist()}
    assert facts == {tuple(f) for f in one_hop_sequences(task, perms).tolist()}


def test_one_hop_sequences_are_exactly_the_facts():
    task = BijectionTask(7, 3)
    perms = draw_bijections(task, seed=1)
    seqs = one_hop_sequences(task, perms)
    expected = [(s, 7 + r, int(perms[r, s])) for s in range(7) for r in range(3)]
    assert seqs.dtype == np.int64 and seqs.tolist() == [list(e) for e in expected]
    hs = hop_sequences(task, perms, 1)
    assert np.array_equal(hs.sequences, seqs) and hs.answer_positions == (2,) and hs.final_position == 2
    assert seqs.max() < task.vocab_size == 10 and task.first_relation == 7 and task.first_attribute == 0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_k_hop_answers_match_a_brute_force_composition(k):
    N, R = 5, 3
    task = BijectionTask(N, R)
    perms = draw_bijections(task, seed=k)
    plain, cot = hop_sequences(task, perms, k), hop_sequences(task, perms, k, cot=True)
    assert plain.sequences.shape == (N * R ** k, k + 2) and cot.sequences.shape == (N * R ** k, 2 * k + 1)
    assert plain.answer_positions == (k + 1,) and plain.final_position == k + 1
    assert cot.answer_positions == tuple(range(2, 2 * k + 1, 2)) and cot.final_position == 2 * k
    pairs = [(s, c) for s in range(N) for c in itertools.product(range(R), repeat=k)]   # s-major, lexicographic
    for row_p, row_c, (s, chain) in zip(plain.sequences.tolist(), cot.sequences.tolist(), pairs):
        steps = _brute(perms, s, chain)
        assert row_p == [s] + [N + r for r in chain] + [steps[-1]]
        assert row_c == [s] + [x for r, a in zip(chain, steps) for x in (N + r, a)]
        assert [row_c[p] for p in cot.answer_positions] == steps
    chains = np.array(list(itertools.product(range(R), repeat=k)))
    grid = compose(perms, chains)
    assert grid.shape == (N, R ** k)
    assert grid.tolist() == [[_brute(perms, s, c)[-1] for c in chains.tolist()] for s in range(N)]
    assert compose(perms, chains, steps=True).shape == (N, R ** k, k)
    inputs, targets = final_answer(cot.sequences)
    assert np.array_equal(inputs, cot.sequences[:, :-1]) and np.array_equal(targets, grid.ravel())


def test_compose_pairs_subjects_with_chains():
    perms = draw_bijections(BijectionTask(8, 4), seed=2)
    rng = np.random.default_rng(0)
    subjects, chains = rng.integers(8, size=50), rng.integers(4, size=(50, 3))
    out = compose(perms, chains, subjects)
    steps = compose(perms, chains, subjects, steps=True)
    assert out.shape == (50,) and steps.shape == (50, 3) and np.array_equal(steps[:, -1], out)
    assert steps.tolist() == [_brute(perms, s, c) for s, c in zip(subjects.tolist(), chains.tolist())]
    inverse = np.argsort(perms, axis=1)                       # composing pi_r with its inverse is the identity
    assert np.array_equal(compose(np.concatenate([perms, inverse]), np.array([[1, 5]])), np.arange(8)[:, None])


def test_subsample_is_distinct_deterministic_and_within_the_full_set():
    task = BijectionTask(6, 4)
    perms = draw_bijections(task, seed=0)
    for cot in (False, True):
        full = hop_sequences(task, perms, 3, cot=cot).sequences
        assert len(full) == 6 * 4 ** 3
        sub = hop_sequences(task, perms, 3, cot=cot, max_sequences=50, seed=9).sequences
        assert sub.shape == (50, full.shape[1])
        assert len({tuple(r) for r in sub.tolist()}) == 50
        assert {tuple(r) for r in sub.tolist()} <= {tuple(r) for r in full.tolist()}
        assert np.array_equal(sub, hop_sequences(task, perms, 3, cot=cot, max_sequences=50, seed=9).sequences)
        assert not np.array_equal(sub, hop_sequences(task, perms, 3, cot=cot, max_sequences=50, seed=10).sequences)
        assert np.array_equal(hop_sequences(task, perms, 3, cot=cot, max_sequences=10 ** 6).sequences, full)
    big = BijectionTask(50, 20)                                # 50·20^6 = 3.2e9 pairs, never enumerated
    big_perms = draw_bijections(big)
    sub = hop_sequences(big, big_perms, 6, max_sequences=200, seed=1).sequences
    assert sub.shape == (200, 8) and len({tuple(r) for r in sub.tolist()}) == 200
    assert all(r[-1] == _brute(big_perms, r[0], [x - 50 for x in r[1:-1]])[-1] for r in sub.tolist())


def test_disjoint_layout_and_its_refusal_of_composition():
    N, R = 4, 3
    task = BijectionTask(N, R, disjoint=True)
    assert task.vocab_size == N + R + R * N == 19 and task.first_attribute == N + R
    perms = draw_bijections(task, seed=5)
    seqs = one_hop_sequences(task, perms)
    expected = [[s, N + r, N + R + r * N + int(perms[r, s])] for s in range(N) for r in range(R)]
    assert seqs.tolist() == expected and seqs.max() < task.vocab_size
    for r in range(R):                                         # relation r answers only in its own block
        ans = seqs[seqs[:, 1] == N + r, 2]
        assert sorted(ans.tolist()) == list(range(N + R + r * N, N + R + (r + 1) * N))
    assert np.array_equal(hop_sequences(task, perms, 1, cot=True).sequences, seqs)
    for k in (2, 3):
        with pytest.raises(ConfigError, match=f"k={k}"):
            hop_sequences(task, perms, k)


@pytest.mark.parametrize("kwargs, name", [
    ({"n_subjects": 0, "n_relations": 2}, "n_subjects"),
    ({"n_subjects": 3, "n_relations": -1}, "n_relations"),
    ({"n_subjects": 2.5, "n_relations": 2}, "n_subjects"),
    ({"n_subjects": 3, "n_relations": 2, "disjoint": "yes"}, "disjoint"),
])
def test_bad_task_values_raise_config_error_naming_them(kwargs, name):
    with pytest.raises(ConfigError, match=name) as err:
        BijectionTask(**kwargs)
    assert repr(kwargs[name]) in str(err.value)


def test_bad_call_values_raise_config_error_naming_them():
    task = BijectionTask(5, 2)
    perms = draw_bijections(task)
    with pytest.raises(ConfigError, match="k must .* got 0"):
        hop_sequences(task, perms, 0)
    with pytest.raises(ConfigError, match="max_sequences must .* got 0"):
        hop_sequences(task, perms, 2, max_sequences=0)
    with pytest.raises(ConfigError, match=r"\(2, 5\).*\(5, 2\)"):
        hop_sequences(task, perms.T, 1)
    broken = perms.copy()
    broken[1, 0] = broken[1, 1]
    with pytest.raises(ConfigError, match="row 1 is not a permutation"):
        hop_sequences(task, broken, 1)
    with pytest.raises(ConfigError, match=r"shape \(3,\).*got \(4,\)"):
        compose(perms, np.zeros((3, 2), dtype=int), subjects=np.zeros(4, dtype=int))
    with pytest.raises(ConfigError, match=r"shape \(5,\)"):
        final_answer(np.arange(5))
    with pytest.raises(ConfigError, match="fit int64"):
        hop_sequences(BijectionTask(2, 1000), draw_bijections(BijectionTask(2, 1000)), 7, max_sequences=5)
