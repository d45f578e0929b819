"""The claims of Nichani et al. (2024) on planted results: worlds where each must hold, and
changes that make it fail."""

import math

import numpy as np
import pandas as pd
import pytest

from factlab.experiments.nichani2024.claims import (boundary, capacity_claims, memory_claims, sequential_claims,
                                                    tradeoff_claims)
from factlab.experiments.nichani2024.figures import n_log_n_inverse


def by_id(claims):
    return {c["id"]: c for c in claims}


def memories(linear=lambda d: n_log_n_inverse(d ** 2 / 1.3), mlp=lambda md: n_log_n_inverse(md / 0.35),
             classes=lambda md: md / 1.2) -> pd.DataFrame:
    """Capacities planted on the given laws (default: exactly the paper's reference lines)."""
    rows = [{"experiment": "linear", "d": d, "alpha": 0.0, "capacity": float(linear(d))}
            for d in (8, 11, 16, 22, 32, 45)]
    for a in (1, 2, 4):
        for d in (8, 11, 16, 22):
            rows.append({"experiment": "mlp", "d": d, "alpha": float(a), "capacity": float(mlp(a * d * d))})
            rows.append({"experiment": "mlp_classes", "d": d, "alpha": float(a), "capacity": float(classes(a * d * d))})
    return pd.DataFrame(rows)


def test_memory_claims_hold_on_the_papers_own_lines():
    claims = by_id(memory_claims(memories()))
    assert all(c["holds"] for c in claims.values()), [c for c in claims.values() if not c["holds"]]
    assert claims["fig1_linear_constant"]["ours"]["constant"] == pytest.approx(1.3, rel=1e-3)
    assert claims["fig1_mlp_constant"]["ours"]["constant"] == pytest.approx(0.35, rel=1e-3)
    assert claims["fig6_constant"]["ours"]["constant"] == pytest.approx(1.2, rel=1e-3)
    assert claims["fig1_linear_grows_like_d2"]["ours"]["exponent"] == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("world, fails", [
    (dict(linear=lambda d: 3.0 * d), {"fig1_linear_constant", "fig1_linear_grows_like_d2"}),  # capacity ~ d
    (dict(linear=lambda d: n_log_n_inverse(d ** 2 / 4.0)), {"fig1_linear_constant"}),        # 3x the paper's constant
    (dict(mlp=lambda md: n_log_n_inverse(md / 0.1)), {"fig1_mlp_constant"}),
    # growing faster than m·d, yet with a fitted constant inside the band: only the exponent sees it
    (dict(mlp=lambda md: n_log_n_inverse(md ** 1.5 / 20)), {"fig1_mlp_linear_in_params"}),
    (dict(classes=lambda md: md / 3.0), {"fig6_constant"}),
    (dict(classes=lambda md: 2 * md ** 0.5), {"fig6_linear_in_params", "fig6_constant"}),
])
def test_memory_claims_fail_off_the_lines(world, fails):
    claims = by_id(memory_claims(memories(**world)))
    assert {cid for cid, c in claims.items() if not c["holds"]} == fails


def recall(facts=lambda p: 0.15 * p) -> pd.DataFrame:
    params = np.array([500, 1200, 3000, 8000, 20000, 50000], dtype=float)
    return pd.DataFrame({"experiment": "capacity", "params": params, "facts": facts(params)})


def test_facts_against_parameters():
    assert all(c["holds"] for c in capacity_claims(recall()))
    claims = by_id(capacity_claims(recall(lambda p: 0.5 * p)))
    assert not claims["fig4l_constant"]["holds"] and claims["fig4l_proportional"]["holds"]
    claims = by_id(capacity_claims(recall(lambda p: 3 * p ** 0.6)))
    assert not claims["fig4l_proportional"]["holds"]
    assert not any(c["holds"] for c in capacity_claims(recall().iloc[:1]))   # one point fits nothing


def grid(stored) -> pd.DataFrame:
    """The 13 x 13 grid of Figure 4 (right), d = 32, d_h = 8; ``stored(att, mlp)`` plants ok."""
    rows = []
    for h in (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32):
        for m in (1, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128):
            att, mlp = 32 * 8 * h, 32 * m
            ok = bool(stored(att, mlp))
            rows.append({"n_heads": h, "width": m, "attention_params": att, "mlp_params": mlp, "ok": ok,
                         "best_accuracy": 1.0 if ok else 0.5})
    return pd.DataFrame(rows)


PAPER_BOUNDARY = lambda att, mlp: mlp + att / 2 >= 2300  # noqa: E731 - the authors' line


