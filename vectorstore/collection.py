"""``Collection``: validates at the boundary, then delegates to the repository, the index state and the pipeline."""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import and_
from tqdm.auto import tqdm

import indexers
from vectorstore import pipeline
from vectorstore.db.engine import read_tx, write_tx
from vectorstore.db.repository import Repository
from vectorstore.duplicates import (
    DuplicatePair,
    SkippedDocument,
    claim_communities,
    first_occurrences,
    self_join,
)
from vectorstore.errors import DuplicateDocumentError, DuplicateIDError, InvalidIDError, InvalidInputError
from vectorstore.filters import compile_where, compile_where_document, has_positive_term
from vectorstore.index_state import IndexState
from vectorstore.pipeline import Hit
from vectorstore.validation import check_documents, check_embeddings, check_ids, check_metadatas

if TYPE_CHECKING:
    from vectorstore.models.cross_encoder import CrossEncoder
    from vectorstore.models.sentence_transformer import SentenceTransformer
    from vectorstore.store import Store

__all__ = ["AddResult", "Collection", "GetResult"]

logger = logging.getLogger(__name__)

_INCLUDE = ("documents", "metadatas", "embeddings")
_ENCODE_CHUNK = 1024  # documents per encode step when ingest overlaps encoding with writing
_DONE = object()
_ON_DUPLICATE = ("allow", "skip", "error")
_BATCH_EXACT_MAX = 20_000  # a batch checked for duplicates within itself exactly up to this size


@dataclass(frozen=True)
class AddResult:
    """What :meth:`Collection.add` wrote.

    Attributes:
        ids: the ids written, in input order.
        skipped: documents not written because they duplicate a stored or earlier one
            (``on_duplicate="skip"``), with the id they duplicate and the score.
    """

    ids: list[str]
    skipped: list[SkippedDocument] = field(default_factory=list)

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


def _check_include(include: Sequence[str]) -> tuple[str, ...]:
    inc = tuple(include)
    bad = [x for x in inc if x not in _INCLUDE]
    if bad:
        raise InvalidInputError(f"unknown include value(s) {bad}; expected some of {list(_INCLUDE)}")
    return inc


