"""Tensors of databases and their ranks."""

from factlab.tensors.database_tensor import (
    database_tensor,
    fiber,
    object_slice,
    predicate_slice,
    proposition_2_1,
    sparse_database_tensor,
    subject_slice,
)

__all__ = [
    "database_tensor",
    "fiber",
    "object_slice",
    "predicate_slice",
    "proposition_2_1",
    "sparse_database_tensor",
    "subject_slice",
]
