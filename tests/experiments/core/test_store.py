"""The generic result store: never overwrites, refuses a foreign store, reads old layouts."""

import json
import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from factlab.errors import ConfigError
from factlab.experiments.core.paper import Unit
from factlab.experiments.core.store import Store, read_meta

from .toy_paper import PAPER, ToyConfig


def test_insert_never_overwrites_and_commit_unit_is_recorded(tmp_path):
    path = tmp_path / "results.duckdb"
    with Store.create(path, PAPER, ToyConfig(), provenance={"factlab_version": "x"}) as st:
        assert st.insert("probes", [{"search": 0, "size": 3, "ok": True, "value": 1.0}]) == 1
        assert st.insert("probes", [{"search": 0, "size": 3, "ok": False, "value": 2.0}]) == 0
        n = st.commit_unit(Unit("u1", None), {"probes": [{"search": 1, "size": 4, "ok": True, "value": 0.0}]},
                           {"seconds": 1.5, "backend": "local"})
        assert n == 1 and st.done_units() == {"u1"}
        with pytest.raises(ConfigError, match="no column"):
            st.insert("probes", [{"search": 2, "size": 1, "ok": True, "value": 0.0, "colour": 1}])
    with Store.open(tmp_path, PAPER, ToyConfig()) as st:              # the directory works too
        probes = st.frame("probes")
        assert list(probes["value"]) == [1.0, 0.0]
        assert st.meta()["factlab_version"] == "x" and st.config == ToyConfig()
        written = st.export(tmp_path / "x")
    assert len(pd.read_parquet(tmp_path / "x" / "probes.parquet")) == 2 and len(written) == 4


def test_a_failed_unit_commits_nothing(tmp_path):
    with Store.create(tmp_path / "r.duckdb", PAPER, ToyConfig()) as st:
        with pytest.raises(Exception):
            st.commit_unit(Unit("bad"), {"probes": [{"search": 0, "size": 1, "ok": True, "value": 0.0},
                                                    {"search": 0, "size": "not a number", "ok": True}]}, {})
        assert st.count("probes") == 0 and st.done_units() == set()


def test_refuses_another_config_another_paper_and_an_existing_file(tmp_path):
    path = tmp_path / "r.duckdb"
    Store.create(path, PAPER, ToyConfig()).close()
    with pytest.raises(ConfigError, match="different config"):
        Store.open(path, PAPER, ToyConfig(seed=9))
    Store.open(path, PAPER, ToyConfig(sleep=3.0)).close()          # run-only: the same config
    with pytest.raises(ConfigError, match="already exists"):
        Store.create(path, PAPER, ToyConfig())

    class Other(type(PAPER)):
        name = "other"

    with pytest.raises(ConfigError, match="holds results of 'toy'"):
        Store.open(path, Other(), ToyConfig())
    with pytest.raises(ConfigError, match="does not know"):
        Store.open(path, papers={})


def test_meta_of_stores_written_before_the_core():
    assert read_meta({"spec": 'name = "w"\nseed = 1\n', "spec_hash": "abc"}) == ("wong2025", {"name": "w", "seed": 1},
                                                                              "abc")
    assert read_meta({"experiment": "completions", "config": json.dumps({"seed": 2}), "config_hash": "h"}) == \
        ("completions", {"seed": 2}, "h")
    with pytest.raises(ConfigError, match="names no paper"):
        read_meta({"created": "now"})


def test_a_store_without_a_units_table_gets_one(tmp_path):
    path = tmp_path / "r.duckdb"
    Store.create(path, PAPER, ToyConfig()).close()
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE units")
    con.close()
    with Store.open(path, PAPER, ToyConfig()) as st:
        assert st.done_units() == set()


def test_store_held_by_another_process_names_the_cause(tmp_path):
    path = tmp_path / "results.duckdb"
    Store.create(path, PAPER, ToyConfig()).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); "
                               "print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="in use by another process"):
            Store.open(path, PAPER, read_only=True)
    finally:
        holder.kill()
        holder.wait()
    Store.open(path, PAPER, ToyConfig()).close()  # free again once the other process is gone
