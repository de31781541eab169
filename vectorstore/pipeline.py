"""Query stages as small functions: candidates -> exact rescoring -> hydrate -> optional rerank.

Every stage takes a batch of queries. Scores are always recomputed from the float32 vectors as
stored (DESIGN invariant 5), whatever the ANN index returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from indexers.exact import ExactIndex
from indexers.scoring import candidate_scores, empty_results, exact_scores, pad_results, sort_rows, top_k
from vectorstore.db.repository import StoredRecord

if TYPE_CHECKING:
    from vectorstore.models.cross_encoder import CrossEncoder

__all__ = ["Hit", "best_scored", "exact_over", "rerank", "rescore", "to_hits"]

# A filter matching at most this many rows (or this fraction of the collection) is answered exactly.
EXACT_FILTER_MAX = 20_000
EXACT_FILTER_FRACTION = 0.05


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
    """

    id: str
    score: float
    document: str | None = None
    metadata: dict[str, Any] | None = None
    rank: int = 0
    rerank_score: float | None = None
    embedding: np.ndarray | None = None


def exact_over(
    metric: str, vectors: ExactIndex, queries: np.ndarray, keys: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over just ``keys`` (the selective-filter path)."""
    if len(keys) == 0:
        return empty_results(len(queries), k)
    return top_k(exact_scores(metric, queries, vectors._vectors_for(keys)), keys, k)


def rescore(
    metric: str, vectors: ExactIndex, queries: np.ndarray, cand: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of each query's candidates from the float32 vectors; best ``k`` per query.

    Ties are broken by the smaller key, as in every index backend.
    """
    out_k, out_s = empty_results(len(queries), k)
    for i in range(len(queries)):
        row = cand[i]
        if len(row) and row.min() < 0:  # padding: at the end of the index's part, before any pending keys
            row = row[row >= 0]
        if len(row) == 0:
            continue
        scores = candidate_scores(metric, queries[i : i + 1], vectors._vectors_for(row)[None])[0]
        order = np.lexsort((row, -scores))[:k]  # a few dozen candidates: a full sort is cheapest
        out_k[i, : len(order)] = row[order]
        out_s[i, : len(order)] = scores[order]
    return out_k, out_s


def best_scored(cand: np.ndarray, scores: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of candidates whose scores are already exact (an index that keeps full-precision
    vectors: rescoring them would recompute the same numbers).

    ``cand`` / ``scores`` are :meth:`IndexState.search_scored` rows: ``n`` sorted index results, then
    possibly ``n`` sorted pending ones, which are merged in. Ties go to the smaller key, as in
    :func:`rescore`.
    """
    if cand.shape[1] <= n:  # the index's rows alone: sorted, ties by key already
        return pad_results(cand, scores, k)
    return pad_results(*sort_rows(cand, scores, k), k)


def to_hits(
    keys: np.ndarray,
    scores: np.ndarray,
    records: dict[int, StoredRecord],
    *,
    include_documents: bool,
    include_metadatas: bool,
    vectors: ExactIndex | None = None,
) -> list[list[Hit]]:
    """Turn key/score matrices into hits, skipping padding."""
    out: list[list[Hit]] = []
    for row_k, row_s in zip(keys, scores):
        hits: list[Hit] = []
        for key, score in zip(row_k.tolist(), row_s.tolist()):
            rec = records.get(key)
            if key < 0 or rec is None:
                continue
            emb = vectors._vectors_for(np.array([key]))[0].copy() if vectors is not None else None
            hits.append(
                Hit(
                    id=rec.id,
                    score=float(score),
                    document=rec.document if include_documents else None,
                    metadata=rec.metadata if include_metadatas else None,
                    rank=len(hits),
                    embedding=emb,
                )
            )
        out.append(hits)
    return out


def rerank(
    hits: list[list[Hit]],
    queries: Sequence[str],
    cross_encoder: CrossEncoder,
    k: int,
    *,
    keep_documents: bool,
    batch_size: int = 32,
) -> list[list[Hit]]:
    """Order each query's candidates by cross-encoder score and keep the best ``k``.

    All (query, document) pairs of the batch go through the model in one ``predict`` call. Equal
    rerank scores keep the similarity order. A candidate without a stored document cannot be
    scored: it goes after the scored ones with ``rerank_score=None``.
    """
    pairs: list[tuple[str, str]] = []
    for text, row in zip(queries, hits):
        pairs.extend((text, h.document) for h in row if h.document is not None)
    flat = np.asarray(cross_encoder.predict(pairs, batch_size=batch_size), dtype=np.float32).reshape(-1)
    out: list[list[Hit]] = []
    pos = 0
    for row in hits:
        scored: list[tuple[float, Hit]] = []
        unscored: list[Hit] = []
        for h in row:
            if h.document is None:
                unscored.append(h)
            else:
                scored.append((float(flat[pos]), h))
                pos += 1
        scored.sort(key=lambda item: -item[0])  # stable: ties keep the similarity order
        ordered = [replace(h, rerank_score=s) for s, h in scored] + unscored
        out.append(
            [
                replace(h, rank=i, document=h.document if keep_documents else None)
                for i, h in enumerate(ordered[:k])
            ]
        )
    return out
