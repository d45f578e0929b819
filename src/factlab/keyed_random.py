"""Random numbers keyed by (key, counter, index): the same draw wherever and whenever it is made.

The engine trains thousands of models at once, in chunks, on any number of threads; a
model's data must not depend on any of that. So every random draw of a data source is a
pure function of the model's own key (derived from the experiment's seed and the model's
identity), a counter (the training step, or the epoch) and the index of the number within
that step's draw: a model trained alone, in a stack of 50 or in another chunk sees the
same data.

The generator is SplitMix64 (Steele, Lea & Flood 2014) read as a counter-based generator:
the i-th number of a stream with base b is ``mix64(b + (i + 1)·γ)``, γ the golden-ratio
increment, and a stream's base is the mix of its key, counter and stream number. Its
output passes BigCrush as a sequence; here it only has to decorrelate streams and give
uniform draws, which the tests check.

:func:`mix64`, :func:`stream_base`, :func:`bits` and :func:`below` are compiled for
``uint64`` scalars (the samplers' kernels call them) and for ``uint64`` arrays (the bulk
functions here), so both compute the same numbers. Pass ``uint64`` values: numba promotes
``int64 + uint64`` to float64.
"""

from __future__ import annotations

import numpy as np

from factlab._numba import njit

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_COUNTER = np.uint64(0xD1B54A32D192ED03)
_STREAM = np.uint64(0x8CB92BA72F3D8DD7)
_S30, _S27, _S31, _S32, _S11 = (np.uint64(s) for s in (30, 27, 31, 32, 11))


def mix64(z):
    """SplitMix64's output function, on a ``uint64`` scalar (compiled) or array (numpy)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def stream_base(key, counter, stream):
    """The base of stream ``(key, counter, stream)`` (all ``uint64``, scalars or arrays)."""
    return mix64(mix64(key) ^ (counter * _COUNTER + stream * _STREAM))


def bits(base, i):
    """The ``i``-th 64-bit number (i = 0, 1, ...) of the stream with ``base``."""
    return mix64(base + (i + np.uint64(1)) * GAMMA)


def below(base, i, high):
    """A number uniform in ``[0, high)`` from the ``i``-th 64-bit number of the stream:
    Lemire's multiply-shift on its upper 32 bits (bias below ``high / 2^32``, far below
    what any test of ours could see for the sizes we draw)."""
    return ((bits(base, i) >> _S32) * np.uint64(high)) >> _S32


if njit is not None:  # compiled, for scalars in the samplers' kernels and for the arrays below alike
    mix64, stream_base, bits, below = (njit(cache=True)(f) for f in (mix64, stream_base, bits, below))


def model_keys(seed: int, ids) -> np.ndarray:
    """``(M,)`` uint64: the keys of models ``ids`` (any integers naming them: pair ids, run
    ids) in an experiment seeded with ``seed``, as a pure function of each pair."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    return np.array([np.random.SeedSequence([int(seed), int(i)]).generate_state(2, np.uint64)[0] for i in ids],
                    dtype=np.uint64)


def random_bits(keys: np.ndarray, counter: int, n: int, stream: int = 0) -> np.ndarray:
    """``(M, n)`` uint64: the first ``n`` numbers of each model's stream ``(key, counter, stream)``."""
    with np.errstate(over="ignore"):
        base = stream_base(np.asarray(keys, dtype=np.uint64), np.asarray(counter, dtype=np.uint64),
                           np.uint64(stream))[:, None]                                         # (M, 1)
        return bits(base, np.arange(n, dtype=np.uint64)[None, :])


def uniforms(keys: np.ndarray, counter: int, n: int, stream: int = 0) -> np.ndarray:
    """``(M, n)`` float64 uniform in ``[0, 1)``: the upper 53 bits of each number."""
    return (random_bits(keys, counter, n, stream) >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def integers(keys: np.ndarray, counter: int, n: int, high, stream: int = 0) -> np.ndarray:
    """``(M, n)`` int64 uniform in ``[0, high)``, ``high`` a scalar or one per model (as :func:`below`)."""
    keys = np.asarray(keys, dtype=np.uint64)
    high = np.broadcast_to(np.asarray(high, dtype=np.uint64), keys.shape)[:, None]
    with np.errstate(over="ignore"):
        return (((random_bits(keys, counter, n, stream) >> _S32) * high) >> _S32).astype(np.int64)


def permutations(keys: np.ndarray, counter: int, sizes) -> np.ndarray:
    """``(M, N)`` int64: row m is a uniform random permutation of ``0..sizes[m]-1`` followed
    by ``sizes[m]..N-1`` (padding last), N the largest size; keyed by ``(key, counter)``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    N = int(sizes.max()) if len(sizes) else 0
    u = uniforms(keys, counter, N, stream=1)
    u[np.arange(N)[None, :] >= sizes[:, None]] = 2.0                            # padding sorts last
    return np.argsort(u, axis=1, kind="stable")
