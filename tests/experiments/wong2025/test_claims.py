"""The claims logic of Wong (2025, sec. 4) (:func:`factlab.experiments.wong2025.claims.wong2025_claims`)
on planted results.

A *world* is the three frames a result store hands to the claims (``databases``, ``layers``,
``results``) plus the spec. :func:`make_world` builds one from a rule, not from a list of
answers:

- **databases**: 548 databases; the Proposition 2.1 bound ``prop21`` is uniform on 1..90 and
  ``|D| = round(1.8 × prop21 × u)`` with ``u`` uniform on [0.9, 1.1], so the slope of Figure 2(a)
  is 1.8 up to the jitter and ``|D| <= 1.8 × 90 × 1.1 < 200``.
- **layers**: the paper's 364 sizes (:func:`paper_layer_grid`), with
  ``params = 2 n_heads d_model (d_head_vo + d_head_qk)`` and the lower estimate (9)
  ``d_model + n_heads d_head_vo``.
- **pairs**: 3,947 distinct (layer, database) pairs. A layer and its *transpose* (same d_model and
  n_heads, d_head_vo and d_head_qk swapped) are trained on the same databases, a stratified random
  sample of the databases ordered by bound (so every layer sees bounds from 1 to 90): 10 databases
  per layer, 11 for the 280 layers with d_head_vo != d_head_qk and for 27 of the 84 with
  d_head_vo == d_head_qk (364 × 10 + 280 + 27 = 3,947).
- **accuracies**: with the Figure 3 cell (i, j) of a pair (layer bound in (i-5, i], database bound
  in (j-10, j]), a metric of *capacity* c memorizes the pair (accuracy 1) iff ``j <= c i``; any
  other pair gets ``0.5 lb / (lb + db)`` (< 0.5, strictly increasing in the layer bound lb,
  decreasing in the database bound db). Capacities: argmax 8, τ=0.75 4, τ=0.95 2, τ=0.99 0
  (never memorizes); τ=0.5 is 0.98 × argmax.

Since the rule depends on the pair only through its cell, every Figure 3 cell is either all 1
(memorized) or all < 0.5, and the frontier of row i is the largest populated j <= c i: with
populated columns 10..90 in every row, the capacity factor of a row is min(c i, 90) rounded down
to a multiple of 10, over i.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from factlab.experiments.wong2025.claims import wong2025_claims
from factlab.experiments.wong2025.config import ExperimentSpec, ThresholdsSpec, TrainingSpec
from factlab.models.attention_layer import paper_layer_grid

N_DATABASES, N_PAIRS, MAX_PROP21 = 548, 3947, 90
SLOPE = 1.8
CAPACITY = {"accuracy": 8, "acc_tau_0_75": 4, "acc_tau_0_95": 2, "acc_tau_0_99": 0}
TAU05_FACTOR = 0.98
CLAIM_IDS = {"n_databases", "max_triples", "n_layers", "n_pairs", "max_epochs", "fig2a_slope", "fig2b_corr",
             "fig3a_argmax_small_layers", "tau05_argmax", "fig3_tau0.75_factor", "fig3_tau0.95_factor",
             "fig3d_tau099_fails", "fig3_rises_with_layer_bound", "fig4_antidiagonals"}


@dataclass(frozen=True)
class World:
    spec: ExperimentSpec
    databases: pd.DataFrame
    layers: pd.DataFrame
    results: pd.DataFrame

    def claims(self) -> dict[str, dict]:
        claims = wong2025_claims(self.spec, self.databases, self.layers, self.results)
        return {c["id"]: c for c in claims}


def cell(layer_bound, db_bound) -> tuple[np.ndarray, np.ndarray]:
    """Figure 3 cell (i, j) of pairs: layer bound in (i-5, i], database bound in (j-10, j]."""
    return (5 * np.ceil(np.asarray(layer_bound, float) / 5), 10 * np.ceil(np.asarray(db_bound, float) / 10))


def unmemorized(layer_bound, db_bound) -> np.ndarray:
    """Accuracy of a pair its metric does not memorize: < 0.5, strictly increasing in the layer bound."""
    lb, db = np.asarray(layer_bound, float), np.asarray(db_bound, float)
    return 0.5 * lb / (lb + db)


def plant(capacity: float, layer_bound, db_bound) -> np.ndarray:
    """1 in every cell (i, j) with j <= capacity * i, :func:`unmemorized` elsewhere."""
    i, j = cell(layer_bound, db_bound)
    return np.where(j <= capacity * i, 1.0, unmemorized(layer_bound, db_bound))


def replant(results: pd.DataFrame, column: str, capacity: float) -> pd.DataFrame:
    """``results`` with ``column`` planted at another capacity (τ=0.5 follows argmax)."""
    r = results.copy()
    r[column] = plant(capacity, r["layer_bound"], r["db_bound"])
    if column == "accuracy":
        r["acc_tau_0_5"] = TAU05_FACTOR * r["accuracy"]
    return r


def make_world(seed: int = 0) -> World:
    """The holding world of the module docstring."""
    rng = np.random.default_rng(seed)
    prop21 = rng.integers(1, MAX_PROP21 + 1, N_DATABASES)
    triples = np.maximum(1, np.round(SLOPE * prop21 * rng.uniform(0.9, 1.1, N_DATABASES))).astype(int)
    databases = pd.DataFrame({"db_id": np.arange(N_DATABASES), "triples": triples, "prop21": prop21,
                              "rank_lower": (prop21 + 1) // 2, "rank_upper": prop21, "rank_certified": False})

    layers = pd.DataFrame(paper_layer_grid())
    layers.insert(0, "layer_id", np.arange(len(layers)))
    layers["params"] = 2 * layers["n_heads"] * layers["d_model"] * (layers["d_head_vo"] + layers["d_head_qk"])
    layers["lower_estimate"] = layers["d_model"] + layers["n_heads"] * layers["d_head_vo"]
    layers = layers[["layer_id", "d_model", "n_heads", "d_head_qk", "d_head_vo", "params", "lower_estimate"]]

    # transpose classes: a layer and the one with d_head_vo and d_head_qk swapped share databases
    key = pd.Series(list(zip(layers["d_model"], layers["n_heads"],
                             np.minimum(layers["d_head_vo"], layers["d_head_qk"]),
                             np.maximum(layers["d_head_vo"], layers["d_head_qk"]))))
    klass = pd.factorize(key)[0]
    size = np.bincount(klass)
    per_layer = np.full(len(size), N_PAIRS // len(layers))
    per_layer[size == 2] += 1                                   # 140 classes of two layers: 280 pairs
    left = N_PAIRS - int((per_layer * size).sum())
    per_layer[rng.choice(np.flatnonzero(size == 1), left, replace=False)] += 1
    by_bound = np.argsort(prop21, kind="stable")
    pairs = []
    for k, n in enumerate(per_layer):
        strata = np.floor((np.arange(n) + rng.uniform(size=n)) * N_DATABASES / n).astype(int)
        dbs = by_bound[strata]                                   # one database per stratum of the bound
        pairs += [(layer, db) for layer in np.flatnonzero(klass == k) for db in dbs]
    results = pd.DataFrame(pairs, columns=["layer_id", "db_id"])
    results.insert(0, "pair_id", np.arange(len(results)))
    results = (results.merge(layers, on="layer_id")
               .merge(databases[["db_id", "triples", "prop21"]], on="db_id")
               .rename(columns={"prop21": "db_bound", "lower_estimate": "layer_bound"})
               .sort_values("pair_id", ignore_index=True))
    for column, capacity in CAPACITY.items():
        results = replant(results, column, capacity)
    return World(ExperimentSpec(), databases, layers, results)


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def failing(claims: dict[str, dict]) -> list[tuple]:
    return [(c["id"], c["ours"]) for c in claims.values() if not c["holds"]]


# ---------------------------------------------------------------------------- the holding world

def test_holding_world_is_built_as_described(world):
    """The construction's invariants, on which the reasoning of the other tests rests."""
    db, layers, r = world.databases, world.layers, world.results
    assert len(db) == N_DATABASES and len(layers) == 364 and len(r) == N_PAIRS
    assert db["triples"].max() <= 200
    assert not r.duplicated(["layer_id", "db_id"]).any()
    assert (r["layer_bound"] == r["d_model"] + r["n_heads"] * r["d_head_vo"]).all()
    assert (r["db_bound"] == db.set_index("db_id").loc[r["db_id"], "prop21"].to_numpy()).all()
    # a layer and its transpose are trained on the same databases
    sets = r.groupby(["d_model", "n_heads", "d_head_vo", "d_head_qk"])["db_id"].agg(frozenset)
    for (d, h, vo, qk), dbs in sets.items():
        assert sets[(d, h, qk, vo)] == dbs
    # every row of Figure 3 has every column 10..90 populated
    i, j = cell(r["layer_bound"], r["db_bound"])
    populated = pd.crosstab(i, j)
    assert list(populated.index) == [5, 10, 15, 20, 25, 30] and list(populated.columns) == list(range(10, 100, 10))
    assert (populated > 0).all().all()


