"""The runner on an adaptive plan: rounds planned from stored results, a SIGKILL in any round
resumed to the same final results, claims and report written."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from factlab.errors import ConfigError
from factlab.experiments.core.runner import render, reproduce, run
from factlab.experiments.core.store import Store

from .toy_paper import PAPER, ToyConfig

HERE = Path(__file__).resolve().parents[3]     # the repository root, for the subprocess's imports


def probes(path):
    with Store.open(path, PAPER) as st:
        return st.frame("probes"), st.frame("units")


def test_an_adaptive_search_runs_round_after_round_to_the_planted_thresholds(tmp_path):
    s = run(PAPER, ToyConfig(), tmp_path, progress=False, log=lambda m: None)
    assert s.rounds == 7 and s.skipped == 0         # ceil(log2(65)) rounds for a 64-wide interval
    rows, units = probes(tmp_path / "results.duckdb")
    assert len(units) == s.rounds == s.units and rows["search"].nunique() == 6
    doc = render(PAPER, tmp_path, tmp_path)
    assert all(c["holds"] for c in doc["claims"])
    assert json.loads((tmp_path / "claims.json").read_text())["config_hash"] == doc["config_hash"]
    html = (tmp_path / "report.html").read_text()
    assert "a toy capacity search" in html and "6 of 6 claims hold" in html
    again = run(PAPER, ToyConfig(), tmp_path, progress=False, log=lambda m: None)
    assert (again.units, again.skipped) == (0, 7)
    with pytest.raises(ConfigError, match="--resume"):
        run(PAPER, ToyConfig(), tmp_path, resume=False)


@pytest.mark.parametrize("kill_after", [1, 4])
def test_killed_in_any_round_and_resumed_equals_a_clean_run(tmp_path, kill_after):
    killed = tmp_path / "killed"
    marker = tmp_path / "committed"
    script = textwrap.dedent(f"""
        import pathlib, sys, time
        sys.path.insert(0, {str(HERE)!r})
        from factlab.experiments.core.runner import run
        from tests.experiments.core.toy_paper import PAPER, ToyConfig
        def on_commit(i, n):
            if i + 1 == {kill_after}:
                pathlib.Path({str(marker)!r}).write_text(str(i))
                time.sleep(60)   # killed here, after round {kill_after}
        run(PAPER, ToyConfig(sleep=0.05), {str(killed)!r}, progress=False, on_commit=on_commit, log=lambda m: None)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the runner never committed a unit"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial, units = probes(killed / "results.duckdb")
    assert len(units) == kill_after
    resumed = run(PAPER, ToyConfig(), killed, progress=False, log=lambda m: None)
    assert resumed.skipped == kill_after and resumed.units == 7 - kill_after

    clean = tmp_path / "clean"
    run(PAPER, ToyConfig(), clean, progress=False, log=lambda m: None)
    a, _ = probes(killed / "results.duckdb")
    b, _ = probes(clean / "results.duckdb")
    assert a.equals(b)


def test_reproduce_refuses_a_store_of_another_config_before_any_work(tmp_path):
    reproduce(PAPER, "quick", tmp_path, progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="different config"):
        reproduce(PAPER, config=ToyConfig(seed=3), out=tmp_path, progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="unknown scale"):
        reproduce(PAPER, "paper", tmp_path / "x", progress=False, log=lambda m: None)
