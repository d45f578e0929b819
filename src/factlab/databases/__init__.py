"""Databases of facts: the Database type, its sources and its generators."""

from factlab.databases.database import Conflict, Database, PolicyReport, merge
from factlab.databases.sources import from_table, from_triples, read, read_csv, read_rdf, read_sqlite

__all__ = [
    "Conflict",
    "Database",
    "PolicyReport",
    "from_table",
    "from_triples",
    "merge",
    "read",
    "read_csv",
    "read_rdf",
    "read_sqlite",
]
