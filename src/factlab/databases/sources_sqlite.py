"""The SQLite source: a table, view or query of a SQLite file, opened read-only (:func:`read_sqlite`).

Its result rows go through the same triples-or-table collector as CSV; what is
particular to SQLite (opening read-only, picking the table, quoting its name, and
turning :class:`sqlite3.Error` into :class:`~factlab.errors.SourceError`) lives here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from factlab.databases.database import ConflictPolicy, Database
from factlab.databases.sources_common import _Facts, _file
from factlab.errors import SourceError


def read_sqlite(
    path, *, table: str | None = None, query: str | None = None, form: str = "auto", key: str | None = None,
    conflicts: ConflictPolicy = "error", name: str | None = None,
) -> Database:
    """A database from a SQLite table or the result of a query, opened read-only.

    Without ``table`` or ``query`` the file must hold exactly one table or view.
    ``form`` and ``key`` are as in :func:`~factlab.databases.sources_tables.read_csv`:
    result columns named subject, predicate, object are triples, anything else a
    Figure 1 table. NULL is a missing cell. Places read ``"db.sqlite table people
    row 2"`` (rows in scan order, from 1).
    """
    if table is not None and query is not None:
        raise SourceError(f"{path}: give a table or a query, not both")
    p = _file(path)
    con = sqlite3.connect(p.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        label = f"{p} query"
        if query is None:
            table = _pick_table(p, con, table)
            query, label = f"SELECT * FROM {_quote_ident(table)}", f"{p} table {table}"
        cur = con.execute(query)
        if cur.description is None:
            raise SourceError(f"{label}: the statement returns no columns")
        columns = [d[0] for d in cur.description]
        rows = [(f"{label} row {i}", r) for i, r in enumerate(cur, 1)]
    except sqlite3.Error as e:
        stmt = f" (statement: {query!r})" if query else ""
        raise SourceError(f"cannot read {p} as SQLite: {e}{stmt}") from None
    finally:
        con.close()
    why = "" if rows else ": no rows"
    return _Facts(label).add_rows(columns, rows, form, key, label).build(conflicts, name or p.name, why)


def _pick_table(p: Path, con: sqlite3.Connection, table: str | None) -> str:
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
    if table is None and len(names) == 1:
        return names[0]
    if table is None:
        raise SourceError(f"{p} holds {len(names)} tables ({', '.join(names) or 'none'}); pass table= or query=")
    if table not in names:
        raise SourceError(f"{p} has no table {table!r} (tables: {', '.join(names) or 'none'})")
    return table


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