class Collection:
    """A named set of records (id, document, metadata, vector) with an ANN index.

    Obtain one from :class:`~vectorstore.Store`; do not construct it directly.
    """

    def __init__(
        self, store: Store, name: str, collection_id: int, config: dict[str, Any], state: IndexState
    ) -> None:
        self._store = store
        self.name = name
        self.id = collection_id
        self.config = config
        self._state = state
        self._sql_cache: dict[str, tuple[str, list[Any]]] = {}

    # ------------------------------------------------------------------ description
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.config["dim"])

    @property
    def metric(self) -> str:
        """Similarity function of every score: cosine, dot, euclidean or manhattan."""
        return str(self.config["metric"])

    @property
    def model_name(self) -> str | None:
        """The embedding model reference, or None for a bring-your-own-vectors collection."""
        return self.config.get("model")

    @property
    def index_kind(self) -> str:
        """The ANN backend (``faiss-hnsw``, ``exact``...)."""
        return str(self.config["index"]["kind"])

    def __repr__(self) -> str:
        rr = f", reranker={self.reranker_name!r}" if self.reranker_name else ""
        return f"Collection(name={self.name!r}, model={self.model_name!r}, dim={self.dim}, metric={self.metric!r}, index={self.index_kind!r}{rr})"

    @property
    def model(self) -> SentenceTransformer:
        """The embedding model (loaded on first use)."""
        if self.model_name is None:
            raise InvalidInputError(
                f"collection {self.name!r} has no model; pass embeddings= / query_embeddings= instead of text"
            )
        return self._store._model(self.model_name)

    # ------------------------------------------------------------------ embedding
    def _encode_in_order(
        self, documents: list[str | None], show_progress_bar: bool | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, vectors) chunks, longest documents first so batches pad little across the whole write."""
        model = self.model
        n = len(documents)
        show = show_progress_bar if show_progress_bar is not None else (n >= 2000 and sys.stderr.isatty())
        order = np.argsort([-len(d or "") for d in documents], kind="stable")
        with tqdm(total=n, desc=f"Embedding {self.name}", unit="doc", disable=not show) as bar:
            for start in range(0, n, _ENCODE_CHUNK):
                idx = order[start : start + _ENCODE_CHUNK]
                vecs = np.asarray(
                    model.encode_document([documents[i] or "" for i in idx], batch_size=32), dtype=np.float32
                )
                bar.update(len(idx))
                yield idx, vecs

    def _check_dim(self, vectors: np.ndarray) -> np.ndarray:
        return check_embeddings(vectors, len(vectors), self.dim)

    # ------------------------------------------------------------------ writes
    def add(
        self,
        ids: str | Sequence[str],
        documents: str | Sequence[str | None] | None = None,
        metadatas: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        embeddings: Any = None,
        *,
        show_progress_bar: bool | None = None,
        on_duplicate: str = "allow",
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
        if on_duplicate not in _ON_DUPLICATE:
            raise InvalidInputError(
                f"on_duplicate must be one of {list(_ON_DUPLICATE)}, got {on_duplicate!r}"
            )
        if isinstance(duplicate_threshold, bool) or not isinstance(duplicate_threshold, (int, float)):
            raise InvalidInputError(f"duplicate_threshold must be a number, got {duplicate_threshold!r}")
        return self._write(
            ids,
            documents,
            metadatas,
            embeddings,
            mode="add",
            show_progress_bar=show_progress_bar,
            on_duplicate=on_duplicate,
            duplicate_threshold=float(duplicate_threshold),
        )

    def upsert(
        self,
        ids: str | Sequence[str],
        documents: str | Sequence[str | None] | None = None,
        metadatas: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        embeddings: Any = None,
        *,
        show_progress_bar: bool | None = None,
    ) -> None:
        """Insert new ids and overwrite existing ones (document, metadata and vector); all-or-nothing."""
        self._write(ids, documents, metadatas, embeddings, mode="upsert", show_progress_bar=show_progress_bar)

    def _write(
        self,
        ids: Any,
        documents: Any,
        metadatas: Any,
        embeddings: Any,
        *,
        mode: str,
        show_progress_bar: bool | None,
        on_duplicate: str = "allow",
        duplicate_threshold: float = 0.95,
    ) -> AddResult:
        id_list = check_ids(ids)
        n = len(id_list)
        docs = check_documents(documents, n)
        metas = check_metadatas(metadatas, n)
        if embeddings is not None:
            vectors: np.ndarray | None = check_embeddings(embeddings, n, self.dim)
        elif docs is None:
            raise InvalidInputError("add/upsert needs documents or embeddings")
        else:
            missing = [i for i, d in enumerate(docs) if d is None]
            if missing:
                raise InvalidInputError(
                    f"documents {missing[:5]} are None and no embeddings were given to embed them by"
                )
            vectors = None  # embedded while writing
        if n == 0:
            return AddResult([])
        if vectors is None:
            self.model  # fail before any work if the collection cannot embed  # noqa: B018
            if mode == "add":
                # reject known ids before spending minutes encoding; the transaction checks again
                with read_tx(self._store.engine) as conn:
                    self._reject_existing(Repository.keys_for_ids(conn, self.id, id_list))
        skipped: list[SkippedDocument] = []
        if on_duplicate != "allow":
            if vectors is None:
                assert docs is not None
                vectors = self._encode_all(docs, show_progress_bar)
            found = self._near_duplicates(id_list, vectors, duplicate_threshold)
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
                n = len(keep)
                if n == 0:
                    return AddResult([], skipped)
        if vectors is not None:
            keys, all_vecs, our_seq = self._commit(
                id_list, docs, metas, iter([(np.arange(n), vectors)]), mode
            )
        else:
            assert docs is not None
            keys, all_vecs, our_seq = self._commit_while_encoding(
                id_list, docs, metas, mode, show_progress_bar
            )
        self._state.catch_up(known=(keys, all_vecs, our_seq))
        return AddResult(id_list, skipped)

    def _encode_all(self, docs: list[str | None], show_progress_bar: bool | None) -> np.ndarray:
        out = np.empty((len(docs), self.dim), dtype=np.float32)
        for idx, vecs in self._encode_in_order(docs, show_progress_bar):
            out[idx] = self._check_dim(vecs)
        return out

    def _near_duplicates(
        self, id_list: list[str], vectors: np.ndarray, threshold: float
    ) -> dict[int, SkippedDocument]:
        """Positions of ``vectors`` that duplicate a stored record or an earlier kept position."""
        metric = self.metric
        found: dict[int, SkippedDocument] = {}
        state = self._state
        state.catch_up()
        with state.lock:
            if len(state.vectors):
                cand = state.search(vectors, 8, None)
                keys, scores = pipeline.rescore(metric, state.vectors, vectors, cand, 1)
                hit = np.nonzero((keys[:, 0] >= 0) & (scores[:, 0] >= threshold))[0]
                if len(hit):
                    records = state.hydrate(np.unique(keys[hit, 0]).tolist())
                    for i in hit.tolist():
                        rec = records.get(int(keys[i, 0]))
                        if rec is not None:
                            found[i] = SkippedDocument(id_list[i], rec.id, float(scores[i, 0]), False)
        rest = np.array([i for i in range(len(id_list)) if i not in found], dtype=np.int64)
        if len(rest) < 2:
            return found
        kind = "exact" if len(rest) <= _BATCH_EXACT_MAX else "faiss-hnsw"
        batch_index = indexers.make_index(kind, self.dim, metric)
        batch_vectors = vectors[rest]
        positions = np.arange(len(rest), dtype=np.int64)
        batch_index.add(positions, batch_vectors)
        parts = list(
            self_join(
                positions,
                lambda k: batch_vectors[k],
                lambda q, m: batch_index.search(q, m)[0],
                metric,
                threshold,
                desc="Checking the batch for duplicates",
            )
        )
        if parts:
            a, b, s = (np.concatenate(x) for x in zip(*parts))
            for pos, (j, score) in first_occurrences(a, b, s).items():
                i = int(rest[pos])
                found[i] = SkippedDocument(id_list[i], id_list[int(rest[j])], score, True)
        return found

    def _commit_while_encoding(
        self,
        id_list: list[str],
        docs: list[str | None],
        metas: Any,
        mode: str,
        show_progress_bar: bool | None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Encode on this thread (torch runs best on it) while a writer thread inserts the chunks
        already encoded into one open transaction; any failure on either side rolls it all back."""
        q: queue.Queue[Any] = queue.Queue(maxsize=2)
        result: dict[str, Any] = {}

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        def write() -> None:
            try:
                result["ok"] = self._commit(id_list, docs, metas, chunks(), mode)
            except BaseException as exc:
                result["error"] = exc

        writer = threading.Thread(target=write, name="vectorstore-writer", daemon=True)
        writer.start()

        def put(item: Any) -> bool:
            while writer.is_alive():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in self._encode_in_order(docs, show_progress_bar):
                if not put(item):
                    break  # the writer stopped (its error is raised below)
            put(_DONE)
        except BaseException as exc:
            put(exc)  # abort: the writer raises it inside the transaction, which rolls back
            writer.join()
            raise
        writer.join()
        if "error" in result:
            raise result["error"]
        return result["ok"]

    def _commit(
        self,
        id_list: list[str],
        docs: list[str | None] | None,
        metas: Any,
        chunks: Iterator[tuple[np.ndarray, np.ndarray]],
        mode: str,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """One transaction: check ids, allocate keys, insert/update each chunk of (positions, vectors)."""
        n = len(id_list)
        with write_tx(self._store.engine) as conn:
            existing = Repository.keys_for_ids(conn, self.id, id_list)
            if mode == "add":
                self._reject_existing(existing)
            is_new = np.array([rid not in existing for rid in id_list], dtype=bool)
            keys = np.empty(n, dtype=np.int64)
            if is_new.any():
                keys[is_new] = Repository.allocate_keys(conn, int(is_new.sum()))
            for i in np.nonzero(~is_new)[0].tolist():
                keys[i] = existing[id_list[i]]
            all_vecs = np.empty((n, self.dim), dtype=np.float32)
            for span, vecs in chunks:
                vecs = self._check_dim(vecs)
                all_vecs[span] = vecs
                part_new = np.sort(span[is_new[span]]).tolist()
                part_old = np.sort(span[~is_new[span]]).tolist()
                if part_new:
                    Repository.insert_records(
                        conn,
                        self.id,
                        keys[part_new],
                        [id_list[i] for i in part_new],
                        [docs[i] for i in part_new] if docs is not None else None,
                        [metas[i] for i in part_new] if metas is not None else None,
                        all_vecs[part_new],
                    )
                if part_old:
                    Repository.update_records(
                        conn,
                        self.id,
                        [int(keys[i]) for i in part_old],
                        [docs[i] for i in part_old] if docs is not None else None,
                        [metas[i] for i in part_old] if metas is not None else [None] * len(part_old),
                        all_vecs[part_old],
                    )
            # we hold the write lock: the newest change is ours
            our_seq = Repository.max_seq(conn, self.id)
        return keys, all_vecs, our_seq

    @staticmethod
    def _reject_existing(existing: Mapping[str, int]) -> None:
        if existing:
            some = sorted(existing)[:5]
            raise DuplicateIDError(
                f"{len(existing)} id(s) already exist in the collection, e.g. {some}; use upsert to overwrite"
            )

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
        id_list = check_ids(ids)
        n = len(id_list)
        docs = check_documents(documents, n)
        metas = check_metadatas(metadatas, n)
        vectors = check_embeddings(embeddings, n, self.dim) if embeddings is not None else None
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
            vectors = self._check_dim(vectors)
        with write_tx(self._store.engine) as conn:
            existing = Repository.keys_for_ids(conn, self.id, id_list)
            missing = [rid for rid in id_list if rid not in existing]
            if missing:
                raise InvalidIDError(
                    f"{len(missing)} id(s) are not in collection {self.name!r}, e.g. {missing[:5]}"
                )
            Repository.update_records(conn, self.id, [existing[r] for r in id_list], docs, metas, vectors)
        self._state.catch_up()

    def delete(
        self,
        ids: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> int:
        """Delete records by id and/or filter (both given: records matching both). Returns how many were deleted."""
        id_list = check_ids(ids, unique=False) if ids is not None else None
        cond = self._condition(where, where_document)
        if id_list is None and cond is None:
            raise InvalidInputError(
                "delete needs ids, where or where_document (to delete everything, delete the collection)"
            )
        with write_tx(self._store.engine) as conn:
            keys = Repository.keys_matching(conn, self.id, cond)
            if id_list is not None:
                by_id = Repository.keys_for_ids(conn, self.id, list(dict.fromkeys(id_list)))
                keys = np.intersect1d(keys, np.fromiter(by_id.values(), dtype=np.int64, count=len(by_id)))
            if len(keys):
                Repository.delete_records(conn, self.id, keys.tolist())
        self._state.catch_up()
        return len(keys)

    # ------------------------------------------------------------------ reads
    def _condition(self, where: Mapping[str, Any] | None, where_document: Mapping[str, Any] | None) -> Any:
        parts = [
            c
            for c in (compile_where(self.id, where), compile_where_document(where_document))
            if c is not None
        ]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else and_(*parts)

    def count(self) -> int:
        """Number of stored records."""
        with read_tx(self._store.engine) as conn:
            return Repository.count(conn, self.id)

    def get(
        self,
        ids: str | Sequence[str] | None = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        include: Sequence[str] = ("documents", "metadatas"),
    ) -> GetResult:
        """Records by id and/or filter, in insertion order (ids that are not stored are skipped)."""
        inc = _check_include(include)
        id_list = check_ids(ids, unique=False) if ids is not None else None
        for name, value in (("limit", limit), ("offset", offset)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise InvalidInputError(f"{name} must be a non-negative int, got {value!r}")
        cond = self._condition(where, where_document)
        with read_tx(self._store.engine) as conn:
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
        return self.get(limit=n)

    def query(
        self,
        query: str | Sequence[str] | None = None,
        *,
        query_embeddings: Any = None,
        k: int = 10,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        include: Sequence[str] = ("documents", "metadatas"),
        oversample: int = 4,
        candidates: int | None = None,
        rerank: bool | CrossEncoder | None = None,
        rerank_k: int | None = None,
    ) -> list[Hit] | list[list[Hit]]:
        """Nearest records to a query (text, embedded with the model's query prompt) or to query vectors.

        Stages: candidates from the ANN index (``max(k * oversample, candidates)`` of them; a filter that
        selects few rows is answered exactly over those rows instead) -> exact scores on the stored
        float32 vectors (recomputed, unless the index keeps full-precision vectors and its scores are
        already exact) -> hydration of ids, documents and metadata in one SQL round trip -> optional
        cross-encoder rerank of the best ``rerank_k`` by similarity.

        Args:
            query: a text or a list of texts (embedded with the model's query prompt).
            query_embeddings: instead of ``query``, one vector or a matrix of them.
            k: results per query.
            where: metadata filter (see the README's filter section).
            where_document: document-text filter (``$contains``, ``$not_contains``, ``$and``, ``$or``).
            include: any of ``"documents"``, ``"metadatas"``, ``"embeddings"``.
            oversample: ANN candidates per result before exact rescoring.
            candidates: a floor on the number of ANN candidates.
            rerank: ``None`` reranks when the collection was created with a ``reranker``; ``True``
                requires one; ``False`` never reranks; a :class:`~vectorstore.CrossEncoder` reranks with it.
            rerank_k: how many exactly-rescored candidates the cross-encoder sees (default ``max(k, 50)``).

        Returns:
            For a single string (or a 1-D vector) a ``list[Hit]``; for a list, one list per query.
            Scores are exact similarities, higher is better; fewer than ``k`` hits only when fewer match.
            Reranked hits carry ``rerank_score`` and are ordered by it.

        Raises:
            InvalidInputError: bad ``k``/``rerank_k``, ``rerank=True`` without a reranker, or reranking
                requested for ``query_embeddings`` (the cross-encoder needs the query text).
        """
        inc = _check_include(include)
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        if oversample < 1:
            raise InvalidInputError(f"oversample must be >= 1, got {oversample}")
        cross_encoder = self._reranker_for(rerank, query)
        if rerank_k is not None and (
            not isinstance(rerank_k, int) or isinstance(rerank_k, bool) or rerank_k < k
        ):
            raise InvalidInputError(f"rerank_k must be an int >= k ({k}), got {rerank_k!r}")
        final_k = k
        if cross_encoder is not None:
            k = rerank_k if rerank_k is not None else max(k, 50)
        queries, single = self._query_vectors(query, query_embeddings)
        filtered = bool(where) or bool(where_document)
        state = self._state
        state.catch_up()
        fetch = max(k * oversample, candidates or 0, k)
        with state.lock:
            if not filtered:
                if len(queries):
                    keys, scores = self._candidates(queries, fetch, None, k)
                else:
                    keys, scores = np.empty((0, k), np.int64), np.empty((0, k), np.float32)
            else:
                matching = self._matching_keys(where, where_document)
                n_total = len(state.vectors)
                if len(matching) <= max(pipeline.EXACT_FILTER_MAX, pipeline.EXACT_FILTER_FRACTION * n_total):
                    # a write that committed after catch_up may name keys not applied yet: skip them
                    matching = matching[state.vectors.contains_many(matching)]
                    keys, scores = pipeline.exact_over(self.metric, state.vectors, queries, matching, k)
                else:
                    keys, scores = self._candidates(queries, fetch, matching, k)
            # one query's keys are distinct already; a batch's may repeat across rows
            found = keys[keys >= 0]
            records = state.hydrate(found.tolist() if len(keys) == 1 else np.unique(found).tolist())
            hits = pipeline.to_hits(
                keys,
                scores,
                records,
                include_documents="documents" in inc or cross_encoder is not None,
                include_metadatas="metadatas" in inc,
                vectors=state.vectors if "embeddings" in inc else None,
            )
        if cross_encoder is not None:
            assert query is not None  # _reranker_for returns a model only for text queries
            texts = [query] if isinstance(query, str) else list(query)
            hits = pipeline.rerank(hits, texts, cross_encoder, final_k, keep_documents="documents" in inc)
        return hits[0] if single else hits

    def _candidates(
        self, queries: np.ndarray, fetch: int, allowed: np.ndarray | None, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """ANN candidates -> the best ``k`` by exact score (caller holds the state lock).

        An index with full-precision vectors (``scores_are_exact``: exact, the FAISS flat, HNSW, IVF
        and refined IVF-PQ kinds and USearch f32, for cosine and dot) already returns exact scores, so
        its ranking is used as it is; any other index's candidates are rescored from the vector cache.
        """
        state = self._state
        if state.index.scores_are_exact:
            cand, scores = state.search_scored(queries, fetch, allowed)
            return pipeline.best_scored(cand, scores, fetch, k)
        cand = state.search(queries, fetch, allowed)
        return pipeline.rescore(self.metric, state.vectors, queries, cand, k)

    @property
    def reranker_name(self) -> str | None:
        """The cross-encoder reference this collection reranks with, or None."""
        return self.config.get("reranker")

    @property
    def reranker(self) -> CrossEncoder | None:
        """The collection's cross-encoder (loaded on first use), or None when it has none."""
        name = self.reranker_name
        return self._store._cross_encoder(name) if name is not None else None

    def _reranker_for(self, rerank: Any, query: Any) -> CrossEncoder | None:
        """The cross-encoder this query reranks with, or None; nothing is imported or loaded when
        the answer is None (plain queries stay free of torch/transformers work)."""
        if rerank is False:
            return None
        if rerank is None:
            # the default reranks text queries when the collection has a reranker
            if self.reranker_name is None or query is None:
                return None
            chosen = self.reranker
        elif rerank is True:
            chosen = self.reranker
            if chosen is None:
                raise InvalidInputError(
                    f"collection {self.name!r} has no reranker; create it with reranker=... "
                    "or pass rerank=CrossEncoder(...)"
                )
        else:
            from vectorstore.models.cross_encoder import CrossEncoder

            if not isinstance(rerank, CrossEncoder):
                raise InvalidInputError(
                    f"rerank must be True, False, None or a CrossEncoder, got {rerank!r:.60}"
                )
            chosen = rerank
        assert chosen is not None
        if query is None:
            raise InvalidInputError(
                "reranking needs the query text; pass query=..., not only query_embeddings"
            )
        if chosen.num_labels != 1:
            raise InvalidInputError(
                f"a reranker needs one output label; this cross-encoder has {chosen.num_labels}"
            )
        return chosen

    def _matching_keys(self, where: Any, where_document: Any) -> np.ndarray:
        """Keys matching a filter; the compiled SQL of recent filters is reused (values stay bound parameters)."""
        state = self._state
        try:
            cache_key: str | None = json.dumps([where, where_document], sort_keys=True)
        except (TypeError, ValueError):
            cache_key = None
        compiled = self._sql_cache.get(cache_key) if cache_key is not None else None
        if compiled is None:
            cond = self._condition(where, where_document)  # validates: only good filters are cached
            stmt = Repository.keys_matching_stmt(
                self.id,
                cond,
                driven_by_filter=has_positive_term(where),
                sqlite=self._store.engine.dialect.name == "sqlite",
            )
            compiled = state.compile_select(stmt)
            if compiled is None:
                return np.fromiter((r[0] for r in state.read_sql(stmt)), dtype=np.int64)
            if cache_key is not None:
                if len(self._sql_cache) >= 256:
                    self._sql_cache.pop(next(iter(self._sql_cache)))
                self._sql_cache[cache_key] = compiled
        return np.fromiter((r[0] for r in state.read_compiled(*compiled)), dtype=np.int64)

    def _query_vectors(self, query: Any, query_embeddings: Any) -> tuple[np.ndarray, bool]:
        if (query is None) == (query_embeddings is None):
            raise InvalidInputError("query needs exactly one of a query text (or list) and query_embeddings")
        if query is not None:
            single = isinstance(query, str)
            texts = [query] if single else list(query)
            bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
            if bad:
                raise InvalidInputError(f"queries must be strings; item {bad[0]} is {texts[bad[0]]!r:.60}")
            vecs = np.asarray(self.model.encode_query(texts), dtype=np.float32).reshape(len(texts), -1)
            return check_embeddings(vecs, len(texts), self.dim), single
        arr = (
            np.asarray(query_embeddings, dtype=np.float32)
            if not isinstance(query_embeddings, np.ndarray)
            else query_embeddings
        )
        single = arr.ndim == 1
        return check_embeddings(arr[None, :] if single else arr, None, self.dim), single

    # ------------------------------------------------------------------ duplicates
    def _join_keys(
        self, where: Mapping[str, Any] | None, where_document: Mapping[str, Any] | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The keys to join (all, or those matching a filter) and the ``allowed`` set for searches."""
        state = self._state
        state.catch_up()
        # Index what the background indexer has not reached yet: searching it exactly from every
        # record of the join would make the join quadratic in the pending count.
        state.drain()
        with state.lock:
            if where or where_document:
                keys = self._matching_keys(where, where_document)
                keys = np.sort(keys[state.vectors.contains_many(keys)])
                return keys, keys
            return np.sort(state.vectors._table.keys.copy()), None

    def _self_join(
        self,
        threshold: float,
        k: int,
        where: Mapping[str, Any] | None,
        where_document: Mapping[str, Any] | None,
        batch_size: int,
        show_progress_bar: bool | None,
    ) -> tuple[np.ndarray, Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """The keys taking part, and the join's ``(a, b, scores)`` batches over them."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise InvalidInputError(f"threshold must be a number, got {threshold!r}")
        for name, value in (("k", k), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidInputError(f"{name} must be a positive int, got {value!r}")
        keys, allowed = self._join_keys(where, where_document)
        state = self._state

        def vectors_for(ks: np.ndarray) -> np.ndarray:
            with state.lock:
                present = state.vectors.contains_many(ks)
                if present.all():
                    return state.vectors._vectors_for(ks)
                # deleted since the join started: NaN scores never pass a threshold
                out = np.full((len(ks), self.dim), np.nan, dtype=np.float32)
                out[present] = state.vectors._vectors_for(ks[present])
                return out

        def search(queries: np.ndarray, n: int) -> np.ndarray:
            with state.lock:
                return state.search(np.nan_to_num(queries), n, allowed)

        return keys, self_join(
            keys,
            vectors_for,
            search,
            self.metric,
            float(threshold),
            k=k,
            batch_size=batch_size,
            total=len(keys),
            show_progress_bar=show_progress_bar,
            desc=f"Finding duplicates in {self.name}",
        )

    def _ids_of(self, keys: np.ndarray) -> dict[int, str]:
        with self._state.lock:
            records = self._state.hydrate(np.unique(keys).tolist())
        return {key: rec.id for key, rec in records.items()}

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
        _, batches = self._self_join(threshold, k, where, where_document, batch_size, show_progress_bar)
        for a, b, s in batches:
            ids = self._ids_of(np.concatenate([a, b]))
            for x, y, score in zip(a.tolist(), b.tolist(), s.tolist()):
                if x in ids and y in ids:
                    yield DuplicatePair(ids[x], ids[y], float(score))

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
        missed (recall >= 0.99 on the STS sentences with the defaults, see the README); with
        ``index="exact"`` the result is exact.

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
        if not isinstance(min_size, int) or isinstance(min_size, bool) or min_size < 1:
            raise InvalidInputError(f"min_size must be a positive int, got {min_size!r}")
        neighbours: dict[int, list[tuple[float, int]]] = {}
        keys, batches = self._self_join(threshold, k, where, where_document, batch_size, show_progress_bar)
        for a, b, s in batches:
            for x, y, score in zip(a.tolist(), b.tolist(), s.tolist()):
                neighbours.setdefault(x, []).append((-score, y))
                neighbours.setdefault(y, []).append((-score, x))
        candidates = [
            (key, np.array([key] + [m for _, m in sorted(nbrs)], dtype=np.int64))
            for key, nbrs in sorted(neighbours.items())
            if len(nbrs) + 1 >= min_size
        ]
        if min_size == 1:  # every record is its own candidate group
            candidates += [(int(key), np.array([key])) for key in keys.tolist() if key not in neighbours]
            candidates.sort(key=lambda c: c[0])
        groups = claim_communities(candidates, min_size)
        ids = self._ids_of(np.array([m for g in groups for m in g], dtype=np.int64))
        return [[ids[m] for m in g if m in ids] for g in groups]

    # ------------------------------------------------------------------ maintenance
    def persist(self) -> None:
        """Save the derived index files now (they are also saved on close and every so many changes)."""
        self._state.catch_up()
        self._state.persist()

    def rebuild_index(self) -> None:
        """Rebuild the ANN index and vector cache from SQLite."""
        self._state.rebuild()
