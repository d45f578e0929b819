"""Sources of facts: every reader, its places, and every documented error."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factlab.databases.database import Database
from factlab.databases.sources import (
    cell_token,
    from_table,
    from_triples,
    read,
    read_csv,
    read_rdf,
    read_sqlite,
)
from factlab.errors import ConflictError, SourceError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Figure 1 of Wong (2025), written out by hand: the independent expectation.
FIG1 = [
    ("Astrid", "born_in", "Singapore"),
    ("Astrid", "lives_in", "Malaysia"),
    ("Bernard", "born_in", "Singapore"),
    ("Bernard", "lives_in", "Singapore"),
    ("Colin", "born_in", "Malaysia"),
    ("Colin", "lives_in", "Malaysia"),
    ("Malaysia", "currency", "Ringgit"),
    ("Singapore", "currency", "Dollar"),
]
PEOPLE = pd.DataFrame(
    {"people": ["Astrid", "Bernard", "Colin"],
     "born_in": ["Singapore", "Singapore", "Malaysia"],
     "lives_in": ["Malaysia", "Singapore", "Malaysia"]}
)
CURRENCY = pd.DataFrame({"country": ["Malaysia", "Singapore"], "currency": ["Ringgit", "Dollar"]})
NS = "http://example.org/figure1/"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sqlite_file(path: Path, script: str) -> Path:
    con = sqlite3.connect(path)
    con.executescript(script)
    con.commit()
    con.close()
    return path


def fig1_sqlite(path: Path) -> Path:
    return sqlite_file(path, """
        CREATE TABLE people (people TEXT, born_in TEXT, lives_in TEXT);
        INSERT INTO people VALUES ('Astrid','Singapore','Malaysia'), ('Bernard','Singapore','Singapore'),
                                  ('Colin','Malaysia','Malaysia');
        CREATE TABLE currency (country TEXT, currency TEXT);
        INSERT INTO currency VALUES ('Malaysia','Ringgit'), ('Singapore','Dollar');
        CREATE TABLE merged (subject TEXT, born_in TEXT, lives_in TEXT, currency TEXT);
        INSERT INTO merged SELECT people, born_in, lives_in, NULL FROM people;
        INSERT INTO merged SELECT country, NULL, NULL, currency FROM currency;
    """)


TRIPLES_QUERY = """
    SELECT people AS subject, 'born_in' AS predicate, born_in AS object FROM people
    UNION ALL SELECT people, 'lives_in', lives_in FROM people
    UNION ALL SELECT country, 'currency', currency FROM currency"""


# ---------------------------------------------------------------------- one database, every source
FIG1_SOURCES = {
    "python triples": lambda tmp: from_triples(FIG1),
    "reversed triples": lambda tmp: from_triples(FIG1[::-1]),
    "DataFrame of triples": lambda tmp: from_triples(pd.DataFrame(FIG1, columns=["s", "p", "o"])),
    "two pandas tables": lambda tmp: from_table(PEOPLE, CURRENCY),
    "csv table": lambda tmp: read(EXAMPLES / "figure1.csv"),
    "csv tables merged": lambda tmp: from_table(pd.read_csv(EXAMPLES / "people.csv"),
                                                pd.read_csv(EXAMPLES / "currency.csv")),
    "tsv triples": lambda tmp: read(EXAMPLES / "figure1_triples.tsv"),
    "csv triples": lambda tmp: read_csv(write(tmp / "t.csv", "subject,predicate,object\n"
                                              + "".join(",".join(t) + "\n" for t in FIG1))),
    "sqlite table": lambda tmp: read(fig1_sqlite(tmp / "f.sqlite"), table="merged"),
    "sqlite triples query": lambda tmp: read_sqlite(fig1_sqlite(tmp / "f.db"), query=TRIPLES_QUERY),
    "sqlite table query": lambda tmp: read_sqlite(
        fig1_sqlite(tmp / "f.db"),
        query="SELECT people, born_in, lives_in, NULL AS currency FROM people "
              "UNION ALL SELECT country, NULL, NULL, currency FROM currency"),
    "shipped sqlite view": lambda tmp: read(EXAMPLES / "figure1.sqlite", table="facts"),
    "n-triples": lambda tmp: read(EXAMPLES / "figure1.nt"),
    "turtle": lambda tmp: read(EXAMPLES / "figure1.ttl"),
}


@pytest.mark.parametrize("source", FIG1_SOURCES)
def test_every_source_reads_figure1_to_the_same_database(source, tmp_path):
    db = FIG1_SOURCES[source](tmp_path)
    assert db == Database.from_triples(FIG1)
    assert sorted(db.triples()) == sorted(FIG1)
    assert db.report.policy == "error" and db.report.facts_removed == 0


def test_figure1_shape_matches_example_2_2():
    db = read(EXAMPLES / "figure1.csv")
    assert len(db) == 8
    assert db.shape == (5, 3, 4)  # K: 3 people + 2 countries; Q: 3; V: 2 countries + 2 currencies
    assert set(db.names(db.subjects)) & set(db.names(db.objects)) == {"Malaysia", "Singapore"}


def test_shipped_sqlite_tables_merge_to_figure1():
    from factlab.databases.database import merge

    people = read_sqlite(EXAMPLES / "figure1.sqlite", table="people")
    currency = read_sqlite(EXAMPLES / "figure1.sqlite", table="currency")
    assert len(people) == 6 and len(currency) == 2
    assert merge(people, currency) == from_triples(FIG1)


# ---------------------------------------------------------------------- cells
@pytest.mark.parametrize(
    "value, token",
    [("  Astrid ", "Astrid"), ("", None), ("   ", None), (None, None), (float("nan"), None),
     (pd.NA, None), (1990, "1990"), (1990.0, "1990"), (np.float64(1990.0), "1990"),
     (np.int64(7), "7"), (2.5, "2.5"), (-0.0, "0"), (1e20, "1e+20"), (True, "True"), ("007", "007")],
)
def test_cell_token(value, token):
    assert cell_token(value) == token


@given(st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1))
def test_integral_floats_print_as_integers(n):
    assert cell_token(float(n)) == cell_token(n) == str(n)


def test_float_column_upcast_by_a_missing_cell_prints_integers():
    frame = pd.DataFrame({"person": ["Astrid", "Bernard", "Colin"], "born": [1990, None, 1985]})
    assert frame["born"].dtype == np.float64  # pandas upcast the ints because of the NaN
    db = from_table(frame)
    assert sorted(db.triples()) == [("Astrid", "born", "1990"), ("Colin", "born", "1985")]


def test_numeric_keys_and_columns_become_strings():
    db = from_table(pd.DataFrame({"id": [1, 2], 2024: ["a", "b"]}))
    assert sorted(db.triples()) == [("1", "2024", "a"), ("2", "2024", "b")]


# ---------------------------------------------------------------------- Python triples
def test_from_triples_errors_name_the_triple():
    with pytest.raises(SourceError, match=r"triple 1: missing object"):
        from_triples([("a", "b", "c"), ("a", "d", None)])
    with pytest.raises(SourceError, match=r"triple 0: expected 3 fields .*got 2"):
        from_triples([("a", "b")])
    with pytest.raises(SourceError, match=r"triple 0: expected \(subject, predicate, object\)"):
        from_triples(["abc"])
    with pytest.raises(SourceError, match="no facts"):
        from_triples([])
    with pytest.raises(SourceError, match="3 columns"):
        from_triples(pd.DataFrame({"a": [1], "b": [2]}))


def test_from_triples_conflict_lists_every_pair_with_positions():
    triples = FIG1 + [("Astrid", "born_in", "Malaysia"), ("Colin", "lives_in", "Singapore")]
    with pytest.raises(ConflictError) as err:
        from_triples(triples)
    assert {(c.subject, c.predicate) for c in err.value.conflicts} == {("Astrid", "born_in"), ("Colin", "lives_in")}
    msg = str(err.value)
    assert "Singapore (triple 0)" in msg and "Malaysia (triple 8)" in msg
    assert "Malaysia (triple 5)" in msg and "Singapore (triple 9)" in msg


# ---------------------------------------------------------------------- pandas tables
def test_from_table_missing_cells_are_no_fact_and_whitespace_is_stripped():
    frame = pd.DataFrame({"k": [" a ", "b"], "p": ["x ", None], "q": [np.nan, "  "]})
    assert from_table(frame).triples() == [("a", "p", "x")]


def test_from_table_key_by_name_or_index():
    frame = PEOPLE[["born_in", "people", "lives_in"]]
    expected = from_triples(FIG1[:6])
    assert from_table(frame, key="people") == expected
    assert from_table(PEOPLE.set_index("people"), key="people") == expected


def test_from_table_duplicate_key_rows():
    same = pd.DataFrame({"k": ["a", "a"], "p": ["x", "x"]})
    assert from_table(same).report.duplicates == 1
    other = pd.DataFrame({"k": ["a", "b", "a"], "p": ["x", "y", "z"]})
    with pytest.raises(ConflictError) as err:
        from_table(other)
    assert "x (table 1 row 0 (column p))" in str(err.value)
    assert "z (table 1 row 2 (column p))" in str(err.value)


def test_from_table_conflict_across_tables_names_both_tables():
    born = pd.DataFrame({"who": ["Astrid"], "born_in": ["Singapore"]})
    born2 = pd.DataFrame({"who": ["Astrid"], "born_in": ["Malaysia"]})
    with pytest.raises(ConflictError, match=r"table 1 row 0 .*table 2 row 0"):
        from_table(born, born2)


def test_from_table_errors():
    with pytest.raises(SourceError, match=r"table 1 row 1: missing key \(column people\)"):
        from_table(pd.DataFrame({"people": ["a", None], "p": ["x", "y"]}))
    with pytest.raises(SourceError, match=r"table 2: no key column 'people'"):
        from_table(PEOPLE, CURRENCY, key="people")
    with pytest.raises(SourceError, match="at least one table"):
        from_table()
    with pytest.raises(SourceError, match="no facts"):
        from_table(pd.DataFrame({"k": ["a", "b"]}))
    with pytest.raises(SourceError, match="no columns"):
        from_table(pd.DataFrame())
    with pytest.raises(TypeError, match="table 1 is a list"):
        from_table(FIG1)
    with pytest.raises(SourceError, match=r"table 1 row 0: a cell must be a scalar"):
        from_table(pd.DataFrame({"k": ["a"], "p": [["x", "y"]]}))


def test_from_table_all_empty_row_is_skipped_but_a_keyless_fact_is_not():
    assert len(from_table(pd.DataFrame({"k": ["a", None], "p": ["x", None]}))) == 1


# ---------------------------------------------------------------------- CSV / TSV
def test_csv_triples_header_is_case_insensitive_and_detected(tmp_path):
    path = write(tmp_path / "t.csv", " Subject , PREDICATE,object\na,b,c\n")
    assert read(path).triples() == [("a", "b", "c")]
    table = read_csv(path, form="table")  # the same file read as a table keyed by "Subject"
    assert sorted(table.triples()) == [("a", "PREDICATE", "b"), ("a", "object", "c")]


def test_csv_table_conflict_quotes_lines_and_columns(tmp_path):
    path = write(tmp_path / "people.csv",
                 "people,born_in,lives_in\nAstrid,Singapore,Malaysia\nAstrid,Malaysia,Malaysia\n"
                 "Colin,Malaysia,Malaysia\n\nColin,Malaysia,Singapore\n")
    with pytest.raises(ConflictError) as err:
        read(path)
    assert len(err.value.conflicts) == 2
    msg = str(err.value)
    assert f"Singapore ({path}:2 (column born_in))" in msg
    assert f"Malaysia ({path}:3 (column born_in))" in msg
    assert f"Malaysia ({path}:4 (column lives_in))" in msg
    assert f"Singapore ({path}:6 (column lives_in))" in msg  # line 5 is blank and still counted


def test_csv_triples_conflict_quotes_lines(tmp_path):
    path = write(tmp_path / "t.tsv", "subject\tpredicate\tobject\na\tp\tx\nb\tp\tx\na\tp\ty\n")
    with pytest.raises(ConflictError, match=rf"x \({path}:2\), y \({path}:4\)"):
        read(path)


def test_csv_conflict_policies_report_what_they_removed(tmp_path):
    path = write(tmp_path / "t.csv", "subject,predicate,object\na,p,x\na,p,y\na,p,z\nb,p,x\nb,q,w\nb,q,v\nc,p,x\n")
    first = read(path, conflicts="first")
    assert sorted(first.triples()) == [("a", "p", "x"), ("b", "p", "x"), ("b", "q", "w"), ("c", "p", "x")]
    assert (first.report.conflicting_pairs, first.report.facts_removed, first.report.pairs_removed) == (2, 3, 0)
    drop = read(path, conflicts="drop")
    assert sorted(drop.triples()) == [("b", "p", "x"), ("c", "p", "x")]
    assert (drop.report.conflicting_pairs, drop.report.facts_removed, drop.report.pairs_removed) == (2, 5, 2)
    assert drop.report.input_rows == 7


def test_csv_quoting_and_multiline_fields_keep_line_numbers(tmp_path):
    path = write(tmp_path / "t.csv", 'subject,predicate,object\n"Smith, J.",said,"two\nlines"\na,b\n')
    with pytest.raises(SourceError, match=rf"{path}:4: expected 3 fields \(subject, predicate, object\), got 2"):
        read(path)
    write(path, 'subject,predicate,object\n"Smith, J.",said,"a ""quote"""\n')
    assert read(path).triples() == [("Smith, J.", "said", 'a "quote"')]


