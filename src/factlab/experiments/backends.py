"""Where shards are trained: in this process (``local``, the default) or on a Ray cluster (``ray``).

A backend maps :func:`train_shard` over shards and yields each shard's rows as it finishes;
it never touches the store: the driver process is the one writer. Ray is an optional extra
(``pip install factlab[ray]``), imported only when the Ray backend is asked for.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Callable, Iterator, Sequence

import torch

from factlab.errors import ConfigError
from factlab.experiments.plan import Task
from factlab.experiments.store import tau_column
from factlab.models.attention_layer import AttentionLayerConfig, AttentionStack
from factlab.training.data import FixedData
from factlab.training.engine import RunConfig, TrainConfig, train

Progress = Callable[[int], None]


def train_shard(tasks: Sequence[Task], config: tuple[TrainConfig, RunConfig],
                progress: Progress | None = None) -> list[dict]:
    """Train every pair of a shard together with the engine; one ``runs`` row per pair.

    Each pair's layer is initialised alone from its own seed (``AttentionStack.init`` of a
    stack of one with the pair's ``init_seed``) and the stack is assembled from those weights,
    so a pair starts from the same point whatever shard it lands in; the engine's padding is
    inert, so its result does not depend on its neighbours (up to float rounding).
    """
    from factlab import __version__

    start = time.perf_counter()
    train_cfg, run_cfg = config
    configs = [AttentionLayerConfig(n_tokens=t.database.n_tokens, **t.layer) for t in tasks]
    dtype = getattr(torch, run_cfg.dtype)
    weights = [AttentionStack.init([c], seed=t.pair.init_seed, dtype=dtype).model_weights(0)
               for c, t in zip(configs, tasks)]
    stack = AttentionStack.from_weights(configs, weights)
    data = FixedData.from_databases([t.database for t in tasks])
    done = [0]

    def report(n: int) -> None:
        if progress is not None:
            progress(n - done[0])
        done[0] = n

    result = train(stack, data, train_cfg, run_cfg, progress=report)
    seconds = time.perf_counter() - start
    host = platform.node()
    rows = []
    for t, r in zip(tasks, result.results):
        row = {"pair_id": t.pair.pair_id, "db_id": t.pair.db_id, "layer_id": t.pair.layer_id,
               "status": r.status, "epochs": r.epochs, "loss": r.loss, "accuracy": r.accuracy}
        row.update({tau_column(tau): acc for tau, acc in r.tau_accuracy.items()})
        row.update({"init_seed": t.pair.init_seed, "factlab_version": __version__,
                    "torch_version": torch.__version__, "device": run_cfg.device, "host": host,
                    "shard_seconds": seconds, "kernel": result.kernel})
        rows.append(row)
    return rows


class LocalBackend:
    """Train shards one after another in this process."""

    name = "local"

    def map(self, shards: Sequence[Sequence[Task]], config: tuple[TrainConfig, RunConfig],
            progress: Progress | None = None) -> Iterator[tuple[int, list[dict]]]:
        for i, shard in enumerate(shards):
            yield i, train_shard(shard, config, progress)

    def close(self) -> None:
        pass


class RayBackend:
    """Train shards as Ray tasks, at most ``max_in_flight`` at a time, yielding them as they finish.

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
        self._remote = ray.remote(num_cpus=self.threads)(_ray_train_shard)

    def map(self, shards: Sequence[Sequence[Task]], config: tuple[TrainConfig, RunConfig],
            progress: Progress | None = None) -> Iterator[tuple[int, list[dict]]]:
        ray = self.ray
        pending: dict = {}
        queue = list(enumerate(shards))
        queue.reverse()
        while queue or pending:
            while queue and len(pending) < self.max_in_flight:
                i, shard = queue.pop()
                pending[self._remote.remote(list(shard), config, self.threads)] = (i, len(shard))
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i, n = pending.pop(ref)
                rows = ray.get(ref)
                if progress is not None:
                    progress(n)
                yield i, rows

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _ray_train_shard(tasks, config: tuple[TrainConfig, RunConfig], threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    return train_shard(tasks, config)


def make_backend(name: str, address: str | None = None, *, threads: int = 0):
    if name == "local":
        return LocalBackend()
    if name == "ray":
        return RayBackend(address, threads=threads or 1)
    raise ConfigError(f"unknown backend {name!r}; use 'local' or 'ray'")