def test_every_claim_holds_in_the_holding_world(world):
    """All 14 claims hold, each for the reason planted:

    - setup: 548 databases of at most 178 triples, 364 layers, 3,947 pairs, the default 2,000 epochs;
    - fig2a: |D| = 1.8 × prop21 (jittered by ±10%); fig2b: params and (9) both grow with d_model,
      n_heads and d_head_vo;
    - fig3a: argmax capacity 8 memorizes every cell of row 10 up to j = 80 (and none beyond);
    - τ=0.5 is 0.98 × argmax: a mean gap of 0.02 × mean argmax accuracy <= 0.02;
    - capacity factors: τ=0.75 (capacity 4) rows 5..20 reach 4 i, rows 25 and 30 stop at the last
      column 90: factors 4, 4, 4, 4, 3.6, 3, median 4; τ=0.95 (capacity 2): 2 in every row, median 2;
    - fig3d: τ=0.99 never memorizes, so every accuracy is < 0.5;
    - rises: memorization grows with the row i and the other accuracies grow with lb, while the
      databases are drawn independently of the layer: positive Spearman for every metric;
    - fig4: the two end cells of an anti-diagonal hold the transposed layers (same d_model, n_heads,
      databases) with the larger d_head_vo, hence the larger lb, at the far end: each of its pairs is
      at least as accurate as its counterpart, strictly so when the counterpart is not memorized,
      and every cell has such pairs (databases of bound > 60 > 2 × 30).
    """
    claims = world.claims()
    assert set(claims) == CLAIM_IDS
    assert not failing(claims)
    r = world.results

    assert claims["n_databases"]["ours"] == 548 and claims["n_layers"]["ours"] == 364
    assert claims["n_pairs"]["ours"] == 3947 and claims["max_epochs"]["ours"] == 2000
    assert claims["max_triples"]["ours"] == world.databases["triples"].max() <= round(SLOPE * MAX_PROP21 * 1.1)
    assert claims["fig2a_slope"]["ours"] == pytest.approx(SLOPE, abs=0.02)
    assert claims["fig2b_corr"]["ours"] > 0.5
    assert claims["fig3a_argmax_small_layers"]["ours"] == {"frontier": 80, "largest_memorized_cell": 80}
    assert claims["tau05_argmax"]["ours"] == pytest.approx((1 - TAU05_FACTOR) * r["accuracy"].mean(), abs=1e-4)

    f75 = claims["fig3_tau0.75_factor"]["ours"]
    assert f75 == {"median_factor": 4.0,
                   "per_row": {"5": 4.0, "10": 4.0, "15": 4.0, "20": 4.0, "25": 3.6, "30": 3.0}}
    f95 = claims["fig3_tau0.95_factor"]["ours"]
    assert f95 == {"median_factor": 2.0, "per_row": {str(i): 2.0 for i in range(5, 35, 5)}}

    below = r[r["db_bound"] <= r["layer_bound"]]
    d = claims["fig3d_tau099_fails"]["ours"]
    assert d["pairs"] == len(below) > 0
    assert d["mean_accuracy"] == pytest.approx(unmemorized(below["layer_bound"], below["db_bound"]).mean(), abs=1e-3)
    assert d["mean_accuracy"] < 0.5

    rhos = claims["fig3_rises_with_layer_bound"]["ours"]
    assert set(rhos) == {"argmax", "tau=0.5", "tau=0.75", "tau=0.95", "tau=0.99"}
    assert all(v > 0.2 for v in rhos.values())
    assert claims["fig4_antidiagonals"]["ours"] == {"fraction": 1.0,
                                                    "per_diagonal": {str(t): True for t in range(3, 12)}}