def test_tsv_is_read_without_quoting(tmp_path):
    path = write(tmp_path / "t.tsv", 'subject\tpredicate\tobject\nAstrid\tnick\t"Ash" of A\n')
    assert read(path).triples() == [("Astrid", "nick", '"Ash" of A')]


def test_csv_separator_guessed_from_first_line_for_other_extensions(tmp_path):
    tab = write(tmp_path / "t.txt", "subject\tpredicate\tobject\na\tb\tc,d\n")
    assert read(tab).triples() == [("a", "b", "c,d")]
    comma = write(tmp_path / "c.txt", "subject,predicate,object\na,b,c\n")
    assert read(comma).triples() == [("a", "b", "c")]


def test_headerless_triples(tmp_path):
    path = write(tmp_path / "kg.tsv", "a\tp\tb\nb\tp\tc\n")
    assert len(read(path, header=False)) == 2
    with pytest.raises(SourceError, match="needs a header"):
        read(path, header=False, form="table")


def test_utf8_bom_is_ignored(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("subject,predicate,object\nä,b,c\n".encode("utf-8-sig"))
    assert read(path).triples() == [("ä", "b", "c")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no facts in {p}: the file is empty"),
        ("\n\n", "no facts in {p}: the file is empty"),
        ("subject,predicate,object\n", "no facts in {p}: the file has a header and no rows"),
        ("people,born_in\n", "no facts in {p}: the file has a header and no rows"),
        ("people,born_in\n,,\n", "{p}:2: expected 2 fields like the header, got 3"),
        ("subject,predicate,object\na,b,c\na,b\n", "{p}:3: expected 3 fields (subject, predicate, object), got 2"),
        ("subject,predicate,object\na,,c\n", "{p}:2: missing predicate"),
        ("people,born_in\nAstrid,Singapore\n ,Malaysia\n", "{p}:3: missing key (column people)"),
        ("people,,lives_in\nAstrid,Singapore,Malaysia\n", "{p}:1: column 2 has no name"),
        ('subject,predicate,object\na,b,"c\n', "{p}:2: malformed CSV"),
    ],
)
def test_bad_csv_files_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(SourceError) as err:
        read(path)
    assert message.format(p=path) in str(err.value)


