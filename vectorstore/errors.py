"""The exceptions vectorstore raises: one tree, all rooted at :class:`VectorStoreError`.

::

    VectorStoreError
    ├── InvalidInputError (also a ValueError)      bad argument values, shown in the message
    │   ├── DimensionMismatchError                 vector length differs from the index/collection
    │   ├── InvalidVectorError                     NaN/inf, wrong dtype or wrong rank
    │   ├── InvalidIDError                         empty / non-string / unknown ids
    │   ├── DuplicateIDError                       ids repeated in a batch or already stored
    │   ├── DuplicateDocumentError                 add(on_duplicate="error") met near-duplicate documents
    │   ├── InvalidFilterError                     malformed ``where`` / unknown operator
    │   ├── InvalidMetadataError                   metadata values that are not JSON scalars/lists
    │   └── InvalidCollectionNameError             names that could escape a path
    ├── ModelLoadError                             a model could not be found or read
    ├── IndexBackendError                          problems of a vector index and its files
    │   ├── IndexCorruptedError                    truncated / garbled index file or manifest
    │   ├── IncompatibleIndexError                 a saved index that does not match what was asked
    │   └── UnsupportedMetricError                 a metric the backend cannot serve (also an InvalidInputError)
    ├── CollectionNotFoundError (also a KeyError)
    ├── CollectionExistsError
    ├── CollectionConfigError                      reopening with a different model / dim / metric
    ├── StoreClosedError                           an operation on a closed store or one of its collections
    └── StorageError                               the database or a derived file failed or refused an operation
        ├── DiskFullError                          no space (or quota) left where a file was written
        ├── DatabaseCorruptedError                 the database is not a database, malformed, or fails a checksum
        ├── DatabaseMissingError                   the database is gone or empty while index files remain
        ├── ReadOnlyStoreError                     a write to a store opened read-only
        └── IndexSaveError                         a derived index file could not be saved (the data is safe)

The root, the vector/id input errors and the index errors are defined in :mod:`indexers.errors` (the
lower layer, which must not import this package) and re-exported here.

Every backend exception (FAISS, USearch, SQLAlchemy, transformers) is translated at the seam where
it is caught and raised ``from`` the original, so callers only ever need ``except VectorStoreError``.
"""

from __future__ import annotations

from typing import Any

from indexers.errors import (
    DimensionMismatchError,
    DuplicateIDError,
    IncompatibleIndexError,
    IndexBackendError,
    IndexCorruptedError,
    InvalidIDError,
    InvalidInputError,
    InvalidVectorError,
    UnsupportedMetricError,
    VectorStoreError,
)

__all__ = [
    "ChangeLogTrimmedError",
    "CollectionConfigError",
    "CollectionExistsError",
    "CollectionNotFoundError",
    "DatabaseCorruptedError",
    "DatabaseMissingError",
    "DimensionMismatchError",
    "DiskFullError",
    "DuplicateDocumentError",
    "DuplicateIDError",
    "IncompatibleIndexError",
    "IndexBackendError",
    "IndexCorruptedError",
    "IndexSaveError",
    "InvalidCollectionNameError",
    "InvalidFilterError",
    "InvalidIDError",
    "InvalidInputError",
    "InvalidMetadataError",
    "InvalidVectorError",
    "ModelLoadError",
    "ReadOnlyStoreError",
    "StorageError",
    "StoreClosedError",
    "UnsupportedMetricError",
    "VectorStoreError",
]


class DuplicateDocumentError(InvalidInputError):
    """``add(..., on_duplicate="error")`` found documents at or above the duplicate threshold.

    Attributes:
        duplicates: one :class:`~vectorstore.duplicates.SkippedDocument` per rejected document.
    """

    def __init__(self, message: str, duplicates: list[Any] | None = None) -> None:
        super().__init__(message)
        self.duplicates = duplicates or []


class InvalidFilterError(InvalidInputError):
    """A ``where`` / ``where_document`` filter is malformed or uses an unknown operator."""


class InvalidMetadataError(InvalidInputError):
    """A metadata value is not a JSON scalar (str, int, float, bool, None) or a list of them."""


class InvalidCollectionNameError(InvalidInputError):
    """A collection name is empty, too long or has characters outside ``[A-Za-z0-9._-]``."""


class ModelLoadError(VectorStoreError):
    """A model could not be located or read; the message lists every place that was tried."""


class CollectionNotFoundError(VectorStoreError, KeyError):
    """No collection of that name exists in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CollectionExistsError(VectorStoreError):
    """A collection of that name already exists."""


class CollectionConfigError(VectorStoreError):
    """A collection was reopened with a model, dimension, metric or index that contradicts its stored config."""


class StoreClosedError(VectorStoreError):
    """The store was closed: its collections can no longer be used (open the store again)."""


class StorageError(VectorStoreError):
    """The database or a derived file failed or refused an operation; the message says which and why."""


class DiskFullError(StorageError):
    """A write failed because the file system (or a quota) is full; the message names the path."""


class DatabaseCorruptedError(StorageError):
    """The database file is not a database, is malformed, or a stored row fails its checksum."""


class ChangeLogTrimmedError(StorageError):
    """Derived state is older than the start of the (compacted) change log, so it cannot be caught
    up by replay; the store rebuilds it from the stored records (raised to callers only by
    ``verify`` on a state it cannot check)."""


class DatabaseMissingError(StorageError):
    """The database file is missing or empty although index files of collections exist beside it."""


class ReadOnlyStoreError(StorageError):
    """The store was opened read-only (``Store(path, read_only=True)`` or files it cannot write)."""


class IndexSaveError(StorageError):
    """A derived index file could not be written; SQLite still holds everything."""
