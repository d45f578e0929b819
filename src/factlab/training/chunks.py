"""How the engine cuts a stack into chunks that train together.

Models are sorted by (data size, the family's chunk sizes, e.g. the vocabulary); a compiled
step trains plain slices of that order (padding costs it memory, not time), the autograd
path the cuts of :func:`plan_chunks`, which trade padding against per-step overhead.
"""

from __future__ import annotations

import numpy as np


def _size_order(sizes: np.ndarray, chunk_sizes: np.ndarray) -> list[int]:
    """Model indices sorted by (data size, the family's chunk sizes), the order chunks are cut from."""
    keys = [sizes] + [chunk_sizes[:, k] for k in range(chunk_sizes.shape[1])]
    return np.lexsort(keys[::-1]).tolist()


def _slices(sizes, chunk_sizes, max_chunk: int) -> list[list[int]]:
    """Models in :func:`_size_order`, cut into runs of ``max_chunk``."""
    order = _size_order(np.asarray(sizes), np.asarray(chunk_sizes).reshape(len(sizes), -1))
    return [order[i:i + max_chunk] for i in range(0, len(order), max_chunk)]


# Cost model of one training step of a chunk, fitted on 2 CPU cores: a fixed overhead
# (kernel launches, Python) plus the family's estimate of the seconds per padded sequence
# (its chunk_cost; by default 1.5e-8 s times the product of its chunk sizes).
STEP_OVERHEAD_S = 4e-3
PER_UNIT_S = 1.5e-8


def plan_chunks(sizes, chunk_sizes, max_chunk: int, cost=None) -> list[list[int]]:
    """Cut models into chunks that train together, trading padding against per-step overhead.

    Models are sorted by (data size, chunk sizes); a cut is placed wherever the modelled step
    time ``STEP_OVERHEAD_S + M_c · B_max · cost(max sizes)`` of the two halves beats that of
    the whole (dynamic programming over the sorted order, at most ``max_chunk`` models a
    chunk). ``chunk_sizes (M, k)`` and ``cost`` (rows of sizes -> seconds per sequence;
    default ``PER_UNIT_S`` times their product) are the family's (``chunk_sizes``,
    ``chunk_cost`` of :class:`factlab.models.stack.Stack`).
    """
    sizes = np.asarray(sizes)
    chunk_sizes = np.asarray(chunk_sizes).reshape(len(sizes), -1)
    order = _size_order(sizes, chunk_sizes)
    n = len(order)
    B = np.array([max(sizes[i], 1) for i in order], dtype=np.float64)   # sequences per step, sorted
    S = chunk_sizes[order].astype(np.float64)                     # (n, k)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        lo = max(0, end - max_chunk)
        starts = np.arange(lo, end)
        # chunk [s, end): B is sorted so B_max = B[end-1]; the others: running max from the right
        c_max = np.maximum.accumulate(S[lo:end][::-1], axis=0)[::-1]
        c_max = PER_UNIT_S * np.prod(c_max, axis=1) if cost is None else np.asarray(cost(c_max), dtype=np.float64)
        total = best[starts] + STEP_OVERHEAD_S + (end - starts) * B[end - 1] * c_max
        k = int(np.argmin(total))
        best[end], cut[end] = total[k], starts[k]
    chunks = []
    end = n
    while end > 0:
        chunks.append(order[cut[end]:end])
        end = cut[end]
    return chunks[::-1]
