"""Tabular sources: Python triples and DataFrames, and CSV/TSV files.

:func:`from_triples` and :func:`from_table` read Python data; :func:`read_csv` reads a
CSV or TSV file. All of them are rows under a header, read either as triples or as a
Figure 1 table (Wong 2025) by the shared collector in
:mod:`~factlab.databases.sources_common`; they differ only in where the rows come from
and how a row's place is written. Kept apart from the SQLite and RDF readers so that
each format's parsing reads on its own.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pandas as pd

from factlab.databases.database import ConflictPolicy, Database
from factlab.databases.sources_common import Row, _Facts, _file, _read_text
from factlab.errors import SourceError


# ---------------------------------------------------------------------- Python sources
def from_triples(triples, *, conflicts: ConflictPolicy = "error", name: str | None = None) -> Database:
    """A database from ``(subject, predicate, object)`` triples, or a DataFrame of three columns.

    Cells become tokens by :func:`~factlab.databases.sources_common.cell_token`. Errors
    and conflicts name the triple by its position (``"triple 0"``) or, for a DataFrame,
    by its index label (``"row 7"``).
    """
    if isinstance(triples, pd.DataFrame):
        if triples.shape[1] != 3:
            raise SourceError(f"a DataFrame of triples needs 3 columns, got {list(triples.columns)}")
        rows = ((f"row {i!r}", tuple(r)) for i, r in zip(triples.index, triples.itertuples(index=False)))
    else:
        rows = ((f"triple {i}", _as_row(t, i)) for i, t in enumerate(triples))
    return _Facts(name or "the triples").add_triple_rows(rows).build(conflicts, name, ": the input is empty")


def _as_row(t, i: int) -> Sequence:
    if isinstance(t, (str, bytes)) or not isinstance(t, Iterable):
        raise SourceError(f"triple {i}: expected (subject, predicate, object), got {t!r}")
    return tuple(t)


def from_table(
    *frames: pd.DataFrame, key: str | None = None, conflicts: ConflictPolicy = "error", name: str | None = None
) -> Database:
    """A database from tables in the form of Figure 1 (Wong 2025), merged into one.

    Each frame has a key column (``key``, by default its first column; ``key`` may also
    name the frame's index) and one column per predicate; the cell at (row, column) is
    the object of (key, column), a missing cell meaning no fact. Places read
    ``"table 2 row 0 (column currency)"`` (tables counted from 1, rows by index label).
    """
    if not frames:
        raise SourceError("from_table() needs at least one table")
    facts = _Facts(name or "the tables")
    for n, frame in enumerate(frames, 1):
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"table {n} is a {type(frame).__name__}, not a pandas DataFrame")
        if key is not None and key not in frame.columns and key in frame.index.names:
            frame = frame.reset_index()
        rows = ((f"table {n} row {i!r}", tuple(r)) for i, r in zip(frame.index, frame.itertuples(index=False)))
        facts.add_table_rows(list(frame.columns), key, rows, at=f"table {n}")
    return facts.build(conflicts, name)


# ---------------------------------------------------------------------- CSV/TSV files
def read_csv(
    path, *, sep: str | None = None, form: str = "auto", key: str | None = None, header: bool = True,
    conflicts: ConflictPolicy = "error", encoding: str = "utf-8", name: str | None = None,
) -> Database:
    """A database from a CSV or TSV file of triples or a Figure 1 table.

    ``sep``: by default a tab for ``.tsv``/``.tab``, a comma for ``.csv``, and for
    other names a tab when the first line holds one. Tab-separated files are read
    without quoting (as TSV defines); comma-separated ones with CSV quoting.
    ``form``: ``"triples"``, ``"table"``, or ``"auto"``: triples when the header reads
    ``subject,predicate,object`` (any case), else a table. ``header=False`` reads a
    headerless triples file. Places are ``file:line``, the header being line 1.
    """
    p = _file(path)
    text = _read_text(p, encoding)
    if sep is None:
        ext = p.suffix.lower()
        first = text.split("\n", 1)[0]
        sep = "\t" if ext in (".tsv", ".tab") or (ext != ".csv" and "\t" in first) else ","
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    rows = list(_csv_rows(p, csv.reader(io.StringIO(text, newline=""), delimiter=sep, quoting=quoting, strict=True)))
    facts = _Facts(str(p))
    if not header:
        if form == "table":
            raise SourceError(f"{p}: a table needs a header (header=False reads triples only)")
        return facts.add_triple_rows(rows).build(conflicts, name or p.name, ": the file is empty")
    if not rows:
        raise SourceError(f"no facts in {p}: the file is empty")
    (at, columns), body = rows[0], rows[1:]
    why = "" if body else ": the file has a header and no rows"
    return facts.add_rows(columns, body, form, key, at).build(conflicts, name or p.name, why)


def _csv_rows(p: Path, reader) -> Iterator[Row]:
    """Non-blank records with the line each starts on (quoted fields may span lines)."""
    last = 0
    try:
        for cells in reader:
            start, last = last + 1, reader.line_num
            if cells:
                yield f"{p}:{start}", cells
    except csv.Error as e:
        raise SourceError(f"{p}:{last + 1}: malformed CSV: {e}") from None
