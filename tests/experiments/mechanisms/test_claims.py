"""Our claims on the three mechanisms, on planted searches: worlds where each holds, and
changes that make exactly the expected ones fail."""

import numpy as np
import pandas as pd
import pytest

from factlab.experiments.mechanisms.claims import mechanisms_claims

MECHANISMS = ("attention", "recall", "geometric")


def by_id(claims):
    return {c["id"]: c for c in claims}


def planted(per_fact=None, rank_cost=None, recall_power=1.0) -> pd.DataFrame:
    """Smallest models planted on known laws over 8 databases: |D| = 16..2048 doubling, rank
    per fact cycling 0.2, 0.5, 0.8, 0.35 (independent of |D|), parameters = per-fact constant
    x |D| x (1 + rank_cost x rank per fact) (recall: x |D|^(recall_power - 1))."""
    per_fact = per_fact or {"attention": 6.0, "recall": 8.0, "geometric": 4.0}
    rank_cost = rank_cost or {m: 1.0 for m in MECHANISMS}
    rows = []
    for i, n in enumerate(16 * 2 ** np.arange(8)):
        rpf = (0.2, 0.5, 0.8, 0.35)[i % 4]
        for m in MECHANISMS:
            scale = n ** (recall_power - 1) if m == "recall" else 1.0
            params = per_fact[m] * n * scale * (1 + rank_cost[m] * rpf)
            rows.append({"db_id": i, "database": f"db{i}", "triples": int(n), "rank_upper": int(round(rpf * n)),
                         "mechanism": m, "done": True, "params": params, "params_per_fact": params / n})
    return pd.DataFrame(rows)


def test_every_claim_holds_in_the_planted_world():
    claims = by_id(mechanisms_claims(planted(), MECHANISMS))
    assert set(claims) == {f"{m}_grows_with_{x}" for m in MECHANISMS for x in ("facts", "rank")} | {
        "geometric_fewest_per_fact", "recall_linear_in_facts"}
    assert all(c["holds"] for c in claims.values()), [c for c in claims.values() if not c["holds"]]
    assert claims["recall_linear_in_facts"]["ours"]["exponent"] == pytest.approx(1.0, abs=0.05)
    assert claims["geometric_fewest_per_fact"]["ours"]["cheapest"] == {"geometric": 8}


@pytest.mark.parametrize("world, fails", [
    # attention cheapest: only the comparison fails
    (dict(per_fact={"attention": 2.0, "recall": 8.0, "geometric": 4.0}), {"geometric_fewest_per_fact"}),
    # recall's cost falls with rank per fact: its rank claim fails, its |D| claims still hold
    (dict(per_fact={"attention": 6.0, "recall": 30.0, "geometric": 4.0},
          rank_cost={"attention": 1.0, "recall": -0.9, "geometric": 1.0}), {"recall_grows_with_rank"}),
    # recall quadratic in |D|: not linear (and then dearer than geometric everywhere still)
    (dict(recall_power=2.0), {"recall_linear_in_facts"}),
    # recall's need shrinking with |D|: its |D| claims fail, its cost per fact is then all size
    # (so the rank claim fails too) and it becomes the cheapest
    (dict(recall_power=-0.5), {"recall_grows_with_facts", "recall_linear_in_facts", "recall_grows_with_rank",
                               "geometric_fewest_per_fact"}),
])
def test_claims_fail_off_the_planted_laws(world, fails):
    claims = by_id(mechanisms_claims(planted(**world), MECHANISMS))
    assert {cid for cid, c in claims.items() if not c["holds"]} == fails


def test_a_rank_that_only_follows_the_size_does_not_count():
    """Rank growing in step with |D| while parameters per fact stay flat: the raw rank would
    correlate with the parameters, the rank claim (per fact) must not see it."""
    best = planted(rank_cost={m: 0.0 for m in MECHANISMS})
    best["rank_upper"] = best["triples"] // 2
    claims = by_id(mechanisms_claims(best, MECHANISMS))
    assert not any(claims[f"{m}_grows_with_rank"]["holds"] for m in MECHANISMS)
    assert all(claims[f"{m}_grows_with_facts"]["holds"] for m in MECHANISMS)


def test_unfinished_or_failed_searches_are_left_out_and_too_few_do_not_hold():
    best = planted()
    best.loc[best["db_id"] >= 2, "params"] = np.nan       # only 2 databases memorized
    claims = by_id(mechanisms_claims(best, MECHANISMS))
    assert not any(c["holds"] for c in claims.values() if c["id"] != "geometric_fewest_per_fact")
    assert claims["attention_grows_with_facts"]["ours"] == {"spearman": None, "databases": 2}


def test_only_the_mechanisms_asked_for_are_claimed():
    best = planted()
    claims = by_id(mechanisms_claims(best[best["mechanism"] == "recall"], ("recall",)))
    assert set(claims) == {"recall_grows_with_facts", "recall_grows_with_rank", "recall_linear_in_facts"}
