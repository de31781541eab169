"""``KeywordState``: a collection's BM25 index in this process, kept in step with the SQLite truth.

The documents in ``records`` are the truth; the BM25 index is derived from them, like the vector
index. It is built on the first keyword query (from one consistent snapshot: every stored document
and the change-log position they reflect), then each query first applies the change-log entries
committed since — by this process or any other — so a keyword query sees every acknowledged write,
and a crash can lose nothing: there is no keyword state on disk to tear.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine, select
from tqdm.auto import tqdm

from vectorstore.db.engine import read_tx
from vectorstore.db.reader import Reader
from vectorstore.db.repository import Repository
from vectorstore.db.schema import records
from vectorstore.errors import ChangeLogTrimmedError
from vectorstore.keyword.analyzer import Analyzer
from vectorstore.keyword.bm25 import BM25Index
from vectorstore.keyword.settings import KeywordSettings

__all__ = ["KeywordState"]

logger = logging.getLogger(__name__)

_BATCH = 10_000


class KeywordState:
    """The BM25 index of one collection.

    Args:
        engine: the store's engine.
        collection_id: the collection's row id.
        settings: analyzer and BM25 parameters.
        reader: the collection's reader (its ``data_version`` tells when another connection committed).
        name: the collection's name, for logs.
    """

    def __init__(
        self,
        engine: Engine,
        collection_id: int,
        settings: KeywordSettings,
        reader: Reader | None = None,
        name: str = "",
    ) -> None:
        self.engine = engine
        self.collection_id = collection_id
        self.settings = settings
        self._reader = reader
        self._name = name
        self._lock = threading.RLock()
        self._index: BM25Index | None = None
        self._applied_seq = 0
        self._seen_version: int | None = None

    @functools.cached_property
    def analyzer(self) -> Analyzer:
        """The collection's analyzer, made on first use (collections never searched by keyword do
        not load a stemmer)."""
        return self.settings.analyzer()

    @property
    def built(self) -> bool:
        """Whether the index has been built in this process."""
        return self._index is not None

    def index(self) -> BM25Index:
        """The index, brought up to date with every committed write."""
        with self._lock:
            if self._index is None:
                self._build()
            else:
                try:
                    self._catch_up()
                except ChangeLogTrimmedError as exc:  # compacted past our position: build afresh
                    logger.info("keyword index of collection %r: %s; rebuilding", self._name, exc)
                    self._build()
            assert self._index is not None
            return self._index

    def _build(self) -> None:
        started = time.perf_counter()
        index = BM25Index(k1=self.settings.k1, b=self.settings.b)
        version = self._reader.data_version() if self._reader is not None else None
        with read_tx(self.engine, "reading documents to build the keyword index") as conn:
            seq = Repository.max_seq(conn, self.collection_id)
            total = Repository.count(conn, self.collection_id)
            show = total >= 50_000 and sys.stderr.isatty()
            result = conn.execution_options(stream_results=True).execute(
                select(records.c.key, records.c.document)
                .where(records.c.collection_id == self.collection_id, records.c.document.is_not(None))
                .order_by(records.c.key)
            )
            keys: list[int] = []
            terms: list[list[str]] = []
            with tqdm(total=total, desc="Building the keyword index", unit="doc", disable=not show) as bar:
                while rows := result.fetchmany(_BATCH):
                    keys.extend(int(r[0]) for r in rows)
                    terms.extend(self.analyzer.many([r[1] for r in rows]))
                    bar.update(len(rows))
        index.add(keys, terms)  # one bulk build of the postings
        self._index, self._applied_seq, self._seen_version = index, seq, version
        logger.info(
            "keyword index of collection %r: %d documents in %.2f s",
            self._name,
            len(index),
            time.perf_counter() - started,
        )

    def _catch_up(self) -> None:
        assert self._index is not None
        version = self._reader.data_version() if self._reader is not None else None
        if version is not None and version == self._seen_version:
            return
        with read_tx(self.engine, "reading the change log for the keyword index") as conn:
            newest, last = Repository.changed_keys_since(conn, self.collection_id, self._applied_seq)
            upserts = [k for k, (op, _) in last.items() if op == "u"]
            stored = Repository.records_for_keys(conn, upserts) if upserts else []
        self._seen_version = version
        if not last:
            return
        self._index.remove(np.fromiter(last.keys(), dtype=np.int64, count=len(last)))
        docs = [r for r in stored if r.document is not None]
        if docs:
            self._index.add([r.key for r in docs], self.analyzer.many([r.document or "" for r in docs]))
        self._applied_seq = newest

    def search(
        self, texts: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """The best ``k`` (keys, BM25 scores) of each text, among ``allowed`` keys when given."""
        index = self.index()
        return [index.search(self.analyzer.terms(t), k, allowed) for t in texts]

    def search_scoring(
        self, texts: Sequence[str], k: int, allowed: np.ndarray | None, also: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`search`, plus each text's BM25 scores of the keys ``also[i]`` (NaN: no match)."""
        index = self.index()
        return [
            index.search_scoring(self.analyzer.terms(t), k, allowed, keys) for t, keys in zip(texts, also)
        ]

    def discard(self) -> None:
        """Drop the in-memory index (it is rebuilt on the next keyword query)."""
        with self._lock:
            self._index = None
