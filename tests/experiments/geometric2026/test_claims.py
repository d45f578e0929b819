"""The claims of our Ravfogel et al. (2026) protocol on planted results."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from factlab.experiments.geometric2026.claims import analysis_claims, multihop_claims, threshold_claims


def by_id(claims):
    return {c["id"]: c for c in claims}


def thresholds(learned=lambda N, R: R * math.ceil(math.log2(N)), frozen=lambda N, R: 4 * N ** 0.5 * R,
               direct=lambda k: 4 * 2 ** k, cot=lambda k: 6, d_max=256, unfinished=()) -> pd.DataFrame:
    """Planted search results; a NaN threshold is a search that found no d in range, or, for
    the learned (N, R) in ``unfinished``, one still running."""
    rows = []
    for R in (2, 4):
        for N in (8, 32, 128, 1024):
            rows.append({"experiment": "threshold", "n_subjects": N, "n_relations": R, "embed": "learned", "hops": 1,
                         "cot": False, "threshold": learned(N, R), "d_max": d_max, "done": (N, R) not in unfinished})
            if N <= 128:
                rows.append({"experiment": "threshold", "n_subjects": N, "n_relations": R, "embed": "frozen",
                             "hops": 1, "cot": False, "threshold": frozen(N, R), "d_max": d_max, "done": True})
    for k in (1, 2, 3):
        for with_cot, f in ((False, direct), (True, cot)):
            rows.append({"experiment": "multihop", "n_subjects": 16, "n_relations": 2, "embed": "learned",
                         "hops": k, "cot": with_cot, "threshold": f(k), "d_max": d_max, "done": True})
    return pd.DataFrame(rows).astype({"threshold": float})


def test_threshold_claims_hold_on_log_growth_and_a_fast_growing_control():
    claims = by_id(threshold_claims(thresholds()))
    assert claims["threshold_log_n"]["holds"] and claims["control_needs_more"]["holds"]
    assert claims["threshold_log_n"]["ours"]["2"]["r2_log"] == pytest.approx(1.0)
    assert claims["threshold_log_n"]["ours"]["4"]["slope_per_doubling"] == pytest.approx(4.0)


def law_except(N0, R0, value=float("nan")):
    """The log law everywhere but at (N0, R0)."""
    return lambda N, R: value if (N, R) == (N0, R0) else R * math.ceil(math.log2(N))


@pytest.mark.parametrize("N0", [1024, 32])
def test_a_learned_search_with_no_d_in_range_fails_the_log_claim_and_is_named(N0):
    """The other three N of R = 2 still fit the law exactly (R² 1 on log N): dropping the
    censored search, as a fit on what was found would, would let the claim hold."""
    claims = by_id(threshold_claims(thresholds(learned=law_except(N0, 2))))
    c = claims["threshold_log_n"]
    assert not c["holds"]
    assert c["ours"]["2"]["censored"] == {str(N0): "none in range (d <= 256)"} and not c["ours"]["2"]["holds"]
    assert c["ours"]["2"]["r2_log"] == pytest.approx(1.0) and str(N0) not in c["ours"]["2"]["thresholds"]
    assert c["ours"]["4"]["censored"] == {} and c["ours"]["4"]["holds"]


def test_an_unfinished_learned_search_fails_the_log_claim_and_is_named():
    claims = by_id(threshold_claims(thresholds(learned=law_except(1024, 4), unfinished={(1024, 4)})))
    c = claims["threshold_log_n"]
    assert not c["holds"] and c["ours"]["4"]["censored"] == {"1024": "not finished"}
    assert c["ours"]["2"]["holds"] and not c["ours"]["4"]["holds"]


@pytest.mark.parametrize("world, fails", [
    (dict(learned=lambda N, R: 2 + N // 16), {"threshold_log_n"}),              # linear in N
    (dict(learned=lambda N, R: 12.0), {"threshold_log_n", "control_needs_more"}),  # flat; 12 > half the control
    (dict(frozen=lambda N, R: R * math.ceil(math.log2(N)) + 1), {"control_needs_more"}),
    (dict(frozen=lambda N, R: float("nan")), set()),                            # no control memorizes: needs more
])
def test_threshold_claims_fail_off_the_law(world, fails):
    claims = by_id(threshold_claims(thresholds(**world)))
    assert {cid for cid, c in claims.items() if not c["holds"]} == fails


def analyses(**changes) -> pd.DataFrame:
    base = {"replicate": [0, 1], "r2_init": [-2.0, -1.5], "r2_trained": [0.9, 0.8],
            "readout_init": [json.dumps([0.0, 0.01])] * 2, "readout_trained": [json.dumps([0.9, 0.8])] * 2,
            "moved": [0.95, 0.9], "kept": [1.0, 0.97], "joint": [0.95, 0.88], "swap_accuracy": [1.0, 1.0],
            "swap_steps": [100, 150],
            "scratch_accuracy": [1.0, 1.0], "scratch_steps": [400, 300]}
    base.update(changes)
    return pd.DataFrame(base)


def test_analysis_claims_hold_and_each_fails_alone():
    assert all(c["holds"] for c in analysis_claims(analyses()))
    cases = {"superposition": dict(r2_trained=[0.3, 0.4]),
             "linear_readout": dict(readout_trained=[json.dumps([0.2, 0.1])] * 2),
             "selector": dict(joint=[0.1, 0.2]),
             "transfer": dict(swap_accuracy=[0.7, 1.0])}
    for cid, change in cases.items():
        claims = by_id(analysis_claims(analyses(**change)))
        assert {k for k, c in claims.items() if not c["holds"]} == {cid}, cid
    # each rate apart high, but rarely both in the same intervention: the selector claim fails on joint
    apart = by_id(analysis_claims(analyses(moved=[1.0, 1.0], kept=[0.95, 0.95], joint=[0.5, 0.6])))
    assert not apart["selector"]["holds"]
    assert apart["selector"]["ours"] == {"joint": 0.55, "moved": 1.0, "kept": 0.95}
    slower = by_id(analysis_claims(analyses(swap_steps=[500, 400])))
    assert not slower["transfer"]["holds"]
    assert not any(c["holds"] for c in analysis_claims(pd.DataFrame()))


def test_multihop_claims():
    claims = by_id(multihop_claims(thresholds()))
    assert claims["multihop_direct_grows"]["holds"] and claims["multihop_cot_flat"]["holds"]
    growing_cot = by_id(multihop_claims(thresholds(cot=lambda k: 6 * k)))
    assert not growing_cot["multihop_cot_flat"]["holds"]
    flat_direct = by_id(multihop_claims(thresholds(direct=lambda k: 8)))
    assert not flat_direct["multihop_direct_grows"]["holds"]
    unsolved = by_id(multihop_claims(thresholds(direct=lambda k: 8 if k == 1 else float("nan"))))
    assert unsolved["multihop_direct_grows"]["holds"]        # beyond the range counts as larger
    cot_unsolved = by_id(multihop_claims(thresholds(cot=lambda k: 6 if k < 3 else float("nan"))))
    assert not cot_unsolved["multihop_cot_flat"]["holds"]


def test_the_readout_claim_shows_every_relations_accuracy_and_the_smallest():
    """Per relation, the mean over replicates: relation 1 is (0.8 + 0.6) / 2 = 0.7."""
    c = by_id(analysis_claims(analyses(readout_trained=[json.dumps([0.9, 0.8]), json.dumps([1.0, 0.6])],
                                       readout_init=[json.dumps([0.0, 0.02]), json.dumps([0.04, 0.0])])))
    ours = c["linear_readout"]["ours"]
    assert ours["per_relation_trained"] == [0.95, 0.7] and ours["min_trained"] == 0.7
    assert ours["per_relation_init"] == [0.02, 0.01] and ours["trained"] == 0.825
