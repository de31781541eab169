"""The query pipeline: candidates -> exact scores -> hydrate -> optional rerank, as small stage functions.

:func:`run_query` drives a validated :class:`QueryPlan` through the stages; every stage takes the
whole batch of queries. Scores are exact similarities of the stored float32 vectors (DESIGN invariant
5): an index that keeps full-precision vectors already returns them (``scores_are_exact``), any
other index's candidates are rescored here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from indexers.scoring import candidate_scores, empty_results, exact_scores, pad_results, sort_rows, top_k
from vectorstore.db.repository import StoredRecord
from vectorstore.errors import IndexCorruptedError
from vectorstore.modes import ModeResults, hybrid_stage, keyword_stage
from vectorstore.results import Hit

if TYPE_CHECKING:
    from vectorstore.index_state import IndexState
    from vectorstore.keyword.state import KeywordState
    from vectorstore.models.cross_encoder import CrossEncoder

__all__ = [
    "EXACT_FILTER_FRACTION",
    "EXACT_FILTER_MAX",
    "QueryPlan",
    "VectorSource",
    "best_scored",
    "candidates",
    "exact_over",
    "filtered_candidates",
    "rerank",
    "rescore",
    "run_query",
    "to_hits",
]

# A filter matching at most this many rows (or this fraction of the collection) is answered exactly
# over just those rows; a broader one goes to the ANN index with the matching keys as ``allowed``.
# Higher than the index layer's own threshold (indexers.base: 4,096 / 2 %) on purpose: here the exact
# path reads the store's float32 vector cache, which every query reads anyway to rescore, so scanning
# it beats a filtered graph walk for longer. The index layer's threshold therefore only decides for
# allowed sets above this one (where it always chooses the graph) and for direct `indexers` users,
# whose exact path may have to reconstruct quantized vectors.
EXACT_FILTER_MAX = 20_000
EXACT_FILTER_FRACTION = 0.05

MatchingFn = Callable[[Mapping[str, Any] | None, Mapping[str, Any] | None], np.ndarray]


class VectorSource(Protocol):
    """Where full-precision vectors come from (the index state, or an exact index in tests)."""

    def get_vectors(self, keys: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class QueryPlan:
    """A validated query request.

    Attributes:
        queries: ``float32[q, dim]`` query vectors.
        k: results per query the similarity stages produce (``rerank_k`` when reranking).
        final_k: results per query returned.
        fetch: ANN candidates per query.
        where: metadata filter, or None.
        where_document: document filter, or None.
        include: which of documents / metadatas / embeddings the hits carry.
        texts: the query texts (needed to rerank and for the keyword leg), or None.
        cross_encoder: the reranker, or None.
        mode: ``"vector"``, ``"keyword"`` or ``"hybrid"``.
        leg_k: candidates each leg of a hybrid query contributes to the fusion.
        fusion: ``"rrf"`` or ``"weighted"`` (hybrid mode).
        rrf_k: the RRF constant.
        weights: RRF weights of the (vector, keyword) legs.
        alpha: weight of the vector leg in ``"weighted"`` fusion.
        has_vectors: False when ``queries`` are placeholders (keyword mode on a collection without a
            model and no ``query_embeddings``): hits then carry NaN ``score``.
    """

    queries: np.ndarray
    k: int
    final_k: int
    fetch: int
    where: Mapping[str, Any] | None = None
    where_document: Mapping[str, Any] | None = None
    include: tuple[str, ...] = ("documents", "metadatas")
    texts: Sequence[str] | None = None
    cross_encoder: CrossEncoder | None = None
    mode: str = "vector"
    leg_k: int = 0
    fusion: str = "rrf"
    rrf_k: float = 60.0
    weights: tuple[float, float] = (1.0, 1.0)
    alpha: float = 0.5
    has_vectors: bool = True

    @property
    def filtered(self) -> bool:
        """Whether either filter restricts the records."""
        return bool(self.where) or bool(self.where_document)


def run_query(
    plan: QueryPlan,
    state: IndexState,
    metric: str,
    matching: MatchingFn,
    keyword: KeywordState | None = None,
) -> list[list[Hit]]:
    """Every stage for a batch of queries; one hit list per query.

    A derived file found damaged while the stages read it (its blocks are verified on first use) is
    rebuilt from SQLite and the stages run again, so the answer never comes from damaged data.
    """
    try:
        hits = _similarity_stages(plan, state, metric, matching, keyword)
    except IndexCorruptedError as exc:
        state.recover(exc)
        hits = _similarity_stages(plan, state, metric, matching, keyword)
    if plan.cross_encoder is not None:
        assert plan.texts is not None  # resolve_reranker returns a model only for text queries
        hits = rerank(
            hits, plan.texts, plan.cross_encoder, plan.final_k, keep_documents="documents" in plan.include
        )
    return hits


def _similarity_stages(
    plan: QueryPlan, state: IndexState, metric: str, matching: MatchingFn, keyword: KeywordState | None
) -> list[list[Hit]]:
    state.catch_up(wait=False)
    q = plan.queries
    allowed = matching(plan.where, plan.where_document) if plan.filtered else None
    kw_legs = None
    if plan.mode == "keyword":
        assert keyword is not None and plan.texts is not None
        kw_legs = keyword.search(plan.texts, plan.k, allowed)
    with state.lock.read():
        # Work is bounded by what is stored, never by k: a k beyond the record count returns them all.
        most = max(len(state), 1)
        if plan.k > most or plan.fetch > most or plan.leg_k > most:
            plan = replace(
                plan, k=min(plan.k, most), fetch=min(plan.fetch, most), leg_k=min(plan.leg_k, most)
            )
        found_by: ModeResults | None = None
        if plan.mode == "keyword":
            assert kw_legs is not None
            found_by = keyword_stage(state, metric, q if plan.has_vectors else None, kw_legs, plan.k)
            keys, scores = found_by.keys, found_by.scores
        else:
            leg_k = plan.leg_k if plan.mode == "hybrid" else plan.k
            leg_fetch = max(plan.fetch, leg_k)
            if not len(q):
                keys, scores = empty_results(0, leg_k)
            elif allowed is not None:
                keys, scores = filtered_candidates(state, metric, q, allowed, leg_fetch, leg_k)
            else:
                keys, scores = candidates(state, metric, q, leg_fetch, None, leg_k)
            if plan.mode == "hybrid":
                assert keyword is not None and plan.texts is not None
                # one BM25 pass per query gives its keyword leg and the scores of its vector leg
                legs = keyword.search_scoring(plan.texts, plan.leg_k, allowed, list(keys))
                found_by = hybrid_stage(
                    state,
                    metric,
                    q,
                    (keys, scores),
                    legs,
                    plan.k,
                    fusion=plan.fusion,  # type: ignore[arg-type]
                    rrf_k=plan.rrf_k,
                    weights=plan.weights,
                    alpha=plan.alpha,
                )
                keys, scores = found_by.keys, found_by.scores
        # one query's keys are distinct already; a batch's may repeat across rows
        found = keys[keys >= 0]
        records = state.hydrate(found.tolist() if len(keys) == 1 else np.unique(found).tolist())
        hits = to_hits(
            keys,
            scores,
            records,
            include_documents="documents" in plan.include or plan.cross_encoder is not None,
            include_metadatas="metadatas" in plan.include,
            vectors=_Embeddings(state, np.unique(found)) if "embeddings" in plan.include else None,
            keyword_scores=found_by.keyword_scores if found_by is not None else None,
            fusion_scores=found_by.fusion_scores if found_by is not None else None,
        )
    return hits


class _Embeddings:
    """The stored vectors of the keys a query returns, read at once (from SQLite where the state's
    scoring vectors are not the stored ones: an index that keeps them normalised)."""

    def __init__(self, state: IndexState, keys: np.ndarray) -> None:
        self._keys = keys
        self._vectors = state.stored_vectors(keys)

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        return self._vectors[np.searchsorted(self._keys, keys)]


def candidates(
    state: IndexState, metric: str, queries: np.ndarray, fetch: int, allowed: np.ndarray | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """ANN candidates -> the best ``k`` by exact score (caller holds the state lock).

    An index with full-precision vectors (``scores_are_exact``: exact, the FAISS flat, HNSW, IVF and
    refined IVF-PQ kinds and USearch f32, for cosine and dot) already returns exact scores, so its
    ranking is used as it is; any other index's candidates are rescored from the vector cache.
    """
    if state.index_scores_exact:
        cand, scores = state.search_scored(queries, fetch, allowed)
        return best_scored(cand, scores, fetch, k)
    cand = state.search(queries, fetch, allowed)
    return rescore(metric, state, queries, cand, k)


def filtered_candidates(
    state: IndexState, metric: str, queries: np.ndarray, matching: np.ndarray, fetch: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` among the ``matching`` keys: exactly over them when they are few, else through
    the ANN index with them as the allowed set (caller holds the state lock)."""
    # Where each vector read is a database read (an index of codes rescored from SQLite), only a set no
    # larger than the candidates the ANN path would rescore anyway is read whole; a larger one is
    # searched over the index's codes (exactly over them, or by the graph) and its candidates rescored.
    exact_max = (
        max(EXACT_FILTER_MAX, EXACT_FILTER_FRACTION * len(state)) if state.vectors.in_memory else fetch
    )
    if len(matching) <= exact_max:
        # a write that committed after catch_up may name keys not applied yet: skip them
        matching = matching[state.contains(matching)]
        return exact_over(metric, state, queries, matching, k)
    return candidates(state, metric, queries, fetch, matching, k)


