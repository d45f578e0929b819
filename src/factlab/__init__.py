"""factlab: how transformers store facts, through tensors.

The public API is re-exported here; see the README for a tour.
"""

from factlab.databases import (
    Conflict,
    Database,
    PolicyReport,
    from_table,
    from_triples,
    merge,
    read,
    read_csv,
    read_rdf,
    read_sqlite,
)
from factlab.errors import ConfigError, ConflictError, FactlabError, SourceError
from factlab.tensors import database_tensor, proposition_2_1

__version__ = "0.1.0"

__all__ = [
    "Conflict",
    "ConfigError",
    "ConflictError",
    "Database",
    "FactlabError",
    "PolicyReport",
    "SourceError",
    "__version__",
    "database_tensor",
    "from_table",
    "from_triples",
    "merge",
    "proposition_2_1",
    "read",
    "read_csv",
    "read_rdf",
    "read_sqlite",
]
