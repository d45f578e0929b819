"""Capacity searches as adaptive plans: the next probe is a pure function of the probes stored.

A capacity is the largest size n in ``[lo, hi]`` at which a model still succeeds
(memorizes its facts, reaches 99% accuracy), success being monotone: true up to the
capacity, false above it. :func:`bisect` reads the outcomes stored so far for one search
and says what to probe next, or that the search is done and its answer. Because it holds
no state of its own, a paper's plan can call it on the store's rows every round: many
searches advance together (every pending probe of a round trains as one stack), and a run
killed at any point resumes to the same answers.

Two stopping rules: integer bisection to the exact threshold (``ratio=None``), or a
geometric tolerance, stopping once the first failure is within ``ratio`` times the last
success (Nichani et al.'s MLP search stops at a ratio of 1.01).

The other direction, the *smallest* size that succeeds when success is monotone the other
way (the least embedding dimension that memorizes a database), is :func:`bisect_up`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Bisection:
    """The state of one search: ``best`` the largest size that succeeded (``lo - 1`` if none
    yet), ``fail`` the smallest size above it that failed (``hi + 1`` if none), ``probe``
    the size to try next (None when done), ``probes`` how many outcomes it read."""

    lo: int
    hi: int
    best: int
    fail: int
    probe: int | None
    probes: int

    @property
    def done(self) -> bool:
        return self.probe is None

    @property
    def answer(self) -> int | None:
        """The capacity once done: the largest size that succeeded, or None if even ``lo`` failed."""
        if not self.done:
            return None
        return self.best if self.best >= self.lo else None


def bisect(lo: int, hi: int, outcomes: Mapping[int, bool], *, ratio: float | None = None) -> Bisection:
    """The next probe of a search for the largest size in ``[lo, hi]`` that succeeds, given
    ``outcomes`` (size -> succeeded) stored so far.

    ``best`` is the largest size that succeeded and ``fail`` the smallest failed size above
    it (a non-monotone outcome below ``best`` is ignored); the next probe is the midpoint
    ``(best + fail) // 2``. Done when ``fail - best <= 1`` or, with ``ratio``, when
    ``fail <= ratio · best``; also done when ``lo`` itself failed (no size succeeds).
    """
    if hi < lo:
        raise ValueError(f"empty search interval [{lo}, {hi}]")
    best = max((n for n, ok in outcomes.items() if ok and lo <= n <= hi), default=lo - 1)
    fail = min((n for n, ok in outcomes.items() if not ok and best < n <= hi), default=hi + 1)
    done = fail - best <= 1 or (ratio is not None and best >= lo and fail <= ratio * best)
    probe = None if done else (best + fail) // 2
    return Bisection(lo, hi, best, fail, probe, len(outcomes))


@dataclass(frozen=True)
class Threshold:
    """The state of a search for the smallest size that succeeds: ``probe`` the size to try
    next (None when done), ``answer`` the smallest size in ``[lo, hi]`` that succeeded once
    done (None if even ``hi`` failed)."""

    probe: int | None
    answer: int | None
    probes: int

    @property
    def done(self) -> bool:
        return self.probe is None


def bisect_up(lo: int, hi: int, outcomes: Mapping[int, bool], *, ratio: float | None = None) -> Threshold:
    """The next probe of a search for the smallest size in ``[lo, hi]`` that succeeds, success
    being monotone (false below the threshold, true from it on): :func:`bisect` on the
    failures, read from the other end."""
    down = bisect(lo, hi, {n: not ok for n, ok in outcomes.items()}, ratio=ratio)
    if not down.done:
        return Threshold(down.probe, None, len(outcomes))
    smallest = down.best + 1                  # the largest failure, plus one (lo if lo succeeded)
    return Threshold(None, smallest if smallest <= hi else None, len(outcomes))
