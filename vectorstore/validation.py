"""Input validation at the API boundary: every message shows the bad value."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
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
    "check_count",
    "check_documents",
    "check_embeddings",
    "check_ids",
    "check_metadatas",
    "check_threshold",
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
    out = [str(x) if isinstance(x, np.str_) else x for x in ids]
    for i, x in enumerate(out):
        if not isinstance(x, str) or not x:
            raise InvalidIDError(f"ids must be non-empty strings; item {i} is {x!r}")
        if not x.isascii():
            try:
                x.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidIDError(f"id {i} is not valid Unicode text ({exc.reason}): {x!r}") from exc
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


def _plain(value: Any) -> Any:
    """numpy scalars (``np.int64``, ``np.float32``, ``np.bool_``, ``np.str_``) as the Python values they hold."""
    return value.item() if isinstance(value, np.generic) else value


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
    given = list(metadatas)
    if len(given) != n:
        raise InvalidMetadataError(f"got {len(given)} metadatas for {n} ids")
    out: list[dict[str, MetadataValue] | None] = []
    for i, m in enumerate(given):
        if m is None:
            out.append(None)
            continue
        if not isinstance(m, Mapping):
            raise InvalidMetadataError(f"metadata {i} must be a dict, got {type(m).__name__}")
        m = {
            (str(k) if isinstance(k, np.str_) else k): (
                [_plain(v) for v in val] if isinstance(val, (list, np.ndarray)) else _plain(val)
            )
            for k, val in m.items()
        }
        out.append(m)
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


def check_embeddings(embeddings: object, n: int | None, dim: int, *, metric: str | None = None) -> np.ndarray:
    """A finite ``float32[n, dim]`` array of real numbers (an empty list is zero rows).

    With ``metric="cosine"`` an all-zero row is refused: its cosine with anything is undefined (the
    stores would otherwise score it 0 against every query).
    """
    if type(embeddings) is not np.ndarray or embeddings.dtype != np.float32:
        try:
            raw = np.asarray(embeddings)
        except (TypeError, ValueError) as exc:
            raise InvalidVectorError(f"embeddings cannot be read as an array: {exc}") from exc
        if raw.size == 0 and (n in (0, None)) and raw.ndim <= 2:
            return np.empty((0, dim), dtype=np.float32)
        if raw.dtype.kind not in "fiu":
            kind = {"c": "complex", "b": "bool", "U": "string", "S": "bytes", "O": "object"}.get(
                raw.dtype.kind, str(raw.dtype)
            )
            if raw.dtype.kind != "O":
                raise InvalidVectorError(
                    f"embeddings must be real numbers, got {kind} values (dtype {raw.dtype})"
                )
        try:
            arr = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidVectorError(f"embeddings cannot be read as float32: {exc}") from exc
    else:
        arr = embeddings
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
    if metric == "cosine" and len(arr):
        zero = np.nonzero(~arr.any(axis=1))[0]
        if len(zero):
            raise InvalidVectorError(
                f"embedding {int(zero[0])} is all zeros: its cosine similarity is undefined "
                f"({len(zero)} such row(s)); give it a direction or use a dot/euclidean collection"
            )
    return np.ascontiguousarray(arr)


def check_count(name: str, value: object, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """An integer argument (Python or numpy, not bool) of at least ``minimum``, as a Python int."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, (int, np.integer))
        or int(value) < minimum
    ):
        floor = "positive" if minimum == 1 else f">= {minimum}"
        raise InvalidInputError(f"{name} must be a {floor} int, got {value!r}")
    return int(value)


def check_threshold(value: object, metric: str) -> float:
    """A similarity threshold that some pair can reach: finite, and within [-1, 1] for cosine."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"threshold must be a number, got {value!r}")
    t = float(value)
    if not math.isfinite(t):
        raise InvalidInputError(f"threshold must be a finite number, got {value!r}")
    if metric == "cosine" and not -1.0 <= t <= 1.0:
        raise InvalidInputError(f"a cosine threshold must lie in [-1, 1], got {value!r}")
    if metric in ("euclidean", "manhattan") and t > 0:
        raise InvalidInputError(
            f"{metric} scores are negated distances (<= 0): a threshold of {value!r} matches nothing; "
            "e.g. -0.5 means distance at most 0.5"
        )
    return t