def test_csv_form_and_key_errors(tmp_path):
    path = write(tmp_path / "people.csv", "people,born_in\nAstrid,Singapore\n")
    with pytest.raises(SourceError, match=rf"{path}:1: triples need the columns subject, predicate, object, got \['people', 'born_in'\]"):
        read(path, form="triples")
    with pytest.raises(SourceError, match=rf"{path}:1: no key column 'who' \(columns: people, born_in\)"):
        read(path, key="who")
    with pytest.raises(ValueError, match="form must be"):
        read(path, form="graph")


def test_unreadable_files(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceError, match=rf"cannot read {missing}: no such file"):
        read(missing)
    with pytest.raises(SourceError, match="not a regular file"):
        read_csv(tmp_path)
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"subject,predicate,object\na,b,c\nd,e,\xe9t\xe9\n")
    with pytest.raises(SourceError, match=rf"{bad}:3: cannot decode as utf-8"):
        read(bad)
    assert read(bad, encoding="latin-1").get("d", "e") == "été"
    with pytest.raises(TypeError, match="from_table"):
        read_csv(PEOPLE)


# ---------------------------------------------------------------------- SQLite
def test_sqlite_single_table_needs_no_name_and_nulls_are_no_fact(tmp_path):
    path = sqlite_file(tmp_path / "one.sqlite", """
        CREATE TABLE people (name TEXT, born REAL, city TEXT);
        INSERT INTO people VALUES ('Astrid', 1990.0, NULL), ('Bernard', NULL, ' Paris '), (NULL, NULL, NULL);""")
    assert sorted(read(path).triples()) == [("Astrid", "born", "1990"), ("Bernard", "city", "Paris")]


