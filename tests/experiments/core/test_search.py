"""Capacity searches on planted monotone oracles return the exact threshold."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factlab.experiments.core.search import bisect


def run(lo, hi, threshold, ratio=None):
    outcomes = {}
    while True:
        b = bisect(lo, hi, outcomes, ratio=ratio)
        if b.done:
            return b, outcomes
        assert b.probe not in outcomes                 # never probes the same size twice
        outcomes[b.probe] = b.probe <= threshold


@given(st.integers(1, 50), st.integers(0, 300), st.integers(-5, 400))
def test_bisection_finds_the_exact_threshold_in_log_many_probes(lo, span, threshold):
    hi = lo + span
    b, outcomes = run(lo, hi, threshold)
    expected = None if threshold < lo else min(threshold, hi)
    assert b.answer == expected
    assert len(outcomes) <= math.ceil(math.log2(hi - lo + 2))


@given(st.integers(2, 40), st.integers(10, 5000))
def test_a_ratio_stop_brackets_the_threshold_within_the_ratio(lo, threshold):
    hi = 4000
    b, _ = run(lo, hi, threshold, ratio=1.01)
    if threshold < lo:
        assert b.answer is None
        return
    true = min(threshold, hi)
    assert b.answer <= true < b.fail and (b.fail <= 1.01 * b.answer or b.fail - b.answer <= 1)


def test_outcomes_outside_the_interval_and_below_the_best_are_ignored():
    b = bisect(10, 20, {5: False, 25: True, 15: True, 12: False})
    assert (b.best, b.fail, b.probe) == (15, 21, 18)
    with pytest.raises(ValueError, match="empty"):
        bisect(5, 4, {})
