"""Exceptions raised by factlab.

Every error is raised at the boundary where bad input enters (a file, a table, a
value passed by the user) and names what is at fault: the file and line, the
token, or the value.
"""

from __future__ import annotations


class FactlabError(Exception):
    """Base class of every error factlab raises on purpose."""


class SourceError(FactlabError, ValueError):
    """A source of facts cannot be read: unknown format, unreadable or malformed file,
    bad row, empty input. The message names the file (and line, where there is one)."""


class ConflictError(FactlabError, ValueError):
    """The facts are not a database: some (subject, predicate) pairs have two or more
    different objects. ``conflicts`` lists every one of them."""

    def __init__(self, conflicts, source: str | None = None):
        self.conflicts = list(conflicts)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [
            f"{len(self.conflicts)} (subject, predicate) pair(s){where} have more than one object; "
            "a database is a partial function K x Q -> V (pass conflicts='first' or 'drop' to opt in "
            "to a policy):"
        ]
        for c in self.conflicts:
            lines.append("  " + c.describe())
        super().__init__("\n".join(lines))


class ConfigError(FactlabError, ValueError):
    """A configuration value is out of range or of the wrong kind; the message names it."""
