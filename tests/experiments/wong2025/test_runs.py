"""Wong (2025)'s experiment through the core: a run killed with SIGKILL mid-way and resumed
gives the rows of a clean run; results do not depend on the shard size; the training step
is recorded."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest

from factlab.errors import ConfigError
from factlab.experiments.core.runner import run
from factlab.experiments.core.store import Store
from factlab.experiments.wong2025 import PAPER
from factlab.experiments.wong2025.unit import tau_column

from .conftest import TINY

METRICS = ["epochs", "loss", "accuracy"]


def run_experiment(spec, path, **kw):
    return run(PAPER, spec, path, **{"progress": False, "log": lambda m: None, **kw})


def _runs(path):
    with Store.open(path, PAPER) as st:
        return st.frame("runs")


def _metrics(spec):
    return METRICS + [tau_column(t) for t in spec.thresholds.taus]


def test_clean_run_fills_store(tmp_path, tiny_spec):
    s = run_experiment(tiny_spec, tmp_path / "a.duckdb")
    assert (s.rows, s.units, s.skipped) == (18, 4, 0)
    runs = _runs(tmp_path / "a.duckdb")
    assert list(runs["pair_id"]) == list(range(18))
    assert runs["factlab_version"].notna().all() and runs["torch_version"].notna().all()
    record = json.loads(runs["train_config"][0])     # the step that ran is recorded with the config
    assert record["engine"]["kernel"] == "auto" and record["kernel_used"] == "fused" and record["numba_version"]
    with pytest.raises(ConfigError, match="--resume"):
        run_experiment(tiny_spec, tmp_path / "a.duckdb", resume=False)
    again = run_experiment(tiny_spec, tmp_path / "a.duckdb")
    assert (again.rows, again.skipped) == (0, 4)


def test_killed_and_resumed_equals_clean(tmp_path, tiny_spec):
    killed = tmp_path / "killed.duckdb"
    marker = tmp_path / "committed"
    script = textwrap.dedent(f"""
        import pathlib, time
        from factlab.experiments.wong2025.config import parse_spec
        from factlab.experiments.wong2025 import PAPER
        from factlab.experiments.core.runner import run
        spec = parse_spec({TINY!r})
        def on_commit(i, n):
            pathlib.Path({str(marker)!r}).write_text(str(i))
            time.sleep(30)   # killed here, between shards, or earlier
        run(PAPER, spec, {str(killed)!r}, progress=False, on_commit=on_commit)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the runner never committed a shard"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _runs(killed)
    assert 0 < len(partial) < 18
    resumed = run_experiment(tiny_spec, killed)
    assert resumed.rows == 18 - len(partial)

    clean = tmp_path / "clean.duckdb"
    run_experiment(tiny_spec, clean)
    a, b = _runs(killed), _runs(clean)
    assert list(a["pair_id"]) == list(b["pair_id"]) == list(range(18))
    assert (a["status"] == b["status"]).all()
    cols = _metrics(tiny_spec)
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-4)


def test_results_do_not_depend_on_shard_size(tmp_path, tiny_spec):
    other = replace(tiny_spec, runner=replace(tiny_spec.runner, shard_size=18))
    run_experiment(tiny_spec, tmp_path / "a.duckdb")
    run_experiment(other, tmp_path / "b.duckdb")
    a, b = _runs(tmp_path / "a.duckdb"), _runs(tmp_path / "b.duckdb")
    cols = _metrics(tiny_spec)
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-4)


def test_runner_kernel_reaches_the_engine_and_the_record(tmp_path, tiny_spec):
    spec = replace(tiny_spec, runner=replace(tiny_spec.runner, kernel="autograd"))
    run_experiment(spec, tmp_path / "k.duckdb")
    record = json.loads(_runs(tmp_path / "k.duckdb")["train_config"][0])
    assert record["engine"]["kernel"] == "autograd" and record["kernel_used"] == "autograd"