def test_claims_do_not_modify_the_frames(world):
    before = [f.copy() for f in (world.databases, world.layers, world.results)]
    world.claims()
    for b, f in zip(before, (world.databases, world.layers, world.results)):
        pd.testing.assert_frame_equal(b, f)


@pytest.mark.parametrize("factor", [1.5, 2.1])
def test_fig2a_holds_inside_its_band(world, factor):
    """|D| = 1.5 or 2.1 × prop21 (<= 189 triples): slopes inside 1.8 ± 20% hold (1.4 and 2.2 fail below)."""
    db = world.databases.assign(triples=np.round(factor * world.databases["prop21"]).astype(int))
    claims = replace(world, databases=db).claims()
    assert claims["fig2a_slope"]["ours"] == pytest.approx(factor, abs=0.01)
    assert not failing(claims)


# ---------------------------------------------------------------------------- failing worlds
# Each break is a minimal change of the holding world; `targets` must fail, `may_affect` are
# claims the change may legitimately move too (not asserted), every other claim must still hold.

def _databases(w: World, db: pd.DataFrame) -> World:
    return replace(w, databases=db)


def _results(w: World, r: pd.DataFrame) -> World:
    return replace(w, results=r)


def drop_last_database(w):
    """547 databases: n_databases. The slope of the other 547 stays 1.8."""
    return _databases(w, w.databases.iloc[:-1])


