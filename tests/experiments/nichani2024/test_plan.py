"""The plan of Nichani et al. (2024)'s reproduction: searches, the learning-rate ladder, units."""

from dataclasses import replace

import pandas as pd

from factlab.experiments.nichani2024.config import CapacitySpec, NichaniConfig, TrainingSpec, scale_config
from factlab.experiments.nichani2024.plan import Probe, capacities, pending, searches, units


def test_searches_follow_the_config():
    quick = scale_config("quick")
    found = searches(quick)
    assert sum(s.experiment == "linear" for s in found) == 5 * 2           # 5 dims x 2 seeds
    assert sum(s.experiment == "mlp" for s in found) == 9
    cap = [s for s in found if s.experiment == "capacity"]
    assert [(s.d, s.alpha, s.beta) for s in cap] == [(8, 2.0, 2.0), (8, 1.0, 1.0), (16, 2.0, 2.0), (16, 1.0, 1.0)]
    lin = next(s for s in found if s.id == "linear/d=22/seed=1")
    assert (lin.lo, lin.hi, lin.lrs) == (22, 22 * 22 // 2, (1000.0,))
    mlp = next(s for s in found if s.id == "mlp_classes/d=8/alpha=1/seed=0")
    assert (mlp.lo, mlp.hi, mlp.ratio) == (32, 64, 1.01)                   # 32 classes need N >= 32
    # the paper's grid skips (alpha, d) whose head size int(alpha·d/8) would be 0
    paper = [s for s in searches(NichaniConfig()) if s.experiment == "capacity"]
    assert not any(s.d == 8 and s.alpha == 0.5 for s in paper) and any(s.d == 16 and s.alpha == 0.5 for s in paper)
    # alpha·d < 8 for alpha 0.25 and 0.5 at d = 8 and 11, for 0.25 at d = 16 and 22: 6 alphas x 5 betas
    assert len(paper) == 10 * 25 - 6 * 5


def only_capacity(**changes):
    return replace(scale_config("quick"), linear=replace(scale_config("quick").linear, ds=(8,), seeds=1),
                   mlp=replace(scale_config("quick").mlp, ds=(8,), alphas=(1,)),
                   mlp_classes=replace(scale_config("quick").mlp_classes, ds=(8,), alphas=(1,)),
                   capacity=CapacitySpec(ds=(8,), pairs=((2.0, 2.0),), s_min=2, s_max=40),
                   training=TrainingSpec(lrs=(3e-3, 1e-2)), **changes)


def simulate(config, stored, thresholds):
    """Run the plan to the end, each probe storing its facts iff size <= thresholds[(search, lr)]."""
    probes = pd.DataFrame(columns=["search", "size", "lr", "ok"])
    rounds = 0
    while True:
        todo = pending(config, probes)
        if not todo:
            return probes, rounds
        rounds += 1
        rows = [{"search": p.search.id, "size": p.size, "lr": p.lr, "ok": stored(p, thresholds)} for p in todo]
        probes = pd.concat([probes, pd.DataFrame(rows)], ignore_index=True)


def test_searches_find_planted_thresholds_with_the_ladder():
    """Every search converges on its planted capacity; with the ladder a size counts as
    stored when any learning rate stores it, so the capacity is the best rate's."""
    config = only_capacity()
    thresholds = {}
    for i, s in enumerate(searches(config)):
        for j, lr in enumerate(s.lrs):
            thresholds[(s.id, lr)] = s.lo + (7 * i + 5 * j) % max(1, s.hi - s.lo)
    probes, rounds = simulate(config, lambda p, t: p.size <= t[(p.search.id, p.lr)], thresholds)
    caps = capacities(config, probes).set_index("search")
    for s in searches(config):
        best = max(thresholds[(s.id, lr)] for lr in s.lrs)
        got = caps.loc[s.id, "capacity"]
        if s.ratio is None:
            assert got == min(best, s.hi), s.id
        else:
            assert got <= best < caps.loc[s.id, "capacity"] * s.ratio + 1, s.id
        assert caps.loc[s.id, "done"]
    assert rounds <= 12
    cap = caps.loc["capacity/d=8/alpha=2/beta=2"]
    assert cap["facts"] == cap["capacity"] ** 2 and cap["params"] == 4 * 8 * 2 * 8 + 2 * 16 * 8


def test_a_partly_stored_size_asks_only_for_its_missing_learning_rates():
    config = only_capacity()
    s = next(x for x in searches(config) if x.experiment == "capacity")
    probes = pd.DataFrame([{"search": s.id, "size": 21, "lr": 3e-3, "ok": False}])
    todo = [p for p in pending(config, probes) if p.search.id == s.id]
    assert [(p.size, p.lr) for p in todo] == [(21, 1e-2)]
    probes = pd.concat([probes, pd.DataFrame([{"search": s.id, "size": 21, "lr": 1e-2, "ok": True}])])
    todo = [p for p in pending(config, probes) if p.search.id == s.id]
    assert [(p.size, p.lr) for p in todo] == [(31, 3e-3), (31, 1e-2)]      # 21 stored: bisect (21, 41)


def test_units_are_cut_by_size_and_named_by_their_contents():
    config = only_capacity()
    config = replace(config, runner=replace(config.runner, unit_models=2))
    empty = pd.DataFrame(columns=["search", "size", "lr", "ok"])
    first = units(config, empty, set(), False)
    kinds = [u.id.split(":")[0] for u in first]
    assert kinds.count("capacity") == 1 and kinds.count("tradeoff") == 13 and kinds[-1] == "sequential"
    assert all(len(u.payload) <= 2 for u in first if u.payload is not None)
    assert [u.id for u in units(config, empty, set(), False)] == [u.id for u in first]     # stable ids
    grid = {(h, m) for h in config.tradeoff.heads for m in config.tradeoff.widths}
    later = units(config, empty, grid, True)
    assert not any(u.id.startswith(("tradeoff", "sequential")) for u in later)
    assert all(isinstance(p, Probe) for u in later for p in u.payload)
