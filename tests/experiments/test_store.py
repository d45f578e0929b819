import pandas as pd
import pytest

from factlab.errors import ConfigError
from factlab.experiments import plan
from factlab.experiments.spec import parse_spec
from factlab.experiments.store import ResultStore, tau_column


def test_round_trip_and_no_overwrite(tmp_path, tiny_spec):
    path = tmp_path / "r.duckdb"
    dbs, layers = plan.databases(tiny_spec), plan.layers(tiny_spec)
    with ResultStore.create(path, tiny_spec, provenance={"factlab_version": "x"}) as st:
        assert st.insert("databases", plan.database_rows(tiny_spec, dbs)) == len(dbs)
        assert st.insert("layers", plan.layer_rows(layers)) == len(layers)
        row = {"pair_id": 0, "db_id": 1, "layer_id": 2, "status": "memorized", "epochs": 10, "loss": 0.1,
               "accuracy": 1.0, **{tau_column(t): 0.5 for t in tiny_spec.thresholds.taus}}
        assert st.insert("runs", [row]) == 1
        assert st.insert("runs", [{**row, "accuracy": 0.0}]) == 0   # never overwritten
    with ResultStore.open(path, tiny_spec) as st:
        assert st.spec == tiny_spec
        runs = st.frame("runs")
        assert len(runs) == 1 and runs.loc[0, "accuracy"] == 1.0
        db = st.frame("databases")
        assert list(db["triples"]) == [len(d) for d in dbs]
        assert db["rank_lower"].isna().all()
        written = st.export(tmp_path / "x")
    assert len(pd.read_parquet(tmp_path / "x" / "runs.parquet")) == 1
    assert len(pd.read_csv(tmp_path / "x" / "layers.csv")) == len(layers)
    assert len(written) == 10


def test_refuses_other_spec_and_existing_file(tmp_path, tiny_spec):
    path = tmp_path / "r.duckdb"
    ResultStore.create(path, tiny_spec).close()
    with pytest.raises(ConfigError, match="different spec"):
        ResultStore.open(path, parse_spec("seed = 9"))
    with pytest.raises(ConfigError, match="already exists"):
        ResultStore.create(path, tiny_spec)


def test_pairs_and_shards_are_deterministic(tiny_spec):
    a, b = plan.pairs(tiny_spec), plan.pairs(tiny_spec)
    assert a == b and len({(p.db_id, p.layer_id) for p in a}) == len(a) == 18
    dbs = plan.databases(tiny_spec)
    shards = plan.shards(tiny_spec, a, dbs)
    assert sorted(p.pair_id for s in shards for p in s) == list(range(18))
    assert all(len(s) <= 5 for s in shards)


def test_store_held_by_another_process_names_the_cause(tmp_path, tiny_spec):
    import subprocess
    import sys

    path = tmp_path / "results.duckdb"
    ResultStore.create(path, tiny_spec).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); "
                               "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="in use by another process"):
            ResultStore.open(path, read_only=True)
    finally:
        holder.kill()
        holder.wait()
    ResultStore.open(path, tiny_spec).close()  # free again once the other process is gone