def test_sqlite_conflicts_name_table_and_row(tmp_path):
    path = sqlite_file(tmp_path / "db.sqlite", """
        CREATE TABLE people (people TEXT, born_in TEXT);
        INSERT INTO people VALUES ('Astrid','Singapore'), ('Bernard','Singapore'), ('Astrid','Malaysia');""")
    with pytest.raises(ConflictError) as err:
        read_sqlite(path, table="people")
    assert f"Singapore ({path} table people row 1 (column born_in))" in str(err.value)
    assert f"Malaysia ({path} table people row 3 (column born_in))" in str(err.value)
    db = read_sqlite(path, query="SELECT * FROM people", conflicts="drop")
    assert db.triples() == [("Bernard", "born_in", "Singapore")] and db.report.pairs_removed == 1


def test_sqlite_errors(tmp_path):
    path = fig1_sqlite(tmp_path / "f.sqlite")
    with pytest.raises(SourceError, match=r"holds 3 tables \(currency, merged, people\); pass table= or query="):
        read(path)
    with pytest.raises(SourceError, match=r"has no table 'persons' \(tables: currency, merged, people\)"):
        read(path, table="persons")
    with pytest.raises(SourceError, match="not both"):
        read(path, table="people", query="SELECT 1")
    with pytest.raises(SourceError, match=rf"cannot read {path} as SQLite: no such table: nowhere"):
        read(path, query="SELECT * FROM nowhere")
    with pytest.raises(SourceError, match=rf"no facts in {path} query: no rows"):
        read(path, query="SELECT * FROM people WHERE 0")
    with pytest.raises(SourceError, match=rf"{path} query: triples need the columns subject, predicate, object"):
        read(path, query="SELECT * FROM people", form="triples")
    blob = sqlite_file(tmp_path / "blob.db", "CREATE TABLE t (k TEXT, v BLOB); INSERT INTO t VALUES ('a', x'00ff');")
    with pytest.raises(SourceError, match=rf"{blob} table t row 1: a cell must be text or a number"):
        read(blob)


