"""The Ray backend on a local Ray instance gives the local backend's results."""

import numpy as np
import pytest

from factlab.experiments.core.runner import run
from factlab.experiments.core.store import Store
from factlab.experiments.wong2025 import PAPER
from factlab.experiments.wong2025.config import parse_spec
from factlab.experiments.wong2025.unit import tau_column

from ..wong2025.conftest import TINY

ray = pytest.importorskip("ray")


def test_ray_matches_local(tmp_path):
    tiny_spec = parse_spec(TINY)
    run(PAPER, tiny_spec, tmp_path / "local.duckdb", progress=False, log=lambda m: None)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        s = run(PAPER, tiny_spec, tmp_path / "ray.duckdb", backend="ray", progress=False, log=lambda m: None)
    finally:
        ray.shutdown()
    assert s.rows == 18
    with Store.open(tmp_path / "local.duckdb", PAPER) as st:
        a = st.frame("runs")
    with Store.open(tmp_path / "ray.duckdb", PAPER) as st:
        b, units = st.frame("runs"), st.frame("units")
    assert list(a["pair_id"]) == list(b["pair_id"])
    assert (a["status"] == b["status"]).all() and set(units["backend"]) == {"ray"}
    cols = ["epochs", "loss", "accuracy"] + [tau_column(t) for t in tiny_spec.thresholds.taus]
    np.testing.assert_allclose(a[cols].to_numpy(float), b[cols].to_numpy(float), atol=1e-4)
