"""The completions study: structured databases, per-run metrics against a brute-force
reference, store resume and refusal, claims on planted data, end to end."""

import json
from dataclasses import replace

import duckdb
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from factlab.databases.latent_classes import LatentClassConfig, latent_class_database, split_held_out
from factlab.errors import ConfigError
from factlab.experiments.completions import PAPER
from factlab.experiments.completions import config as C
from factlab.experiments.completions.claims import completions_claims
from factlab.experiments.completions.config import CompletionsConfig
from factlab.experiments.completions.unit import train_runs
from factlab.experiments.core.runner import reproduce, run
from factlab.experiments.core.store import Store
from factlab.models.artifacts import artifacts

TINY = CompletionsConfig(
    name="tiny", classes=(1, 4), noise=(0.0, 0.5), replicates=1,
    database=LatentClassConfig(n_subjects=12, n_predicates=3, n_objects=6, values_per_predicate=3),
    layers=((2, 1, 1, 1), (4, 2, 2, 2)), epochs=(20, 60), rank_restarts=1, rank_max_iter=100, shard_size=5)
CLAIM_IDS = {"artifacts_several_times", "artifacts_more_in_smaller_models", "artifacts_fewer_with_overfitting",
             "generalization_error_rank_gap"}
FIGURES = ["artifacts_vs_layer", "artifacts_vs_epochs", "generalization_vs_rank_gap"]
TIMING = ["shard_seconds"]


def quiet(_msg):
    pass


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one torch thread is fastest on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def index(name: str) -> int:
    """The index a generated token name carries: ``s07`` -> 7."""
    return int(name[1:])


# ---------------------------------------------------------------------------- the generator
configs = st.builds(LatentClassConfig, n_subjects=st.integers(1, 25), n_predicates=st.integers(1, 6),
                    n_objects=st.integers(2, 12), values_per_predicate=st.just(2), n_classes=st.integers(1, 5),
                    density=st.floats(0.05, 1.0), noise=st.floats(0.0, 1.0))


@settings(max_examples=40, deadline=None)
@given(cfg=configs, seed=st.integers(0, 2**32 - 1))
def test_objects_are_f_of_class_and_predicate_except_noise(cfg, seed):
    drawn = latent_class_database(cfg, seed=seed)
    db = drawn.database
    assert len(drawn.noise) == len(db) >= 1
    for (k, q, v), noisy in zip(db.triples(), drawn.noise):
        truth = drawn.table[drawn.classes[index(k)], index(q)]
        assert (index(v) != truth) == noisy
    # every object of a predicate lies in that predicate's range: the true values of all classes
    # and the noise values, together at most values_per_predicate per predicate
    for q in set(db.names(db.predicates)):
        assert len({v for _, p, v in db.triples() if p == q}) <= cfg.values_per_predicate
    assert drawn.table.shape == (cfg.n_classes, cfg.n_predicates)


def test_generator_rates_and_determinism():
    cfg = LatentClassConfig(n_subjects=200, n_predicates=10, n_objects=30, values_per_predicate=8,
                            n_classes=5, density=0.3, noise=0.25)
    a, b = latent_class_database(cfg, seed=4), latent_class_database(cfg, seed=4)
    assert a.database == b.database and np.array_equal(a.noise, b.noise)
    assert latent_class_database(cfg, seed=5).database != a.database
    assert abs(len(a.database) / 2000 - 0.3) < 0.04            # 600 expected, sd ~ 20
    assert abs(a.noise.mean() - 0.25) < 0.06
    clean = latent_class_database(LatentClassConfig(noise=0.0, n_classes=1), seed=1)
    assert not clean.noise.any()
    # one class: every subject has the same object for a predicate
    for q in set(clean.database.names(clean.database.predicates)):
        assert len({v for _, p, v in clean.database.triples() if p == q}) == 1


def test_generator_refuses_bad_knobs():
    with pytest.raises(ConfigError, match="values_per_predicate"):
        LatentClassConfig(n_objects=3, values_per_predicate=4)
    with pytest.raises(ConfigError, match="noise"):
        LatentClassConfig(noise=0.5, values_per_predicate=1)
    with pytest.raises(ConfigError, match="density"):
        LatentClassConfig(density=0.0)


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.37, 0.5])
def test_held_out_split(fraction):
    db = latent_class_database(LatentClassConfig(), seed=2).database
    train, held, mask = split_held_out(db, fraction, seed=7)
    assert mask.sum() == len(held) == round(fraction * len(db))
    assert len(train) + len(held) == len(db)
    assert not set(train.triples()) & set(held.triples())
    assert set(train.triples()) | set(held.triples()) == set(db.triples())
    assert set(held.triples()) == set(db.select(mask).triples())
    assert train.tokens == held.tokens == db.tokens
    assert np.array_equal(split_held_out(db, fraction, seed=7)[2], mask)
    with pytest.raises(ConfigError, match="fraction"):
        split_held_out(db, 1.0)


