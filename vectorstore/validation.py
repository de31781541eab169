"""Input validation at the API boundary: every message shows the bad value."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from vectorstore.errors import (
    DimensionMismatchError,
    DuplicateIDError,
    InvalidCollectionNameError,
    InvalidIDError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidVectorError,
)

__all__ = [
    "MetadataValue",
    "check_collection_name",
    "check_documents",
    "check_embeddings",
    "check_ids",
    "check_metadatas",
]

MetadataValue = str | int | float | bool | None | list[str | int | float | bool]
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_collection_name(name: object) -> str:
    """Letters, digits, ``._-``, 1 to 64 characters, not ``.``/``..``: safe as a path component."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise InvalidCollectionNameError(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (not '.' or '..')"
        )
    return name


def check_ids(ids: object, *, unique: bool = True) -> list[str]:
    """Non-empty strings; with ``unique`` no repeats (the message lists some)."""
    if isinstance(ids, str):
        ids = [ids]
    if not isinstance(ids, Sequence):
        raise InvalidIDError(f"ids must be a list of strings, got {type(ids).__name__}")
    out = list(ids)
    for i, x in enumerate(out):
        if not isinstance(x, str) or not x:
            raise InvalidIDError(f"ids must be non-empty strings; item {i} is {x!r}")
    if unique and len(set(out)) != len(out):
        dups = [k for k, c in Counter(out).items() if c > 1]
        raise DuplicateIDError(f"{len(dups)} id(s) repeated within the batch, e.g. {dups[:5]}")
    return out


def check_documents(documents: object, n: int) -> list[str | None] | None:
    """``None`` or ``n`` strings (``None`` items allowed where embeddings are given)."""
    if documents is None:
        return None
    if isinstance(documents, str):
        documents = [documents]
    if not isinstance(documents, Sequence):
        raise InvalidInputError(f"documents must be a list of strings, got {type(documents).__name__}")
    docs = list(documents)
    if len(docs) != n:
        raise InvalidInputError(f"got {len(docs)} documents for {n} ids")
    for i, d in enumerate(docs):
        if d is not None and not isinstance(d, str):
            raise InvalidInputError(f"documents must be strings; item {i} is {type(d).__name__}: {d!r:.60}")
    return docs


def _check_scalar(key: str, value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidMetadataError(f"{where}: metadata {key!r} is {value!r}; only finite numbers are stored")
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise InvalidMetadataError(
            f"{where}: metadata {key!r} has a {type(value).__name__} value {value!r:.60}; "
            "values must be str, int, float, bool, None or a list of those"
        )


def check_metadatas(metadatas: object, n: int) -> list[dict[str, MetadataValue] | None] | None:
    """``None`` or ``n`` dicts of str keys to JSON scalars / lists of scalars."""
    if metadatas is None:
        return None
    if isinstance(metadatas, dict):
        metadatas = [metadatas]
    if not isinstance(metadatas, Sequence):
        raise InvalidMetadataError(f"metadatas must be a list of dicts, got {type(metadatas).__name__}")
    out = list(metadatas)
    if len(out) != n:
        raise InvalidMetadataError(f"got {len(out)} metadatas for {n} ids")
    for i, m in enumerate(out):
        if m is None:
            continue
        if not isinstance(m, dict):
            raise InvalidMetadataError(f"metadata {i} must be a dict, got {type(m).__name__}")
        for key, value in m.items():
            if not isinstance(key, str) or not key or key.startswith("$"):
                raise InvalidMetadataError(
                    f"metadata {i}: keys must be non-empty strings not starting with '$', got {key!r}"
                )
            if isinstance(value, list):
                for v in value:
                    if v is None or isinstance(v, list):
                        raise InvalidMetadataError(
                            f"metadata {i}: list {key!r} may only hold str/int/float/bool, got {v!r}"
                        )
                    _check_scalar(key, v, f"metadata {i}")
            else:
                _check_scalar(key, value, f"metadata {i}")
    return out


def check_embeddings(embeddings: object, n: int | None, dim: int) -> np.ndarray:
    """A finite ``float32[n, dim]`` array."""
    try:
        arr = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidVectorError(f"embeddings cannot be read as float32: {exc}") from exc
    if arr.ndim == 1 and n == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidVectorError(f"embeddings must be 2-D [n, {dim}], got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise InvalidVectorError(f"got {arr.shape[0]} embeddings for {n} ids")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(f"embeddings have dimension {arr.shape[1]}, the collection has {dim}")
    if not np.isfinite(arr).all():
        row, col = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidVectorError(f"embedding {row} has a non-finite value at position {col}: {arr[row, col]}")
    return np.ascontiguousarray(arr)