def add_database(w):
    """549 databases (a copy of the first under a new id): n_databases."""
    extra = w.databases.iloc[[0]].assign(db_id=N_DATABASES)
    return _databases(w, pd.concat([w.databases, extra], ignore_index=True))


def database_of_201_triples(w):
    """The largest database (bound 90, ~162 triples) gets 201: max_triples; the slope moves < 1%."""
    db = w.databases.copy()
    db.loc[db["prop21"].idxmax(), "triples"] = 201
    return _databases(w, db)


def drop_last_layer(w):
    """363 layers: n_layers (params and (9) still correlate)."""
    return replace(w, layers=w.layers.iloc[:-1])


def add_layer(w):
    """365 layers (a d_model = 7 layer): n_layers."""
    extra = pd.DataFrame([{"layer_id": 364, "d_model": 7, "n_heads": 1, "d_head_qk": 1, "d_head_vo": 1,
                           "params": 28, "lower_estimate": 8}])
    return replace(w, layers=pd.concat([w.layers, extra], ignore_index=True))


def _square_head_pair(w) -> int:
    """Index of a pair whose layer has d_head_vo == d_head_qk: the middle of its anti-diagonal of
    Figure 4, never an end cell, so adding or removing it leaves Figure 4's test alone; and as every
    Figure 3 cell is all memorized or all not, one pair more or less moves no frontier."""
    r = w.results
    return int(np.flatnonzero((r["d_head_vo"] == r["d_head_qk"]) & (r["d_model"] == 4))[0])


def drop_one_pair(w):
    """3,946 pairs: n_pairs."""
    return _results(w, w.results.drop(index=_square_head_pair(w)))


def duplicate_one_pair(w):
    """3,948 pairs (one pair twice): n_pairs."""
    r = w.results
    return _results(w, pd.concat([r, r.iloc[[_square_head_pair(w)]]], ignore_index=True))


def train_1000_epochs(w):
    """max_epochs = 1000: max_epochs (a spec claim only)."""
    return replace(w, spec=replace(w.spec, training=replace(w.spec.training, max_epochs=1000)))


def _slope(factor):
    def change(w):
        return _databases(w, w.databases.assign(triples=np.round(factor * w.databases["prop21"]).astype(int)))
    change.__name__ = f"slope_{factor:g}"
    change.__doc__ = f"|D| = {factor} × prop21: fig2a_slope (outside 1.44..2.16)."
    return change