# ---------------------------------------------------------------------------- config
def test_scales_and_hash():
    quick, paper = C.scale_config("quick"), C.scale_config("paper")
    assert (len(quick.databases()), len(quick.layers), quick.epochs) == (24, 4, (100, 300, 1000))
    assert len(quick.runs()) == 24 * 4 * 3 and len(paper.runs()) == 48 * 8 * 4
    assert quick.hash != paper.hash
    assert C.CompletionsConfig(shard_size=3).hash == paper.hash       # shard size does not change results
    assert C.CompletionsConfig(tau=0.75).hash != paper.hash
    assert PAPER.config_from_dict(json.loads(json.dumps(quick.to_dict()))) == quick
    assert quick.hash == "72195d257f497f73"            # the hash stores were made with before the core
    run_ids = [r[0] for r in paper.runs()]
    assert run_ids == list(range(len(run_ids)))
    with pytest.raises(ConfigError, match="scale"):
        C.scale_config("huge")
    with pytest.raises(ConfigError, match="tau"):
        CompletionsConfig(tau=0.3)
    with pytest.raises(ConfigError, match="epochs"):
        CompletionsConfig(epochs=(300, 100))
    with pytest.raises(ConfigError, match="head sizes"):
        CompletionsConfig(layers=((2, 1, 3, 1),))


# ---------------------------------------------------------------------------- per-run metrics
def brute_force(stack, model, train, held, tau):
    """Artifacts, their split and the held-out argmax accuracy, one forward pass per prefix."""
    facts = {tuple(f) for f in train.facts.tolist()}
    pairs = {(k, q) for k, q, _ in facts}
    true = {tuple(f) for f in held.facts.tolist()}
    n = stack.configs[model].n_tokens
    found, argmax_hits = [], []
    one = stack.select([model]).to(dtype=torch.float64)
    for k in train.subjects.tolist():
        for q in train.predicates.tolist():
            p = torch.softmax(one.logits(torch.tensor([[k, q]]))[0, 0, -1, :n], -1)
            found += [(k, q, v) for v in range(n) if p[v] >= tau and (k, q, v) not in facts]
            argmax_hits += [int(p.argmax()) == v for (kk, qq, v) in true if (kk, qq) == (k, q)]
    gen = [t for t in found if t in true]
    on_train = sum((k, q) in pairs for k, q, _ in found)
    return {"artifacts": len(found), "generalizations": len(gen), "hallucinations": len(found) - len(gen),
            "on_training_pairs": on_train, "held_out_inside": len(argmax_hits),
            "held_out_argmax": np.mean(argmax_hits) if argmax_hits else None}


def test_run_metrics_match_brute_force_and_artifacts():
    cfg = TINY
    runs = [r for r in cfg.runs() if r[3] == 60][:6]  # 3 databases x 2 layers
    rows, stack = train_runs(cfg, runs)
    assert len(rows) == 6
    seen_artifacts = 0
    for i, row in enumerate(rows):
        _, train, held, _ = C.build_database(cfg, row["db_id"])
        ref = brute_force(stack, i, train, held, cfg.tau)
        for key, value in ref.items():
            if value is None:
                assert row[key] is None
            else:
                assert row[key] == pytest.approx(value), key
        direct = artifacts(stack, train, model=i, held_out=held, tau=cfg.tau)
        assert (row["artifacts"], row["generalizations"], row["hallucinations"]) == (
            direct.n_artifacts, direct.n_generalizations, direct.n_hallucinations)
        # every artifact is a generalization or a hallucination; those on training pairs are hallucinations
        assert row["generalizations"] + row["hallucinations"] == row["artifacts"]
        assert row["generalizations"] <= row["novel_artifacts"] == row["artifacts"] - row["on_training_pairs"]
        assert row["artifact_ratio"] == pytest.approx(row["artifacts"] / len(train))
        inside = row["held_out_inside"]
        if inside:
            assert row["generalization_error"] == pytest.approx(1 - row["generalizations"] / inside)
        assert row["held_out_inside"] + row["held_out_outside"] == len(held)
        assert row["layer_bound"] == row["d_model"] + row["n_heads"] * row["d_head_vo"]
        assert row["epochs_run"] == 60 and row["status"] == "max_epochs"
        seen_artifacts += row["artifacts"]
    assert seen_artifacts > 0  # the comparison above is not vacuous


