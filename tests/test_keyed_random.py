"""Keyed random numbers: a pure function of (key, counter, index), uniform, the same compiled or not."""

import numpy as np
import pytest

from factlab import keyed_random as kr
from factlab._numba import njit


def test_splitmix64_known_answer():
    """The first output of SplitMix64 seeded with 0 (Steele et al.'s reference generator)."""
    assert int(kr.bits(np.uint64(0), np.uint64(0))) == 0xE220A8397B1DCDAF
    # key 0, counter 0, stream 0 has base 0 (mix64(0) = 0): its first number is that same one
    base = np.uint64(kr.stream_base(np.uint64(0), np.uint64(0), np.uint64(0)))    # numba hands back an int
    assert int(base) == 0 and int(kr.random_bits(np.array([0], np.uint64), 0, 1)[0, 0]) == 0xE220A8397B1DCDAF


@pytest.mark.skipif(njit is None, reason="numba missing")
def test_compiled_scalars_equal_the_bulk_numpy_draws():
    keys = kr.model_keys(3, range(4))

    @njit
    def draw(key, counter, n, high):
        base = kr.stream_base(key, np.uint64(counter), np.uint64(2))
        return np.array([kr.below(base, np.uint64(i), high) for i in range(n)])

    bulk = kr.integers(keys, 9, 50, 17, stream=2)
    for m, key in enumerate(keys):
        assert np.array_equal(draw(key, 9, 50, 17), bulk[m])


def test_a_models_draws_depend_on_its_key_alone():
    keys = kr.model_keys(0, range(10))
    a = kr.uniforms(keys, 4, 100)
    b = kr.uniforms(keys[[7, 2]], 4, 100)
    assert np.array_equal(a[7], b[0]) and np.array_equal(a[2], b[1])
    assert not np.array_equal(a[0], kr.uniforms(keys[:1], 5, 100)[0])            # another counter
    assert not np.array_equal(a[0], kr.uniforms(keys[:1], 4, 100, stream=1)[0])  # another stream
    assert np.array_equal(kr.model_keys(0, [7]), keys[7:8])
    # per-model counters draw each row from its own counter
    mixed = kr.uniforms(keys[:2], np.array([4, 5]), 10)
    assert np.array_equal(mixed[0], a[0, :10]) and np.array_equal(mixed[1], kr.uniforms(keys[1:2], 5, 10)[0])


def test_integers_are_uniform_and_in_range():
    keys = kr.model_keys(1, range(200))
    x = kr.integers(keys, 0, 500, np.arange(200) % 7 + 1)
    assert (x >= 0).all() and (x < (np.arange(200) % 7 + 1)[:, None]).all()
    sixes = x[np.arange(200) % 7 == 5].ravel()                                     # high = 6
    counts = np.bincount(sixes, minlength=6)
    expected = len(sixes) / 6
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 20.5                                                             # p ~ 0.001 at 5 dof
    u = kr.uniforms(keys, 3, 1000).ravel()
    assert abs(u.mean() - 0.5) < 0.002 and abs(u.var() - 1 / 12) < 0.001
    # neighbouring keys and counters are uncorrelated
    assert abs(np.corrcoef(kr.uniforms(keys[:2], 0, 20000))[0, 1]) < 0.03


def test_permutations_put_padding_last():
    keys = kr.model_keys(2, range(3))
    p = kr.permutations(keys, 1, [4, 6, 1])
    assert p.shape == (3, 6)
    assert sorted(p[0, :4]) == [0, 1, 2, 3] and list(p[0, 4:]) == [4, 5]
    assert sorted(p[1]) == list(range(6)) and list(p[2, 1:]) == [1, 2, 3, 4, 5]
