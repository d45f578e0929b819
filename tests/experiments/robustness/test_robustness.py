"""The robustness grid: settings made from the papers' configs, the claim x setting table on
planted results, and a whole run (and its resume) on the core's toy paper."""

import json
from dataclasses import replace

import pandas as pd
import pytest

from factlab.errors import ConfigError
from factlab.experiments import registry
from factlab.experiments.core.config import config_hash
from factlab.experiments.core.runner import reproduce
from factlab.experiments.robustness import grids, read_results, robustness
from factlab.experiments.robustness.table import best, by_axis, describe, holds_table, short_value


# ---------------------------------------------------------------------- the grids
def test_wong_grid_changes_only_the_training_choices():
    base = registry.paper("wong2025").config("quick")
    settings = grids.settings("wong2025", base)
    assert len(settings) == 3 * 4 * 3 * 2 and len({s.slug for s in settings}) == len(settings)
    for s in settings:
        t = s.config.training
        assert (t.optimizer, t.lr, t.init_scale, t.early_stop) == tuple(s.choices.values())
        assert t.weight_decay is None and t.momentum == 0.0       # AdamW keeps torch's default decay
        assert replace(s.config, training=base.training) == base   # nothing else moves
    assert len({config_hash(s.config) for s in settings}) == len(settings)
    # the reproduction's own choices are one of the settings, with the very same hash
    same = [s for s in settings if config_hash(s.config) == config_hash(base)]
    assert [s.choices for s in same] == [{"optimizer": "adam", "lr": 0.03, "init_scale": 1.0, "early_stop": True}]


def test_completions_grid():
    base = registry.paper("completions").config("quick")
    settings = grids.settings("completions", base)
    assert len(settings) == 24
    for s in settings:
        c = s.config
        assert (c.artifact_prefixes, c.kind, c.database.density, c.tau) == tuple(s.choices.values())
    random = next(s for s in settings if s.choices["databases"] == "random")
    gens = [g for _, g, _ in random.config.databases()]
    assert {(g.n_classes, g.noise) for g in gens} == {(base.database.n_subjects, 0.0)}  # one class per subject
    assert any(config_hash(s.config) == config_hash(base) for s in settings)


def test_a_paper_without_a_grid_is_named():
    with pytest.raises(ConfigError, match="nichani2024"):
        grids.axes("nichani2024")


# ---------------------------------------------------------------------- the table, planted
def planted() -> list[dict]:
    """lr x decay: claim a holds iff lr >= 0.01, b always, c never, d only at (0.03, on)."""
    out = []
    for lr in (0.001, 0.01, 0.03):
        for decay in (True, False):
            out.append({"setting": {"lr": lr, "decay": decay},
                        "claims": {"a": lr >= 0.01, "b": True, "c": False, "d": lr == 0.03 and decay}})
    return out


def test_holds_table_and_fractions_by_axis():
    t = holds_table(planted())
    assert list(t.columns) == ["lr", "decay", "a", "b", "c", "d"] and len(t) == 6
    f = by_axis(t, ["lr", "decay"])
    assert f["a"]["lr"] == {"0.001": 0.0, "0.01": 1.0, "0.03": 1.0}
    assert f["a"]["decay"] == {"on": pytest.approx(2 / 3), "off": pytest.approx(2 / 3)}
    assert f["d"]["lr"]["0.03"] == 0.5


def test_short_values_fit_a_cell():
    assert short_value(0.123456) == "0.123" and short_value(548) == "548" and short_value(True) == "yes"
    assert short_value({"median_factor": 2.5, "per_row": {"5": 1.0}, "pairs": 337}) == "median_factor 2.5, pairs 337"
    assert short_value(None) == "" and short_value([1, 2, 3]) == "3 values"
    assert short_value("x" * 100, limit=10) == "x" * 9 + "…"


def test_describe_names_the_deciding_choices():
    words = describe(holds_table(planted()), ["lr", "decay"])
    assert words["b"] == "holds in all 6 settings" and words["c"] == "fails in all 6 settings"
    assert words["a"] == ("holds in 4 of 6 settings; in every setting with lr = 0.01; in every setting with "
                          "lr = 0.03; in no setting with lr = 0.001")
    assert words["d"].startswith("holds in 1 of 6 settings") and "in no setting with decay = off" in words["d"]


def test_best_setting_has_the_most_claims_then_the_rarest():
    results = planted()
    assert best(holds_table(results), ["lr", "decay"]) == (4, 3)      # (0.03, on): a, b, d
    results[2]["claims"]["d"] = True                                  # (0.01, on) ties it with the same claims
    assert best(holds_table(results), ["lr", "decay"]) == (2, 3)      # and is earlier
    # (0.01, off) ties too, with c (held nowhere else) instead of d (held twice): c is rarer
    results[3]["claims"]["c"] = True
    assert best(holds_table(results), ["lr", "decay"]) == (3, 3)