def test_sqlite_unreadable_files_are_not_created(tmp_path):
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(SourceError, match="no such file"):
        read(missing)
    assert not missing.exists()
    fake = write(tmp_path / "fake.db", "subject,predicate,object\na,b,c\n")
    with pytest.raises(SourceError, match=rf"cannot read {fake} as SQLite: file is not a database"):
        read(fake)


# ---------------------------------------------------------------------- RDF
def nt(*triples: str) -> str:
    return "".join(t + " .\n" for t in triples)


def test_ntriples_conflicts_have_line_numbers(tmp_path):
    path = write(tmp_path / "c.nt", "# comment\n" + nt(
        f"<{NS}Astrid> <{NS}born_in> <{NS}Singapore>",
        f"<{NS}Bernard> <{NS}born_in> <{NS}Singapore>") + "\n" + nt(
        f"<{NS}Astrid> <{NS}born_in> <{NS}Malaysia>"))
    with pytest.raises(ConflictError, match=rf"Singapore \({path}:2\), Malaysia \({path}:5\)"):
        read(path)
    assert read(path, conflicts="first").get("Astrid", "born_in") == "Singapore"


@pytest.mark.parametrize("bad", [f"<{NS}a> <{NS}p>", f'<{NS}a> <{NS}p> "\\U0011FFFF" .', "<a b> <c> <d> ."])
def test_ntriples_bad_line_names_file_and_line(tmp_path, bad):
    path = write(tmp_path / "bad.nt", nt(f"<{NS}a> <{NS}p> <{NS}b>") + bad + "\n")
    with pytest.raises(SourceError, match=rf"{path}:2: not a valid N-Triples line"):
        read(path)