def test_training_lengths_share_the_initialisation_and_are_deterministic():
    cfg = TINY
    pair = [r for r in cfg.runs() if r[1] == 0 and r[2] == 1]   # one (database, layer), both lengths
    assert [r[3] for r in pair] == [20, 60]
    short, _ = train_runs(cfg, pair[:1])
    long, _ = train_runs(cfg, pair[1:])
    again, _ = train_runs(cfg, pair[1:])
    assert short[0]["init_seed"] == long[0]["init_seed"] == C.init_seed(cfg, 0, 1) != C.init_seed(cfg, 1, 1)
    assert long[0]["loss"] < short[0]["loss"]                    # full batch, same start: longer fits better
    skip = {"shard_seconds", "finished_at"}
    assert {k: v for k, v in long[0].items() if k not in skip} == {k: v for k, v in again[0].items() if k not in skip}
    with pytest.raises(ConfigError, match="one training length"):
        train_runs(cfg, pair)


# ---------------------------------------------------------------------------- claims on planted data
def planted(holds: bool) -> pd.DataFrame:
    rows = []
    for db in range(4):
        for li, bound in enumerate((3, 8, 18)):
            for e in (10, 100):
                if holds:  # fewer artifacts in larger layers and with longer training; error grows with the gap
                    a, err, triples = 100 - 3 * bound - 0.2 * e + db, 0.1 + 0.2 * db, 20
                else:
                    a, err, triples = 10 + 3 * bound + 0.2 * e + db, 0.9 - 0.2 * db, 100
                rows.append({"db_id": db, "layer_id": li, "epochs": e, "layer_bound": bound, "artifacts": a,
                             "artifact_ratio": a / triples, "train_triples": triples, "train_prefixes": 200,
                             "train_tau_accuracy": 1.0, "loss": 1 / e, "train_accuracy": 1.0,
                             "generalization_error": err, "rank_gap": db})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("holds", [True, False])
def test_claims_on_planted_data(holds):
    claims = completions_claims(planted(holds))
    assert {c["id"] for c in claims} == CLAIM_IDS
    assert all(c["holds"] is holds for c in claims), [(c["id"], c["holds"], c["ours"]) for c in claims]


def test_overfitting_claim_needs_the_loss_to_fall():
    df = planted(True)
    df["loss"] = df["epochs"]  # longer training fitting worse: not overfitting
    claim = {c["id"]: c for c in completions_claims(df)}["artifacts_fewer_with_overfitting"]
    assert claim["holds"] is False


def test_claims_without_runs_do_not_hold():
    claims = completions_claims(pd.DataFrame())
    assert {c["id"] for c in claims} == CLAIM_IDS and not any(c["holds"] for c in claims)


# ---------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, one_thread):
    out = tmp_path_factory.mktemp("completions")
    doc = reproduce(PAPER, config=TINY, out=out, log=quiet, progress=False)
    with Store.open(out / "results.duckdb", PAPER, read_only=True) as store:
        runs, dbs = store.frame("runs"), store.frame("databases")
    return out, doc, runs, dbs


