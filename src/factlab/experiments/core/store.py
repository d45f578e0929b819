"""The result store: one embedded DuckDB file per experiment, for any paper.

Layout (``results.duckdb``)::

    meta    key TEXT PRIMARY KEY, value TEXT   paper, config (JSON), config_hash, created, versions
    units   unit_id TEXT PRIMARY KEY, round, rows (JSON: rows per table), seconds, backend,
            host, factlab_version, torch_version, finished_at       one row per finished unit
    ...     the paper's own tables (Paper.tables), each with its primary key

Nothing in a store is ever overwritten: rows are inserted with ``ON CONFLICT DO NOTHING``
and a unit's rows go in with its ``units`` row in one transaction, so a process killed at
any point leaves whole units or nothing. A store refuses to open for another paper or for
a config of another hash. Stores written before this layout (Wong 2025's ``spec`` and
``spec_hash`` meta keys, the completions study's ``experiment`` key, no ``units`` table)
open too: their meta is read under the old names and a ``units`` table is added.
"""

from __future__ import annotations

import datetime as _dt
import json
import tomllib
from pathlib import Path
from typing import Sequence

import duckdb
import pandas as pd

from factlab.errors import ConfigError
from factlab.experiments.core.config import config_dict, config_hash
from factlab.experiments.core.paper import Paper, Table, Unit

STORE_NAME = "results.duckdb"
UNITS = Table({"unit_id": "TEXT", "round": "INTEGER", "rows": "TEXT", "seconds": "DOUBLE", "backend": "TEXT",
               "host": "TEXT", "factlab_version": "TEXT", "torch_version": "TEXT", "finished_at": "TIMESTAMP"},
              ("unit_id",))


def store_path(path: str | Path) -> Path:
    """A store file, or the directory holding :data:`STORE_NAME`."""
    path = Path(path)
    return path / STORE_NAME if path.is_dir() else path


def _q(con, sql: str, params=None) -> list:
    """Execute one statement and fetch its result (DuckDB wants every result consumed)."""
    return con.execute(sql, params).fetchall() if params is not None else con.execute(sql).fetchall()


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


def read_meta(meta: dict[str, str]) -> tuple[str, dict, str]:
    """``(paper, config dict, config hash)`` from a store's meta, under today's keys or the
    keys of stores written before them."""
    if "paper" in meta:
        return meta["paper"], json.loads(meta["config"]), meta["config_hash"]
    if meta.get("experiment") == "completions":
        return "completions", json.loads(meta["config"]), meta["config_hash"]
    if "spec" in meta:
        return "wong2025", tomllib.loads(meta["spec"]), meta["spec_hash"]
    raise ConfigError("the store's meta names no paper")


