"""Sources of facts: Python triples, pandas tables, CSV/TSV, SQLite and RDF (Wong 2025, sec. 2; Figure 1).

Every reader returns a :class:`~factlab.databases.database.Database` and records, per
fact, where it came from ("people.csv:3 (column born_in)", "db.sqlite table people
row 2", "figure1.nt:5"), so that a :class:`~factlab.errors.ConflictError` lists every
conflicting pair with its places. Nothing is dropped silently: a bad row, an empty
input, an unreadable or malformed file and an unknown format each raise
:class:`~factlab.errors.SourceError` naming the file and line. Only rows whose cells
are all empty are skipped, since they hold no fact.

Tokens are strings. A cell becomes a token by :func:`cell_token`: whitespace is
stripped, an empty cell (``""``, None, NaN, NA) means "no fact", and numbers print
in their shortest exact form, so that ``1990``, ``1990.0`` (an int column that
pandas upcast to float because of a missing cell) and ``"1990"`` are one token.

Two forms of tabular data are read:

* triples: columns ``subject, predicate, object`` (header matched case-insensitively);
* a table in the form of Figure 1 of Wong (2025): a key column (by default the first)
  and one column per predicate, each cell the object of (key, column).
"""

from __future__ import annotations

import inspect

import csv
import io
import numbers
import os
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

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


# ---------------------------------------------------------------------- Python sources
def from_triples(triples, *, conflicts: ConflictPolicy = "error", name: str | None = None) -> Database:
    """A database from ``(subject, predicate, object)`` triples, or a DataFrame of three columns.

    Cells become tokens by :func:`cell_token`. Errors and conflicts name the triple by its
    position (``"triple 0"``) or, for a DataFrame, by its index label (``"row 7"``).
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


def read_sqlite(
    path, *, table: str | None = None, query: str | None = None, form: str = "auto", key: str | None = None,
    conflicts: ConflictPolicy = "error", name: str | None = None,
) -> Database:
    """A database from a SQLite table or the result of a query, opened read-only.

    Without ``table`` or ``query`` the file must hold exactly one table or view.
    ``form`` and ``key`` are as in :func:`read_csv`: result columns named subject,
    predicate, object are triples, anything else a Figure 1 table. NULL is a missing
    cell. Places read ``"db.sqlite table people row 2"`` (rows in scan order, from 1).
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


# ---------------------------------------------------------------------- RDF
def read_rdf(path, *, format: str | None = None, conflicts: ConflictPolicy = "error", name: str | None = None) -> Database:
    """A database from RDF: N-Triples (``.nt``) or Turtle (``.ttl``), parsed by rdflib.

    Tokens: an IRI becomes its local name, the part after its last ``/`` or ``#``
    (``http://example.org/people/Astrid`` -> ``Astrid``). Where different IRIs (or an
    IRI and a literal) would share a token, each such IRI takes one more path segment
    until the names differ (``people/Astrid``, ``places/Astrid``), up to the full IRI;
    the rule depends only on the set of terms, so it is deterministic. A literal keeps
    its lexical form (``"1990"^^xsd:integer`` -> ``1990``; language and datatype are
    dropped). Blank nodes become ``_:b0``, ``_:b1``, ... in order of first appearance.
    N-Triples places are ``file:line``; Turtle places are ``file, triple i`` (from 1).
    """
    p = _file(path)
    fmt = _FORMAT_ALIASES.get(format, format) if format else EXTENSIONS.get(p.suffix.lower())
    if fmt not in ("nt", "turtle"):
        raise SourceError(f"{p}: unknown RDF format {format or p.suffix!r}; known: nt (.nt), turtle (.ttl)")
    text = _read_text(p, "utf-8")
    terms, where = _ntriples(p, text) if fmt == "nt" else _turtle(p, text)
    tokens = _rdf_tokens(p, [t for triple in terms for t in triple])
    facts = _Facts(str(p))
    for (s, q, o), w in zip(terms, where):
        facts.add(tokens[s], tokens[q], tokens[o], w)
    return facts.build(conflicts, name or p.name)


