"""Nichani et al. (2024)'s reproduction end to end on a tiny config: every table filled,
figures and claims written, and a run stopped after a few units resumes to the same results."""

import json

import pytest

from factlab.experiments.core.runner import render, run
from factlab.experiments.core.store import Store
from factlab.experiments.nichani2024 import PAPER
from factlab.experiments.nichani2024.config import (CapacitySpec, LinearMemorySpec, MLPMemorySpec, NichaniConfig,
                                                    SequentialSpec, TradeoffSpec, TrainingSpec)

TINY = NichaniConfig(
    name="tiny",
    linear=LinearMemorySpec(ds=(4, 6), seeds=1, steps=128),
    mlp=MLPMemorySpec(ds=(4,), alphas=(1, 2), steps=128),
    mlp_classes=MLPMemorySpec(ds=(4,), alphas=(2,), classes=8, steps=128),
    training=TrainingSpec(lrs=(1e-2,), steps=64, batch_size=64, eval_size=64, eval_every=32),
    capacity=CapacitySpec(ds=(8,), pairs=((2.0, 2.0),), s_max=6),
    tradeoff=TradeoffSpec(n_subjects=4, n_noise=4, d=8, d_head=2, heads=(1, 2), widths=(1, 8)),
    sequential=SequentialSpec(n_subjects=4, n_relations=2, n_answers=2, n_noise=4, seq_len=8, steps=64,
                              batch_size=64, curve_every=16, eval_size=64))

OWN = ["search", "size", "lr", "accuracy", "best_accuracy", "loss", "steps", "status", "ok"]


class Stop(Exception):
    pass


def tables(path):
    with Store.open(path, PAPER) as st:
        return {t: st.frame(t) for t in ("probes", "grid", "curves")}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("nichani")
    run(PAPER, TINY, out, progress=False, log=lambda m: None)
    return out


def test_end_to_end_fills_every_table_and_writes_claims_and_figures(clean):
    t = tables(clean / "results.duckdb")
    assert len(t["grid"]) == 4 and len(t["curves"]) == 5                   # steps 0, 16, ..., 64
    assert set(t["probes"]["experiment"]) == {"linear", "mlp", "mlp_classes", "capacity"}
    assert json.loads(t["probes"]["train_config"][0])["engine"]["stop_accuracy"] == 0.99
    doc = render(PAPER, clean, clean)
    assert {c["id"] for c in doc["claims"]} >= {"fig1_linear_constant", "fig4r_boundary_slopes_down",
                                               "fig5_plateau_at_log_D"}
    for stem in ("fig1_linear", "fig1_mlp", "fig6", "fig4_left", "fig4_right", "fig5"):
        assert (clean / "figures" / f"{stem}.png").stat().st_size > 5000
    with Store.open(clean / "results.duckdb", PAPER, read_only=True) as st:
        caps = PAPER.frames(st)["capacities"]
    assert caps["done"].all()                                               # every search finished


def test_a_run_stopped_after_three_units_resumes_to_the_same_results(clean, tmp_path):
    def stop(i, n):
        if i == 2:
            raise Stop

    with pytest.raises(Stop):
        run(PAPER, TINY, tmp_path, progress=False, log=lambda m: None, on_commit=stop)
    partial = tables(tmp_path / "results.duckdb")
    assert 0 < len(partial["probes"]) + len(partial["grid"]) + len(partial["curves"])
    run(PAPER, TINY, tmp_path, progress=False, log=lambda m: None)
    a, b = tables(tmp_path / "results.duckdb"), tables(clean / "results.duckdb")
    key = {"probes": ["search", "size", "lr"], "grid": ["n_heads", "width"], "curves": ["step"]}
    for name in a:
        cols = [c for c in a[name].columns if c not in ("train_config", "host", "factlab_version", "torch_version")]
        x = a[name][cols].sort_values(key[name]).reset_index(drop=True)
        y = b[name][cols].sort_values(key[name]).reset_index(drop=True)
        assert x.equals(y), name
