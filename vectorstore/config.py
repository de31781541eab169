"""``CollectionConfig``: what a collection is, as stored (JSON) with it in the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from indexers import IndexSpec
from vectorstore.errors import StorageError, VectorStoreError
from vectorstore.keyword.settings import KeywordSettings

__all__ = ["CONFIG_VERSION", "CollectionConfig"]

CONFIG_VERSION = 1


@dataclass(frozen=True)
class CollectionConfig:
    """A collection's fixed settings.

    Attributes:
        model: the embedding model reference (name or folder), or None for bring-your-own vectors.
        dim: vector dimension.
        metric: the similarity every score is computed with (cosine, dot, euclidean, manhattan).
        index: the ANN index kind, dimension, metric and options.
        reranker: the cross-encoder reference queries rerank with, or None.
        keyword: how the keyword (BM25) index analyses and scores documents.
        model_backend: how the model runs: ``"torch"`` or ``"onnx"``.
        model_kwargs: backend options (``file_name`` of an ONNX variant, ``provider``).
        version: the config format version.
    """

    model: str | None
    dim: int
    metric: str
    index: IndexSpec
    reranker: str | None = None
    keyword: KeywordSettings = field(default_factory=KeywordSettings)
    model_backend: str = "torch"
    model_kwargs: Mapping[str, Any] | None = None
    version: int = CONFIG_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored in ``collections.config``."""
        return {
            "version": self.version,
            "model": self.model,
            "dim": self.dim,
            "metric": self.metric,
            "index": self.index.to_dict(),
            "reranker": self.reranker,
            "keyword": self.keyword.to_dict(),
            "model_backend": self.model_backend,
            "model_kwargs": dict(self.model_kwargs) if self.model_kwargs else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CollectionConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            StorageError: the stored object is not a collection config this version reads.
        """
        try:
            version = int(data.get("version", CONFIG_VERSION))
            if version > CONFIG_VERSION:
                raise StorageError(
                    f"collection config version {version} was written by a newer vectorstore; "
                    f"this one reads {CONFIG_VERSION}"
                )
            return cls(
                model=data.get("model"),
                dim=int(data["dim"]),
                metric=str(data["metric"]),
                index=IndexSpec.from_dict(data["index"]),
                reranker=data.get("reranker"),
                keyword=KeywordSettings.from_dict(data.get("keyword")),
                model_backend=str(data.get("model_backend") or "torch"),
                model_kwargs=data.get("model_kwargs"),
                version=version,
            )
        except (KeyError, TypeError, ValueError, VectorStoreError) as exc:
            raise StorageError(f"stored collection config is malformed: {dict(data)!r:.200}") from exc