def test_end_to_end_writes_store_figures_claims_report(reproduced):
    out, doc, runs, dbs = reproduced
    assert len(dbs) == len(TINY.databases()) == 4
    assert list(runs["run_id"]) == [r[0] for r in TINY.runs()]
    assert runs[["db_id", "layer_id", "epochs"]].drop_duplicates().shape[0] == len(runs) == 16
    for col in ["factlab_version", "torch_version", "train_config", "init_seed", "host"]:
        assert runs[col].notna().all(), col
    assert json.loads(runs["train_config"][0])["stop_tau"] is None
    assert json.loads(runs["train_config"][0])["kernel_used"] in ("fused", "autograd")
    # effective ranks: an interval per database, the gap of the two upper ends
    assert (dbs["eff_train_lower"] <= dbs["eff_train"]).all() and (dbs["eff_full_lower"] <= dbs["eff_full"]).all()
    assert (dbs["rank_gap"] == dbs["eff_full"] - dbs["eff_train"]).all()
    assert (dbs["train_triples"] + dbs["held_out_triples"] == dbs["triples"]).all()
    assert (dbs.loc[dbs["noise"] == 0, "noise_triples"] == 0).all()
    for stem in FIGURES:
        png, svg = out / "figures" / f"{stem}.png", out / "figures" / f"{stem}.svg"
        assert png.stat().st_size > 5000 and svg.stat().st_size > 5000
        colours = len(np.unique((mpimg.imread(png)[::3, ::3, :3].reshape(-1, 3) * 255).astype(int), axis=0))
        assert colours > 20, f"{stem} looks empty"
    saved = json.loads((out / "claims.json").read_text())
    assert {c["id"] for c in saved["claims"]} == CLAIM_IDS
    for c in saved["claims"]:
        assert set(c) == {"id", "figure", "claim", "paper", "ours", "test", "holds"}
        assert isinstance(c["holds"], bool) and c["paper"] and c["ours"] is not None
    assert saved["config_hash"] == TINY.hash and saved["tau"] == 0.5
    html = (out / "report.html").read_text()
    assert "data:image/png;base64" in html and "generalization_error_rank_gap" in html
    assert "held_out" in html and "rank_restarts" in html  # our choices are in the report
    assert doc["claims"] == saved["claims"]


def test_resume_skips_finished_work_and_never_rewrites(reproduced):
    out, _, runs, dbs = reproduced
    path = out / "results.duckdb"
    summary = run(PAPER, TINY, path, log=quiet, progress=False)
    assert (summary.units, summary.rows) == (0, 0)
    with Store.open(path, PAPER, read_only=True) as store:
        pd.testing.assert_frame_equal(store.frame("runs"), runs)
        pd.testing.assert_frame_equal(store.frame("databases"), dbs)
    # lose three runs: only those are trained again, the others keep their rows as they were
    lost = [1, 6, 11]
    con = duckdb.connect(str(path))
    con.execute(f"DELETE FROM runs WHERE run_id IN {tuple(lost)}")
    con.close()
    summary = run(PAPER, TINY, path, log=quiet, progress=False)
    assert summary.rows == 3
    with Store.open(path, PAPER, read_only=True) as store:
        again = store.frame("runs")
    keep = ~runs["run_id"].isin(lost)
    pd.testing.assert_frame_equal(again[keep.values].reset_index(drop=True), runs[keep].reset_index(drop=True))
    redone = again[again["run_id"].isin(lost)].reset_index(drop=True)
    before = runs[runs["run_id"].isin(lost)].reset_index(drop=True)
    # trained in another shard, the same run gives the same result (padding is inert)
    for col in ["artifacts", "generalizations", "hallucinations", "train_accuracy", "init_seed"]:
        assert list(redone[col]) == list(before[col]), col
    np.testing.assert_allclose(redone["loss"], before["loss"], rtol=1e-5)


def test_refuses_a_store_of_another_config(reproduced, tmp_path):
    out, _, runs, _ = reproduced
    other = replace(TINY, tau=0.75)
    with pytest.raises(ConfigError, match="different config"):
        reproduce(PAPER, config=other, out=out, log=quiet)
    with Store.open(out / "results.duckdb", PAPER, read_only=True) as store:
        assert store.count("runs") == len(runs)  # untouched
    # a store of another experiment (wong2025 / factlab run) is refused as well
    from factlab.experiments.wong2025 import PAPER as WONG
    from factlab.experiments.wong2025.config import parse_spec
    Store.create(tmp_path / "results.duckdb", WONG, parse_spec("seed = 1")).close()
    with pytest.raises(ConfigError, match="holds results of 'wong2025'"):
        reproduce(PAPER, config=TINY, out=tmp_path, log=quiet)


def test_cli_reproduce_completions(monkeypatch, tmp_path, capsys):
    from factlab.cli import main

    tiny = replace(TINY, classes=(2,), noise=(0.0,), epochs=(10,))
    monkeypatch.setattr(type(PAPER), "config", lambda self, scale: tiny)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "completions"]) == 0
    assert "claims hold" in capsys.readouterr().out
    assert (tmp_path / "completions-quick" / "claims.json").exists()
    assert (tmp_path / "completions-quick" / "report.html").exists()