def exact_over(
    metric: str, vectors: VectorSource, queries: np.ndarray, keys: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over just ``keys`` (the selective-filter path)."""
    if len(keys) == 0:
        return empty_results(len(queries), k)
    return top_k(exact_scores(metric, queries, vectors.get_vectors(keys)), keys, k)


def rescore(
    metric: str, vectors: VectorSource, queries: np.ndarray, cand: np.ndarray, k: int
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
        scores = candidate_scores(metric, queries[i : i + 1], vectors.get_vectors(row)[None])[0]
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
    vectors: VectorSource | None = None,
    keyword_scores: np.ndarray | None = None,
    fusion_scores: np.ndarray | None = None,
) -> list[list[Hit]]:
    """Turn key/score matrices into hits, skipping padding (NaN keyword / fusion scores become None)."""
    out: list[list[Hit]] = []
    for i, (row_k, row_s) in enumerate(zip(keys, scores)):
        hits: list[Hit] = []
        row_kw = keyword_scores[i].tolist() if keyword_scores is not None else None
        row_f = fusion_scores[i].tolist() if fusion_scores is not None else None
        for j, (key, score) in enumerate(zip(row_k.tolist(), row_s.tolist())):
            rec = records.get(key)
            if key < 0 or rec is None:
                continue
            kw = row_kw[j] if row_kw is not None else None
            fs = row_f[j] if row_f is not None else None
            emb = vectors.get_vectors(np.array([key]))[0].copy() if vectors is not None else None
            hits.append(
                Hit(
                    id=rec.id,
                    score=float(score),
                    document=rec.document if include_documents else None,
                    metadata=rec.metadata if include_metadatas else None,
                    rank=len(hits),
                    embedding=emb,
                    keyword_score=None if kw is None or kw != kw else kw,
                    fusion_score=None if fs is None or fs != fs else fs,
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
