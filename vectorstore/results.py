"""What the store hands back: frozen result types, in one module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["AddResult", "DuplicatePair", "GetResult", "Hit", "SkippedDocument", "WriteCounts"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One query result.

    Attributes:
        id: the record's id.
        score: exact similarity of the query and the stored vector (higher is better).
        document: the stored document (None when not stored or not included).
        metadata: the stored metadata (None when not stored or not included).
        rank: 0-based position in the result list.
        rerank_score: the cross-encoder score when the results were reranked, else None.
        embedding: the stored vector when ``include`` asks for it.
        keyword_score: in ``"keyword"`` and ``"hybrid"`` mode, the document's BM25 score for the query
            (higher is better), or None when the document matches no query term; None in vector mode.
        fusion_score: in ``"hybrid"`` mode, the fused score the hits are ordered by; else None.
    """

    id: str
    score: float
    document: str | None = None
    metadata: dict[str, Any] | None = None
    rank: int = 0
    rerank_score: float | None = None
    embedding: np.ndarray | None = None
    keyword_score: float | None = None
    fusion_score: float | None = None


@dataclass(frozen=True)
class DuplicatePair:
    """Two records whose exact similarity is at least the threshold.

    Attributes:
        id_a: one record's id (the one added first).
        id_b: the other record's id.
        score: exact similarity of their stored vectors (the collection's metric).
    """

    id_a: str
    id_b: str
    score: float


@dataclass(frozen=True)
class SkippedDocument:
    """A document that ``add(..., on_duplicate="skip")`` did not write.

    Attributes:
        id: the id it was given.
        duplicate_of: the id of the record (stored, or earlier in the same batch) it duplicates.
        score: their exact similarity.
        in_batch: True when ``duplicate_of`` is an earlier item of the same call.
    """

    id: str
    duplicate_of: str
    score: float
    in_batch: bool

    @property
    def reason(self) -> str:
        """A one-line explanation."""
        where = "earlier in the same batch" if self.in_batch else "already stored"
        return f"similarity {self.score:.4f} to {self.duplicate_of!r} ({where})"


@dataclass(frozen=True)
class WriteCounts:
    """What :meth:`Collection.upsert` did.

    Attributes:
        added: records that were new.
        updated: existing records whose document, metadata or vector changed.
        unchanged: existing records given exactly as stored (nothing was written for them).
    """

    added: int
    updated: int
    unchanged: int


@dataclass(frozen=True)
class AddResult:
    """What :meth:`Collection.add` wrote.

    Attributes:
        ids: the ids written, in input order.
        skipped: documents not written because they duplicate a stored or earlier one
            (``on_duplicate="skip"``), with the id they duplicate and the score.
        counts: how many records were added (for ``add``, all written ones).
    """

    ids: list[str]
    skipped: list[SkippedDocument] = field(default_factory=list)
    counts: WriteCounts = field(default_factory=lambda: WriteCounts(0, 0, 0))

    @property
    def skipped_ids(self) -> list[str]:
        """The ids of :attr:`skipped`."""
        return [s.id for s in self.skipped]


@dataclass(frozen=True)
class GetResult:
    """Records returned by :meth:`Collection.get` / :meth:`Collection.peek`, in key (insertion) order."""

    ids: list[str]
    documents: list[str | None] | None = None
    metadatas: list[dict[str, Any] | None] | None = None
    embeddings: np.ndarray | None = None
    included: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.ids)