# ---------------------------------------------------------------------- a whole run
@pytest.fixture
def toy_grid(monkeypatch):
    """The core's toy paper (capacity searches against planted thresholds 5, 17, 40, 0, 64,
    23) under a grid of its range: with hi = 32 the searches for 40 and 64 cannot succeed."""
    monkeypatch.setitem(registry.PACKAGES, "toy", "tests.experiments.core.toy_paper")
    monkeypatch.setitem(grids.GRIDS, "toy", (
        grids.Axis("hi", (32, 64), lambda c, v: replace(c, hi=v), "the top of the search range"),
        grids.Axis("seed", (0, 1), lambda c, v: replace(c, seed=v), "the seed"),
    ))


def test_a_robustness_run_writes_the_table_and_resumes(toy_grid, tmp_path):
    logs = []
    res = robustness("toy", "quick", tmp_path, progress=False, log=logs.append)
    results = read_results(tmp_path)
    assert results == json.loads(json.dumps(res["results"]))
    assert [r["setting"] for r in results] == [{"hi": 32, "seed": 0}, {"hi": 32, "seed": 1},
                                                {"hi": 64, "seed": 0}, {"hi": 64, "seed": 1}]
    for r in results:
        full = r["setting"]["hi"] == 64
        assert r["claims"] == {"search_0": True, "search_1": True, "search_2": full, "search_3": True,
                               "search_4": full, "search_5": True}
        # each setting is a reproduction of its own, the same as running that config directly
        direct = reproduce(registry.paper("toy"), config=replace(registry.paper("toy").config("quick"),
                                                                 **r["setting"]),
                           out=tmp_path / "direct" / r["store"].replace("/", "-"), progress=False, log=lambda m: None)
        assert {c["id"]: c["holds"] for c in direct["claims"]} == r["claims"]
        assert direct["config_hash"] == r["config_hash"]
        assert (tmp_path / r["store"] / "results.duckdb").exists()
    assert res["best"] == 2
    csv = pd.read_csv(tmp_path / "robustness.csv")
    assert list(csv.columns[:2]) == ["hi", "seed"] and csv["search_4"].tolist() == [False, False, True, True]
    values = pd.read_csv(tmp_path / "robustness-values.csv", dtype={"ours": str}, keep_default_na=False)
    assert len(values) == 4 * 6 and list(values.columns) == ["hi", "seed", "claim", "holds", "ours"]
    for r in results:
        mine = values[(values["hi"] == r["setting"]["hi"]) & (values["seed"] == r["setting"]["seed"])]
        assert {c: json.loads(v) for c, v in zip(mine["claim"], mine["ours"])} == r["ours"]
        assert dict(zip(mine["claim"], mine["holds"])) == r["claims"]
    page = (tmp_path / "report.html").read_text()
    assert "search_2" in page and "in every setting with hi = 64" in page
    assert "the 2 settings</summary><ul><li>hi 64, seed 0</li><li>hi 64, seed 1</li></ul>" in page
    md = (tmp_path / "robustness.md").read_text().splitlines()
    assert md[0] == "4 settings at the quick scale." and md[6].startswith("| search_2 | 2 / 4 | holds in 2 of 4 settings; in every setting with hi = 64")
    assert md[-2:] == ["| 64 | 0 | 6 | yes | yes | yes | yes | yes | yes |",
                       "| 64 | 1 | 6 | yes | yes | yes | yes | yes | yes |"]
    assert (tmp_path / "figures" / "robustness.png").exists()
    assert all("units run" in line for line in logs) and len(logs) == 4

    # again: every setting resumes from its store, nothing is trained twice
    logs.clear()
    again = robustness("toy", "quick", tmp_path, progress=False, log=logs.append)
    assert [r["claims"] for r in again["results"]] == [r["claims"] for r in results]
    assert all("(0 units run" in line for line in logs)


def test_a_store_of_another_config_is_refused_not_overwritten(toy_grid, tmp_path, monkeypatch):
    robustness("toy", "quick", tmp_path, progress=False, log=lambda m: None)
    before = (tmp_path / "settings" / "hi-32_seed-0" / "results.duckdb").read_bytes()
    # the same setting names, other configs (another range bottom): the stores refuse them
    monkeypatch.setitem(grids.GRIDS, "toy", (
        grids.Axis("hi", (32,), lambda c, v: replace(c, hi=v, lo=2)),
        grids.Axis("seed", (0,), lambda c, v: replace(c, seed=v)),
    ))
    with pytest.raises(ConfigError, match="config"):
        robustness("toy", "quick", tmp_path, progress=False, log=lambda m: None)
    assert (tmp_path / "settings" / "hi-32_seed-0" / "results.duckdb").read_bytes() == before


def test_the_command(toy_grid, tmp_path, capsys):
    from factlab.cli import main

    assert main(["robustness", "toy", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "4 settings" in out and "claims held per setting: 4 to 6 of 6" in out
    assert "most claims hold under hi = 64, seed = 0" in out
    with pytest.raises(SystemExit):                     # no grid: argparse names the choices
        main(["robustness", "nichani2024"])