class Store:
    """An open result store of one paper's experiment. :meth:`create` makes a new file,
    :meth:`open` opens one (refusing another paper or config); close it with
    :meth:`close` or use it as a context manager."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection, paper: Paper, config, meta: dict[str, str],
                 tables: dict[str, Table]):
        self.path, self.con, self.paper, self.config, self._meta = path, con, paper, config, meta
        self.tables = tables

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | Path, paper: Paper, config, *, provenance: dict | None = None) -> "Store":
        path = Path(path)
        if path.exists():
            raise ConfigError(f"{path}: a store already exists here; resume it or choose a new --out")
        path.parent.mkdir(parents=True, exist_ok=True)
        tables = paper.tables(config)
        con = duckdb.connect(str(path))
        _q(con, "BEGIN TRANSACTION")
        _q(con, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        _q(con, UNITS.ddl("units"))
        for name, table in tables.items():
            _q(con, table.ddl(name))
        meta = {"paper": paper.name, "config": json.dumps(config_dict(config), sort_keys=True),
                "config_hash": config_hash(config),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **{k: str(v) for k, v in (provenance or {}).items()}}
        for item in meta.items():
            _q(con, "INSERT INTO meta VALUES (?, ?)", list(item))
        _q(con, "COMMIT")
        return cls(path, con, paper, config, meta, tables)

    @classmethod
    def open(cls, path: str | Path, paper: Paper | None = None, config=None, *, read_only: bool = False,
             papers: dict[str, Paper] | None = None) -> "Store":
        """Open an existing store. With ``paper`` (and ``config``), refuse a store of another
        paper (or of a config of another hash). Without ``paper``, ``papers`` (name -> Paper)
        says how to read the one the store names."""
        path = store_path(path)
        if not path.exists():
            raise ConfigError(f"{path}: no result store here")
        con, meta = connect(path, read_only=read_only)
        try:
            name, stored, stored_hash = read_meta(meta)
        except ConfigError as e:
            con.close()
            raise ConfigError(f"{path}: {e}") from None
        if paper is None:
            if papers is None or name not in papers:
                con.close()
                raise ConfigError(f"{path}: a store of {name!r}, which this factlab does not know")
            paper = papers[name]
        if name != paper.name:
            con.close()
            raise ConfigError(f"{path}: this store holds results of {name!r}, not {paper.name!r}; it is never "
                              "overwritten: pass a new --out")
        if config is not None and config_hash(config) != stored_hash:
            con.close()
            raise ConfigError(
                f"{path}: this store holds results of a different config (hash {stored_hash}, name "
                f"{stored.get('name')!r}) than the one given (hash {config_hash(config)}, name "
                f"{getattr(config, 'name', None)!r}); it is never overwritten: pass a new --out")
        config = config or paper.config_from_dict(stored, source=f"{path} (meta)")
        if not read_only and "units" not in cls._table_names(con):
            _q(con, UNITS.ddl("units"))          # a store written before units were recorded
        return cls(path, con, paper, config, meta, paper.tables(config))

    @classmethod
    def open_or_create(cls, path: str | Path, paper: Paper, config, *, provenance: dict | None = None) -> "Store":
        path = store_path(path)
        return cls.open(path, paper, config) if path.exists() else cls.create(path, paper, config,
                                                                             provenance=provenance)

    @staticmethod
    def _table_names(con) -> set[str]:
        return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}

    # ------------------------------------------------------------------ writing
    def insert(self, table: str, rows: Sequence[dict], *, transaction: bool = True) -> int:
        """Insert rows; rows whose key exists are left as they are. Returns how many went in."""
        if table not in self.tables:
            raise ConfigError(f"unknown table {table!r}; the {self.paper.name} store has {sorted(self.tables)}")
        if not rows:
            return 0
        frame = pd.DataFrame(list(rows))
        unknown = set(frame.columns) - set(self.tables[table].columns)
        if unknown:
            raise ConfigError(f"table {table!r} has no column(s) {sorted(unknown)}")
        cols = ", ".join(frame.columns)
        self.con.register("_new_rows", frame)
        try:
            if transaction:
                _q(self.con, "BEGIN TRANSACTION")
            before = self.count(table)
            _q(self.con, f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _new_rows ON CONFLICT DO NOTHING")
            after = self.count(table)
            if transaction:
                _q(self.con, "COMMIT")
        except BaseException:
            if transaction:
                _q(self.con, "ROLLBACK")
            raise
        finally:
            self.con.unregister("_new_rows")
        return after - before

    def commit_unit(self, unit: Unit, rows: dict[str, list[dict]], record: dict) -> int:
        """A unit's rows and its ``units`` row, in one transaction; returns the rows inserted."""
        _q(self.con, "BEGIN TRANSACTION")
        try:
            n = sum(self.insert(t, r, transaction=False) for t, r in rows.items())
            counts = json.dumps({t: len(r) for t, r in rows.items()}, sort_keys=True)
            _q(self.con, "INSERT INTO units (unit_id, round, rows, seconds, backend, host, factlab_version, "
                         "torch_version, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
               [unit.id, unit.round, counts, record.get("seconds"), record.get("backend"), record.get("host"),
                record.get("factlab_version"), record.get("torch_version"), record.get("finished_at")])
            _q(self.con, "COMMIT")
        except BaseException:
            _q(self.con, "ROLLBACK")
            raise
        return n

    def fill(self, table: str, key: str, rows: Sequence[dict], columns: Sequence[str], *, marker: str) -> None:
        """Set ``columns`` of existing rows where ``marker`` is still NULL (never overwrites)."""
        if not rows:
            return
        sets = ", ".join(f"{c} = ?" for c in columns)
        _q(self.con, "BEGIN TRANSACTION")
        for r in rows:
            _q(self.con, f"UPDATE {table} SET {sets} WHERE {key} = ? AND {marker} IS NULL",
               [r[c] for c in columns] + [r[key]])
        _q(self.con, "COMMIT")

    # ------------------------------------------------------------------ reading
    def meta(self) -> dict[str, str]:
        return dict(self.con.execute("SELECT key, value FROM meta").fetchall())

    def count(self, table: str) -> int:
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    def done_units(self) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT unit_id FROM units").fetchall()}

    def ids(self, table: str, key: str) -> set:
        return {r[0] for r in self.con.execute(f"SELECT {key} FROM {table}").fetchall()}

    def frame(self, table: str) -> pd.DataFrame:
        """A whole table, ordered by its key."""
        key = ", ".join(self.tables[table].key) if table in self.tables else "unit_id"
        return self.con.execute(f"SELECT * FROM {table} ORDER BY {key}").df()

    def query(self, sql: str, params=None) -> pd.DataFrame:
        return self.con.execute(sql, params).df() if params is not None else self.con.execute(sql).df()

    # ------------------------------------------------------------------ export
    def export(self, directory: str | Path, formats: Sequence[str] = ("parquet", "csv")) -> list[Path]:
        """Write every table, the units and the paper's joined frames as Parquet and/or CSV files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        frames = {t: self.frame(t) for t in self.tables}
        frames["units"] = self.frame("units") if "units" in self._table_names(self.con) else pd.DataFrame()
        frames.update(self.paper.frames(self))
        written = []
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

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
