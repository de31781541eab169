"""What an index is (:class:`IndexSpec`) and the protocol every backend keeps (:class:`VectorIndex`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from indexers.errors import InvalidInputError

__all__ = ["Device", "IndexSpec", "Kind", "Metric", "VectorIndex"]

Kind = Literal["exact", "faiss-flat", "faiss-hnsw", "faiss-ivf", "faiss-ivfpq", "usearch-hnsw"]
Metric = Literal["cosine", "dot", "euclidean", "manhattan"]
Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class IndexSpec:
    """What an index is: backend kind, dimension, metric and backend options. Round-trips to JSON."""

    kind: str
    dim: int
    metric: str = "cosine"
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"kind": self.kind, "dim": self.dim, "metric": self.metric, "options": dict(self.options)}

    def to_json(self) -> str:
        """``json.dumps(to_dict())`` with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexSpec:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                str(data["kind"]), int(data["dim"]), str(data["metric"]), dict(data.get("options") or {})
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not an index spec: {data!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> IndexSpec:
        """Inverse of :meth:`to_json`."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"index spec is not JSON: {text[:80]!r}") from exc


@runtime_checkable
class VectorIndex(Protocol):
    """The protocol the store programs against; :class:`~indexers.base.BaseIndex` implements it."""

    sequence: int
    tags: dict[str, Any]

    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def spec(self) -> IndexSpec: ...
    @property
    def scores_are_exact(self) -> bool: ...

    def add(self, keys: Any, vectors: Any) -> None: ...
    def remove(self, keys: Any) -> int: ...
    def search(self, queries: Any, k: int, *, allowed: Any = None) -> tuple[np.ndarray, np.ndarray]: ...
    def keys(self) -> np.ndarray: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def save(
        self, directory: str | os.PathLike[str], *, sequence: int | None = None, tags: Any = None
    ) -> Path: ...