def _ntriples(p: Path, text: str):
    """Parse N-Triples line by line, so that each triple keeps its line number."""
    from rdflib.plugins.parsers.ntriples import ParseError, W3CNTriplesParser

    class Sink:
        def triple(self, s, q, o):
            terms.append((s, q, o))
            where.append(f"{p}:{n}")

    terms, where, bnodes = [], [], {}
    parser = W3CNTriplesParser(Sink())
    for n, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
        try:
            parser.parsestring(line + "\n", bnode_context=bnodes)
        except (ParseError, ValueError) as e:  # ValueError: a bad escape such as \U0011FFFF
            why = "" if isinstance(e, ParseError) else f" ({e})"
            raise SourceError(f"{p}:{n}: not a valid N-Triples line{why}: {line.strip()!r}") from None
    return terms, where


def _turtle(p: Path, text: str):
    import rdflib

    graph = rdflib.Graph()
    try:
        graph.parse(data=text, format="turtle", publicID=p.resolve().as_uri())
    except Exception as e:  # rdflib raises several types; all mean a malformed file
        line = getattr(e, "lines", None)
        at = f"{p}:{line + 1}" if isinstance(line, int) else str(p)
        raise SourceError(f"{at}: bad Turtle: {e}") from None
    terms = list(graph)
    return terms, [f"{p}, triple {i}" for i in range(1, len(terms) + 1)]


def _rdf_tokens(p: Path, terms: list) -> dict:
    """A readable, injective token for every RDF term (see :func:`read_rdf`)."""
    from rdflib import BNode, Literal

    tokens, bnodes = {}, 0
    for t in dict.fromkeys(terms):  # first appearance order
        if isinstance(t, Literal):
            tokens[t] = str(t)
            if not tokens[t].strip():
                raise SourceError(f"{p}: empty literal {t.n3()}; a token must be a non-empty string")
        elif isinstance(t, BNode):
            tokens[t], bnodes = f"_:b{bnodes}", bnodes + 1
    literal_tokens = {v for t, v in tokens.items() if isinstance(t, Literal)}
    iris = [t for t in dict.fromkeys(terms) if t not in tokens]
    tokens.update((t, name) for t, name in zip(iris, _iri_names([str(t) for t in iris], literal_tokens)))
    owners = Counter(v for t, v in tokens.items() if not isinstance(t, Literal))
    for t, v in tokens.items():
        if not isinstance(t, Literal) and (owners[v] > 1 or v in literal_tokens):
            raise SourceError(f"{p}: the term {t.n3()} cannot get a token of its own ({v!r} is taken)")
    return tokens


def _iri_names(iris: list[str], taken: set[str]) -> list[str]:
    """The shortest suffixes of the IRIs that differ from each other and from ``taken``."""
    level = [1] * len(iris)
    while True:
        names = [_iri_suffix(iri, n) for iri, n in zip(iris, level)]
        count = Counter(names)
        clash = [i for i, nm in enumerate(names) if (count[nm] > 1 or nm in taken) and nm != iris[i]]
        if not clash:
            return names
        for i in clash:
            level[i] += 1


def _iri_suffix(iri: str, segments: int) -> str:
    """The last ``segments`` path segments of an IRI (split at ``/`` and ``#``), or the IRI."""
    scheme = iri.find("://")
    floor = iri.find("/", scheme + 3) if scheme >= 0 else iri.find(":")
    if scheme >= 0 and floor < 0:
        floor = iri.find("#", scheme + 3)
    cut = len(iri)
    for _ in range(segments):
        cut = max(iri.rfind("/", 0, cut), iri.rfind("#", 0, cut))
        if floor < 0 or cut < floor:
            return iri
    return iri[cut + 1:] or iri


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