def test_bad_turtle_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.ttl", "@prefix ex: <http://e.org/> .\nex:a ex:p ex:b .\nex:a ex:p .\n")
    with pytest.raises(SourceError, match=rf"{path}:3: bad Turtle"):
        read(path)


def test_turtle_conflict_numbers_triples(tmp_path):
    path = write(tmp_path / "c.ttl", "@prefix ex: <http://e.org/> .\nex:Astrid ex:born_in ex:Singapore, ex:Malaysia .\n")
    with pytest.raises(ConflictError, match=rf"{path}, triple 1.*{path}, triple 2"):
        read(path)


def test_empty_rdf_files(tmp_path):
    with pytest.raises(SourceError, match="no facts in"):
        read(write(tmp_path / "e.nt", "# nothing here\n\n"))
    with pytest.raises(SourceError, match="no facts in"):
        read(write(tmp_path / "e.ttl", "@prefix ex: <http://e.org/> .\n"))


def test_literals_are_kept_and_blank_nodes_numbered(tmp_path):
    path = write(tmp_path / "l.nt", nt(
        f'<{NS}Astrid> <{NS}born> "1990"^^<http://www.w3.org/2001/XMLSchema#integer>',
        f'<{NS}Astrid> <{NS}name> "Astrid Lindgren"@sv',
        f"_:x <{NS}knows> <{NS}Astrid>",
        f"_:y <{NS}knows> _:x"))
    assert sorted(read(path).triples()) == [
        ("Astrid", "born", "1990"), ("Astrid", "name", "Astrid Lindgren"),
        ("_:b0", "knows", "Astrid"), ("_:b1", "knows", "_:b0")]


def test_iris_sharing_a_local_name_are_not_merged(tmp_path):
    path = write(tmp_path / "clash.nt", nt(
        "<http://e.org/people/Georgia> <http://e.org/p#from> <http://e.org/places/Georgia>",
        '<http://e.org/people/Georgia> <http://e.org/p#name> "Georgia"',
        "<http://e.org/x/people/Bo> <http://e.org/p#from> <http://e.org/places/Georgia>",
        "<http://e.org/y/people/Bo> <http://e.org/p#from> <http://e.org/places/Georgia>",
        "<http://e.org/Bo> <http://e.org/p#from> <http://other.org/Bo#x>"))
    db = read(path)
    # every IRI that clashed at one segment takes another; e.org/Bo has no more, so stays whole
    assert sorted(db.triples()) == [
        ("http://e.org/Bo", "from", "x"),
        ("people/Georgia", "from", "places/Georgia"),
        ("people/Georgia", "name", "Georgia"),
        ("x/people/Bo", "from", "places/Georgia"),
        ("y/people/Bo", "from", "places/Georgia"),
    ]


