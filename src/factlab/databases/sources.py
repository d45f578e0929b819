"""Sources of facts: Python triples, pandas tables, CSV/TSV, SQLite and RDF (Wong 2025, sec. 2; Figure 1).

Every reader returns a :class:`~factlab.databases.database.Database` and records, per
fact, where it came from ("people.csv:3 (column born_in)", "db.sqlite table people
row 2", "figure1.nt:5"), so that a :class:`~factlab.errors.ConflictError` lists every
conflicting pair with its places. Nothing is dropped silently: a bad row, an empty
input, an unreadable or malformed file and an unknown format each raise
:class:`~factlab.errors.SourceError` naming the file and line. Only rows whose cells
are all empty are skipped, since they hold no fact.

Tokens are strings, made from cells by :func:`cell_token`; rows are read as triples or
as a Figure 1 table (Wong 2025). Both rules are spelled out in
:mod:`~factlab.databases.sources_common`.

This module is the entry point: :func:`read` picks a reader from the format table, and
every public name of the readers is importable from here. The readers live in

* :mod:`~factlab.databases.sources_common`: cell tokens, the fact collector, files, the format table;
* :mod:`~factlab.databases.sources_tables`: Python triples and DataFrames, CSV/TSV files;
* :mod:`~factlab.databases.sources_sqlite`: SQLite tables and queries;
* :mod:`~factlab.databases.sources_rdf`: N-Triples and Turtle.
"""

from __future__ import annotations

import inspect

from factlab.databases.database import Database
from factlab.databases.sources_common import (
    _FORMAT_ALIASES,
    EXTENSIONS,
    FORMATS,
    TRIPLE_COLUMNS,
    Row,
    _file,
    cell_token,
)
from factlab.databases.sources_rdf import read_rdf
from factlab.databases.sources_sqlite import read_sqlite
from factlab.databases.sources_tables import from_table, from_triples, read_csv
from factlab.errors import SourceError

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "TRIPLE_COLUMNS",
    "Row",
    "cell_token",
    "from_table",
    "from_triples",
    "read",
    "read_csv",
    "read_rdf",
    "read_sqlite",
]


# ---------------------------------------------------------------------- dispatch
def read(path, *, format: str | None = None, **options) -> Database:
    """Read a database from a file, picking the reader from the extension unless ``format``
    is given: ``.csv``/``.txt`` (csv), ``.tsv``/``.tab`` (tsv), ``.sqlite``/``.sqlite3``/
    ``.db`` (sqlite), ``.nt`` (nt), ``.ttl`` (turtle). ``options`` go to the reader:
    :func:`read_csv`, :func:`read_sqlite` or :func:`read_rdf`.
    """
    p = _file(path)
    fmt = _FORMAT_ALIASES.get(format, format) if format else EXTENSIONS.get(p.suffix.lower())
    if fmt not in FORMATS:
        known = ", ".join(f"{e} ({f})" for e, f in EXTENSIONS.items())
        what = f"format {format!r}" if format else f"extension {p.suffix or '(none)'!r}"
        raise SourceError(f"cannot read {p}: unknown {what}; known formats: {', '.join(FORMATS)}; extensions: {known}")
    if fmt == "tsv":
        options.setdefault("sep", "\t")
    reader = read_csv if fmt in ("csv", "tsv") else read_sqlite if fmt == "sqlite" else read_rdf
    accepted = set(inspect.signature(reader).parameters) - {"path", "format"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise SourceError(f"cannot read {p} as {fmt}: no option {', '.join(unknown)} for this format; "
                          f"it takes {', '.join(sorted(accepted))}")
    return reader(p, **options) if reader is not read_rdf else read_rdf(p, format=fmt, **options)