def test_tradeoff_claims_hold_on_the_papers_boundary():
    g = grid(PAPER_BOUNDARY)
    claims = by_id(tradeoff_claims(g))
    assert all(c["holds"] for c in claims.values()), claims
    edge = boundary(g)
    assert edge.index[0] == 32 and edge.iloc[0] == 32 * 8 * 20            # m = 1: H = 20 (4,570 >= 4,536)
    assert (np.diff(edge.values) <= 0).all()
    # attention alone: H = 20 at m = 1 (5,120 + 32); together: H = 2 at m = 64 (512 + 2,048)
    assert claims["fig4r_together_fewer"]["ours"] == {"fewest_total": 2560, "attention_alone_total": 5152}


@pytest.mark.parametrize("stored, fails", [
    (lambda att, mlp: att >= 4000, {"fig4r_boundary_slopes_down", "fig4r_together_fewer"}),   # MLP useless
    # an MLP is needed and more of it does not help: no attention-only cell (nothing to compare
    # "together fewer" with), a flat boundary
    (lambda att, mlp: mlp >= 2000 and att >= 1000,
     {"fig4r_attention_alone", "fig4r_boundary_slopes_down", "fig4r_together_fewer"}),
    (lambda att, mlp: False, {"fig4r_attention_alone", "fig4r_boundary_slopes_down", "fig4r_together_fewer"}),
])
def test_tradeoff_claims_fail_without_a_tradeoff(stored, fails):
    claims = by_id(tradeoff_claims(grid(stored)))
    assert {cid for cid, c in claims.items() if not c["holds"]} == fails


def test_together_fewer_fails_with_nothing_to_compare():
    # cheap stored cells everywhere but at the smallest MLP width: attention alone stores nothing
    cheap = lambda att, mlp: mlp >= 256 and att >= 512
    claims = by_id(tradeoff_claims(grid(cheap)))
    fewer = claims["fig4r_together_fewer"]
    assert not fewer["holds"]
    assert fewer["ours"] == {"fewest_total": 768, "attention_alone_total": None,
                             "why": "no attention-only cell (MLP params 32) reached accuracy 0.99"}
    # the same world with attention alone storing the facts at H = 32 (8,192 + 32): now it holds
    claims = by_id(tradeoff_claims(grid(lambda att, mlp: cheap(att, mlp) or (mlp == 32 and att >= 8192))))
    assert claims["fig4r_together_fewer"]["holds"] and claims["fig4r_attention_alone"]["holds"]
    assert claims["fig4r_together_fewer"]["ours"] == {"fewest_total": 768, "attention_alone_total": 8224}
    # nothing stored at all
    none = by_id(tradeoff_claims(grid(lambda att, mlp: False)))["fig4r_together_fewer"]
    assert not none["holds"] and none["ours"]["why"] == "no cell reached accuracy 0.99"


def curves(loss_at) -> pd.DataFrame:
    steps = np.arange(0, 8193, 64)
    loss = np.array([loss_at(s) for s in steps])
    relation = np.where(loss < math.log(8) + 0.2, 0.01, math.log(4))
    return pd.DataFrame({"step": steps, "loss": loss, "relation_loss": relation,
                         "subject_loss": np.maximum(loss - relation, 0)})


def three_stages(s):
    if s < 1800:
        return math.log(32)
    if s < 5000:
        return math.log(8) + 0.05
    return 0.01


def test_the_three_stages_hold_and_each_fails_alone():
    claims = by_id(sequential_claims(curves(three_stages), 8, 4))
    assert all(c["holds"] for c in claims.values()), claims
    assert claims["fig5_plateau_at_log_D"]["ours"]["longest_plateau"] == [1856, 4992]
    no_plateau = by_id(sequential_claims(curves(lambda s: math.log(32) if s < 2000 else 0.01), 8, 4))
    assert not no_plateau["fig5_plateau_at_log_D"]["holds"] and no_plateau["fig5_starts_at_log_DR"]["holds"]
    stuck = by_id(sequential_claims(curves(lambda s: three_stages(min(s, 4000))), 8, 4))
    assert stuck["fig5_plateau_at_log_D"]["holds"] and not stuck["fig5_converges"]["holds"]
    late = by_id(sequential_claims(curves(lambda s: 2.5 if s == 0 else three_stages(s)), 8, 4))
    assert not late["fig5_starts_at_log_DR"]["holds"]
    assert not any(c["holds"] for c in sequential_claims(pd.DataFrame(), 8, 4))