def test_iri_that_cannot_be_shortened_keeps_its_full_form(tmp_path):
    path = write(tmp_path / "u.nt", nt("<urn:isbn:0451> <http://e.org/title> <http://e.org/>"))
    assert read(path).triples() == [("urn:isbn:0451", "title", "http://e.org/")]


def test_turtle_and_ntriples_agree_on_tokens(tmp_path):
    ttl = write(tmp_path / "a.ttl", "@prefix a: <http://a.org/> .\n@prefix b: <http://b.org/ns#> .\n"
                                    "a:x a:p b:x .\nb:x a:p 12 .\n")
    ntf = write(tmp_path / "a.nt", nt("<http://a.org/x> <http://a.org/p> <http://b.org/ns#x>",
                                      '<http://b.org/ns#x> <http://a.org/p> "12"'))
    assert read(ttl) == read(ntf)
    assert sorted(read(ttl).triples()) == [("http://a.org/x", "p", "ns#x"), ("ns#x", "p", "12")]


def test_unknown_rdf_format(tmp_path):
    path = write(tmp_path / "g.rdf", "<rdf/>")
    with pytest.raises(SourceError, match=r"unknown RDF format '\.rdf'"):
        read_rdf(path)


# ---------------------------------------------------------------------- dispatch
def test_format_overrides_the_extension(tmp_path):
    path = write(tmp_path / "facts.dat", "subject\tpredicate\tobject\na\tb\tc\n")
    assert read(path, format="tsv").triples() == [("a", "b", "c")]
    ttl = write(tmp_path / "facts.data", "<http://e.org/a> <http://e.org/b> <http://e.org/c> .\n")
    assert read(ttl, format="ntriples") == read(ttl, format="ttl") == from_triples([("a", "b", "c")])


def test_unknown_extension_or_format_names_file_and_known_formats(tmp_path):
    path = write(tmp_path / "facts.xlsx", "x")
    with pytest.raises(SourceError) as err:
        read(path)
    msg = str(err.value)
    assert str(path) in msg and "'.xlsx'" in msg
    for known in (".csv", ".tsv", ".sqlite", ".db", ".nt", ".ttl"):
        assert known in msg
    with pytest.raises(SourceError, match=r"unknown format 'parquet'.*known formats: csv, tsv, sqlite, nt, turtle"):
        read(path, format="parquet")
    with pytest.raises(SourceError, match=r"unknown extension '\(none\)'"):
        read(write(tmp_path / "noext", "x"))


def test_options_reach_the_reader(tmp_path):
    path = write(tmp_path / "t.csv", "subject,predicate,object\na,p,x\na,p,y\n")
    db = read(path, conflicts="first", name="mine")
    assert db.name == "mine" and db.triples() == [("a", "p", "x")]
    with pytest.raises(SourceError, match=r"t.csv as csv: no option table for this format; it takes conflicts, "):
        read(path, table="people")


# ---------------------------------------------------------------------- round trips
token = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                min_size=1, max_size=6)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.tuples(token, st.sampled_from(["p", "q", "r"])), token, min_size=1, max_size=12))
def test_random_databases_round_trip_through_csv_and_tables(tmp_path_factory, facts):
    expected = from_triples([(k, q, v) for (k, q), v in facts.items()])
    tmp = tmp_path_factory.mktemp("rt")
    triples_csv = tmp / "t.csv"
    with open(triples_csv, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["subject", "predicate", "object"])
        w.writerows(expected.triples())
    assert read(triples_csv) == expected
    table = pd.DataFrame(expected.triples(), columns=["k", "q", "v"]).pivot(index="k", columns="q", values="v")
    table_csv = tmp / "table.csv"
    table.reset_index().to_csv(table_csv, index=False)
    assert read(table_csv, form="table") == expected
    assert from_table(table.reset_index()) == expected
