"""``Store``: a directory (SQLite inside, plus derived index files) or a SQLAlchemy URL, holding collections."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

import indexers
from indexers.scoring import check_metric
from vectorstore.collection import Collection
from vectorstore.config import CollectionConfig
from vectorstore.db.engine import make_engine, read_tx, write_tx
from vectorstore.db.migrations import init_schema, read_schema
from vectorstore.db.repository import Repository
from vectorstore.errors import (
    CollectionConfigError,
    CollectionExistsError,
    CollectionNotFoundError,
    DatabaseMissingError,
    InvalidInputError,
    StorageError,
    VectorStoreError,
)
from vectorstore.index_state import CLOSE_TIMEOUT_S, IndexState
from vectorstore.keyword.settings import KeywordSettings
from vectorstore.lifecycle import Lifecycle, close_at_exit
from vectorstore.model_cache import ModelCache
from vectorstore.validation import check_collection_name

if TYPE_CHECKING:
    from vectorstore.models.cross_encoder import CrossEncoder
    from vectorstore.verify import VerifyReport

__all__ = ["DEFAULT_INDEX", "DEFAULT_MODEL", "FALLBACK_INDEX", "Store", "default_index"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
#: the index of a new collection when none is named: 8-bit codes rescored from SQLite (the smallest
#: on disk and in RAM, see docs/indexes.md); for a metric it does not serve (manhattan),
#: :data:`FALLBACK_INDEX`. Existing collections keep the kind stored in their config.
DEFAULT_INDEX = "faiss-hnsw-sq"
FALLBACK_INDEX = "faiss-hnsw"
DB_FILE = "store.sqlite3"
_UNSET: Any = object()


class Store:
    """An embedded vector database.

    Args:
        path: a directory; created if missing. It holds ``store.sqlite3`` (the source of truth, WAL
            mode) and ``indexes/`` (derived files that are rebuilt when missing or damaged).
        url: instead of ``path``, any SQLAlchemy URL for the records (SQLite is the tested default).
        read_only: open the database read-only and never write index files (queries are served from
            the saved index files, and whatever they lack is built in memory); writes raise
            :class:`ReadOnlyStoreError`. ``None`` chooses it when the store's files are not writable.
        index_dir: where derived index files go with ``url`` (default: none saved, rebuilt on open).
        device: where models run (``None``: CUDA, then MPS, then CPU).

    Example:
        >>> with Store("./data") as store:
        ...     docs = store.get_or_create_collection("docs")
        ...     docs.add(ids=["a"], documents=["Berlin has 3.7 million inhabitants."])
        ...     docs.query("how many people live in Berlin?", k=1)
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        index_dir: str | os.PathLike[str] | None = None,
        device: str | None = None,
        read_only: bool | None = None,
    ) -> None:
        if (path is None) == (url is None):
            raise InvalidInputError("Store needs exactly one of a directory path or url=")
        if path is not None:
            if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
                raise InvalidInputError(f"store path must be a non-empty string or path, got {path!r}")
            root = Path(path).expanduser()
            if root.exists() and not root.is_dir():
                raise InvalidInputError(f"store path {str(root)!r} exists and is not a directory")
            db = root / DB_FILE
            if read_only is None:  # chosen for an existing store whose files this process cannot write
                read_only = db.is_file() and not (os.access(db, os.W_OK) and os.access(root, os.W_OK))
                if read_only:
                    logger.info("opening %s read-only: its files are not writable by this process", root)
            if read_only and not db.is_file():
                raise StorageError(f"no store to open read-only at {str(root)!r} (no {DB_FILE})")
            if not read_only:
                try:
                    root.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StorageError(f"cannot create the store directory {str(root)!r}: {exc}") from exc
                if not os.access(root, os.W_OK | os.X_OK):
                    raise StorageError(f"the store directory {str(root)!r} is not writable by this process")
            self.path: Path | None = root.resolve()
            self.url = f"sqlite:///{self.path / DB_FILE}"
            self.index_root: Path | None = self.path / "indexes"
        else:
            assert url is not None
            self.path = None
            self.url = url
            self.index_root = Path(index_dir).expanduser().resolve() if index_dir is not None else None
        self.device = device
        self.read_only = bool(read_only)
        if self.path is not None:
            _refuse_lost_database(self.path / DB_FILE, self.index_root)
        self.engine: Engine = make_engine(self.url, read_only=self.read_only)
        #: a random id made when the database was created; derived files carry it
        self.store_id = read_schema(self.engine) if self.read_only else init_schema(self.engine)
        self._life = Lifecycle(f"the store {self.path or self.url}", read_only=self.read_only)
        self._collections: dict[str, tuple[Collection, IndexState]] = {}
        #: the loaded models, shared by the store's collections
        self.models = ModelCache(device)
        self._lock = threading.RLock()
        close_at_exit(self)

    # ------------------------------------------------------------------ context
    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self, *, wait: bool = False) -> None:
        """Stop background work, save the derived index files that are ready, release the database.

        Closing is bounded: vectors the background indexer has not reached are indexed for a few
        seconds at most, and if some remain their collection's files are left at their last
        consistent save — the next open replays the rest from the change log (SQLite already holds
        every acknowledged record). ``wait=True`` indexes everything and saves it first. Afterwards
        every operation on the store and its collections raises :class:`StoreClosedError`.
        """
        if self._life.closed:
            return
        with self._lock:
            self._life.closed = True
            for col, state in self._collections.values():
                try:
                    state.close(timeout=None if wait else CLOSE_TIMEOUT_S)
                except (OSError, VectorStoreError) as exc:  # derived files only: SQLite holds everything
                    logger.warning("could not save the index of %r: %s", col.name, exc)
            self._collections.clear()
            self.engine.dispose()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._life.closed

    def _check_open(self) -> None:
        self._life.check()

    def __repr__(self) -> str:
        return f"Store({str(self.path) if self.path else self.url!r})"

    # ------------------------------------------------------------------ collections
    def _index_dir(self, collection_id: int, name: str) -> Path | None:
        return self.index_root / f"{collection_id}-{name}" if self.index_root is not None else None

    def _open(self, name: str, collection_id: int, config: CollectionConfig, created_at: float) -> Collection:
        identity = {"store": self.store_id, "collection": collection_id, "created_at": created_at}
        state = IndexState(
            self.engine,
            collection_id,
            config.index,
            self._index_dir(collection_id, name),
            identity=identity,
            read_only=self.read_only,
        )
        col = Collection(name, collection_id, config, state, self.engine, self.models, self._life)
        self._collections[name] = (col, state)
        return col

    def _build_config(
        self,
        *,
        model: str | None,
        index: str | None,
        metric: str | None,
        index_options: dict[str, Any] | None,
        embedding_dim: int | None,
        reranker: str | CrossEncoder | None = None,
        keyword_options: dict[str, Any] | None = None,
        model_backend: str = "torch",
        model_kwargs: dict[str, Any] | None = None,
    ) -> CollectionConfig:
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise InvalidInputError(f"model_kwargs must be a dict, got {type(model_kwargs).__name__}")
        _check_storable(model_kwargs)
        if model is None:
            if embedding_dim is None:
                raise InvalidInputError("a collection without a model needs embedding_dim")
            dim = embedding_dim
            model_metric = "cosine"
        else:
            m = self.models.encoder(model, model_backend, model_kwargs)
            dim = m.get_sentence_embedding_dimension()
            model_metric = m.similarity_fn_name
            if embedding_dim is not None and embedding_dim != dim:
                raise CollectionConfigError(
                    f"model {model!r} makes {dim}-d vectors, embedding_dim says {embedding_dim}"
                )
        if not isinstance(dim, int) or dim <= 0:
            raise InvalidInputError(f"embedding_dim must be a positive int, got {dim!r}")
        resolved_metric = check_metric(metric) if metric is not None else model_metric
        kind = index if index is not None else default_index(resolved_metric)
        spec = indexers.make_index(kind, dim, resolved_metric, **(index_options or {})).spec
        return CollectionConfig(
            model=model,
            dim=dim,
            metric=resolved_metric,
            index=spec,
            reranker=self.models.reranker_reference(reranker),
            keyword=KeywordSettings.from_dict(keyword_options),
            model_backend=model_backend if model is not None else "torch",
            model_kwargs=dict(model_kwargs) if model_kwargs and model is not None else None,
        )

    def create_collection(
        self,
        name: str,
        *,
        model: str | None = DEFAULT_MODEL,
        index: str | None = None,
        metric: str | None = None,
        index_options: dict[str, Any] | None = None,
        embedding_dim: int | None = None,
        reranker: str | CrossEncoder | None = None,
        keyword_options: dict[str, Any] | None = None,
        model_backend: str = "torch",
        model_kwargs: dict[str, Any] | None = None,
    ) -> Collection:
        """Create a collection.

        Args:
            name: letters, digits, ``._-``, at most 64 characters.
            model: embedding model name or folder; ``None`` for bring-your-own vectors.
            index: ``faiss-hnsw-sq`` (the default: an HNSW graph over 8-bit codes rescored from SQLite,
                the smallest on disk and in RAM; ``faiss-hnsw`` for ``manhattan``, which it does not
                serve), ``faiss-hnsw`` (float32 graph: the fastest single queries), ``exact``,
                ``faiss-flat``, ``faiss-ivf``, ``faiss-ivfpq``, ``usearch-hnsw``.
            metric: defaults to the model's ``similarity_fn_name`` (cosine without a model).
            index_options: backend options (``M``, ``efSearch``, ``nlist``, ``dtype``...).
            embedding_dim: required without a model; checked against the model otherwise.
            reranker: a cross-encoder (name, folder or :class:`~vectorstore.CrossEncoder`) that
                ``query`` reranks with; its name or folder is stored with the collection.
            keyword_options: how ``mode="keyword"`` / ``"hybrid"`` queries analyse and score documents:
                ``stemmer`` (``"porter"``), ``stopwords`` (``"lucene"``, ``"none"`` or a list),
                ``min_length`` (1), BM25 ``k1`` (1.2) and ``b`` (0.75); see ``docs/hybrid.md``.
            model_backend: ``"torch"`` (default) or ``"onnx"``: how the model runs; stored with the
                collection (see ``docs/onnx.md``).
            model_kwargs: backend options, stored too, e.g. ``{"file_name": "onnx/model_qint8_avx2.onnx"}``.

        Raises:
            CollectionExistsError: the name is taken.
            CollectionConfigError: the reranker has more than one output label.
        """
        self._check_open()
        self._life.check_writable()
        check_collection_name(name)
        config = self._build_config(
            model=model,
            index=index,
            metric=metric,
            index_options=index_options,
            embedding_dim=embedding_dim,
            reranker=reranker,
            keyword_options=keyword_options,
            model_backend=model_backend,
            model_kwargs=model_kwargs,
        )
        with self._lock:
            with write_tx(self.engine) as conn:
                if Repository.get_collection(conn, name) is not None:
                    raise CollectionExistsError(f"collection {name!r} already exists")
                cid = Repository.create_collection(conn, name, config.to_dict())
                created = Repository.get_collection(conn, name)
                assert created is not None
            return self._open(name, cid, config, created[2])

    def get_collection(
        self,
        name: str,
        *,
        model: str | None = _UNSET,
        index: str = _UNSET,
        metric: str | None = _UNSET,
        embedding_dim: int | None = _UNSET,
        model_backend: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> Collection:
        """Open an existing collection; any argument given must agree with its stored config.

        ``model_backend`` / ``model_kwargs`` run the collection's model another way in this process
        (the stored choice is unchanged): the same weights on ``"onnx"`` give the same vectors to
        1e-4, but a quantized variant (``model_qint8_*.onnx``) embeds new documents and queries
        slightly differently from the vectors already stored (cosine >= 0.98 to its fp32 vector on
        STS): choose it for a collection from the start, or re-embed.

        Raises:
            CollectionNotFoundError: no such collection.
            CollectionConfigError: a given model, index kind, metric or dimension contradicts the stored one.
        """
        self._check_open()
        check_collection_name(name)
        with self._lock:
            col = self._get_collection(name, model, index, metric, embedding_dim)
            if model_backend is not None or model_kwargs is not None:
                from vectorstore.models.onnx_files import check_backend

                col.config = dataclasses.replace(
                    col.config,
                    model_backend=check_backend(model_backend or col.config.model_backend),
                    model_kwargs=dict(model_kwargs) if model_kwargs else None,
                )
            return col

    def _get_collection(
        self, name: str, model: Any, index: Any, metric: Any, embedding_dim: Any
    ) -> Collection:
        """The open (or newly opened) collection, its config checked; the caller holds the lock."""
        if name in self._collections:
            col = self._collections[name][0]
            self._check_config(col.config, model, index, metric, embedding_dim, name)
            return col
        with read_tx(self.engine) as conn:
            found = Repository.get_collection(conn, name)
        if found is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        cid, stored, created_at = found
        config = CollectionConfig.from_dict(stored)
        self._check_config(config, model, index, metric, embedding_dim, name)
        return self._open(name, cid, config, created_at)

    @staticmethod
    def _check_config(
        config: CollectionConfig, model: Any, index: Any, metric: Any, dim: Any, name: str
    ) -> None:
        problems = []
        if model is not _UNSET and model != config.model:
            problems.append(f"model {model!r} (stored: {config.model!r})")
        if index is not _UNSET and index != config.index.kind:
            problems.append(f"index {index!r} (stored: {config.index.kind!r})")
        if metric is not _UNSET and metric is not None and check_metric(metric) != config.metric:
            problems.append(f"metric {metric!r} (stored: {config.metric!r})")
        if dim is not _UNSET and dim is not None and dim != config.dim:
            problems.append(f"embedding_dim {dim!r} (stored: {config.dim!r})")
        if problems:
            raise CollectionConfigError(
                f"collection {name!r} was created with other settings: " + "; ".join(problems)
            )

    def get_or_create_collection(
        self,
        name: str,
        *,
        model: str | None = DEFAULT_MODEL,
        index: str | None = None,
        metric: str | None = None,
        index_options: dict[str, Any] | None = None,
        embedding_dim: int | None = None,
        reranker: str | CrossEncoder | None = None,
        keyword_options: dict[str, Any] | None = None,
        model_backend: str = "torch",
        model_kwargs: dict[str, Any] | None = None,
    ) -> Collection:
        """Open ``name`` if it exists (checking that its config agrees), else create it."""
        stored_index = _UNSET if index is None else index  # no kind named: the stored one is kept
        try:
            return self.get_collection(
                name, model=model, index=stored_index, metric=metric, embedding_dim=embedding_dim
            )
        except CollectionNotFoundError:
            try:
                return self.create_collection(
                    name,
                    model=model,
                    index=index,
                    metric=metric,
                    index_options=index_options,
                    embedding_dim=embedding_dim,
                    reranker=reranker,
                    keyword_options=keyword_options,
                    model_backend=model_backend,
                    model_kwargs=model_kwargs,
                )
            except CollectionExistsError:  # another process created it in between
                return self.get_collection(
                    name, model=model, index=stored_index, metric=metric, embedding_dim=embedding_dim
                )

    def _state_of(self, name: str) -> IndexState:
        """The index state of an open collection (for :mod:`vectorstore.verify`)."""
        return self._collections[name][1]

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Check the database, every stored vector's checksum and every collection's saved index files
        against SQLite; with ``repair=True`` re-embed damaged vectors (where a model and a document
        allow it) and rebuild wrong index files.

        Returns:
            A :class:`~vectorstore.verify.VerifyReport`; ``report.ok`` is False while anything found
            is unrepaired.
        """
        self._check_open()
        if repair:
            self._life.check_writable()
        from vectorstore.verify import verify_store

        return verify_store(self, repair=repair)

    def vacuum(self) -> int:
        """Give the space of deleted and replaced rows back to the file system (:meth:`compact`, then
        SQLite ``VACUUM`` after a WAL checkpoint); returns the bytes the database files shrank by.

        Deletes and updates leave free pages inside the SQLite file, which later writes reuse but
        which the file never returns on its own. ``VACUUM`` rewrites the database compactly in one
        transaction: a crash midway leaves the old file whole. It needs free disk space about the
        size of the database and blocks writers (other processes' too) while it runs; queries of
        this process keep answering from the index state.

        Raises:
            ReadOnlyStoreError: the store is open read-only.
            StorageError: the database is not SQLite, or the vacuum failed (nothing is lost).
        """
        self._check_open()
        self._life.check_writable()
        if self.engine.dialect.name != "sqlite" or self.path is None:
            raise StorageError(
                f"vacuum is implemented for SQLite stores; this one is {self.engine.dialect.name}"
            )
        files = [self.path / name for name in (DB_FILE, DB_FILE + "-wal")]

        def size() -> int:
            return sum(f.stat().st_size for f in files if f.is_file())

        before = size()
        self.compact()  # the change log the index files already reflect goes first
        with self._lock:
            try:
                with self.engine.connect() as conn:
                    raw = conn.connection.dbapi_connection
                    assert raw is not None
                    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    raw.execute("VACUUM")
                    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except Exception as exc:
                from vectorstore.db.engine import database_error

                raise database_error(exc, "vacuuming the database", str(files[0])) from exc
        after = size()
        logger.info("vacuum of %s: %d -> %d bytes", files[0], before, after)
        return max(before - after, 0)

    def compact(self) -> dict[str, int]:
        """:meth:`Collection.compact` for every collection; returns name -> change-log rows removed.

        Raises:
            ReadOnlyStoreError: the store is open read-only.
        """
        self._check_open()
        self._life.check_writable()
        return {name: self.get_collection(name).compact() for name in self.list_collections()}

    def list_collections(self) -> list[str]:
        """Names of all collections, sorted."""
        self._check_open()
        with read_tx(self.engine) as conn:
            return [name for name, _ in Repository.list_collections(conn)]

    def delete_collection(self, name: str) -> None:
        """Delete a collection, its records and its index files."""
        self._check_open()
        self._life.check_writable()
        check_collection_name(name)
        with self._lock:
            with write_tx(self.engine) as conn:
                found = Repository.get_collection(conn, name)
                if found is None:
                    raise CollectionNotFoundError(f"no collection named {name!r}")
                Repository.delete_collection(conn, found[0])
            opened = self._collections.pop(name, None)
            if opened is not None:
                opened[1].discard()
            d = self._index_dir(found[0], name)
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)


def _refuse_lost_database(db_file: Path, index_root: Path | None) -> None:
    """A missing or empty database beside saved index files means the truth was lost (deleted or
    truncated): opening it as a new, empty store would hide that."""
    if db_file.exists() and db_file.stat().st_size > 0:
        return
    if index_root is not None and index_root.is_dir() and any(index_root.glob("*/CURRENT")):
        state = "empty" if db_file.exists() else "missing"
        raise DatabaseMissingError(
            f"the database {db_file} is {state}, but index files of collections exist in {index_root}: "
            "the database was deleted or truncated. Restore it from a backup, or delete "
            f"{index_root} to start an empty store there."
        )


def _check_storable(model_kwargs: dict[str, Any] | None) -> None:
    """A collection's ``model_kwargs`` are saved in its config (JSON): refuse what JSON cannot hold
    (e.g. an ``onnxruntime.SessionOptions``) before anything is written."""
    if not model_kwargs:
        return
    try:
        json.dumps(model_kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"model_kwargs are stored with the collection and must be JSON values ({exc}); pass "
            "runtime-only objects such as session_options to get_collection(..., model_kwargs=...) "
            "in each process instead"
        ) from exc


def default_index(metric: str) -> str:
    """The index kind a new collection with ``metric`` gets when none is named: :data:`DEFAULT_INDEX`
    where it serves the metric, else :data:`FALLBACK_INDEX`."""
    return DEFAULT_INDEX if metric in indexers.index_class(DEFAULT_INDEX).metrics else FALLBACK_INDEX
