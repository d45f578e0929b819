"""The plan of Wong (2025, sec. 4): its tables in a store, pairs, shards and units."""

import pandas as pd

from factlab.experiments.core.store import Store
from factlab.experiments.wong2025 import PAPER, plan
from factlab.experiments.wong2025.unit import tau_column


def test_tables_round_trip_and_export(tmp_path, tiny_spec):
    dbs, layers = plan.databases(tiny_spec), plan.layers(tiny_spec)
    with Store.create(tmp_path / "r.duckdb", PAPER, tiny_spec) as st:
        assert st.insert("databases", plan.database_rows(tiny_spec, dbs)) == len(dbs)
        assert st.insert("layers", plan.layer_rows(layers)) == len(layers)
        row = {"pair_id": 0, "db_id": 1, "layer_id": 2, "status": "memorized", "epochs": 10, "loss": 0.1,
               "accuracy": 1.0, **{tau_column(t): 0.5 for t in tiny_spec.thresholds.taus}}
        assert st.insert("runs", [row]) == 1
        assert st.insert("runs", [{**row, "accuracy": 0.0}]) == 0   # never overwritten
    with Store.open(tmp_path / "r.duckdb", PAPER, tiny_spec) as st:
        assert st.config == tiny_spec
        db = st.frame("databases")
        assert list(db["triples"]) == [len(d) for d in dbs] and db["rank_lower"].isna().all()
        written = st.export(tmp_path / "x")
    assert len(pd.read_parquet(tmp_path / "x" / "runs.parquet")) == 1
    assert len(pd.read_csv(tmp_path / "x" / "layers.csv")) == len(layers)
    assert len(pd.read_csv(tmp_path / "x" / "results.csv")) == 1        # the joined view
    assert len(written) == 12                                            # 4 tables, units, results x 2 formats


def test_pairs_shards_and_units_are_deterministic(tiny_spec):
    a, b = plan.pairs(tiny_spec), plan.pairs(tiny_spec)
    assert a == b and len({(p.db_id, p.layer_id) for p in a}) == len(a) == 18
    dbs = plan.databases(tiny_spec)
    shards = plan.shards(tiny_spec, a, dbs)
    assert sorted(p.pair_id for s in shards for p in s) == list(range(18))
    assert all(len(s) <= 5 for s in shards)
    units = plan.units(tiny_spec, set())
    assert [u.id for u in units] == [f"shard-{k}" for k in range(len(shards))]
    assert [[t.pair.pair_id for t in u.payload] for u in units] == [[p.pair_id for p in s] for s in shards]
    # a shard whose pairs are partly stored (a store written before units) keeps its id, with the rest
    first = [p.pair_id for p in shards[0]]
    later = plan.units(tiny_spec, set(first[:2]))
    assert later[0].id == "shard-0" and [t.pair.pair_id for t in later[0].payload] == first[2:]
    assert [u.id for u in plan.units(tiny_spec, set(range(18)))] == []
