"""The search for the smallest memorizing model, checked against exhaustive training on
databases small enough to train every rung; ``factlab capacity`` end to end."""

import json
from pathlib import Path

import pandas as pd
import pytest

from factlab.cli import main
from factlab.errors import ConfigError
from factlab.experiments.core.runner import run
from factlab.experiments.core.store import Store
from factlab.experiments.mechanisms import PAPER, plan
from factlab.experiments.mechanisms.config import MechanismsConfig, PopulationSpec, TrainingSpec, capacity_config
from factlab.experiments.mechanisms.plan import Probe
from factlab.experiments.mechanisms.unit import train_probes

FIGURE1 = str(Path(__file__).resolve().parents[3] / "examples" / "figure1.csv")

# Figure 1's 8 facts and a random database of 14; on this ladder and budget every mechanism
# fails at d = 1 on both, so each search has a smaller rung to check.
CONFIG = MechanismsConfig(name="tiny", sources=(FIGURE1,),
                          population=PopulationSpec(subjects=(6,), values=(3,), predicates=3, density=0.8,
                                                    replicates=1),
                          ladder=(1, 2, 3, 4, 6), training=TrainingSpec(steps=300, eval_every=10))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    run(PAPER, CONFIG, out, progress=False, log=lambda m: None)
    with Store.open(out, PAPER, read_only=True) as store:
        return out, store.frame("databases"), store.frame("probes")


@pytest.fixture(scope="module")
def exhaustive():
    """Every rung of every database and mechanism, trained as one stack per mechanism."""
    dbs = [db for _, _, db in plan.databases(CONFIG)]
    rows = []
    for m in CONFIG.mechanisms:
        rows += train_probes(CONFIG, [Probe(i, m, r) for i in range(len(dbs)) for r in range(len(CONFIG.ladder))], dbs)
    return pd.DataFrame(rows)


def test_the_search_finds_the_first_memorizing_rung_of_an_exhaustive_sweep(searched, exhaustive):
    _, dbs, probes = searched
    best = plan.smallest(CONFIG, probes, dbs)
    assert best["done"].all() and len(best) == 2 * 3
    for r in best.itertuples():
        sweep = exhaustive[(exhaustive["db_id"] == r.db_id) & (exhaustive["mechanism"] == r.mechanism)]
        outcomes = sweep.sort_values("rung")["memorized"].tolist()
        assert outcomes == sorted(outcomes), f"{r.mechanism} on {r.database}: not monotone {outcomes}"
        assert r.rung == outcomes.index(True) >= 1
        # fewer probes than rungs: the search did not train the whole ladder
        assert (probes["db_id"] == r.db_id).sum() < 3 * len(CONFIG.ladder)


def test_the_smallest_model_memorizes_alone_and_the_next_smaller_fails(searched):
    _, dbs, probes = searched
    data = [db for _, _, db in plan.databases(CONFIG)]
    for r in plan.smallest(CONFIG, probes, dbs).itertuples():
        stored = probes[(probes["db_id"] == r.db_id) & (probes["mechanism"] == r.mechanism)
                        & (probes["rung"] == r.rung)].iloc[0]
        alone = train_probes(CONFIG, [Probe(r.db_id, r.mechanism, int(r.rung))], data)[0]
        assert alone["memorized"] and alone["accuracy"] == 1.0
        assert (alone["params"], alone["restart"]) == (stored["params"], stored["restart"])
        smaller = train_probes(CONFIG, [Probe(r.db_id, r.mechanism, int(r.rung) - 1)], data)[0]
        assert not smaller["memorized"] and smaller["restarts_memorized"] == 0
        assert smaller["steps"] == CONFIG.training.steps


def test_a_resumed_search_trains_nothing(searched):
    out, _, probes = searched
    again = run(PAPER, CONFIG, out, progress=False, log=lambda m: None)
    assert again.units == 0
    with Store.open(out, PAPER, read_only=True) as store:
        assert len(store.frame("probes")) == len(probes)


def test_capacity_json_and_table(tmp_path, capsys):
    out = tmp_path / "cap"
    args = ["capacity", FIGURE1, "--out", str(out), "--mechanisms", "recall,geometric", "--steps", "400"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["triples"], report["prop21"], report["lower"], report["upper"]) == (8, 6, 5, 5)
    assert [m["mechanism"] for m in report["mechanisms"]] == ["recall", "geometric"]
    for m in report["mechanisms"]:
        assert set(m) >= {"mechanism", "params", "config", "argmax_accuracy", "memorized"}
        assert m["memorized"] and m["argmax_accuracy"] == 1.0 and m["params"] > 0
        assert set(m["tau_accuracy"]) == {"0.5", "0.75", "0.95", "0.99"}
    assert report["mechanisms"][0]["config"]["d"] == report["mechanisms"][0]["d"]
    # again without --json: the same store, nothing retrained, a table
    assert main(args + ["--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "|D| = 8, Proposition 2.1 = 6, rank in [5, 5]" in text and "0 units run" in text
    assert (out / "report.html").exists() and (out / "figures" / "accuracy_vs_params.png").exists()


def test_capacity_refuses_a_store_of_other_facts(tmp_path, capsys):
    out = tmp_path / "cap"
    other = tmp_path / "other.csv"
    other.write_text("subject,predicate,object\na,p,x\nb,p,y\n")
    assert main(["capacity", str(other), "--out", str(out), "--json", "--steps", "50", "--mechanisms", "recall"]) == 0
    capsys.readouterr()
    other.write_text("subject,predicate,object\na,p,x\nb,p,x\n")          # the same file, changed facts
    with pytest.raises(ConfigError, match="config"):
        run(PAPER, capacity_config([other], ["recall"], name="capacity-other", steps=50), out, progress=False,
            log=lambda m: None)


def test_bad_mechanisms_and_ladders_are_named():
    with pytest.raises(ConfigError, match="mlp"):
        capacity_config([FIGURE1], ["recall", "mlp"])
    with pytest.raises(ConfigError, match="increasing"):
        MechanismsConfig(ladder=(4, 2))
    with pytest.raises(ConfigError, match="no such file"):
        capacity_config(["no/such/facts.csv"])


def test_capacity_reads_a_source_with_the_reader_options_it_is_given(tmp_path, capsys):
    """--table, --query, --format and --conflicts reach the reader and the config (a store
    made with other options is another config); a wrong option is named."""
    from factlab.databases.sources import read

    sqlite = str(Path(FIGURE1).with_suffix(".sqlite"))
    people = capacity_config([sqlite], ["recall"], reader={"table": "people"})
    [(name, _, db)] = plan.databases(people)
    assert name == "figure1" and db.triples() == read(sqlite, table="people").triples()
    assert people.hash != capacity_config([sqlite], ["recall"], reader={"table": "currency"}).hash
    with pytest.raises(Exception, match="table"):                   # two tables: which one?
        plan.databases(capacity_config([sqlite], ["recall"]))
    clash = tmp_path / "clash.txt"
    clash.write_text("subject,predicate,object\na,p,x\na,p,y\nb,p,x\n")
    assert main(["capacity", str(clash), "--format", "csv", "--conflicts", "first", "--out", str(tmp_path / "c"),
                 "--json", "--steps", "50", "--mechanisms", "recall"]) == 0
    assert json.loads(capsys.readouterr().out)["triples"] == 2
    assert main(["capacity", FIGURE1, "--table", "people", "--out", str(tmp_path / "d"), "--json"]) == 2
    assert "no option table for this format" in capsys.readouterr().err
