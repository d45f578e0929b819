"""What every reader of :mod:`factlab.databases.sources` shares: cell tokens, the fact collector, files, formats.

A source turns cells into tokens and rows into facts with their places, the same way
whatever the source; this module holds that common part so that each reader module
(:mod:`~factlab.databases.sources_tables`, :mod:`~factlab.databases.sources_sqlite`,
:mod:`~factlab.databases.sources_rdf`) holds only what is particular to its format.

Tokens are strings. A cell becomes a token by :func:`cell_token`: whitespace is
stripped, an empty cell (``""``, None, NaN, NA) means "no fact", and numbers print
in their shortest exact form, so that ``1990``, ``1990.0`` (an int column that
pandas upcast to float because of a missing cell) and ``"1990"`` are one token.

Two forms of tabular data are read (:meth:`_Facts.add_rows`):

* triples: columns ``subject, predicate, object`` (header matched case-insensitively);
* a table in the form of Figure 1 of Wong (2025): a key column (by default the first)
  and one column per predicate, each cell the object of (key, column).

The format table (:data:`EXTENSIONS`, :data:`FORMATS`) lives here too, since both
:func:`~factlab.databases.sources.read` and the RDF reader consult it.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from factlab.databases.database import ConflictPolicy, Database
from factlab.errors import SourceError

TRIPLE_COLUMNS = ("subject", "predicate", "object")
# extension -> format; ``read`` picks the reader from this table
EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv",
    ".sqlite": "sqlite", ".sqlite3": "sqlite", ".db": "sqlite",
    ".nt": "nt", ".ttl": "turtle",
}
FORMATS = ("csv", "tsv", "sqlite", "nt", "turtle")
_FORMAT_ALIASES = {"ntriples": "nt", "n-triples": "nt", "ttl": "turtle"}

Row = tuple[str, Sequence]  # (where, cells): the place of a row and its raw cells


# ---------------------------------------------------------------------- cells and facts
def cell_token(value) -> str | None:
    """The token of one cell, or None for a missing cell (no fact).

    Strings are stripped (an empty string is missing); integral numbers, including
    floats such as ``1990.0``, print as integers (``"1990"``); other floats print in
    their shortest round-trip form (``"2.5"``); anything else prints with ``str``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if not pd.api.types.is_scalar(value):
        raise TypeError(f"a cell must be a scalar, got {type(value).__name__} {value!r}")
    if pd.isna(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        raise TypeError(f"a cell must be text or a number, got bytes {bytes(value)[:20]!r}")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        x = float(value)
        return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)
    return str(value).strip() or None


class _Facts:
    """Triples collected from a source, each with its provenance."""

    def __init__(self, source: str):
        self.source = source
        self.triples: list[tuple[str, str, str]] = []
        self.where: list[str] = []

    def add(self, k: str, q: str, v: str, where: str) -> None:
        self.triples.append((k, q, v))
        self.where.append(where)

    def add_triple_rows(self, rows: Iterable[Row]) -> "_Facts":
        """Rows of exactly three cells (subject, predicate, object)."""
        for where, cells in rows:
            if len(cells) != 3:
                raise SourceError(f"{where}: expected 3 fields (subject, predicate, object), got {len(cells)}")
            tokens = [_cell(c, where) for c in cells]
            if all(t is None for t in tokens):
                continue  # an empty row holds no fact
            for role, t in zip(TRIPLE_COLUMNS, tokens):
                if t is None:
                    raise SourceError(f"{where}: missing {role}")
            self.add(*tokens, where)
        return self

    def add_table_rows(self, columns: Sequence, key: str | None, rows: Iterable[Row], at: str) -> "_Facts":
        """Rows of a Figure 1 table: the ``key`` column (by default the first) holds the
        subject, every other column is a predicate and its cell the object; ``at`` locates
        the header."""
        names = [cell_token(c) for c in columns]
        if not names:
            raise SourceError(f"{at}: the table has no columns")
        for i, n in enumerate(names):
            if n is None:
                raise SourceError(f"{at}: column {i + 1} has no name")
        key = names[0] if key is None else key
        if key not in names:
            raise SourceError(f"{at}: no key column {key!r} (columns: {', '.join(names)})")
        k_idx = names.index(key)
        for where, cells in rows:
            if len(cells) != len(names):
                raise SourceError(f"{where}: expected {len(names)} fields like the header, got {len(cells)}")
            tokens = [_cell(c, where) for c in cells]
            if all(t is None for t in tokens):
                continue
            if tokens[k_idx] is None:
                raise SourceError(f"{where}: missing key (column {key})")
            for j, (q, v) in enumerate(zip(names, tokens)):
                if j != k_idx and v is not None:
                    self.add(tokens[k_idx], q, v, f"{where} (column {q})")
        return self

    def add_rows(self, columns: Sequence, rows: Iterable[Row], form: str, key: str | None, at: str) -> "_Facts":
        """Rows under a header, as triples or as a Figure 1 table: ``form`` is ``"triples"``,
        ``"table"`` or ``"auto"`` (triples when the columns are subject, predicate, object)."""
        if form not in ("auto", "triples", "table"):
            raise ValueError(f"form must be 'auto', 'triples' or 'table', got {form!r}")
        if form == "triples" or (form == "auto" and _is_triples_header(columns)):
            if not _is_triples_header(columns):
                raise SourceError(f"{at}: triples need the columns subject, predicate, object, got {list(columns)}")
            return self.add_triple_rows(rows)
        return self.add_table_rows(columns, key, rows, at)

    def build(self, conflicts: ConflictPolicy, name: str | None, why: str = "") -> Database:
        if not self.triples:
            raise SourceError(f"no facts in {self.source}{why}")
        return Database.from_triples(self.triples, conflicts=conflicts, provenance=self.where, name=name)


def _cell(value, where: str) -> str | None:
    try:
        return cell_token(value)
    except TypeError as e:
        raise SourceError(f"{where}: {e}") from None


def _is_triples_header(columns: Sequence) -> bool:
    return tuple(str(c).strip().lower() for c in columns) == TRIPLE_COLUMNS


# ---------------------------------------------------------------------- files
def _file(path) -> Path:
    """The path of a readable regular file, or a SourceError naming it."""
    if isinstance(path, (pd.DataFrame, list, tuple)):
        raise TypeError("a reader takes a file path; use from_triples or from_table for Python data")
    p = Path(os.fspath(path))
    if not p.exists():
        raise SourceError(f"cannot read {p}: no such file")
    if not p.is_file():
        raise SourceError(f"cannot read {p}: not a regular file")
    return p


def _read_text(p: Path, encoding: str) -> str:
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SourceError(f"cannot read {p}: {e.strerror or e}") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SourceError(f"{p}:{line}: cannot decode as {encoding} ({e.reason} at byte {e.start})") from None
    return text[1:] if text.startswith("\ufeff") else text
