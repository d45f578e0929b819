"""The result store: one embedded DuckDB file per experiment (SPEC sec. 6).

Layout (``results.duckdb``)::

    meta       key TEXT PRIMARY KEY, value TEXT         spec (TOML), spec_hash, created, versions
    databases  db_id PRIMARY KEY, name, triples, subjects, predicates, objects, n_tokens,
               prop21 (Proposition 2.1), rank_lower, rank_upper, rank_certified, rank_json,
               generator_json
    layers     layer_id PRIMARY KEY, d_model, n_heads, d_head_qk, d_head_vo,
               params (non-embedding), lower_estimate (eq. 9)
    pairs      pair_id PRIMARY KEY, db_id, layer_id, init_seed    every planned pair
    runs       pair_id PRIMARY KEY, db_id, layer_id, status, epochs, loss, accuracy (argmax),
               acc_tau_<τ> per threshold (e.g. acc_tau_0_95), train_config (JSON), init_seed,
               factlab_version, torch_version, device, backend, host, shard_seconds, finished_at

A finished pair is never recomputed or overwritten: ``runs`` rows are inserted with
``ON CONFLICT DO NOTHING`` and the runner skips pairs already present. Every write of a
shard's rows is one transaction, so a process killed at any point leaves whole shards or
nothing. The store refuses to open for a spec whose hash differs from the one it was made for.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Iterable, Sequence

import duckdb
import pandas as pd

from factlab.errors import ConfigError
from factlab.experiments.spec import ExperimentSpec, parse_spec

TABLES = ("databases", "layers", "pairs", "runs")


def tau_column(tau: float) -> str:
    """Column name of the softmax >= τ accuracy: ``acc_tau_0_95`` for τ = 0.95."""
    return "acc_tau_" + f"{tau:g}".replace(".", "_")


def connect(path: Path, *, read_only: bool = False) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """Open an existing store file and read its ``meta`` table; a file another process is
    writing, or one that is not a store, raises a :class:`ConfigError` that says which."""
    try:
        con = duckdb.connect(str(path), read_only=read_only)
        return con, dict(con.execute("SELECT key, value FROM meta").fetchall())
    except duckdb.Error as e:
        if "lock" in str(e).lower():  # DuckDB lets one process write a file at a time
            raise ConfigError(f"{path}: the store is in use by another process (a run still writing "
                              f"to it?); wait for it to finish or stop it, then retry ({e})") from None
        raise ConfigError(f"{path}: not a factlab result store ({e})") from None


class DuckDBStore:
    """What every factlab store shares: one DuckDB connection, its ``meta`` table, counts,
    and inserts that never overwrite. Subclasses say which tables exist (:attr:`TABLES`)."""

    TABLES: tuple[str, ...] = ()

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection):
        self.path = path
        self.con = con

    def meta(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT key, value FROM meta").fetchall())

    def count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    def insert(self, table: str, rows: Sequence[dict]) -> int:
        """Insert rows in one transaction; rows whose primary key exists are left as they are.
        Returns the number of rows actually inserted."""
        if table not in self.TABLES:
            raise ConfigError(f"unknown table {table!r}")
        if not rows:
            return 0
        frame = pd.DataFrame(list(rows))
        cols = ", ".join(frame.columns)
        self.con.register("_new_rows", frame)
        try:
            _q(self.con, "BEGIN TRANSACTION")
            before = self.count(table)
            _q(self.con, f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _new_rows ON CONFLICT DO NOTHING")
            after = self.count(table)
            _q(self.con, "COMMIT")
        except BaseException:
            _q(self.con, "ROLLBACK")
            raise
        finally:
            self.con.unregister("_new_rows")
        return after - before

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ResultStore(DuckDBStore):
    """An open result store. Use :meth:`create` for a new file, :meth:`open` for an existing one,
    or :meth:`open_or_create`; close with :meth:`close` (or use it as a context manager)."""

    TABLES = TABLES

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, spec: ExperimentSpec):
        super().__init__(path, con)
        self.spec = spec

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | Path, spec: ExperimentSpec, *, provenance: dict | None = None) -> "ResultStore":
        path = Path(path)
        if path.exists():
            raise ConfigError(f"{path}: a store already exists here; resume it or choose a new --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        taus = ", ".join(f"{tau_column(t)} DOUBLE" for t in spec.thresholds.taus)
        _q(con, "BEGIN TRANSACTION")
        _q(con, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        _q(con, """CREATE TABLE databases (db_id INTEGER PRIMARY KEY, name TEXT, triples INTEGER,
            subjects INTEGER, predicates INTEGER, objects INTEGER, n_tokens INTEGER, prop21 INTEGER,
            rank_lower INTEGER, rank_upper INTEGER, rank_certified BOOLEAN, rank_json TEXT,
            generator_json TEXT)""")
        _q(con, """CREATE TABLE layers (layer_id INTEGER PRIMARY KEY, d_model INTEGER, n_heads INTEGER,
            d_head_qk INTEGER, d_head_vo INTEGER, params INTEGER, lower_estimate INTEGER)""")
        _q(con, "CREATE TABLE pairs (pair_id INTEGER PRIMARY KEY, db_id INTEGER, layer_id INTEGER, init_seed UBIGINT)")
        _q(con, f"""CREATE TABLE runs (pair_id INTEGER PRIMARY KEY, db_id INTEGER, layer_id INTEGER,
            status TEXT, epochs INTEGER, loss DOUBLE, accuracy DOUBLE, {taus}, train_config TEXT,
            init_seed UBIGINT, factlab_version TEXT, torch_version TEXT, device TEXT, backend TEXT,
            host TEXT, shard_seconds DOUBLE, finished_at TIMESTAMP)""")
        meta = {"spec": spec.to_toml(), "spec_hash": spec.hash,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **{k: str(v) for k, v in (provenance or {}).items()}}
        for item in meta.items():
            _q(con, "INSERT INTO meta VALUES (?, ?)", list(item))
        _q(con, "COMMIT")
        return cls(path, con, spec)

    @classmethod
    def open(cls, path: str | Path, spec: ExperimentSpec | None = None, *, read_only: bool = False) -> "ResultStore":
        """Open an existing store; with ``spec``, refuse unless it is the spec the store was made for."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: no result store here")
        con, meta = connect(path, read_only=read_only)
        stored = parse_spec(meta["spec"], source=f"{path} (meta.spec)")
        if spec is not None and spec.hash != meta["spec_hash"]:
            con.close()
            raise ConfigError(
                f"{path}: this store holds results of a different spec (hash {meta['spec_hash']}, "
                f"name {stored.name!r}) than the one given (hash {spec.hash}); it is never overwritten: "
                "pass a new --out")
        return cls(path, con, spec or stored)

    @classmethod
    def open_or_create(cls, path: str | Path, spec: ExperimentSpec, *, provenance: dict | None = None) -> "ResultStore":
        path = Path(path)
        return cls.open(path, spec) if path.exists() else cls.create(path, spec, provenance=provenance)

    # ------------------------------------------------------------------ writing
    def fill_ranks(self, rows: Iterable[dict]) -> None:
        """Fill rank intervals of databases whose rank columns are still NULL (never overwrites)."""
        rows = list(rows)
        if not rows:
            return
        _q(self.con, "BEGIN TRANSACTION")
        for r in rows:
            _q(self.con,
                "UPDATE databases SET rank_lower = ?, rank_upper = ?, rank_certified = ?, rank_json = ? "
                "WHERE db_id = ? AND rank_json IS NULL",
                [r["rank_lower"], r["rank_upper"], r["rank_certified"], r["rank_json"], r["db_id"]])
        _q(self.con, "COMMIT")

    # ------------------------------------------------------------------ reading
    def done_pairs(self) -> set[int]:
        return {r[0] for r in self.con.execute("SELECT pair_id FROM runs").fetchall()}

    def ids(self, table: str, key: str) -> set[int]:
        return {r[0] for r in self.con.execute(f"SELECT {key} FROM {table}").fetchall()}

    def frame(self, table: str) -> pd.DataFrame:
        order = {"databases": "db_id", "layers": "layer_id", "pairs": "pair_id", "runs": "pair_id"}[table]
        return self.con.execute(f"SELECT * FROM {table} ORDER BY {order}").df()

    def results(self) -> pd.DataFrame:
        """One row per finished pair, joined with its database's and layer's sizes and bounds:
        ``db_bound`` is Proposition 2.1, ``layer_bound`` the lower estimate (9)."""
        return self.con.execute("""
            SELECT r.*, d.name AS db_name, d.triples, d.n_tokens, d.prop21 AS db_bound,
                   d.rank_lower, d.rank_upper, l.d_model, l.n_heads, l.d_head_qk, l.d_head_vo,
                   l.params, l.lower_estimate AS layer_bound
            FROM runs r JOIN databases d USING (db_id) JOIN layers l USING (layer_id)
            ORDER BY r.pair_id""").df()

    # ------------------------------------------------------------------ export
    def export(self, directory: str | Path, formats: Sequence[str] = ("parquet", "csv")) -> list[Path]:
        """Write every table (and the joined ``results``) as Parquet and/or CSV files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        frames = {t: self.frame(t) for t in TABLES}
        frames["results"] = self.results()
        for fmt in formats:
            if fmt not in ("parquet", "csv"):
                raise ConfigError(f"unknown export format {fmt!r}; use parquet or csv")
            for name, frame in frames.items():
                path = directory / f"{name}.{fmt}"
                if fmt == "parquet":
                    frame.to_parquet(path, index=False)
                else:
                    frame.to_csv(path, index=False)
                written.append(path)
        return written


def _q(con, sql: str, params=None) -> list:
    """Execute one statement and fetch its result (DuckDB wants every result consumed)."""
    return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()


def provenance_json(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
