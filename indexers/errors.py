"""The exceptions the index backends raise.

``indexers`` is the lower layer of the distribution, so the root of the whole error tree,
:class:`VectorStoreError`, and the input errors an index can raise live here; ``vectorstore.errors``
re-exports them beside the store's own errors (its docstring draws the whole tree).
"""

from __future__ import annotations

__all__ = [
    "DimensionMismatchError",
    "DuplicateIDError",
    "IncompatibleIndexError",
    "IndexBackendError",
    "IndexCorruptedError",
    "InvalidIDError",
    "InvalidInputError",
    "InvalidVectorError",
    "UnsupportedMetricError",
    "VectorStoreError",
]


class VectorStoreError(Exception):
    """Base class of every error raised by vectorstore and indexers."""


class InvalidInputError(VectorStoreError, ValueError):
    """An argument has a value the library cannot accept; the message names it."""


class DimensionMismatchError(InvalidInputError):
    """A vector's length differs from the dimension the index or collection was built with."""


class InvalidVectorError(InvalidInputError):
    """A vector holds NaN/inf, has the wrong rank, or cannot be read as float32."""


class InvalidIDError(InvalidInputError):
    """An id is empty, not a string, or names no stored record where one is required."""


class DuplicateIDError(InvalidInputError):
    """Ids repeat within a batch, or already exist where new ones are required."""


class IndexBackendError(VectorStoreError):
    """Base class of the errors about a vector index and its saved files."""


class IndexCorruptedError(IndexBackendError):
    """A saved index file or its manifest is truncated, garbled or inconsistent."""


class IncompatibleIndexError(IndexBackendError):
    """A saved index was written for another backend, dimension, metric or format version."""


class UnsupportedMetricError(IndexBackendError, InvalidInputError):
    """The backend cannot serve the requested metric (or the metric name is unknown)."""
