"""Run a compiled (GIL-free) function over a split of work items on a few threads.

The compiled kernels of factlab (:mod:`factlab.models.attention_kernel`,
:mod:`factlab.tensors.cp_kernel`, the optimizer updates of :mod:`factlab._updates`) each
handle a list of independent items (models, rows) and release the GIL; this module shares
the items among threads, balanced by a cost per item, and waits for all. An item always
runs whole on one thread, so the split changes no result.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

_POOLS: dict[int, ThreadPoolExecutor] = {}


def shares(items: np.ndarray, cost: np.ndarray, threads: int) -> list[np.ndarray]:
    """Split ``items`` into at most ``threads`` arrays of about equal summed ``cost[item]``,
    largest first onto the least loaded. Recent splits are remembered: a training loop
    asks for the same ones every step."""
    threads = max(1, min(int(threads), len(items)))
    if threads == 1:
        return [np.asarray(items, dtype=np.int64)]
    key = (threads, np.asarray(items).tobytes(), np.asarray(cost).tobytes())
    if key in _RECENT:
        return _RECENT[key]
    order = np.asarray(items)[np.argsort(-np.asarray(cost)[items], kind="stable")].tolist()
    load = [0.0] * threads
    out: list[list[int]] = [[] for _ in range(threads)]
    for i in order:
        t = min(range(threads), key=load.__getitem__)
        out[t].append(i)
        load[t] += float(cost[i])
    parts = [np.array(s, dtype=np.int64) for s in out if s]
    if len(_RECENT) >= 16:
        _RECENT.pop(next(iter(_RECENT)))
    _RECENT[key] = parts
    return parts


_RECENT: dict = {}


def run_split(fn, items: np.ndarray, cost: np.ndarray, threads: int, *args) -> None:
    """Call ``fn(share, *args)`` for each share of ``items`` (see :func:`shares`), in parallel."""
    parts = shares(items, cost, threads)
    if len(parts) == 1:
        fn(parts[0], *args)
        return
    pool = _POOLS.get(len(parts))
    if pool is None:
        pool = _POOLS[len(parts)] = ThreadPoolExecutor(len(parts), thread_name_prefix="factlab-kernel")
    for f in [pool.submit(fn, part, *args) for part in parts]:
        f.result()