def reverse_params(w):
    """params replaced by max + 1 - params: Spearman(params, (9)) < 0: fig2b_corr."""
    return replace(w, layers=w.layers.assign(params=w.layers["params"].max() + 1 - w.layers["params"]))


def argmax_capacity_6(w):
    """Argmax (and τ=0.5 with it) at capacity 6: row 10 memorizes up to 60, row 5 up to 30: fig3a."""
    return _results(w, replant(w.results, "accuracy", 6))


def argmax_hole_in_cell_10_50(w):
    """Argmax (and τ=0.5) unmemorized in the single cell (10, 50): row 10's frontier drops to 40
    (row 5's is 40 anyway) although cells (10, 60..80) are still memorized: fig3a."""
    r = w.results.copy()
    i, j = cell(r["layer_bound"], r["db_bound"])
    hole = (i == 10) & (j == 50)
    r.loc[hole, "accuracy"] = unmemorized(r.loc[hole, "layer_bound"], r.loc[hole, "db_bound"])
    r["acc_tau_0_5"] = TAU05_FACTOR * r["accuracy"]
    return _results(w, r)


def tau05_ten_percent_below_argmax(w):
    """τ=0.5 = 0.9 × argmax: a mean gap of ~0.09 > 0.05: tau05_argmax."""
    return _results(w, w.results.assign(acc_tau_0_5=0.9 * w.results["accuracy"]))


def _capacity(column, capacity, why):
    def change(w):
        return _results(w, replant(w.results, column, capacity))
    change.__name__ = f"{column}_capacity_{capacity:g}"
    change.__doc__ = f"{column} at capacity {capacity}: {why}"
    return change


def tau099_as_argmax(w):
    """τ=0.99 as confident as argmax: every pair with db bound <= layer bound is memorized (j <= i + 10
    <= 8 i): fig3d. It still rises with the layer bound."""
    return _results(w, w.results.assign(acc_tau_0_99=w.results["accuracy"]))


def tau099_all_one(w):
    """τ=0.99 accuracy 1 everywhere: fig3d; its Spearman correlation is undefined (constant): rises."""
    return _results(w, w.results.assign(acc_tau_0_99=1.0))


def tau099_falls_with_layer_bound(w):
    """τ=0.99 accuracy 0.5 db / (lb + db): still < 0.5 (fig3d holds) but falling in lb: rises."""
    r = w.results
    return _results(w, r.assign(acc_tau_0_99=0.5 * r["db_bound"] / (r["layer_bound"] + r["db_bound"])))


def mirror_antidiagonal_7(w):
    """d_head_vo and d_head_qk swapped in the results of the pairs on anti-diagonal 7 (only Figure 4
    reads them): its cells are mirrored, the trend reversed there only: fig4."""
    r = w.results.copy()
    on = r["d_head_vo"] + r["d_head_qk"] == 7
    r.loc[on, ["d_head_vo", "d_head_qk"]] = r.loc[on, ["d_head_qk", "d_head_vo"]].to_numpy()
    return _results(w, r)


def tie_on_antidiagonal_7(w):
    """τ=0.95 accuracy of cell (vo 6, qk 1) replaced by that of its transposed counterpart (same
    d_model, n_heads, database) in cell (vo 1, qk 6): equal end cells are not a rise: fig4. The
    lowered accuracies may move the τ=0.95 frontiers and correlation."""
    r = w.results
    keys = ["d_model", "n_heads", "db_id"]
    low = r[(r["d_head_vo"] == 1) & (r["d_head_qk"] == 6)].set_index(keys)["acc_tau_0_95"]
    high = (r["d_head_vo"] == 6) & (r["d_head_qk"] == 1)
    r = r.copy()
    r.loc[high, "acc_tau_0_95"] = low.loc[pd.MultiIndex.from_frame(r.loc[high, keys])].to_numpy()
    return _results(w, r)


def square_heads_only(w):
    """d_head_qk := d_head_vo in the results (only Figure 4 reads it): every anti-diagonal has a
    single cell, so none can be tested: fig4 (no diagonals does not count as all rising)."""
    return _results(w, w.results.assign(d_head_qk=w.results["d_head_vo"]))


