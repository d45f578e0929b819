"""Our Ravfogel et al. (2026) protocol: the searches' plan, and a tiny run end to end and resumed."""

import pandas as pd
import pytest

from factlab.experiments.core.runner import render, run
from factlab.experiments.core.store import Store
from factlab.experiments.geometric2026 import PAPER
from factlab.experiments.geometric2026.config import (AnalysisSpec, GeometricConfig, MultiHopSpec, ThresholdSpec,
                                                      TrainingSpec, scale_config)
from factlab.experiments.geometric2026.plan import searches, thresholds, units

TINY = GeometricConfig(
    name="tiny", training=TrainingSpec(max_steps=150, eval_every=25),
    threshold=ThresholdSpec(subjects=(4, 16), relations=(2,), d_max=16, control_max_subjects=4),
    analysis=AnalysisSpec(n_subjects=32, n_relations=2, d=8, replicates=1, interventions=5, steps=100),
    multihop=MultiHopSpec(n_subjects=4, n_relations=2, max_hops=2, d_max=16))


def test_searches_and_the_first_round():
    quick = scale_config("quick")
    found = searches(quick)
    frozen = [s for s in found if s.embed == "frozen"]
    assert {s.n_subjects for s in frozen} == {8, 32, 128} and len(found) - len(frozen) == 8 + 6
    first = units(quick, pd.DataFrame(columns=["search", "d", "ok"]), set())
    kinds = [u.id.split(":")[0] for u in first]
    assert kinds.count("analysis") == 2
    # one stack per (experiment, embedding, hops, chain of thought): shared shapes inside a unit
    multihop = [u for u in first if u.id.startswith("multihop")]
    assert len(multihop) == 6 and all(len({(p.search.hops, p.search.cot) for p in u.payload}) == 1 for u in multihop)
    assert all(p.d == (2 + 64) // 2 for u in first if u.payload and not isinstance(u.payload, int) for p in u.payload)


def test_thresholds_follow_the_stored_probes():
    config = scale_config("quick")
    s = next(x for x in searches(config) if x.id == "threshold/learned/N=32/R=2")
    rows = [{"search": s.id, "d": d, "ok": d >= 11} for d in (33, 17, 9, 13, 11, 10)]
    th = thresholds(config, pd.DataFrame(rows)).set_index("search")
    assert th.loc[s.id, "done"] and th.loc[s.id, "threshold"] == 11


class Stop(Exception):
    pass


def test_a_tiny_run_fills_the_store_and_a_stopped_run_resumes_to_it(tmp_path):
    clean = tmp_path / "clean"
    run(PAPER, TINY, clean, progress=False, log=lambda m: None)
    doc = render(PAPER, clean, clean)
    ids = {c["id"] for c in doc["claims"]}
    assert {"threshold_log_n", "superposition", "selector", "transfer", "multihop_cot_flat"} <= ids
    for stem in ("threshold", "multihop", "analysis", "transfer"):
        assert (clean / "figures" / f"{stem}.png").stat().st_size > 5000

    def stop(i, n):
        if i == 1:
            raise Stop

    with pytest.raises(Stop):
        run(PAPER, TINY, tmp_path / "stopped", progress=False, log=lambda m: None, on_commit=stop)
    run(PAPER, TINY, tmp_path / "stopped", progress=False, log=lambda m: None)
    drop = ["train_config", "host", "factlab_version", "torch_version"]
    for table, key in (("probes", ["search", "d"]), ("analyses", ["replicate"])):
        with Store.open(clean, PAPER) as st:
            a = st.frame(table).drop(columns=drop, errors="ignore").sort_values(key).reset_index(drop=True)
        with Store.open(tmp_path / "stopped", PAPER) as st:
            b = st.frame(table).drop(columns=drop, errors="ignore").sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)
