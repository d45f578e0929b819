"""Capacity searches on planted monotone oracles return the exact threshold."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from factlab.experiments.core.search import bisect, bisect_up


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


@given(st.integers(1, 20), st.integers(0, 200), st.integers(-5, 260))
def test_the_smallest_succeeding_size_is_found_exactly(lo, span, threshold):
    """Success from ``threshold`` on (the least dimension that memorizes)."""
    hi = lo + span
    outcomes = {}
    while True:
        t = bisect_up(lo, hi, outcomes)
        if t.done:
            break
        assert t.probe not in outcomes and lo <= t.probe <= hi
        outcomes[t.probe] = t.probe >= threshold
    expected = max(lo, threshold) if threshold <= hi else None
    assert t.answer == expected
    assert len(outcomes) <= math.ceil(math.log2(hi - lo + 2))
