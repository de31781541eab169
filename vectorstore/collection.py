"""``Collection``: the facade users program against. It validates at the boundary, then delegates —
writes to :mod:`vectorstore.writes`, queries to :mod:`vectorstore.pipeline`, duplicate detection to
:mod:`vectorstore.dedupe`, reads of records to the repository."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy import Engine

from vectorstore import dedupe, pipeline
from vectorstore.config import CollectionConfig
from vectorstore.db.engine import read_tx
from vectorstore.db.repository import Repository
from vectorstore.errors import DuplicateDocumentError, InvalidInputError
from vectorstore.filters import MatchingKeys, compile_filter
from vectorstore.fusion import Fusion, check_fusion
from vectorstore.index_state import IndexState
from vectorstore.keyword.state import KeywordState
from vectorstore.lifecycle import Lifecycle
from vectorstore.model_cache import ModelCache
from vectorstore.rerankers import resolve_reranker
from vectorstore.results import AddResult, DuplicatePair, GetResult, Hit, SkippedDocument, WriteCounts
from vectorstore.validation import (
    check_count,
    check_documents,
    check_embeddings,
    check_ids,
    check_metadatas,
    check_threshold,
)
from vectorstore.writes import RecordWriter, WriteMode

if TYPE_CHECKING:
    from vectorstore.models.cross_encoder import CrossEncoder
    from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = ["Collection", "OnDuplicate"]

OnDuplicate = Literal["allow", "skip", "error"]
Include = Literal["documents", "metadatas", "embeddings"]
QueryMode = Literal["vector", "keyword", "hybrid"]
QUERY_MODES: tuple[str, ...] = ("vector", "keyword", "hybrid")

_INCLUDE = ("documents", "metadatas", "embeddings")
_ON_DUPLICATE = ("allow", "skip", "error")
# candidates per result each leg of a hybrid query brings by default (not the index's rescoring
# oversample: the legs are fused, not rescored, and were tuned at this width)
HYBRID_LEG_OVERSAMPLE = 4


def _check_include(include: Sequence[str]) -> tuple[str, ...]:
    if isinstance(include, str) or not isinstance(include, (list, tuple, set, frozenset)):
        raise InvalidInputError(f"include must be a list of {list(_INCLUDE)}, got {include!r:.80}")
    inc = tuple(include)
    bad = [x for x in inc if x not in _INCLUDE]
    if bad:
        raise InvalidInputError(f"unknown include value(s) {bad}; expected some of {list(_INCLUDE)}")
    return inc


class Collection:
    """A named set of records (id, document, metadata, vector) with an ANN index.

    Obtain one from :class:`~vectorstore.Store`; do not construct it directly.

    Args:
        name: the collection's name.
        collection_id: its row id in the database.
        config: its fixed settings.
        state: its in-process index state.
        engine: the store's database engine (writes and record reads).
        models: where its model and reranker are loaded from.
        life: the store's open/closed flag (every operation raises ``StoreClosedError`` once closed).
    """

    def __init__(
        self,
        name: str,
        collection_id: int,
        config: CollectionConfig,
        state: IndexState,
        engine: Engine,
        models: ModelCache,
        life: Lifecycle | None = None,
    ) -> None:
        self.name = name
        self.id = collection_id
        self.config = config
        self._state = state
        self._engine = engine
        self._models = models
        self._life = life if life is not None else Lifecycle(f"collection {name!r}")
        self._writer = RecordWriter(engine, collection_id, config.dim, name)
        self._matching = MatchingKeys(collection_id, state.reader)
        self._keyword = KeywordState(engine, collection_id, config.keyword, state.reader, name)

    # ------------------------------------------------------------------ description
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self.config.dim

    @property
    def metric(self) -> str:
        """Similarity function of every score: cosine, dot, euclidean or manhattan."""
        return self.config.metric

    @property
    def model_name(self) -> str | None:
        """The embedding model reference, or None for a bring-your-own-vectors collection."""
        return self.config.model

    @property
    def index_kind(self) -> str:
        """The ANN backend (``faiss-hnsw``, ``exact``...)."""
        return self.config.index.kind

    @property
    def reranker_name(self) -> str | None:
        """The cross-encoder reference this collection reranks with, or None."""
        return self.config.reranker

    def __repr__(self) -> str:
        rr = f", reranker={self.reranker_name!r}" if self.reranker_name else ""
        return f"Collection(name={self.name!r}, model={self.model_name!r}, dim={self.dim}, metric={self.metric!r}, index={self.index_kind!r}{rr})"

    @property
    def model(self) -> SentenceTransformer:
        """The embedding model (loaded on first use)."""
        return self._models.encoder(
            self._require_model(), self.config.model_backend, self.config.model_kwargs
        )

    def _require_model(self) -> str:
        if self.model_name is None:
            raise InvalidInputError(
                f"collection {self.name!r} has no model; pass embeddings= / query_embeddings= instead of text"
            )
        return self.model_name

    @property
    def reranker(self) -> CrossEncoder | None:
        """The collection's cross-encoder (loaded on first use), or None when it has none."""
        name = self.reranker_name
        return self._models.cross_encoder(name) if name is not None else None

    # ------------------------------------------------------------------ writes
    def add(
        self,
        ids: str | Sequence[str],
        documents: str | Sequence[str | None] | None = None,
        metadatas: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        embeddings: Any = None,
        *,
        show_progress_bar: bool | None = None,
        on_duplicate: OnDuplicate = "allow",
        duplicate_threshold: float = 0.95,
    ) -> AddResult:
        """Add new records; all-or-nothing.

        Documents are embedded with the collection's model unless ``embeddings`` are given.

        Args:
            ids: one id or a list; new, unique ids.
            documents: the texts (embedded unless ``embeddings`` are given).
            metadatas: one flat mapping per record (JSON scalars or lists of them).
            embeddings: vectors to store instead of embedding the documents.
            show_progress_bar: ``None`` shows one for long ingests when stderr is a terminal.
            on_duplicate: what to do with a record whose vector is at least ``duplicate_threshold``
                similar (exact score, the collection's metric) to a stored record or to an earlier
                record of the same call: ``"allow"`` writes it (default, no check), ``"skip"`` writes
                the others and reports it in :attr:`AddResult.skipped`, ``"error"`` writes nothing
                and raises :class:`~vectorstore.DuplicateDocumentError`.
            duplicate_threshold: the similarity at which two records count as duplicates.

        Returns:
            The ids written and the documents skipped.

        Raises:
            DuplicateIDError: an id repeats in the batch or is already stored (nothing is written).
            DuplicateDocumentError: ``on_duplicate="error"`` and a near-duplicate was found.
            InvalidIDError, InvalidMetadataError, InvalidVectorError, DimensionMismatchError: bad input.
        """
        self._life.check_writable()
        if on_duplicate not in _ON_DUPLICATE:
            raise InvalidInputError(
                f"on_duplicate must be one of {list(_ON_DUPLICATE)}, got {on_duplicate!r}"
            )
        # the threshold only matters (and is only checked) when duplicates are looked for
        threshold = check_threshold(duplicate_threshold, self.metric) if on_duplicate != "allow" else 0.0
        return self._write(
            ids, documents, metadatas, embeddings, "add", show_progress_bar, on_duplicate, threshold
        )

    def upsert(
        self,
        ids: str | Sequence[str],
        documents: str | Sequence[str | None] | None = None,
        metadatas: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        embeddings: Any = None,
        *,
        show_progress_bar: bool | None = None,
    ) -> WriteCounts:
        """Insert new ids and overwrite existing ones; all-or-nothing.

        For an existing record, the fields given (documents, metadatas, embeddings — or the vector the
        new document embeds to) replace the stored ones and the fields not given stay as they are, as
        in Chroma. A record given exactly as it is stored is left alone: an idempotent re-run writes
        nothing.

        Returns:
            How many records were added, updated and unchanged.
        """
        self._life.check_writable()
        return self._write(
            ids, documents, metadatas, embeddings, "upsert", show_progress_bar, "allow", 0.95
        ).counts

    def _write(
        self,
        ids: Any,
        documents: Any,
        metadatas: Any,
        embeddings: Any,
        mode: WriteMode,
        show_progress_bar: bool | None,
        on_duplicate: OnDuplicate,
        duplicate_threshold: float,
    ) -> AddResult:
        id_list = check_ids(ids)
        n = len(id_list)
        docs = check_documents(documents, n)
        metas = check_metadatas(metadatas, n)
        vectors: np.ndarray | None = None
        if embeddings is not None:
            vectors = check_embeddings(embeddings, n, self.dim, metric=self.metric)
        elif docs is None:
            raise InvalidInputError("add/upsert needs documents or embeddings")
        else:
            missing = [i for i, d in enumerate(docs) if d is None]
            if missing:
                raise InvalidInputError(
                    f"documents {missing[:5]} are None and no embeddings were given to embed them by"
                )
        if n == 0:
            return AddResult([], counts=WriteCounts(0, 0, 0))
        if vectors is None:
            self.model  # fail before any work if the collection cannot embed  # noqa: B018
            if mode == "add":
                self._writer.reject_known(id_list)  # before spending minutes encoding
        skipped: list[SkippedDocument] = []
        if on_duplicate != "allow":
            if vectors is None:
                assert docs is not None
                vectors = self._writer.encode_all(self.model, docs, show_progress_bar)
            found = dedupe.ingest_duplicates(
                self._state, self.metric, self.dim, id_list, vectors, duplicate_threshold
            )
            if found and on_duplicate == "error":
                dups = [found[i] for i in sorted(found)]
                shown = "; ".join(f"{d.id!r}: {d.reason}" for d in dups[:5])
                raise DuplicateDocumentError(
                    f"{len(dups)} document(s) duplicate stored or earlier ones (threshold {duplicate_threshold}), "
                    f"nothing was written: {shown}",
                    dups,
                )
            if found:
                skipped = [found[i] for i in sorted(found)]
                keep = [i for i in range(n) if i not in found]
                id_list = [id_list[i] for i in keep]
                docs = [docs[i] for i in keep] if docs is not None else None
                metas = [metas[i] for i in keep] if metas is not None else None
                vectors = vectors[keep]
                if not keep:
                    return AddResult([], skipped, WriteCounts(0, 0, 0))
        with self._state.own_commit() as landing:  # queries that see the commit leave its apply to us
            if vectors is not None:
                committed = self._writer.commit(
                    id_list, docs, metas, iter([(np.arange(len(id_list)), vectors)]), mode, landing
                )
            else:
                assert docs is not None
                committed = self._writer.commit_while_encoding(
                    self.model, id_list, docs, metas, mode, show_progress_bar, landing
                )
            self._state.catch_up(known=committed.known)
        self._state.index_if_few()  # a small batch is indexed by its writer, outside own_commit
        self._state.wait_for_backlog()
        return AddResult(id_list, skipped, committed.counts)

    def update(
        self,
        ids: str | Sequence[str],
        documents: str | Sequence[str | None] | None = None,
        metadatas: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        embeddings: Any = None,
    ) -> None:
        """Change fields of existing records; a field passed as None stays as it is.

        A changed document is re-embedded (unless ``embeddings`` are given). All ids must exist.

        Raises:
            InvalidIDError: listing ids that are not stored (nothing is written).
        """
        self._life.check_writable()
        id_list = check_ids(ids)
        n = len(id_list)
        docs = check_documents(documents, n)
        metas = check_metadatas(metadatas, n)
        vectors = (
            check_embeddings(embeddings, n, self.dim, metric=self.metric) if embeddings is not None else None
        )
        if n == 0:
            return
        if vectors is None and docs is not None:
            if any(d is None for d in docs):
                raise InvalidInputError(
                    "update with documents needs a string for every id (or pass embeddings)"
                )
            vectors = np.asarray(
                self.model.encode_document([d for d in docs if d is not None]), dtype=np.float32
            )
            vectors = check_embeddings(vectors, len(vectors), self.dim)
        self._writer.update(id_list, docs, metas, vectors)
        self._state.catch_up()

    def delete(
        self,
        ids: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> int:
        """Delete records by id and/or filter (both given: records matching both). Returns how many were deleted."""
        self._life.check_writable()
        id_list = check_ids(ids, unique=False) if ids is not None else None
        cond = compile_filter(self.id, where, where_document)
        if id_list is None and cond is None:
            raise InvalidInputError(
                "delete needs ids, where or where_document (to delete everything, delete the collection)"
            )
        deleted = self._writer.delete(id_list, cond)
        self._state.catch_up()
        return deleted

    # ------------------------------------------------------------------ reads
    def count(self) -> int:
        """Number of stored records."""
        self._life.check()
        with read_tx(self._engine) as conn:
            return Repository.count(conn, self.id)

    def get(
        self,
        ids: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include: Sequence[Include] = ("documents", "metadatas"),
    ) -> GetResult:
        """Records by id and/or filter, in insertion order (ids that are not stored are skipped)."""
        self._life.check()
        inc = _check_include(include)
        id_list = check_ids(ids, unique=False) if ids is not None else None
        limit = check_count("limit", limit, minimum=0, allow_none=True)
        offset = check_count("offset", offset, minimum=0, allow_none=True)
        cond = compile_filter(self.id, where, where_document)
        with read_tx(self._engine) as conn:
            rows = Repository.select_records(
                conn,
                self.id,
                ids=id_list,
                cond=cond,
                limit=limit,
                offset=offset,
                with_vectors="embeddings" in inc,
            )
        if id_list is not None and limit is None and offset is None:
            order = {rid: i for i, rid in reversed(list(enumerate(id_list)))}
            rows.sort(key=lambda r: order[r[0].id])
        embeddings = None
        if "embeddings" in inc:
            blob = b"".join(v for _, v in rows if v is not None)
            embeddings = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), self.dim).copy()
        return GetResult(
            ids=[r.id for r, _ in rows],
            documents=[r.document for r, _ in rows] if "documents" in inc else None,
            metadatas=[r.metadata for r, _ in rows] if "metadatas" in inc else None,
            embeddings=embeddings,
            included=inc,
        )

    def peek(self, n: int = 10) -> GetResult:
        """The first ``n`` records."""
        return self.get(limit=check_count("n", n, minimum=0))

    def query(
        self,
        query: str | Sequence[str] | None = None,
        *,
        query_embeddings: Any = None,
        query_text: str | Sequence[str] | None = None,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        include: Sequence[Include] = ("documents", "metadatas"),
        oversample: int | None = None,
        candidates: int | None = None,
        rerank: bool | CrossEncoder | None = None,
        rerank_k: int | None = None,
        mode: QueryMode = "vector",
        fusion: Fusion = "weighted",
        rrf_k: float = 60,
        weights: Sequence[float] | None = None,
        alpha: float = 0.5,
    ) -> list[Hit] | list[list[Hit]]:
        """Nearest records to a query (text, embedded with the model's query prompt) or to query vectors.

        Stages (:mod:`vectorstore.pipeline`): candidates from the ANN index (``max(k * oversample,
        candidates)`` of them; a filter that selects few rows is answered exactly over those rows
        instead) -> exact scores on the stored float32 vectors -> hydration of ids, documents and
        metadata in one SQL round trip -> optional cross-encoder rerank of the best ``rerank_k``.
        ``mode="keyword"`` takes candidates from the BM25 index of the documents instead, and
        ``mode="hybrid"`` fuses both (see ``docs/hybrid.md``).

        Args:
            query: a text or a list of texts (embedded with the model's query prompt).
            query_embeddings: instead of ``query``, one vector or a matrix of them.
            query_text: with ``query_embeddings``, the texts of the same queries, for the keyword leg
                of ``"keyword"`` / ``"hybrid"`` mode and for reranking.
            k: results per query.
            where: metadata filter (see ``docs/filters.md``).
            where_document: document-text filter (``$contains``, ``$not_contains``, ``$and``, ``$or``).
            include: any of ``"documents"``, ``"metadatas"``, ``"embeddings"``.
            oversample: ANN candidates per result before exact rescoring (default: the index kind's
                own, :attr:`~indexers.BaseIndex.default_oversample`: 2 for ``faiss-hnsw-sq``'s 8-bit
                codes, 4 for the others).
            candidates: a floor on the number of ANN candidates; in hybrid mode, how many candidates
                each leg brings to the fusion (default ``max(k * oversample, 50)``, with ``oversample``
                4 when not given).
            rerank: ``None`` reranks when the collection was created with a ``reranker``; ``True``
                requires one; ``False`` never reranks; a :class:`~vectorstore.CrossEncoder` reranks with it.
            rerank_k: how many candidates the cross-encoder sees (default ``max(k, 50)``).
            mode: ``"vector"`` (default), ``"keyword"`` (BM25 over the documents) or ``"hybrid"``.
            fusion: hybrid mode's fusion: ``"weighted"`` (default: convex combination of normalised
                scores) or ``"rrf"`` (reciprocal rank fusion).
            rrf_k: the RRF constant.
            weights: RRF weights of the (vector, keyword) legs, default ``(1, 1)``.
            alpha: weight of the vector leg in ``"weighted"`` fusion.

        Returns:
            For a single string (or a 1-D vector) a ``list[Hit]``; for a list, one list per query.
            ``score`` is always the exact vector similarity, higher is better (NaN only in keyword mode
            on a collection without a model when no ``query_embeddings`` are given). Hits are ordered by
            the mode's own score (vector ``score``, ``keyword_score`` or ``fusion_score``), or by
            ``rerank_score`` when reranked. Fewer than ``k`` hits only when fewer match (in keyword
            mode: fewer documents contain a query term).

        Raises:
            InvalidInputError: bad ``k``/``rerank_k``/fusion arguments, an unknown mode, ``rerank=True``
                without a reranker, reranking or keyword search without query text, or hybrid mode on a
                collection that can neither embed the text nor was given ``query_embeddings``.
        """
        self._life.check()
        inc = _check_include(include)
        if mode not in QUERY_MODES:
            raise InvalidInputError(f"mode must be one of {QUERY_MODES}, got {mode!r}")
        k = int(check_count("k", k) or 1)
        given_oversample = check_count("oversample", oversample, allow_none=True)
        oversample = given_oversample or self._state.index.default_oversample
        candidates = check_count("candidates", candidates, allow_none=True)
        fusion_kind, rrf_c, rrf_w, alpha_f = check_fusion(fusion, rrf_k, weights, alpha)
        texts_for_leg = self._query_texts(query, query_embeddings, query_text)
        cross_encoder = resolve_reranker(
            rerank, query if query is not None else query_text, self.reranker_name, self._models, self.name
        )
        if rerank_k is not None and (
            isinstance(rerank_k, bool) or not isinstance(rerank_k, (int, np.integer)) or rerank_k < k
        ):
            raise InvalidInputError(f"rerank_k must be an int >= k ({k}), got {rerank_k!r}")
        rerank_k = int(rerank_k) if rerank_k is not None else None
        stage_k = k
        if cross_encoder is not None:
            stage_k = rerank_k if rerank_k is not None else max(k, 50)
        has_vectors = True
        if mode != "vector" and texts_for_leg is None:
            raise InvalidInputError(
                f"mode={mode!r} needs the query text: pass query=, or query_text= with query_embeddings="
            )
        if mode == "keyword" and query_embeddings is None and self.model_name is None:
            # nothing to embed the text with: keyword hits carry NaN vector scores
            queries = np.zeros((len(texts_for_leg or []), self.dim), dtype=np.float32)
            single = isinstance(query, str)
            has_vectors = False
        elif mode == "hybrid" and query_embeddings is None and self.model_name is None:
            raise InvalidInputError(
                f"collection {self.name!r} has no model to embed the query text with: hybrid mode needs "
                "query_embeddings= (and query_text=)"
            )
        else:
            queries, _, single = self._query_vectors(query, query_embeddings)
        texts = texts_for_leg
        if texts is not None and len(texts) != len(queries):
            raise InvalidInputError(f"{len(texts)} query texts for {len(queries)} query embeddings")
        leg_k = (
            candidates
            if (mode == "hybrid" and candidates)
            else max(stage_k * (given_oversample or HYBRID_LEG_OVERSAMPLE), 50)
        )
        plan = pipeline.QueryPlan(
            queries=queries,
            k=stage_k,
            final_k=k,
            fetch=max(stage_k * oversample, candidates or 0, stage_k),
            where=where,
            where_document=where_document,
            include=inc,
            texts=texts,
            cross_encoder=cross_encoder,
            mode=mode,
            leg_k=max(leg_k, stage_k) if mode == "hybrid" else 0,
            fusion=fusion_kind,
            rrf_k=rrf_c,
            weights=rrf_w,
            alpha=alpha_f,
            has_vectors=has_vectors,
        )
        hits = pipeline.run_query(plan, self._state, self.metric, self._matching, self._keyword)
        return hits[0] if single else hits

    @staticmethod
    def _query_texts(query: Any, query_embeddings: Any, query_text: Any) -> list[str] | None:
        """The query texts (from ``query``, or ``query_text`` beside ``query_embeddings``), checked."""
        if query_text is not None and query is not None:
            raise InvalidInputError(
                "query_text goes with query_embeddings; with query= the text is the query"
            )
        if query_text is not None and query_embeddings is None:
            raise InvalidInputError("query_text= needs query_embeddings= (or pass the text as query=)")
        source = query if query is not None else query_text
        if source is None:
            return None
        texts = [source] if isinstance(source, str) else list(source)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise InvalidInputError(f"queries must be strings; item {bad[0]} is {texts[bad[0]]!r:.60}")
        return texts

    def _query_vectors(self, query: Any, query_embeddings: Any) -> tuple[np.ndarray, list[str] | None, bool]:
        """(query vectors, query texts or None, whether a single query was given)."""
        if (query is None) == (query_embeddings is None):
            raise InvalidInputError("query needs exactly one of a query text (or list) and query_embeddings")
        if query is not None:
            single = isinstance(query, str)
            texts = [query] if single else list(query)
            bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
            if bad:
                raise InvalidInputError(f"queries must be strings; item {bad[0]} is {texts[bad[0]]!r:.60}")
            encoder = self._models.query_encoder(
                self._require_model(), self.config.model_backend, self.config.model_kwargs
            )
            vecs = np.asarray(encoder.encode_query(texts, show_progress_bar=False), dtype=np.float32)
            vecs = vecs.reshape(len(texts), -1)
            return check_embeddings(vecs, len(texts), self.dim, metric=self.metric), texts, single
        try:
            arr = (
                query_embeddings if isinstance(query_embeddings, np.ndarray) else np.asarray(query_embeddings)
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"query_embeddings cannot be read as an array: {exc}") from exc
        single = arr.ndim == 1 and arr.size > 0
        vecs = check_embeddings(arr[None, :] if single else arr, None, self.dim, metric=self.metric)
        return vecs, None, single

    # ------------------------------------------------------------------ duplicates
    def _join(
        self,
        threshold: float,
        k: int,
        where: Mapping[str, Any] | None,
        where_document: Mapping[str, Any] | None,
        batch_size: int,
        show_progress_bar: bool | None,
    ) -> tuple[np.ndarray, dedupe.Batches]:
        return dedupe.join(
            self._state,
            self.metric,
            self._matching,
            threshold,
            k=k,
            where=where,
            where_document=where_document,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            name=self.name,
        )

    def iter_duplicates(
        self,
        threshold: float = 0.9,
        *,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        batch_size: int = 1024,
        show_progress_bar: bool | None = None,
    ) -> Iterator[DuplicatePair]:
        """Like :meth:`find_duplicates`, but yields pairs batch by batch (not globally sorted).

        Memory stays bounded by ``batch_size`` for the search plus the set of pairs seen so far;
        use it for collections whose duplicate list is too large to sort in memory.
        """
        self._life.check()
        _, batches = self._join(threshold, k, where, where_document, batch_size, show_progress_bar)
        return dedupe.duplicate_pairs(self._state, batches)

    def find_duplicates(
        self,
        threshold: float = 0.9,
        *,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        batch_size: int = 1024,
        show_progress_bar: bool | None = None,
    ) -> list[DuplicatePair]:
        """Every pair of records whose exact similarity is at least ``threshold``.

        A k-NN self-join through the collection's index, in batches: each record asks the index for
        its ``k`` nearest neighbours, every proposed pair is rescored from the stored full-precision
        vectors, and a record whose neighbours all pass is searched again wider, so groups larger
        than ``k`` are found whole. With an ANN index a pair the index does not propose can be
        missed (recall >= 0.99 on the STS sentences with the defaults, see ``docs/benchmarks.md``);
        with ``index="exact"`` the result is exact.

        Args:
            threshold: minimum exact similarity (the collection's metric; for euclidean and manhattan
                scores are negative distances, so e.g. ``-0.5`` means "distance at most 0.5").
            k: neighbours asked for per record before widening.
            where: only records matching this metadata filter take part.
            where_document: only records whose document matches this filter take part.
            batch_size: records per index search.
            show_progress_bar: ``None`` shows one for large collections when stderr is a terminal.

        Returns:
            :class:`~vectorstore.DuplicatePair` list, each unordered pair once (``id_a`` the earlier
            added), sorted by score descending.
        """
        self._life.check()
        pairs = list(
            self.iter_duplicates(
                threshold,
                k=k,
                where=where,
                where_document=where_document,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
            )
        )
        pairs.sort(key=lambda p: (-p.score, p.id_a, p.id_b))
        return pairs

    def duplicate_clusters(
        self,
        threshold: float = 0.9,
        *,
        min_size: int = 2,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        batch_size: int = 1024,
        show_progress_bar: bool | None = None,
    ) -> list[list[str]]:
        """Groups of near-duplicate records, largest first.

        The semantics of ``util.community_detection``: every record with at least ``min_size``
        records (itself included) at similarity >= ``threshold`` is a candidate centre of a group of
        all those records; centres are taken largest group first, a group keeps only records no
        larger group claimed, and is dropped when fewer than ``min_size`` remain. So every record is
        in at most one group, each group lists its centre first and then its members by descending
        similarity to the centre, and every member is within ``threshold`` of the centre (not
        necessarily of each other).

        Returns:
            Lists of ids, largest group first.
        """
        self._life.check()
        min_size = int(check_count("min_size", min_size) or 1)
        keys, batches = self._join(threshold, k, where, where_document, batch_size, show_progress_bar)
        return dedupe.duplicate_groups(self._state, keys, batches, min_size)

    # ------------------------------------------------------------------ maintenance
    def persist(self) -> None:
        """Save the derived index files now (they are also saved on close and every so many changes)."""
        self._life.check_writable()
        self._state.catch_up()
        self._state.persist()

    def compact(self) -> int:
        """Save the derived files, trim the change log below what they reflect and hand freed database
        pages back; returns how many change-log rows were removed.

        This also runs by itself in the background once the log holds more already-saved changes than
        the collection has records (and at least 10,000). A process or node whose saved index files are
        older than the trimmed log rebuilds them from the stored records on its next open or query,
        with a log line. Pages freed by deletes and updates go back to the file system on stores
        created by this version (SQLite incremental auto-vacuum); :meth:`Store.vacuum` rewrites any
        store compactly.

        Raises:
            ReadOnlyStoreError: the store is open read-only.
            DiskFullError, IndexSaveError: saving the index files failed (nothing is trimmed).
        """
        self._life.check_writable()
        self._state.catch_up()
        return self._state.compact()

    def wait_until_indexed(self) -> None:
        """Return once every stored record is in the ANN index (the background indexer has caught up).

        Queries never need this — records not indexed yet are scanned exactly — but benchmarks and
        batch jobs that want the final index do.
        """
        self._life.check()
        self._state.catch_up()
        self._state.drain()

    def rebuild_index(self) -> None:
        """Rebuild the ANN index and vector cache from SQLite."""
        self._life.check()
        self._state.rebuild()

    def index_files_dir(self) -> str | None:
        """Where this collection's derived index files are saved (None when the store saves none)."""
        d = self._state.directory
        return str(d) if d is not None else None
