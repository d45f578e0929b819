"""The database tensor D and Proposition 2.1 (Wong 2025, sec. 2, eq. 1).

``D[k, q, v] = 1`` if ``(k, q, v)`` is a fact, else 0; shape ``|K| x |Q| x |V|``, axes in
the order of :attr:`Database.subjects`, ``.predicates`` and ``.objects``. Everything here
except :func:`database_tensor` works from the facts without densifying.
"""

from __future__ import annotations

import numpy as np
import torch

from factlab.databases.database import Database
from factlab.errors import ConfigError

DEFAULT_MAX_BYTES = 1 << 30  # a dense D larger than 1 GiB must be asked for explicitly


def database_tensor(
    db: Database,
    *,
    dtype: torch.dtype = torch.float64,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> torch.Tensor:
    """The dense 0/1 tensor D of eq. (1), ``(|K|, |Q|, |V|)``.

    Raises :class:`ConfigError` when it would take more than ``max_bytes``; use
    :func:`sparse_database_tensor` for large databases.
    """
    shape = db.shape
    nbytes = int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size()
    if nbytes > max_bytes:
        raise ConfigError(
            f"dense tensor of {db!r} would take {nbytes / 2**20:.1f} MiB > max_bytes = "
            f"{max_bytes / 2**20:.1f} MiB; raise max_bytes or use sparse_database_tensor()"
        )
    D = torch.zeros(shape, dtype=dtype)  # (K, Q, V)
    idx = torch.from_numpy(db.tensor_index().copy())
    D[idx[:, 0], idx[:, 1], idx[:, 2]] = 1
    return D


def sparse_database_tensor(db: Database, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """D as a coalesced sparse COO tensor, ``(|K|, |Q|, |V|)``."""
    idx = torch.from_numpy(db.tensor_index().T.copy())
    vals = torch.ones(idx.shape[1], dtype=dtype)
    return torch.sparse_coo_tensor(idx, vals, db.shape, check_invariants=False).coalesce()


def subject_slice(db: Database, subject: str) -> torch.Tensor:
    """``D[k, :, :]``, ``(|Q|, |V|)``."""
    return _slice(db, 0, subject)


def predicate_slice(db: Database, predicate: str) -> torch.Tensor:
    """``D[:, q, :]``, ``(|K|, |V|)``."""
    return _slice(db, 1, predicate)


def object_slice(db: Database, obj: str) -> torch.Tensor:
    """``D[:, :, v]``, ``(|K|, |Q|)``."""
    return _slice(db, 2, obj)


def fiber(db: Database, subject: str | None = None, predicate: str | None = None,
          obj: str | None = None) -> torch.Tensor:
    """A fiber of D: give two of subject, predicate, object; the third axis is left free.

    ``fiber(db, subject=k, predicate=q)`` is ``D[k, q, :]``, one-hot at ``D(k, q)`` or zero.
    """
    given = [subject, predicate, obj]
    if sum(x is not None for x in given) != 2:
        raise ValueError("fiber() takes exactly two of subject, predicate, obj")
    free = given.index(None)
    pos = [_position(db, axis, t) if t is not None else None for axis, t in enumerate(given)]
    idx = db.tensor_index()
    fixed = [a for a in range(3) if a != free]
    hit = (idx[:, fixed[0]] == pos[fixed[0]]) & (idx[:, fixed[1]] == pos[fixed[1]])
    out = torch.zeros(db.shape[free], dtype=torch.float64)
    out[torch.from_numpy(idx[hit, free].copy())] = 1
    return out


def proposition_2_1(db: Database) -> int:
    """``min(Σ_k |V_k|, Σ_q |V_q|)``, the upper bound on rank(D) of Proposition 2.1.

    Each subject slice ``D[k]`` is a function Q -> V whose matrix rank is the number of
    distinct objects it takes; summing slice ranks bounds the tensor rank.
    """
    return int(min(db.objects_per_subject().sum(), db.objects_per_predicate().sum()))


def _position(db: Database, axis: int, token: str) -> int:
    ids = (db.subjects, db.predicates, db.objects)[axis]
    tid = db.token_id(token)
    pos = int(np.searchsorted(ids, tid))
    if pos >= len(ids) or ids[pos] != tid:
        role = ("subject", "predicate", "object")[axis]
        raise KeyError(f"token {token!r} is not a {role} of {db!r}")
    return pos


def _slice(db: Database, axis: int, token: str) -> torch.Tensor:
    pos = _position(db, axis, token)
    idx = db.tensor_index()
    rows = idx[idx[:, axis] == pos]
    rest = [a for a in range(3) if a != axis]
    out = torch.zeros([db.shape[a] for a in rest], dtype=torch.float64)
    out[torch.from_numpy(rows[:, rest[0]]), torch.from_numpy(rows[:, rest[1]])] = 1
    return out