BREAKS = [
    (drop_last_database, {"n_databases"}, set()),
    (add_database, {"n_databases"}, set()),
    (database_of_201_triples, {"max_triples"}, set()),
    (drop_last_layer, {"n_layers"}, set()),
    (add_layer, {"n_layers"}, set()),
    (drop_one_pair, {"n_pairs"}, set()),
    (duplicate_one_pair, {"n_pairs"}, set()),
    (train_1000_epochs, {"max_epochs"}, set()),
    (_slope(1.0), {"fig2a_slope"}, set()),
    (_slope(1.4), {"fig2a_slope"}, set()),
    (_slope(2.2), {"fig2a_slope"}, set()),                      # at most 2.2 × 90 = 198 triples
    (_slope(3.0), {"fig2a_slope"}, {"max_triples"}),             # up to 270 triples
    (reverse_params, {"fig2b_corr"}, set()),
    (argmax_capacity_6, {"fig3a_argmax_small_layers"}, set()),
    (argmax_hole_in_cell_10_50, {"fig3a_argmax_small_layers"}, set()),
    (tau05_ten_percent_below_argmax, {"tau05_argmax"}, set()),
    (_capacity("acc_tau_0_75", 2, "factors 2 in every row, median 2 < 2.5"), {"fig3_tau0.75_factor"}, set()),
    (_capacity("acc_tau_0_75", 6, "factors 6, 6, 6, 4.5, 3.6, 3 (columns end at 90), median 5.25 > 5"),
     {"fig3_tau0.75_factor"}, set()),
    # Figure 4's argument holds at any τ=0.95 capacity (each end cell keeps unmemorized pairs)
    (_capacity("acc_tau_0_95", 3, "factors 2, 3, 2.67, 3, 2.8, 3, median 2.9 > 2.5"), {"fig3_tau0.95_factor"}, set()),
    (_capacity("acc_tau_0_95", 0.5, "factors 0, 0, 0, 0.5, 0.4, 0.33, median 0.17 < 0.5"),
     {"fig3_tau0.95_factor"}, set()),
    (tau099_as_argmax, {"fig3d_tau099_fails"}, set()),
    pytest.param(tau099_all_one, {"fig3d_tau099_fails"}, {"fig3_rises_with_layer_bound"},
                 marks=pytest.mark.filterwarnings("ignore:An input array is constant")),
    (tau099_falls_with_layer_bound, {"fig3_rises_with_layer_bound"}, set()),
    (mirror_antidiagonal_7, {"fig4_antidiagonals"}, set()),
    (tie_on_antidiagonal_7, {"fig4_antidiagonals"}, {"fig3_tau0.95_factor", "fig3_rises_with_layer_bound"}),
    (square_heads_only, {"fig4_antidiagonals"}, set()),
]


@pytest.mark.parametrize("change, targets, may_affect", BREAKS,
                         ids=[(b.values if hasattr(b, "values") else b)[0].__name__ for b in BREAKS])
def test_a_minimal_change_breaks_exactly_its_claim(world, change: Callable[[World], World], targets, may_affect):
    """See each change's docstring for why its targets fail; every claim it does not touch holds."""
    claims = change(world).claims()
    assert set(claims) == CLAIM_IDS
    for cid in targets:
        assert not claims[cid]["holds"], (cid, claims[cid]["ours"])
    untouched = CLAIM_IDS - targets - may_affect
    assert not [f for f in failing(claims) if f[0] in untouched]


def test_failing_worlds_report_what_broke(world):
    """A few ``ours`` values of the failing worlds, as their construction implies."""
    hole = argmax_hole_in_cell_10_50(world).claims()["fig3a_argmax_small_layers"]["ours"]
    assert hole == {"frontier": 40, "largest_memorized_cell": 80}
    assert argmax_capacity_6(world).claims()["fig3a_argmax_small_layers"]["ours"]["frontier"] == 60
    f75 = _capacity("acc_tau_0_75", 6, "")(world).claims()["fig3_tau0.75_factor"]["ours"]
    assert f75["median_factor"] == 5.25
    f95 = _capacity("acc_tau_0_95", 3, "")(world).claims()["fig3_tau0.95_factor"]["ours"]
    assert f95["median_factor"] == 2.9
    mirrored = mirror_antidiagonal_7(world).claims()["fig4_antidiagonals"]["ours"]
    assert mirrored["per_diagonal"] == {**{str(t): True for t in range(3, 12)}, "7": False}
    assert mirrored["fraction"] == pytest.approx(8 / 9, abs=1e-3)
    assert square_heads_only(world).claims()["fig4_antidiagonals"]["ours"]["per_diagonal"] == {}
    assert tau099_as_argmax(world).claims()["fig3d_tau099_fails"]["ours"]["mean_accuracy"] == 1.0
    assert _slope(3.0)(world).claims()["fig2a_slope"]["ours"] == pytest.approx(3.0, abs=0.01)


