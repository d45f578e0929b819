"""Database: a finite partial function D: K x Q -> V over a vocabulary T (Wong 2025, sec. 2).

A database is a set of facts (k, q, v) with at most one object v per (subject k,
predicate q). Subjects K, predicates Q and objects V are subsets of one vocabulary T
and may overlap (a country can be a subject and an object). Tokens are strings; facts
are stored as an ``(n, 3)`` array of token ids, which is also the token sequence
``(k, q, v)`` a model is trained on.

Positions along the tensor axes follow token ids: ``subjects`` is the sorted array of
ids that occur as subjects, and the tensor coordinate of a subject is its position in
that array (likewise for predicates and objects).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np
import pandas as pd

from factlab.errors import ConflictError, SourceError

ConflictPolicy = Literal["error", "first", "drop"]
CONFLICT_POLICIES = ("error", "first", "drop")


@dataclass(frozen=True)
class Conflict:
    """One (subject, predicate) pair with several objects, and where each was seen."""

    subject: str
    predicate: str
    objects: tuple[tuple[str, str | None], ...]  # (object, provenance such as "file.csv:7")

    def describe(self) -> str:
        seen = ", ".join(f"{v} ({where})" if where else v for v, where in self.objects)
        return f"({self.subject}, {self.predicate}) -> {seen}"


@dataclass(frozen=True)
class PolicyReport:
    """What building the database removed from its input, and why.

    ``duplicates`` counts repeated identical triples merged into one fact (no information
    is lost). ``facts_removed`` and ``pairs_removed`` count what a conflict policy took out:
    with ``"first"`` the later objects of each conflicting pair, with ``"drop"`` every fact
    of each conflicting pair.
    """

    policy: str = "error"
    input_rows: int = 0
    duplicates: int = 0
    conflicting_pairs: int = 0
    facts_removed: int = 0
    pairs_removed: int = 0


class Database:
    """An immutable set of facts (k, q, v), a partial function K x Q -> V.

    Build one with :meth:`from_triples` (strings) or :meth:`from_ids` (token ids over
    a given vocabulary); read one from a file with :func:`factlab.read`.
    """

    __slots__ = ("_tokens", "_facts", "name", "report", "_cache")

    def __init__(
        self,
        tokens: Sequence[str],
        facts: np.ndarray,
        *,
        name: str | None = None,
        report: PolicyReport | None = None,
    ):
        tokens = tuple(str(t) for t in tokens)
        if len(set(tokens)) != len(tokens):
            seen: set[str] = set()
            dup = next(t for t in tokens if t in seen or seen.add(t))
            raise SourceError(f"vocabulary lists token {dup!r} twice")
        facts = np.asarray(facts, dtype=np.int64).reshape(-1, 3)
        if facts.size and (facts.min() < 0 or facts.max() >= len(tokens)):
            bad = int(facts[(facts < 0) | (facts >= len(tokens))][0])
            raise SourceError(f"token id {bad} is outside the vocabulary of {len(tokens)} tokens")
        facts = _unique_rows(facts, len(tokens))  # sorted by (k, q, v), duplicates merged
        kq = facts[:, :2]
        if len(kq) > 1:
            same = np.all(kq[1:] == kq[:-1], axis=1)
            if same.any():
                conflicts = _conflicts_from_sorted(tokens, facts, same)
                raise ConflictError(conflicts, source=name)
        facts.setflags(write=False)
        self._tokens = tokens
        self._facts = facts
        self.name = name
        self.report = report if report is not None else PolicyReport(input_rows=len(facts))
        self._cache: dict = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_triples(
        cls,
        triples: Iterable[Sequence[str]],
        *,
        conflicts: ConflictPolicy = "error",
        provenance: Sequence[str] | None = None,
        name: str | None = None,
    ) -> "Database":
        """Build a database from ``(subject, predicate, object)`` string triples.

        The vocabulary is the sorted set of tokens, so the same facts give the same
        database whatever their order or source. Identical triples are merged (and
        counted in ``report.duplicates``). Two different objects for one pair raise
        :class:`~factlab.errors.ConflictError` listing every conflict, unless
        ``conflicts`` is ``"first"`` (keep the object seen first) or ``"drop"`` (remove
        every fact of a conflicting pair). ``provenance`` gives, per triple, where it
        came from (``"file.csv:7"``); conflict messages quote it.
        """
        if conflicts not in CONFLICT_POLICIES:
            raise ValueError(f"conflicts must be one of {CONFLICT_POLICIES}, got {conflicts!r}")
        rows = [tuple(t) for t in triples]
        where = f" in {name}" if name else ""
        if not rows:
            raise SourceError(f"no facts{where}: the input is empty")
        for i, row in enumerate(rows):
            if len(row) != 3 or any(x is None or (isinstance(x, float) and np.isnan(x)) for x in row):
                at = provenance[i] if provenance is not None else f"triple {i}"
                raise SourceError(f"{at}: expected (subject, predicate, object), got {row!r}")
        if provenance is not None and len(provenance) != len(rows):
            raise ValueError(f"provenance has {len(provenance)} entries for {len(rows)} triples")
        flat = np.array([str(x) for row in rows for x in row], dtype=object)
        codes, uniques = pd.factorize(flat, sort=True)
        ids = codes.reshape(-1, 3).astype(np.int64)
        return cls._from_id_rows(list(uniques), ids, conflicts, provenance, name)

    @classmethod
    def from_ids(
        cls,
        tokens: Sequence[str],
        facts: np.ndarray,
        *,
        conflicts: ConflictPolicy = "error",
        name: str | None = None,
    ) -> "Database":
        """Build a database from an ``(n, 3)`` array of token ids over ``tokens``.

        The token order is kept, and tokens that occur in no fact are dropped (use
        :meth:`select` for a sub-database over an unchanged vocabulary).
        """
        if conflicts not in CONFLICT_POLICIES:
            raise ValueError(f"conflicts must be one of {CONFLICT_POLICIES}, got {conflicts!r}")
        ids = np.asarray(facts, dtype=np.int64).reshape(-1, 3)
        return cls._from_id_rows(list(tokens), ids, conflicts, None, name)

    @classmethod
    def _from_id_rows(cls, tokens, ids, policy, provenance, name) -> "Database":
        n_rows = len(ids)
        # first occurrence of every distinct triple, in input order
        _, first = _unique_rows(ids, len(tokens), return_index=True)
        order = np.sort(first)
        distinct = ids[order]  # distinct triples in order of first appearance
        duplicates = n_rows - len(distinct)
        # pairs with more than one distinct object
        kq_codes = distinct[:, 0] * (len(tokens) + 1) + distinct[:, 1]
        pair_ids, inverse, counts = np.unique(kq_codes, return_inverse=True, return_counts=True)
        bad_pair = counts[inverse] > 1  # per distinct triple
        n_bad_pairs = int((counts > 1).sum())
        if n_bad_pairs and policy == "error":
            conflicts = []
            for p in np.flatnonzero(counts > 1):
                rows = order[inverse == p]
                objs = tuple(
                    (tokens[ids[r, 2]], provenance[r] if provenance is not None else None) for r in rows
                )
                conflicts.append(Conflict(tokens[ids[rows[0], 0]], tokens[ids[rows[0], 1]], objs))
            raise ConflictError(conflicts, source=name)
        if policy == "first":
            _, first_of_pair = np.unique(inverse, return_index=True)  # distinct is in input order
            keep = np.zeros(len(distinct), dtype=bool)
            keep[first_of_pair] = True
        elif policy == "drop":
            keep = ~bad_pair
        else:
            keep = np.ones(len(distinct), dtype=bool)
        kept = distinct[keep]
        if len(kept) == 0:
            where = f" in {name}" if name else ""
            raise SourceError(f"no facts{where}: the conflict policy {policy!r} removed all of them")
        # drop tokens that no longer occur, keeping the order of the rest
        used = np.unique(kept)
        remap = -np.ones(len(tokens), dtype=np.int64)
        remap[used] = np.arange(len(used))
        report = PolicyReport(
            policy=policy,
            input_rows=n_rows,
            duplicates=duplicates,
            conflicting_pairs=n_bad_pairs,
            facts_removed=int((~keep).sum()),
            pairs_removed=int(n_bad_pairs if policy == "drop" else 0),
        )
        return cls([tokens[i] for i in used], remap[kept], name=name, report=report)

    # ------------------------------------------------------------------ the sets
    @property
    def tokens(self) -> tuple[str, ...]:
        """The vocabulary T, indexed by token id."""
        return self._tokens

    @property
    def facts(self) -> np.ndarray:
        """``(n, 3)`` int64 token ids ``(k, q, v)``, sorted; read-only."""
        return self._facts

    def sequences(self) -> np.ndarray:
        """The facts as training sequences ``(k, q, v)`` of token ids, ``(n, 3)``."""
        return self._facts

    def _unique(self, col: int) -> np.ndarray:
        key = ("unique", col)
        if key not in self._cache:
            u = sorted_unique(self._facts[:, col])
            u.setflags(write=False)
            self._cache[key] = u
        return self._cache[key]

    @property
    def subjects(self) -> np.ndarray:
        """Token ids of K, sorted; position i is the tensor's i-th subject."""
        return self._unique(0)

    @property
    def predicates(self) -> np.ndarray:
        """Token ids of Q, sorted."""
        return self._unique(1)

    @property
    def objects(self) -> np.ndarray:
        """Token ids of V, sorted."""
        return self._unique(2)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(|K|, |Q|, |V|)``, the shape of the database tensor."""
        return (len(self.subjects), len(self.predicates), len(self.objects))

    @property
    def n_tokens(self) -> int:
        """``|T|``."""
        return len(self._tokens)

    def __len__(self) -> int:
        """``|D|``, the number of facts."""
        return len(self._facts)

    def names(self, ids) -> list[str]:
        """Token strings of an iterable of token ids."""
        return [self._tokens[int(i)] for i in ids]

    def token_id(self, token: str) -> int:
        """The id of a token; :class:`KeyError` naming it when it is not in T."""
        if "index" not in self._cache:
            self._cache["index"] = {t: i for i, t in enumerate(self._tokens)}
        try:
            return self._cache["index"][token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def tensor_index(self) -> np.ndarray:
        """``(n, 3)`` coordinates of the facts in the tensor, ``D[k, q, v] = 1``."""
        if "tensor_index" not in self._cache:
            f = self._facts
            idx = np.stack(
                [np.searchsorted(self.subjects, f[:, 0]),
                 np.searchsorted(self.predicates, f[:, 1]),
                 np.searchsorted(self.objects, f[:, 2])],
                axis=1,
            )
            idx.setflags(write=False)
            self._cache["tensor_index"] = idx
        return self._cache["tensor_index"]

    # ------------------------------------------------------------------ per-slice sets
    def objects_per_subject(self) -> np.ndarray:
        """``|V_k|`` for each subject k in K (Prop. 2.1): distinct objects seen with k."""
        idx = self.tensor_index()
        n_v = self.shape[2]
        kv = sorted_unique(idx[:, 0] * n_v + idx[:, 2])  # distinct (k, v) pairs
        return np.bincount(kv // n_v, minlength=self.shape[0])

    def objects_per_predicate(self) -> np.ndarray:
        """``|V_q|`` for each predicate q in Q (Prop. 2.1)."""
        idx = self.tensor_index()
        n_v = self.shape[2]
        qv = sorted_unique(idx[:, 1] * n_v + idx[:, 2])  # distinct (q, v) pairs
        return np.bincount(qv // n_v, minlength=self.shape[1])

    # ------------------------------------------------------------------ lookup
    def get(self, subject: str, predicate: str) -> str | None:
        """``D(k, q)``, or None where the pair is not in the database."""
        if "lookup" not in self._cache:
            self._cache["lookup"] = {(int(k), int(q)): int(v) for k, q, v in self._facts}
        try:
            key = (self.token_id(subject), self.token_id(predicate))
        except KeyError:
            return None
        v = self._cache["lookup"].get(key)
        return None if v is None else self._tokens[v]

    def __contains__(self, item) -> bool:
        if len(item) == 2:
            return self.get(*item) is not None
        k, q, v = item
        return self.get(k, q) == v

    def triples(self) -> list[tuple[str, str, str]]:
        """The facts as string triples, in tensor order."""
        t = self._tokens
        return [(t[k], t[q], t[v]) for k, q, v in self._facts]

    def to_frame(self) -> pd.DataFrame:
        """The facts as a DataFrame with columns subject, predicate, object."""
        return pd.DataFrame(self.triples(), columns=["subject", "predicate", "object"])

    def select(self, rows: np.ndarray, *, name: str | None = None) -> "Database":
        """The database of the facts at ``rows`` (indices or a boolean mask), same vocabulary.

        Keeping the vocabulary lets a model trained on a subset be evaluated on the rest.
        """
        return Database(self._tokens, self._facts[np.asarray(rows)], name=name or self.name)

    # ------------------------------------------------------------------ identity
    def __eq__(self, other) -> bool:
        if not isinstance(other, Database):
            return NotImplemented
        return self._tokens == other._tokens and np.array_equal(self._facts, other._facts)

    def __hash__(self) -> int:
        return hash((self._tokens, self._facts.tobytes()))

    def __repr__(self) -> str:
        k, q, v = self.shape
        name = f"{self.name!r}, " if self.name else ""
        return f"Database({name}{len(self)} facts, |K|={k}, |Q|={q}, |V|={v}, |T|={self.n_tokens})"


def merge(*databases: Database, conflicts: ConflictPolicy = "error", name: str | None = None) -> Database:
    """The union of several databases (e.g. the two tables of the paper's Figure 1)."""
    if not databases:
        raise SourceError("merge() needs at least one database")
    triples, where = [], []
    for i, db in enumerate(databases):
        label = db.name or f"database {i}"
        for j, t in enumerate(db.triples()):
            triples.append(t)
            where.append(f"{label}, fact {j}")
    return Database.from_triples(triples, conflicts=conflicts, provenance=where, name=name)


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-d array, by sorting (numpy's hash-based ``unique`` is
    several times slower on millions of integers)."""
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a


def _unique_rows(rows: np.ndarray, n_tokens: int, return_index: bool = False):
    """``np.unique(rows, axis=0)`` for ``(n, 3)`` token ids, through one int64 key per row
    when ``n_tokens^3`` fits (much faster on millions of facts)."""
    if n_tokens ** 3 >= 2 ** 63:
        return np.unique(rows, axis=0, return_index=return_index)
    key = (rows[:, 0] * n_tokens + rows[:, 1]) * n_tokens + rows[:, 2]
    if return_index:
        order = np.argsort(key, kind="stable")
        sk = key[order]
        first = order[np.r_[True, sk[1:] != sk[:-1]]]  # first occurrence of each distinct row
        return rows[first], first
    ukey = sorted_unique(key)
    return np.stack([ukey // (n_tokens * n_tokens), (ukey // n_tokens) % n_tokens, ukey % n_tokens], axis=1)


def _conflicts_from_sorted(tokens, facts, same) -> list[Conflict]:
    """Conflicts in sorted, deduplicated facts where ``same[i]`` marks row i+1 == row i on (k, q)."""
    out = []
    i = 0
    n = len(facts)
    while i < n:
        j = i + 1
        while j < n and same[j - 1]:
            j += 1
        if j - i > 1:
            k, q = facts[i, 0], facts[i, 1]
            out.append(Conflict(tokens[k], tokens[q], tuple((tokens[v], None) for v in facts[i:j, 2])))
        i = j
    return out
