"""The RDF source: N-Triples and Turtle files parsed by rdflib (:func:`read_rdf`).

RDF needs more than the tabular readers: a per-line N-Triples parse (to keep line
numbers), a Turtle parse, and a rule that gives every IRI, literal and blank node a
readable token of its own. rdflib is imported only when an RDF file is read.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from factlab.databases.database import ConflictPolicy, Database
from factlab.databases.sources_common import (
    _FORMAT_ALIASES,
    EXTENSIONS,
    _Facts,
    _file,
    _read_text,
)
from factlab.errors import SourceError


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
