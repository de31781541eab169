"""A collection's derived, in-process state: its ANN index and a float32 vector cache, kept in step
with SQLite through the change log.

Both are caches (DESIGN invariant 2): saved atomically with the change ``seq`` they reflect, loaded
on open only when their manifests check out, caught up by replaying the changes committed after that
``seq``, and rebuilt from SQLite when missing, corrupt, inconsistent with each other or newer than the
database — with a log line, never fatal.

Everything the rest of the store needs from this state goes through :class:`IndexState`'s public
methods (search, vectors, membership, hydration); its index objects are not reached into.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

import indexers
from indexers import BaseIndex, IndexSpec
from indexers.exact import ExactIndex
from indexers.scoring import exact_scores, top_k
from vectorstore.db.engine import read_tx
from vectorstore.db.reader import Reader
from vectorstore.db.repository import Repository, StoredRecord, hydrate_stmt
from vectorstore.derived_files import has_saved_files, load_pair, save_pair
from vectorstore.errors import DiskFullError, IncompatibleIndexError, IndexCorruptedError, IndexSaveError

__all__ = ["IndexState"]


logger = logging.getLogger(__name__)

# Save the caches once this many changes (or this fraction of the collection) are unsaved.
_PERSIST_MIN_CHANGES = 20_000
_PERSIST_FRACTION = 0.25
_SAVE_RETRY_S = 60.0
_VERIFY_DELAY_S = 0.5  # after opening, before the background checksum pass starts
CLOSE_TIMEOUT_S = 5.0  # how long close() keeps indexing pending vectors before it leaves them to the log
# New vectors up to this many are indexed inside the write; more go to a background indexer, and
# queries scan the not-yet-indexed ones exactly so no acknowledged record is ever missed.
SYNC_INDEX_MAX = 2_000
_INDEX_CHUNK = 1_000


class IndexState:
    """The ANN index and vector cache of one collection in this process."""

    def __init__(
        self,
        engine: Engine,
        collection_id: int,
        spec: IndexSpec,
        directory: Path | None,
        *,
        reader: Reader | None = None,
        identity: Mapping[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        self.engine = engine
        self.read_only = read_only  # never write derived files: what they lack is built in memory
        # where the derived files come from: they are refused when another database or an earlier
        # collection of the same name wrote them
        self.identity: dict[str, Any] = dict(identity or {})
        # the query path's reads (hydration, filters, the change probe)
        self.reader = reader if reader is not None else Reader(engine, read_only=read_only)
        self.collection_id = collection_id
        self.spec = spec
        self.directory = directory
        self.lock = threading.RLock()
        self.index: BaseIndex = indexers.make_index(spec)
        # Full-precision vectors (raw, as stored in SQLite) for exact rescoring and exact filtered search.
        self.vectors: ExactIndex = ExactIndex(spec.dim, "dot")
        self.applied_seq = 0
        self.saved_seq = 0
        self.pending: set[int] = set()  # keys in the vector cache, not yet in the ANN index
        self._indexer: threading.Thread | None = None
        self._seen_version: int | None = None
        self._retry_save_at = 0.0  # after a failed automatic save, when to try again (monotonic time)
        # Files trusted by their unchanged stat are checksummed in the background after a load; until
        # that is done the index's own scores are not trusted (results are rescored from the vector
        # cache, which verifies its blocks as they are read).
        self._verifier: threading.Thread | None = None
        self._unverified = False
        self._stop = threading.Event()  # set by close(): background threads finish their step and stop
        self._open()

    # ------------------------------------------------------------------ open / rebuild
    def _open(self) -> None:
        with read_tx(self.engine, "reading the change log") as conn:
            newest = Repository.max_seq(conn, self.collection_id)
        if self.directory is not None and has_saved_files(self.directory):
            t = time.perf_counter()
            try:
                saved = load_pair(self.directory, self.spec, self.identity, newest, verify="lazy")
                self.index, self.vectors = saved.index, saved.vectors
                self.applied_seq = self.saved_seq = saved.sequence
                self._start_verifier()
                logger.debug(
                    "loaded index of collection %d at seq %d in %.3fs",
                    self.collection_id,
                    saved.sequence,
                    time.perf_counter() - t,
                )
                self.catch_up()
                return
            except (IndexCorruptedError, IncompatibleIndexError) as exc:
                logger.warning(
                    "rebuilding the index of collection %d from SQLite: %s", self.collection_id, exc
                )
        elif self.directory is not None and newest:
            logger.warning("no index files for collection %d; rebuilding from SQLite", self.collection_id)
        self.rebuild()

    def rebuild(self) -> None:
        """Build index and vector cache from every stored vector, then save them (a failed save is
        logged and retried later: the state serves from memory meanwhile)."""
        with self.lock:
            index = indexers.make_index(self.spec)
            vectors = ExactIndex(self.spec.dim, "dot")
            with read_tx(self.engine, "reading stored vectors to rebuild the index") as conn:
                seq = Repository.max_seq(conn, self.collection_id)
                for part in Repository.iter_vectors(conn, self.collection_id, self.spec.dim):
                    self._report_damaged(part.bad_keys)
                    index.add(part.keys, part.vectors)
                    vectors.add(part.keys, part.vectors)
            self.index, self.vectors = index, vectors
            self._unverified = False  # built from SQLite just now
            self.pending.clear()
            self.applied_seq = seq
            self.saved_seq = -1
            if seq:
                self.persist(raise_errors=False)

    # ------------------------------------------------------------------ verification and recovery
    def _start_verifier(self) -> None:
        parts = [p for p in (self.index, self.vectors) if p.pending_verification]
        if not parts:
            return
        self._unverified = True
        self._verifier = threading.Thread(
            target=self._verify_in_background, args=(parts,), name="vectorstore-verifier", daemon=True
        )
        self._verifier.start()

    def _verify_in_background(self, parts: list[BaseIndex]) -> None:
        try:
            # Let the first queries after opening run alone; they are exact meanwhile (rescored from
            # the block-verified vector cache).
            if self._stop.wait(_VERIFY_DELAY_S):
                return
            for part in parts:
                if self._stop.is_set():
                    return  # stopped early: still unverified (close() saves nothing over them)
                part.verify_pending()
            with self.lock:
                if self.index is parts[0] or self.vectors in parts:  # not rebuilt meanwhile
                    self._unverified = False
        except IndexCorruptedError as exc:
            with self.lock:
                if self.index is parts[0] or self.vectors in parts:  # not rebuilt meanwhile
                    self.recover(exc)  # clears the flag: the rebuilt index is sound
        except Exception as exc:  # e.g. a file gone meanwhile: not verifiable, so not trusted
            with self.lock:
                if self.index is parts[0] or self.vectors in parts:
                    self.recover(exc)

    def wait_verified(self, timeout: float | None = None) -> None:
        """Wait for the background check of the loaded files (and any rebuild it caused)."""
        verifier = self._verifier
        if verifier is not None:
            verifier.join(timeout)

    @property
    def index_scores_exact(self) -> bool:
        """Whether the index's own scores can be used as exact scores right now."""
        return self.index.scores_are_exact and not self._unverified

    def recover(self, exc: BaseException) -> None:
        """A derived file turned out damaged after it was loaded: log it and rebuild from SQLite."""
        logger.error("collection %d: %s; rebuilding the index from SQLite", self.collection_id, exc)
        with self.lock:
            self._unverified = False
            self.rebuild()

    def _report_damaged(self, keys: np.ndarray) -> None:
        if len(keys):
            logger.error(
                "collection %d: %d stored vector(s) fail their checksum and are left out of the index "
                "(keys %s); `vectorstore verify STORE --repair` re-embeds them",
                self.collection_id,
                len(keys),
                keys[:10].tolist(),
            )

    # ------------------------------------------------------------------ keeping up
    def catch_up(self, known: tuple[np.ndarray, np.ndarray, int] | None = None) -> int:
        """Apply committed changes newer than what this process has applied; returns how many keys changed.

        ``known``: (keys, vectors, seq) this process just committed (its changes end at ``seq``), so those
        vectors need not be read back from SQLite — unless a later change to the same key came after.
        """
        with self.lock:
            try:
                return self._catch_up(known)
            except IndexCorruptedError as exc:  # a lazily verified block failed: the rebuild has it all
                self.recover(exc)
                return 0

    def _catch_up(self, known: tuple[np.ndarray, np.ndarray, int] | None) -> int:
        with self.lock:
            # SQLite bumps data_version when any other connection commits: an unchanged value means
            # there is nothing to read, which keeps this check off the query's critical path.
            version = self.reader.data_version()
            if version is not None and version == self._seen_version:
                return 0
            with read_tx(self.engine, "reading the change log") as conn:
                newest, last = Repository.changed_keys_since(conn, self.collection_id, self.applied_seq)
                self._seen_version = version
                if not last:
                    return 0
                upserts = np.fromiter((k for k, (op, _) in last.items() if op == "u"), dtype=np.int64)
                keys = np.empty(0, np.int64)
                vecs = np.empty((0, self.spec.dim), np.float32)
                if known is not None and len(known[0]) and len(upserts):
                    order = np.argsort(known[0])
                    sorted_known = known[0][order]
                    pos = np.minimum(np.searchsorted(sorted_known, upserts), len(sorted_known) - 1)
                    last_seq = np.fromiter(
                        (last[k][1] for k in upserts.tolist()), dtype=np.int64, count=len(upserts)
                    )
                    hit = (sorted_known[pos] == upserts) & (last_seq <= known[2])
                    keys, vecs = upserts[hit], known[1][order[pos[hit]]]
                    upserts = upserts[~hit]
                if len(upserts):
                    more = Repository.vectors_for(conn, upserts.tolist(), self.spec.dim)
                    self._report_damaged(more.bad_keys)
                    keys = np.concatenate([keys, more.keys])
                    vecs = np.concatenate([vecs, more.vectors])
            touched = np.fromiter(last.keys(), dtype=np.int64, count=len(last))
            self.index.remove(touched)
            self.vectors.remove(touched)
            self.pending.difference_update(last.keys())
            if len(keys):
                self.vectors.add(keys, vecs)
                self.pending.update(keys.tolist())
            self.applied_seq = newest
            if len(self.pending) <= SYNC_INDEX_MAX:
                self._index_some(len(self.pending))
            else:
                self._start_indexer()
            self._maybe_persist()
            return len(last)

    # ------------------------------------------------------------------ background indexing
    def _index_some(self, n: int) -> int:
        """Move up to ``n`` pending vectors into the ANN index (caller holds or takes the lock)."""
        with self.lock:
            if not self.pending or n <= 0:
                return 0
            keys = np.fromiter(itertools.islice(self.pending, n), dtype=np.int64)
            self.index.add(keys, self.vectors.get_vectors(keys))
            self.pending.difference_update(keys.tolist())
            return len(keys)

    def _start_indexer(self) -> None:
        if self._indexer is not None and self._indexer.is_alive():
            return
        self._indexer = threading.Thread(
            target=self._drain_in_background, name="vectorstore-indexer", daemon=True
        )
        self._indexer.start()

    def _drain_in_background(self) -> None:
        try:
            while not self._stop.is_set() and self._index_some(_INDEX_CHUNK):
                time.sleep(0.001)  # let waiting writers and queries take the lock between chunks
            if self._stop.is_set():
                return
            with self.lock:
                self._maybe_persist()
        except Exception:  # the index is a cache: log, leave the rest pending (queries scan it exactly)
            logger.exception("background indexing of collection %d failed", self.collection_id)

    def drain(self) -> None:
        """Index everything pending now (used before saving)."""
        while self._index_some(10 * _INDEX_CHUNK):
            pass

    def search(self, queries: np.ndarray, n: int, allowed: np.ndarray | None) -> np.ndarray:
        """Candidate keys ``[q, n or 2n]``: the ANN index's best ``n`` plus the best ``n`` not-yet-indexed ones."""
        return self.search_scored(queries, n, allowed)[0]

    def search_scored(
        self, queries: np.ndarray, n: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` with the scores: the index's own for its part, exact ones for pending keys.

        Each part is sorted best-first; the width is ``2n`` only when pending keys were scanned.
        """
        with self.lock:
            keys, scores = self.index.search(queries, n, allowed=allowed)
            if not self.pending:
                return keys, scores
            pend = np.fromiter(self.pending, dtype=np.int64, count=len(self.pending))
            if allowed is not None:
                pend = pend[np.isin(pend, allowed)]
            if len(pend) == 0:
                return keys, scores
            extra, extra_scores = top_k(
                exact_scores(self.spec.metric, queries, self.vectors.get_vectors(pend)), pend, n
            )
            return np.concatenate([keys, extra], axis=1), np.concatenate([scores, extra_scores], axis=1)

    def _maybe_persist(self) -> None:
        if self.pending or self._unverified:
            # the background indexer saves when it has caught up (saving now would block on it); files
            # still being verified are not saved over (a damaged index would be saved as if sound)
            return
        unsaved = self.applied_seq - max(self.saved_seq, 0)
        if (
            self.directory is not None
            and unsaved >= max(_PERSIST_MIN_CHANGES, _PERSIST_FRACTION * len(self.vectors))
            and time.monotonic() >= self._retry_save_at
        ):
            self.persist(raise_errors=False)

    def persist(self, *, raise_errors: bool = True) -> None:
        """Save index and vector cache as one generation, tagged with the applied seq and the identity.

        A failed save changes nothing on disk (the previous generation stays current) and nothing in
        memory. With ``raise_errors`` it raises :class:`~vectorstore.DiskFullError` or
        :class:`~vectorstore.IndexSaveError`; otherwise (automatic saves) it logs a warning and the
        next automatic save is tried a minute later.
        """
        if self.directory is None or self.read_only:
            return
        if self._unverified and self._verifier is not threading.current_thread():
            self.wait_verified()  # never save over files whose check is still running
        with self.lock:
            if self.saved_seq == self.applied_seq or self._unverified:
                return
            self.drain()
            try:
                save_pair(self.directory, self.index, self.vectors, self.applied_seq, self.identity)
            except IndexCorruptedError as exc:  # found while reading the cache to save it
                self.recover(exc)
                return
            except (DiskFullError, IndexSaveError) as exc:
                self._retry_save_at = time.monotonic() + _SAVE_RETRY_S
                if raise_errors:
                    raise
                logger.warning("collection %d: %s", self.collection_id, exc)
                return
            self.saved_seq = self.applied_seq

    # ------------------------------------------------------------------ what queries read
    def __len__(self) -> int:
        """Records applied to this state (in the vector cache, indexed or pending)."""
        return len(self.vectors)

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        """The stored float32 vectors of ``keys`` (all of them applied here), as in SQLite."""
        return self.vectors.get_vectors(keys)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` are applied here (a write committed after the last catch-up
        may name keys that are not yet)."""
        return self.vectors.contains_many(keys)

    def all_keys(self) -> np.ndarray:
        """Every applied key, sorted."""
        return np.sort(self.vectors.stored_keys())

    def hydrate(self, keys: list[int]) -> dict[int, StoredRecord]:
        """Ids, documents and metadata of ``keys``, in one statement per 5,000 keys."""
        out: dict[int, StoredRecord] = {}
        for start in range(0, len(keys), 5000):
            part = keys[start : start + 5000]
            n = len(part)
            params = {f"k{i}": key for i, key in enumerate(part)}
            rows = self.reader.rows(functools.partial(hydrate_stmt, n), params, key=("hydrate", n))
            out.update((int(row[0]), StoredRecord.from_row(row)) for row in rows)
        return out

    def close(self, timeout: float | None = CLOSE_TIMEOUT_S) -> None:
        """Stop the background threads, save what is ready, release the reader.

        Vectors not yet in the index are indexed for up to ``timeout`` seconds (``None``: until all
        are); if some remain, nothing is saved — the saved files stay consistent at their older
        sequence and the next open replays the rest from the change log.
        """
        self._stop.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._indexer, self._verifier):
            if thread is not None:
                # a thread stops at its next step (one chunk of inserts, one file's checksum)
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.5))
        with self.lock:
            while self.pending and (deadline is None or time.monotonic() < deadline):
                self._index_some(_INDEX_CHUNK)
            if self.pending:
                logger.info(
                    "collection %d: closing with %d vectors not yet indexed; they are replayed from the "
                    "change log on the next open",
                    self.collection_id,
                    len(self.pending),
                )
            elif not self._unverified:
                self.persist(raise_errors=False)
            self.reader.close()

    def discard(self) -> None:
        """The collection was deleted: stop indexing, never save again, release the reader."""
        self._stop.set()
        with self.lock:
            self.pending.clear()  # the background indexer finds nothing more to do
            self.directory = None
            self.reader.close()
