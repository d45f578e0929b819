"""The Ray backend on a local Ray instance gives the local backend's results."""

import numpy as np
import pytest

from factlab.experiments.runner import run_experiment
from factlab.experiments.store import ResultStore, tau_column

ray = pytest.importorskip("ray")


def test_ray_matches_local(tmp_path, tiny_spec):
    run_experiment(tiny_spec, tmp_path / "local.duckdb", progress=False, log=lambda m: None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = run_experiment(tiny_spec, tmp_path / "ray.duckdb", backend="ray", progress=False, log=lambda m: None)
    finally:
        ray.shutdown()
    assert s.trained == 18
    with ResultStore.open(tmp_path / "local.duckdb") as st:
        a = st.frame("runs")
    with ResultStore.open(tmp_path / "ray.duckdb") as st:
        b = st.frame("runs")
    assert list(a["pair_id"]) == list(b["pair_id"])
    assert (a["status"] == b["status"]).all() and set(b["backend"]) == {"ray"}
    cols = ["epochs", "loss", "accuracy"] + [tau_column(t) for t in tiny_spec.thresholds.taus]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-4)