# ---------------------------------------------------------------------------- edge cases

def test_empty_results_give_a_failing_fig3_claim(world):
    """No trained pair: the setup and Figure 2 claims are tested, then a single failing "fig3"
    claim instead of the Figure 3 and 4 ones (no crash on the empty frame)."""
    claims = replace(world, results=world.results.iloc[0:0]).claims()
    assert set(claims) == {"n_databases", "max_triples", "n_layers", "n_pairs", "max_epochs", "fig2a_slope",
                           "fig2b_corr", "fig3"}
    assert claims["fig3"]["holds"] is False and claims["fig3"]["ours"] == 0
    assert claims["n_pairs"]["holds"] is False and claims["n_pairs"]["ours"] == 0
    assert [cid for cid, c in claims.items() if not c["holds"]] == ["n_pairs", "fig3"]


def test_claims_of_thresholds_not_in_the_spec_are_left_out(world):
    """With τ = 0.75 and 0.95 only, the τ=0.5 and τ=0.99 claims are absent (not failing), and the
    rise is tested for argmax, 0.75 and 0.95 only: a τ=0.99 column falling with the layer bound
    no longer matters."""
    spec = replace(world.spec, thresholds=ThresholdsSpec(taus=(0.75, 0.95)),
                   training=TrainingSpec(stop_tau=0.95))
    claims = replace(tau099_falls_with_layer_bound(world), spec=spec).claims()
    assert set(claims) == CLAIM_IDS - {"tau05_argmax", "fig3d_tau099_fails"}
    assert set(claims["fig3_rises_with_layer_bound"]["ours"]) == {"argmax", "tau=0.75", "tau=0.95"}
    assert not failing(claims)


# ---------------------------------------------------------------------------- edge cases found in review

def test_a_tiny_positive_correlation_holds_though_it_rounds_to_zero(world):
    """The rises-with-layer-bound test reads the correlation itself, not its 3-decimal report:
    argmax accuracies shuffled until their correlation with the layer bound is in (0, 5e-4)."""
    from factlab.experiments.core.claims import spearman

    r = world.results.copy()
    for seed in range(1000):
        r["accuracy"] = np.random.default_rng(seed).permutation(world.results["accuracy"].to_numpy())
        rho = spearman(r["layer_bound"], r["accuracy"])
        if 0 < rho < 5e-4:
            break
    assert 0 < rho < 5e-4
    rises = {c["id"]: c for c in wong2025_claims(world.spec, world.databases, world.layers, r)}[
        "fig3_rises_with_layer_bound"]
    assert rises["ours"]["argmax"] == 0.0 and rises["holds"] is True


def test_all_nan_tau_095_accuracies_fail_figure_4_without_a_crash(world):
    r = world.results.assign(acc_tau_0_95=np.nan)
    claims = {c["id"]: c for c in wong2025_claims(world.spec, world.databases, world.layers, r)}
    assert claims["fig4_antidiagonals"]["holds"] is False
    assert claims["fig4_antidiagonals"]["ours"]["per_diagonal"] == {}


def test_a_cell_mean_of_exactly_the_threshold_counts_as_memorized(world):
    """Accuracies 1, 1, 0.8, 0.8 average to 0.9 exactly; pandas computes 0.8999999999999999."""
    from factlab.experiments.wong2025.claims import frontier

    cells = pd.DataFrame({10: [np.mean([1.0, 1.0, 0.8, 0.8])], 20: [0.95], 30: [0.2]}, index=[5])
    assert cells.loc[5, 10] < 0.9
    assert frontier(cells, 5, 0.9) == 20
