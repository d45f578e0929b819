"""Where units run: in this process (``local``, the default) or on a Ray cluster (``ray``).

A backend maps a paper's ``run_unit(config, unit)`` over units and yields each unit's rows
as it finishes; it never touches the store: the driver process is the one writer. Ray is
an optional extra (``pip install factlab[ray]``), imported only when asked for.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator, Sequence

import torch

from factlab.errors import ConfigError
from factlab.experiments.core.paper import Unit

RunUnit = Callable[[object, Unit], dict]


def _timed(run_unit: RunUnit, config, unit: Unit, threads: int) -> tuple[dict, float]:
    """Run one unit with ``threads`` torch threads (0: as they are); returns (rows, seconds)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        return run_unit(config, unit), time.perf_counter() - start
    finally:
        torch.set_num_threads(before)


class LocalBackend:
    """Run units one after another in this process."""

    name = "local"

    def __init__(self, threads: int = 0):
        self.threads = threads

    def map(self, run_unit: RunUnit, config, units: Sequence[Unit]) -> Iterator[tuple[Unit, dict, float]]:
        for unit in units:
            rows, seconds = _timed(run_unit, config, unit, self.threads)
            yield unit, rows, seconds

    def close(self) -> None:
        pass


class RayBackend:
    """Run units as Ray tasks, at most ``max_in_flight`` at a time, yielding them as they finish.

    ``address``: a running cluster (``ray://host:port`` or ``host:port``); ``None`` starts a
    local instance with ``num_cpus`` CPUs (default: all). Each task uses ``threads`` torch
    threads (one Ray CPU each)."""

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, threads: int = 1,
                 max_in_flight: int | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("the Ray backend needs Ray: pip install 'factlab[ray]'") from None
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": num_cpus or os.cpu_count()}
            ray.init(**kwargs, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            self.started = True
        self.threads = max(1, threads)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(1, cpus // self.threads) * 2
        self._remote = ray.remote(num_cpus=self.threads)(_timed)

    def map(self, run_unit: RunUnit, config, units: Sequence[Unit]) -> Iterator[tuple[Unit, dict, float]]:
        pending: dict = {}
        queue = list(units)[::-1]
        while queue or pending:
            while queue and len(pending) < self.max_in_flight:
                unit = queue.pop()
                pending[self._remote.remote(run_unit, config, unit, self.threads)] = unit
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in ready:
                unit = pending.pop(ref)
                rows, seconds = self.ray.get(ref)
                yield unit, rows, seconds

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_backend(name: str, address: str | None = None, *, threads: int = 0):
    if name == "local":
        return LocalBackend(threads)
    if name == "ray":
        return RayBackend(address, threads=threads or 1)
    raise ConfigError(f"unknown backend {name!r}; use 'local' or 'ray'")
