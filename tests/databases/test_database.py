"""The Database type: a partial function K x Q -> V (Wong 2025, sec. 2)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factlab.databases.database import Conflict, Database, PolicyReport, merge
from factlab.errors import ConflictError, SourceError

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


@pytest.fixture
def fig1() -> Database:
    return Database.from_triples(FIG1, name="figure 1")


# ---------------------------------------------------------------------- construction
def test_figure1_sets_and_shape(fig1):
    assert len(fig1) == 8
    assert fig1.tokens == tuple(sorted({t for triple in FIG1 for t in triple}))
    assert fig1.n_tokens == 10
    assert fig1.names(fig1.subjects) == ["Astrid", "Bernard", "Colin", "Malaysia", "Singapore"]
    assert fig1.names(fig1.predicates) == ["born_in", "currency", "lives_in"]
    assert fig1.names(fig1.objects) == ["Dollar", "Malaysia", "Ringgit", "Singapore"]
    assert fig1.shape == (5, 3, 4)
    assert fig1.facts.shape == (8, 3) and fig1.facts.dtype == np.int64
    assert sorted(fig1.triples()) == sorted(FIG1)
    assert repr(fig1) == "Database('figure 1', 8 facts, |K|=5, |Q|=3, |V|=4, |T|=10)"


def test_facts_are_read_only_and_are_the_training_sequences(fig1):
    with pytest.raises(ValueError):
        fig1.facts[0, 0] = 1
    assert np.array_equal(fig1.sequences(), fig1.facts)
    assert [tuple(fig1.names(row)) for row in fig1.sequences()] == fig1.triples()


def test_tensor_index_points_at_the_facts(fig1):
    idx = fig1.tensor_index()
    for (k, q, v), (i, j, l) in zip(fig1.triples(), idx):
        assert fig1.names([fig1.subjects[i], fig1.predicates[j], fig1.objects[l]]) == [k, q, v]


def test_objects_per_slice_give_proposition_2_1(fig1):
    # Example 2.2: V_Astrid = {Singapore, Malaysia}, every other subject one object: sum 6;
    # every predicate two objects: sum 6.
    assert list(fig1.objects_per_subject()) == [2, 1, 1, 1, 1]
    assert list(fig1.objects_per_predicate()) == [2, 2, 2]


def test_duplicates_are_merged_and_counted():
    db = Database.from_triples(FIG1 + FIG1[:3])
    assert len(db) == 8
    assert db.report == PolicyReport(policy="error", input_rows=11, duplicates=3)


def test_tokens_may_be_subjects_and_objects(fig1):
    both = set(fig1.names(fig1.subjects)) & set(fig1.names(fig1.objects))
    assert both == {"Malaysia", "Singapore"}


def test_empty_input_and_bad_rows():
    with pytest.raises(SourceError, match="no facts in nothing"):
        Database.from_triples([], name="nothing")
    with pytest.raises(SourceError, match=r"here:1: expected \(subject, predicate, object\)"):
        Database.from_triples([("a", "b", "c"), ("a", "b")], provenance=["here:0", "here:1"])
    with pytest.raises(SourceError, match="triple 0"):
        Database.from_triples([("a", None, "c")])
    with pytest.raises(ValueError, match="conflicts must be one of"):
        Database.from_triples(FIG1, conflicts="last")


def test_constructor_validates_vocabulary_and_ids():
    with pytest.raises(SourceError, match="token 'a' twice"):
        Database(["a", "b", "a"], np.array([[0, 1, 1]]))
    with pytest.raises(SourceError, match="token id 3 is outside the vocabulary of 3 tokens"):
        Database(["a", "b", "c"], np.array([[0, 1, 3]]))
    with pytest.raises(ConflictError):
        Database(["a", "b", "c"], np.array([[0, 1, 1], [0, 1, 2]]))


# ---------------------------------------------------------------------- conflicts and policies
CONFLICTING = FIG1 + [
    ("Astrid", "born_in", "Malaysia"),     # second object for (Astrid, born_in)
    ("Colin", "lives_in", "Singapore"),    # second object for (Colin, lives_in)
    ("Colin", "lives_in", "Vietnam"),      # and a third
    ("Astrid", "born_in", "Malaysia"),     # a duplicate of a conflicting fact
]
WHERE = [f"f.csv:{i + 2}" for i in range(len(CONFLICTING))]


def test_every_conflict_is_listed_with_its_provenance():
    with pytest.raises(ConflictError) as err:
        Database.from_triples(CONFLICTING, provenance=WHERE, name="f.csv")
    conflicts = err.value.conflicts
    assert err.value.source == "f.csv"
    assert sorted(conflicts, key=lambda c: c.subject) == [
        Conflict("Astrid", "born_in", (("Singapore", "f.csv:2"), ("Malaysia", "f.csv:10"))),
        Conflict("Colin", "lives_in", (("Malaysia", "f.csv:7"), ("Singapore", "f.csv:11"), ("Vietnam", "f.csv:12"))),
    ]
    msg = str(err.value)
    assert msg.startswith("2 (subject, predicate) pair(s) in f.csv have more than one object")
    assert "(Astrid, born_in) -> Singapore (f.csv:2), Malaysia (f.csv:10)" in msg
    assert "(Colin, lives_in) -> Malaysia (f.csv:7), Singapore (f.csv:11), Vietnam (f.csv:12)" in msg
    assert "conflicts='first'" in msg  # the message says how to opt in to a policy


def test_policy_first_keeps_the_first_object_and_reports():
    db = Database.from_triples(CONFLICTING, conflicts="first")
    assert db.get("Astrid", "born_in") == "Singapore"
    assert db.get("Colin", "lives_in") == "Malaysia"
    assert len(db) == 8 and db == Database.from_triples(FIG1)
    assert db.report == PolicyReport(
        policy="first", input_rows=12, duplicates=1, conflicting_pairs=2, facts_removed=3, pairs_removed=0
    )


def test_policy_drop_removes_every_fact_of_a_conflicting_pair_and_reports():
    db = Database.from_triples(CONFLICTING, conflicts="drop")
    assert ("Astrid", "born_in") not in db and ("Colin", "lives_in") not in db
    assert sorted(db.triples()) == sorted(t for t in FIG1 if t[:2] not in {("Astrid", "born_in"), ("Colin", "lives_in")})
    assert db.report == PolicyReport(
        policy="drop", input_rows=12, duplicates=1, conflicting_pairs=2, facts_removed=5, pairs_removed=2
    )
    assert "Vietnam" not in db.tokens  # tokens that no longer occur leave the vocabulary


def test_a_policy_that_removes_everything_is_an_error():
    with pytest.raises(SourceError, match="removed all of them"):
        Database.from_triples([("a", "p", "x"), ("a", "p", "y")], conflicts="drop")


# ---------------------------------------------------------------------- from_ids, select, merge
def test_from_ids_matches_from_triples(fig1):
    tokens = list(fig1.tokens)
    ids = np.array([[tokens.index(t) for t in triple] for triple in FIG1])
    assert Database.from_ids(tokens, ids[::-1]) == fig1
    with pytest.raises(ConflictError):
        Database.from_ids(tokens, np.vstack([ids, [[ids[0, 0], ids[0, 1], ids[1, 2]]]]))
    first = Database.from_ids(tokens, np.vstack([ids, [[ids[0, 0], ids[0, 1], ids[1, 2]]]]), conflicts="first")
    assert first == fig1 and first.report.facts_removed == 1


def test_select_keeps_the_vocabulary(fig1):
    mask = np.array([t[1] == "currency" for t in fig1.triples()])
    sub = fig1.select(mask)
    assert sorted(sub.triples()) == [("Malaysia", "currency", "Ringgit"), ("Singapore", "currency", "Dollar")]
    assert sub.tokens == fig1.tokens
    assert sub.name == "figure 1"
    rest = fig1.select(np.flatnonzero(~mask), name="people")
    assert len(rest) == 6 and rest.name == "people"


def test_merge_of_the_two_tables_is_figure1(fig1):
    people = Database.from_triples(FIG1[:6], name="people")
    currency = Database.from_triples(FIG1[6:], name="currency")
    assert merge(people, currency) == fig1
    assert merge(people, people).report.duplicates == 6


def test_merge_conflicts_name_the_databases():
    a = Database.from_triples([("x", "p", "1")], name="a")
    b = Database.from_triples([("y", "q", "0"), ("x", "p", "2")], name="b")
    with pytest.raises(ConflictError, match=r"1 \(a, fact 0\), 2 \(b, fact 0\)"):
        merge(a, b)
    assert merge(a, b, conflicts="first").get("x", "p") == "1"
    with pytest.raises(SourceError, match="at least one database"):
        merge()


# ---------------------------------------------------------------------- identity and lookup
def test_equality_and_hash_do_not_depend_on_input_order():
    shuffled = FIG1[:]
    random.Random(0).shuffle(shuffled)
    a, b = Database.from_triples(FIG1, name="a"), Database.from_triples(shuffled, name="b")
    assert a == b and hash(a) == hash(b)
    assert a != Database.from_triples(FIG1[:-1])
    assert a != FIG1  # not a Database


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.tuples(st.sampled_from("abcde"), st.sampled_from("pq")), st.sampled_from("abxyz"),
                       min_size=1), st.randoms())
def test_same_facts_same_database(facts, rnd):
    triples = [(k, q, v) for (k, q), v in facts.items()]
    shuffled = triples + triples[: rnd.randrange(len(triples) + 1)]  # with some duplicates
    rnd.shuffle(shuffled)
    db = Database.from_triples(shuffled)
    assert db == Database.from_triples(triples)
    assert sorted(db.triples()) == sorted(triples)
    assert all(db.get(k, q) == v for (k, q), v in facts.items())


def test_get_and_contains(fig1):
    assert fig1.get("Astrid", "born_in") == "Singapore"
    assert fig1.get("Malaysia", "currency") == "Ringgit"
    assert fig1.get("Astrid", "currency") is None  # a pair outside the domain of D
    assert fig1.get("Zoe", "born_in") is None  # a token outside T
    assert ("Astrid", "born_in") in fig1
    assert ("Astrid", "currency") not in fig1
    assert ("Astrid", "born_in", "Singapore") in fig1
    assert ("Astrid", "born_in", "Malaysia") not in fig1


def test_token_id(fig1):
    assert fig1.tokens[fig1.token_id("Colin")] == "Colin"
    with pytest.raises(KeyError, match="'Zoe' is not in the vocabulary"):
        fig1.token_id("Zoe")


def test_to_frame(fig1):
    frame = fig1.to_frame()
    assert list(frame.columns) == ["subject", "predicate", "object"]
    assert [tuple(r) for r in frame.itertuples(index=False)] == fig1.triples()
