"""Databases of facts: the Database type, its sources and its generators."""

from factlab.databases.database import Conflict, Database, PolicyReport, merge

__all__ = ["Conflict", "Database", "PolicyReport", "merge"]
