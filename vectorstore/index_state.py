"""A collection's derived, in-process state: its ANN index and the float32 vectors queries read (the
index's own storage where it keeps full vectors, else a cache of their own; :mod:`vectorstore.vector_cache`),
kept in step with SQLite through the change log.

Both are caches (DESIGN invariant 2): saved atomically with the change ``seq`` they reflect, loaded
on open only when their manifests check out, caught up by replaying the changes committed after that
``seq``, and rebuilt from SQLite when missing, corrupt, inconsistent with each other or newer than the
database — with a log line, never fatal.

Everything the rest of the store needs from this state goes through :class:`IndexState`'s public
methods (search, vectors, membership, hydration); its index objects are not reached into.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

import indexers
from indexers import BaseIndex, IndexSpec
from indexers.products import inner_products
from indexers.scoring import exact_scores, normalize_rows, top_k
from indexers.threads import use_threads
from vectorstore.db.engine import give_back_free_pages, read_tx, write_tx
from vectorstore.db.reader import Reader
from vectorstore.db.repository import Repository, StoredRecord, VectorRows, hydrate_stmt
from vectorstore.derived_files import has_saved_files, load_pair, save_pair
from vectorstore.errors import (
    ChangeLogTrimmedError,
    DiskFullError,
    IncompatibleIndexError,
    IndexCorruptedError,
    IndexSaveError,
    VectorStoreError,
)
from vectorstore.handoff import Handoff
from vectorstore.pending import PendingVectors
from vectorstore.rwlock import RWLock
from vectorstore.serving_lag import ServingLag
from vectorstore.vector_cache import VectorCache, vector_cache_for

__all__ = ["IndexState", "Known"]

#: What a write of this process committed: (keys, their vectors, the seq of its last change, the
#: collection's newest seq before it; -1 where not known).
Known = tuple[np.ndarray, np.ndarray, int, int]


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
_INDEX_CHUNK = 1_000  # vectors per insert when nothing waits (drain, close)
# The background indexer holds the lock for about this long per insert while queries are being
# served, so a query waits at most about this long behind it; the chunk size follows the measured
# insert rate. Between slices it sleeps _YIELD_S, so it indexes ~27 % of the time. Measured at 200k
# with a writer thread beside queries on a 5 ms schedule (benchmarks/latency.py, 2 cores): 4 ms
# slices gave p99 33-55 ms at ~1,560 writes/s, 1.5 ms ones 6.9-10.5 ms at 620-935 writes/s (writes
# wait for the indexer while serving): queries first, at the cost of ingest beside them.
_INDEX_SLICE_S = 0.0015
_INDEX_SLICE_IDLE_S = 1.0
_MIN_CHUNK, _MAX_CHUNK = 1, 1_000
# A write waits (after its commit) while more than this many vectors wait for the background
# indexer: the exact scan of pending vectors, which every query pays, stays bounded. While queries
# are being served the bound is the smaller one: a 20,000-row scan costs a query ~4 ms on 2 cores
# (384-d), which alone breaks a 5 ms schedule; a bulk load nobody queries keeps the larger backlog.
BACKLOG_MAX = 20_000
BACKLOG_SERVING = 2_000
_BUSY_WAIT_S = 0.02  # how long a query's catch-up waits for the write lock before serving as is
_SAVE_ATTEMPTS = 20  # drain-then-save rounds while changes keep arriving
_YIELD_S = 0.004  # the indexer's pause between slices while queries are served (see _INDEX_SLICE_S)
_QUERY_ACTIVE_S = 1.0
_COMPACT_MIN_CHANGES = 10_000
# close() trims the log once it holds changes for at least this share of the collection's records
_CLOSE_TRIM_SHARE = 0.5
# compact() rebuilds the ANN index from its live vectors once the entries it still holds for removed
# keys (dead HNSW nodes) are this share of it and at least this many
_REBUILD_REMOVED_SHARE = 0.1
_REBUILD_MIN_REMOVED = 1_000
_REBUILD_CHUNK = 2_000  # vectors read (under a short read lock) and inserted per step of that rebuild
# The first step of that rebuild inserts this many keys spread evenly over all of them, so that an index
# that trains on its first add (a quantizer's range, IVF centroids) learns from the whole collection
# rather than from its oldest records.
_TRAIN_SAMPLE = 10_000
_REBUILD_FINAL = 2_000  # at most about this many changes are replayed into it under the write lock


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
        self.lock = RWLock()
        # this process's indexing backlog while it serves, read by writers in other processes
        self.serving = ServingLag(directory, read_only=read_only)
        # batches a write-only process leaves for the serving one (and this one's, when it only writes)
        self.handoff = Handoff(directory, self.identity, read_only=read_only)
        self.index: BaseIndex = indexers.make_index(spec)
        # Full-precision vectors for exact rescoring, exact filtered search and the pending scan.
        self.vectors: VectorCache = vector_cache_for(self.index, read=self._read_truth)
        self.applied_seq = 0
        self.saved_seq = 0
        # keys in the vector cache, not yet in the ANN index (scanned as unit rows for cosine)
        self.pending = PendingVectors(spec.dim, normalize_rows if spec.metric == "cosine" else None)
        self._indexer: threading.Thread | None = None
        self._indexer_guard = threading.Lock()
        self._rate = 1_000.0  # measured inserts per second (smoothed), sizes the next slice
        self._last_chunk = _MIN_CHUNK
        self._last_change = 0.0
        self._trimmed_below = 0  # the change-log floor (read on open, then as this process sets it)
        self._last_query = 0.0  # monotonic time of the last search
        self._own = threading.Lock()
        # the change-log ranges (after, last] of this process's add/upsert commits that are landing or
        # have landed but are not applied yet (own_commit)
        self._own_landed: list[tuple[int, int]] = []
        # while the index is rebuilt beside the live one (compact_index): the keys removed from or
        # added to the live index since, replayed into the new one before it is swapped in
        self._journal: list[np.ndarray] | None = None
        self._compacting = threading.Lock()
        self._compactor: threading.Thread | None = None
        self._rebuilt_at = 0  # the index's size when compact_index last rebuilt it (0: never)
        self._seen_version: int | None = None
        self._retry_save_at = 0.0  # after a failed automatic save, when to try again (monotonic time)
        self._saving = False  # a save is writing files (under the read lock): no change applies meanwhile
        # Files trusted by their unchanged stat are checksummed in the background after a load; until
        # that is done the index's own scores are not trusted (results are rescored from the vector
        # cache, which verifies its blocks as they are read).
        self._verifier: threading.Thread | None = None
        self._unverified = False
        self._stop = threading.Event()  # set by close(): background threads finish their step and stop
        self._open()

    # ------------------------------------------------------------------ open / rebuild
    def _open(self) -> None:
        # read before the newest seq: a commit after this changes it, so skipping the catch-up below
        # for files at the newest seq can miss nothing (the next query's probe sees the new version)
        version = self.reader.data_version()
        with read_tx(self.engine, "reading the change log") as conn:
            newest = Repository.max_seq(conn, self.collection_id)
            # what an earlier trim left: only the changes above it count towards the next one
            self._trimmed_below = Repository.log_floor(conn, self.collection_id)
        if self.directory is not None and has_saved_files(self.directory):
            t = time.perf_counter()
            try:
                saved = load_pair(self.directory, self.spec, self.identity, newest, verify="lazy")
                self.index, self.vectors = (
                    saved.index,
                    vector_cache_for(saved.index, saved.vectors, self._read_truth),
                )
                self.applied_seq = self.saved_seq = saved.sequence
                self._start_verifier()
                logger.debug(
                    "loaded index of collection %d at seq %d in %.3fs",
                    self.collection_id,
                    saved.sequence,
                    time.perf_counter() - t,
                )
                if saved.sequence == newest and version is not None:
                    self._seen_version = version  # nothing to replay
                else:
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
        with self.lock.write():
            index = indexers.make_index(self.spec)
            vectors = vector_cache_for(index, read=self._read_truth)
            with read_tx(self.engine, "reading stored vectors to rebuild the index") as conn:
                seq = Repository.max_seq(conn, self.collection_id)
                for part in Repository.iter_vectors(conn, self.collection_id, self.spec.dim):
                    self._report_damaged(part.bad_keys)
                    index.add(part.keys, part.vectors)
                    vectors.add_indexed(part.keys, part.vectors)
            self.index, self.vectors = index, vectors
            self._unverified = False  # built from SQLite just now
            self.pending.clear()
            self.applied_seq = seq
            self.saved_seq = -1
            if seq:
                self.persist(raise_errors=False)

    # ------------------------------------------------------------------ verification and recovery
    def _saved_parts(self) -> list[BaseIndex]:
        """The index and, where it has one, the vector cache's own table: what is saved and verified."""
        own = self.vectors.saved_part
        return [self.index] if own is None else [self.index, own]

    def _start_verifier(self) -> None:
        parts = [p for p in self._saved_parts() if p.pending_verification]
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
            with self.lock.write():
                if any(p is q for p in parts for q in self._saved_parts()):  # not rebuilt meanwhile
                    self._unverified = False
        except IndexCorruptedError as exc:
            with self.lock.write():
                if any(p is q for p in parts for q in self._saved_parts()):  # not rebuilt meanwhile
                    self.recover(exc)  # clears the flag: the rebuilt index is sound
        except Exception as exc:  # e.g. a file gone meanwhile: not verifiable, so not trusted
            with self.lock.write():
                if any(p is q for p in parts for q in self._saved_parts()):
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
        with self.lock.write():
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
    def catch_up(
        self,
        known: Known | None = None,
        *,
        index_now: bool = False,
        wait: bool = True,
    ) -> int:
        """Apply committed changes newer than what this process has applied; returns how many keys changed.

        ``known``: (keys, vectors, seq) this process just committed (its changes end at ``seq``), so those
        vectors need not be read back from SQLite — unless a later change to the same key came after.
        The writer calls this inside :meth:`own_commit` (after calling what it yields), so queries
        leave the batch to it rather than read it back themselves.
        ``index_now``: insert up to :data:`SYNC_INDEX_MAX` new vectors into the ANN index before
        returning (a write pays for its own small batches, in slices that let queries in); otherwise,
        as on the query path, they are left to the background indexer and scanned exactly until it
        has them — a query never inserts into the graph.
        ``wait=False`` (the query path): when the state is busy for longer than a slice (a save in
        progress), return without applying; the query then answers from the state as it was, which
        already holds every write this process acknowledged.

        The changed rows are read from SQLite before the lock is taken, so queries keep running
        while a large batch written by another process is read.

        With ``known`` (this process's own write), nothing is applied while this process serves no
        queries and another one on this machine serves the collection (:meth:`_left_to_others`).
        """
        if known is not None and self._left_to_others():
            self._hand_over(known)
            return 0
        try:
            return self._catch_up(known, index_now, wait)
        except IndexCorruptedError as exc:  # a lazily verified block failed: the rebuild has it all
            self.recover(exc)
            return 0
        except ChangeLogTrimmedError as exc:  # compacted past what this state reflects
            logger.warning("collection %d: %s; rebuilding the index from SQLite", self.collection_id, exc)
            self.rebuild()
            return 0

    def _hand_over(self, known: Known) -> None:
        """Leave this write's vectors for the process that serves the collection
        (:mod:`vectorstore.handoff`), where its change-log range holds nothing else."""
        if _only_its_own(known):
            keys, vecs, seq, after = known
            self.handoff.publish(after, seq, keys, vecs)

    def _left_to_others(self) -> bool:
        """Whether this process's own commit can be left unapplied: it serves no queries itself, and
        another process serving this collection on this machine applies and indexes every commit. A
        write-only process then builds no index of its own (on two cores it would take the core the
        serving process indexes and answers on); its first query, or a write once nobody serves,
        catches up from the change log like any reader."""
        return not self._queries_active() and self.serving.others_serving()

    @contextlib.contextmanager
    def own_commit(self) -> Iterator[Callable[[int, int], None]]:
        """Around a write of this process: its commit and the ``catch_up(known=...)`` applying it.

        The writer hands what this yields to its commit, which calls it with the commit's change-log
        range ``(after, last]`` just before committing (see :meth:`RecordWriter.commit`). A query that
        sees only such commits meanwhile answers from the state before them — they are not
        acknowledged yet, and their writer is applying them from the vectors in hand — instead of
        waiting for that apply or reading the batch back from SQLite (and competing with the writer for
        the two cores). Changes it cannot account for so (another
        process's) it applies as usual. A range whose commit fails is forgotten when the write leaves.
        """
        landed: tuple[int, int] | None = None

        def landing(after: int, last: int) -> None:
            nonlocal landed
            with self._own:
                if landed is None:
                    landed = (after, last)
                    self._own_landed.append(landed)
            if self._left_to_others():  # a serving process will see the commit: say its vectors come
                self.handoff.announce(after, last)

        try:
            yield landing
        finally:
            with self._own:
                if landed is not None:
                    self._own_landed.remove(landed)
            if landed is not None:
                self.handoff.withdraw(*landed)  # published (or not coming: the commit failed)

    def _only_own_unapplied(self) -> bool:
        """Whether every change after :attr:`applied_seq` belongs to a landed, not yet applied commit
        of this process (one indexed lookup of the newest seq, only while such a commit exists)."""
        with self._own:
            if not self._own_landed:
                return False
            ranges = sorted(self._own_landed)
        covered = self.applied_seq
        for after, last in ranges:
            if after > covered:
                return False  # a gap: another process's change, which this query applies as usual
            covered = max(covered, last)
        return covered >= self._newest_seq()

    def _newest_seq(self) -> int:
        """The newest change-log seq of this collection."""
        with read_tx(self.engine, "reading the change log") as conn:
            return Repository.max_seq(conn, self.collection_id)

    def _catch_up(self, known: Known | None, index_now: bool, wait: bool) -> int:
        if not wait and self._saving:
            return 0  # no change can be applied before the save ends: serve the state as it is
        while True:
            # SQLite bumps data_version when any other connection commits: an unchanged value means
            # there is nothing to read, which keeps this check off the query's critical path.
            version = self.reader.data_version()
            if version is not None and version == self._seen_version:
                return 0
            if not wait and self._only_own_unapplied():
                # only commits of this process, not acknowledged yet, which their writers are applying
                # from the vectors in hand: serve the state as it is (the version is not marked seen)
                return 0
            start = self.applied_seq
            own = self._own_changes(known) if known is not None and known[3] == start else None
            # (the version is marked seen only after reading the log: other connections' commits, this
            # process's other writers' included, may have bumped it besides this write)
            changes = own if own is not None else self._read_changes(start, known)
            if changes is None:
                self._seen_version = version  # a hint only: a later commit changes the version again
                return 0
            rows = self.pending.prepare(changes[3])  # the pending scan's copy, made outside the lock
            if not self.lock.acquire_write(None if wait else _BUSY_WAIT_S):
                return 0  # busy saving: serve the state as it is; the next query applies these
            try:
                if self.applied_seq != start:
                    continue  # another thread applied changes meanwhile: read again from the new seq
                if own is None:
                    self._seen_version = version
                changed = self._apply_changes(*changes, rows)
            finally:
                self.lock.release_write()
            if index_now:
                self.index_if_few()
            if self.pending:
                self._start_indexer()
            elif self._save_due():
                self._start_indexer()  # the background thread saves
            return changed

    @staticmethod
    def _own_changes(known: Known) -> tuple[int, dict[int, tuple[str, int]], np.ndarray, np.ndarray] | None:
        """The changes of this process's write, as :meth:`_read_changes` would read them, without reading
        its 5,000 log rows back (tens of ms of a writer's CPU per batch), or None to read them.

        The caller checked that the state had applied everything up to the write's ``after``. The
        write held the database's write lock from reading ``after`` to its commit, so its range
        ``(after, seq]`` holds its own changes only, one per key it changed; a range exactly as long
        as its key list means every key changed. (Sequences are shared by the store's collections, so
        another collection's rows may lie in the range too: then it is longer than the key list,
        unless records the write left unchanged make up for them exactly — and applying an unchanged
        record's same vector again changes nothing.) Anything else reads the log.
        """
        keys, vecs, seq, _ = known
        return _upserts(seq, keys, vecs) if _only_its_own(known) else None

    def _read_changes(
        self, since: int, known: Known | None
    ) -> tuple[int, dict[int, tuple[str, int]], np.ndarray, np.ndarray] | None:
        """(newest seq, key -> (op, seq), upserted keys, their vectors) committed after ``since``: from
        the batches another process handed over where they cover all of it, else from SQLite."""
        if known is None and self.handoff.offered_from(since):
            newest = self._newest_seq()
            handed = self.handoff.take(since, newest, self.spec.dim)
            if handed is not None:
                return _upserts(newest, *handed)
        with read_tx(self.engine, "reading the change log") as conn:
            newest, last = Repository.changed_keys_since(conn, self.collection_id, since)
            if not last:
                return None
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
        return newest, last, keys, vecs

    def _apply_changes(
        self,
        newest: int,
        last: dict[int, tuple[str, int]],
        keys: np.ndarray,
        vecs: np.ndarray,
        rows: np.ndarray | None = None,
    ) -> int:
        """Apply read changes (caller holds the write lock); ``rows``: ``vecs`` prepared for the pending
        scan (:meth:`PendingVectors.prepare`, done before the lock was taken)."""
        touched = np.fromiter(last.keys(), dtype=np.int64, count=len(last))
        touched = touched[self.vectors.contains_many(touched)]  # new keys are in neither
        self.index.remove(touched)
        self.vectors.remove(touched)
        journal = self._journal  # read once: a finishing rebuild may drop it without the lock
        if journal is not None:
            journal.append(touched)
        self.pending.discard(last.keys())
        if len(keys):
            self.vectors.add(keys, vecs)
            self.pending.add(keys.tolist(), rows)
        self.applied_seq = newest
        self._last_change = time.monotonic()
        return len(last)

    # ------------------------------------------------------------------ background indexing
    def _index_some(self, n: int) -> int:
        """Move up to ``n`` pending vectors into the ANN index, under the write lock."""
        with self.lock.write():
            if not self.pending or n <= 0:
                return 0
            # the pending scan's rows where it holds them (unit length for cosine, which the index
            # normalises to anyway): nothing is read back from SQLite while the lock is held
            keys, rows = self.pending.oldest_rows(n)
            self.index.add(keys, self.vectors.get_vectors(keys) if rows is None else rows)
            self.vectors.indexed(keys)
            journal = self._journal  # read once (see _apply_changes)
            if journal is not None:
                journal.append(np.asarray(keys, dtype=np.int64))
            self.pending.mark_indexed(keys)
            return len(keys)

    def _start_indexer(self) -> None:
        """Start the background thread (indexes what is pending, then saves when a save is due)."""
        self._start_unless_running("_indexer", self._drain_in_background)

    def _start_unless_running(self, attr: str, target: Callable[[], None]) -> None:
        """Unless the thread held in ``attr`` (``_indexer`` / ``_compactor``) is alive or the state is
        closing, start a daemon thread doing ``target`` and keep it there (checked and set under one
        lock: two callers never start two)."""
        with self._indexer_guard:
            running: threading.Thread | None = getattr(self, attr)
            if self._stop.is_set() or (running is not None and running.is_alive()):
                return
            thread = threading.Thread(target=target, name=f"vectorstore{attr.replace('_', '-')}", daemon=True)
            setattr(self, attr, thread)
            thread.start()

    def _index_slice(self) -> int:
        """Index one slice of pending vectors, sized from the measured insert rate so the write lock is
        held about :data:`_INDEX_SLICE_S` while queries are being served (about
        :data:`_INDEX_SLICE_IDLE_S` otherwise: larger inserts are cheaper per vector); returns how many
        were indexed."""
        target = _INDEX_SLICE_S if self._queries_active() else _INDEX_SLICE_IDLE_S
        # at most twice the last slice: one fast measurement (a slice that ran alone on a core) never
        # turns into one long hold of the lock
        chunk = int(min(max(self._rate * target, _MIN_CHUNK), _MAX_CHUNK, 2 * self._last_chunk))
        t = time.perf_counter()
        done = self._index_some(chunk)
        if done:
            rate = done / max(time.perf_counter() - t, 1e-6)
            self._rate = rate if self._last_chunk <= _MIN_CHUNK else 0.5 * (self._rate + rate)
            self._last_chunk = max(done, _MIN_CHUNK)
            if self._wants_retraining(self.index):
                self._start_unless_running("_compactor", self._retrain_in_background)
        return done

    def _queries_active(self) -> bool:
        return time.monotonic() - self._last_query < _QUERY_ACTIVE_S

    def _drain_in_background(self) -> None:
        try:
            while not self._stop.is_set():
                serving = self._queries_active()
                # while queries are being served here or in another process, this thread's inserts use
                # one core (FAISS would otherwise spread each over both, leaving a query that wakes
                # none); else all of them
                use_threads(1 if serving or self.serving.others_serving() else None)
                if serving:
                    self.serving.report(len(self.pending))
                if not self._index_slice():
                    if serving:
                        self.serving.report(len(self.pending))
                    if self._save_due():
                        self.persist(raise_errors=False)
                        self._maybe_compact()
                    if not self.pending:
                        return
                    continue
                # between slices: while queries are being served, give them the CPU half the time
                # (2 cores are shared by the writer, this indexer and the queries); else just yield
                time.sleep(_YIELD_S if self._queries_active() else 0)
        except Exception:  # the index is a cache: log, leave the rest pending (queries scan it exactly)
            logger.exception("background indexing of collection %d failed", self.collection_id)

    def wait_for_backlog(self, limit: int | None = None) -> None:
        """Block while more than ``limit`` vectors wait for the background indexer: writes slow down
        to the indexing rate instead of growing the exact scan every query pays. The default is
        :data:`BACKLOG_SERVING` while queries are being served (one in the last second), else
        :data:`BACKLOG_MAX`; it is re-read while waiting. Then, while another process serving this
        collection reports more than :data:`BACKLOG_SERVING` vectors it has not indexed, wait for it
        too (bounded; :mod:`vectorstore.serving_lag`)."""
        self._wait_for_own_backlog(limit)
        self.serving.wait_for_others(BACKLOG_SERVING, self._stop.is_set)

    def _wait_for_own_backlog(self, limit: int | None) -> None:
        while len(self.pending) > self._backlog_limit(limit) and not self._stop.is_set():
            before = len(self.pending)
            self._start_indexer()  # no-op while it runs
            indexer = self._indexer
            if indexer is None:
                return
            indexer.join(0.05)
            if not indexer.is_alive() and len(self.pending) >= before:
                return  # indexing failed (logged); the pending vectors are still scanned exactly

    def _backlog_limit(self, limit: int | None) -> int:
        if limit is not None:
            return limit
        return BACKLOG_SERVING if self._queries_active() else BACKLOG_MAX

    def index_if_few(self) -> None:
        """Index what is pending now when it is at most :data:`SYNC_INDEX_MAX` vectors (a write pays
        for its own small batches, in slices that let queries in)."""
        if self.pending and len(self.pending) <= SYNC_INDEX_MAX:
            self.drain()

    def drain(self) -> None:
        """Index everything pending now, in slices that let queries in between."""
        while self._index_slice():
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
        self._last_query = time.monotonic()
        # this process serves (and so applies and indexes every commit): writers elsewhere read this
        self.serving.report(len(self.pending))
        with self.lock.read():
            keys, scores = self.index.search(queries, n, allowed=allowed)
            if not self.pending:
                return keys, scores
            blocks = self.pending.blocks(self._scan_rows)
            query_rows = np.asarray(queries, dtype=np.float32)
            if self.spec.metric == "cosine":  # the pending rows are unit length already
                query_rows = normalize_rows(query_rows)
            part_keys, part_scores = [], []
            for pend, pend_rows in blocks:
                if allowed is not None:
                    inside = np.isin(pend, allowed)
                    if not inside.all():
                        pend, pend_rows = pend[inside], pend_rows[inside]
                if len(pend) == 0:
                    continue
                if self.spec.metric == "cosine":
                    part_scores.append(inner_products(query_rows, pend_rows))
                else:
                    part_scores.append(exact_scores(self.spec.metric, queries, pend_rows))
                part_keys.append(pend)
            if not part_keys:
                return keys, scores
            raw = part_scores[0] if len(part_scores) == 1 else np.concatenate(part_scores, axis=1)
            pend = part_keys[0] if len(part_keys) == 1 else np.concatenate(part_keys)
            extra, extra_scores = top_k(raw, pend, n)
            return np.concatenate([keys, extra], axis=1), np.concatenate([scores, extra_scores], axis=1)

    def compact(self) -> int:
        """Save the derived files, then trim the change log below the sequence they reflect and hand
        freed database pages back (SQLite stores created with incremental auto-vacuum); returns the
        change rows removed.

        Another process (or node) whose saved files are older than the trimmed log rebuilds from the
        stored records when it next opens or catches up, with a log line — never a wrong answer.

        Raises:
            DiskFullError, IndexSaveError: the save failed (nothing is trimmed then).
        """
        if self.directory is None or self.read_only:
            return 0
        self.compact_index()
        self.persist()
        return self._trim_log()

    def _trim_log(self) -> int:
        """Trim the change log below the seq the saved files reflect and give freed pages back."""
        below = self.saved_seq
        if below <= 0:
            return 0
        with write_tx(self.engine, "compacting the change log") as conn:
            removed = Repository.trim_log(conn, self.collection_id, below)
        if self.engine.dialect.name == "sqlite":
            give_back_free_pages(self.engine)
        self._trimmed_below = below
        if removed:
            logger.info(
                "collection %d: trimmed %d change-log rows below seq %d", self.collection_id, removed, below
            )
        return removed

    def compact_index(self) -> bool:
        """Rebuild the ANN index from its live vectors when the entries it still holds for removed keys
        are at least a tenth of it (:data:`_REBUILD_REMOVED_SHARE`); returns whether it was rebuilt.

        The new index is built beside the live one without holding the lock: queries and writes go on
        against the live index meanwhile, at the cost of a second index in memory for the duration.
        Changes made meanwhile are replayed into the new one, the last few (with the swap) under the
        write lock, so a query never waits for more than that. Nothing is saved here (the next save
        writes the new index; the files on disk stay consistent until then).
        """
        with self._compacting:  # one rebuild at a time
            with self.lock.read():
                old = self.index
                removed = old.removed_entries
                limit = max(_REBUILD_MIN_REMOVED, _REBUILD_REMOVED_SHARE * (len(old) + removed))
                retrain = self._wants_retraining(old)
                if self._unverified or self._stop.is_set() or (removed < limit and not retrain):
                    return False
                keys = old.keys()
                self._journal = []
            try:
                return self._rebuild_beside(old, keys, removed, retrain)
            finally:
                self._journal = None

    def _rebuild_beside(self, old: BaseIndex, keys: np.ndarray, removed: int, retrain: bool) -> bool:
        t = time.perf_counter()
        fresh = indexers.make_index(self.spec)
        carry = np.empty(0, dtype=np.int64)  # changes taken from the journal, not yet replayed
        for part in _training_order(keys):
            with self.lock.read():
                if self.index is not old or self._stop.is_set():
                    return False  # rebuilt from SQLite, or closing, meanwhile
                part = part[old.contains_many(part)]  # removed since: in the journal
                vectors = self.vectors.get_vectors(part)
            fresh.add(part, vectors)
        while True:
            with self.lock.read():
                if self.index is not old or self._stop.is_set():
                    return False
                carry = self._take_journal(carry)
                if len(carry) <= _REBUILD_FINAL:
                    break
                live = carry[old.contains_many(carry)]
                vectors = self.vectors.get_vectors(live)
            fresh.remove(carry)
            fresh.add(live, vectors)
            carry = np.empty(0, dtype=np.int64)
        with self.lock.write():
            if self.index is not old or self._stop.is_set():
                return False
            carry = self._take_journal(carry)
            fresh.remove(carry)
            live = carry[old.contains_many(carry)]
            fresh.add(live, self.vectors.get_vectors(live))
            self.index = fresh
            self.vectors.use_index(fresh)
            self._rebuilt_at = len(fresh)
            self.saved_seq = -1  # the saved files hold the old graph: the next save writes this one
        logger.info(
            "collection %d: rebuilt the ANN index (%s) in %.1fs",
            self.collection_id,
            "trained afresh: the vectors added since training fit it poorly"
            if retrain
            else f"without {removed} removed entries",
            time.perf_counter() - t,
        )
        return True

    def _take_journal(self, carry: np.ndarray) -> np.ndarray:
        """``carry`` plus the keys journaled since the last take (caller holds the lock), unique."""
        journal, self._journal = self._journal or [], []
        return np.unique(np.concatenate([carry, *journal])) if journal else carry

    def _maybe_compact(self) -> None:
        """After an automatic save: compact once the log has outgrown the collection
        (:meth:`_log_outgrown`). The work runs in a thread of its own, so the indexer goes on indexing
        meanwhile."""
        if self._log_outgrown():
            self._start_unless_running("_compactor", self._compact_in_background)

    def _log_outgrown(self, share: float = 1.0) -> bool:
        """Whether the log holds at least ``share`` times as many changes the saved files reflect as the
        collection has records (and at least :data:`_COMPACT_MIN_CHANGES`): replaying that much costs
        about what a rebuild does (at ``share`` 1; at most twice as little at 0.5), so keeping it buys
        another process little and costs disk space."""
        return self.saved_seq - self._trimmed_below >= max(_COMPACT_MIN_CHANGES, share * len(self.vectors))

    def _wants_retraining(self, index: BaseIndex) -> bool:
        """Whether ``index`` asks to be trained afresh and has at least doubled since the last rebuild
        beside it: data that clips even against a range learned from a sample of all of it is then
        retrained once per doubling, never in a loop."""
        return index.needs_retraining and len(index) >= 2 * self._rebuilt_at

    def _retrain_in_background(self) -> None:
        """Rebuild the index beside the live one, trained afresh on a sample of every stored vector
        (:meth:`compact_index`), then save it."""
        with self._housekeeping("retraining the index"):
            if self.compact_index():
                self.persist(raise_errors=False)

    def _compact_in_background(self) -> None:
        with self._housekeeping("automatic compaction"):
            self.compact()

    @contextlib.contextmanager
    def _housekeeping(self, what: str) -> Iterator[None]:
        """Background housekeeping logs a failure and gives up: the live index keeps serving and the
        store stays correct."""
        try:
            yield
        except Exception as exc:
            logger.warning("collection %d: %s failed: %s", self.collection_id, what, exc)

    def _scan_rows(self, keys: np.ndarray) -> np.ndarray:
        """The stored vectors the exact scan of pending vectors reads (made unit length for cosine by
        :class:`PendingVectors` as it copies them)."""
        return self.vectors.get_vectors(keys)

    def _save_due(self) -> bool:
        """Whether enough changes are unsaved for an automatic save (by the background thread)."""
        if self.pending or self._unverified or self.directory is None or self.read_only:
            # files still being verified are not saved over (a damaged index would be saved as if sound)
            return False
        unsaved = self.applied_seq - max(self.saved_seq, 0)
        return (
            unsaved >= max(_PERSIST_MIN_CHANGES, _PERSIST_FRACTION * len(self.vectors))
            and time.monotonic() >= self._retry_save_at
        )

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
        damaged: IndexCorruptedError | None = None
        for _ in range(_SAVE_ATTEMPTS):
            self.drain()
            # Saving only reads the index and the cache: queries share the lock meanwhile (changes wait;
            # a long read, so a waiting change does not hold queries back either: see RWLock).
            with self.lock.read(long=True):
                if self.saved_seq == self.applied_seq or self._unverified:
                    return
                if self.pending:
                    continue  # a change arrived after the drain: index it too, then save
                try:
                    self._saving = True
                    save_pair(
                        self.directory, self.index, self.vectors.saved_part, self.applied_seq, self.identity
                    )
                except IndexCorruptedError as exc:  # found while reading the cache to save it
                    damaged = exc
                except (DiskFullError, IndexSaveError) as exc:
                    self._retry_save_at = time.monotonic() + _SAVE_RETRY_S
                    if raise_errors:
                        raise
                    logger.warning("collection %d: %s", self.collection_id, exc)
                    return
                else:
                    self.saved_seq = self.applied_seq
                    return
                finally:
                    self._saving = False
            break
        if damaged is not None:
            self.recover(damaged)  # outside the read lock: the rebuild takes the write lock

    # ------------------------------------------------------------------ what queries read
    def __len__(self) -> int:
        """Records applied to this state (in the vector cache, indexed or pending)."""
        return len(self.vectors)

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        """Full-precision float32 vectors of ``keys`` (all of them applied here) for scoring: as in
        SQLite, or unit length for cosine where the index's own storage serves them (equal scores).

        While the index's file is still being checksummed after a load, its storage is trusted only
        where the index checks each block it reads against the block's saved CRC (``faiss-hnsw``);
        otherwise the vectors it would serve are read from SQLite (each row checked against its CRC).
        """
        if not self.vectors.raw and not self.index.verifies_reads:
            return self.stored_vectors(keys)
        return self.vectors.get_vectors(keys)

    def stored_vectors(self, keys: np.ndarray) -> np.ndarray:
        """The float32 vectors of ``keys`` exactly as stored in SQLite (what results return)."""
        keys = np.asarray(keys, dtype=np.int64)
        if self.vectors.raw or not len(keys):
            return self.vectors.get_vectors(keys)
        found, vectors = self._read_truth(keys)
        out = np.empty((len(keys), self.spec.dim), dtype=np.float32)
        out[found] = vectors
        if not found.all():
            out[~found] = self.vectors.get_vectors(keys[~found])
        return out

    def _read_truth(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, the float32 vectors of the found ``keys`` in their order) read from SQLite; a key
        deleted meanwhile, or whose row fails its checksum (reported), is not found."""
        direct = self.reader.vector_rows(keys.tolist())
        if direct is not None:
            rows = VectorRows.checked(direct, self.spec.dim)
        else:
            with read_tx(self.engine, "reading stored vectors") as conn:
                rows = Repository.vectors_for(conn, keys.tolist(), self.spec.dim)
        if not len(rows.keys):
            return np.zeros(len(keys), bool), np.empty((0, self.spec.dim), dtype=np.float32)
        order = np.argsort(rows.keys)
        ordered = rows.keys[order]
        at = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
        found = ordered[at] == keys
        if not found.all() and len(rows.bad_keys):
            self._report_damaged(np.intersect1d(rows.bad_keys, keys[~found]))
        return found, rows.vectors[order[at[found]]]

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
        direct = self.reader.record_rows(keys)
        if direct is not None:
            return {int(row[0]): StoredRecord.from_row(row) for row in direct}
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
        self.serving.withdraw()
        self.handoff.close()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in (self._indexer, self._verifier, self._compactor):
            if thread is not None:
                # a thread stops at its next step (one chunk of inserts, one file's checksum)
                thread.join(None if deadline is None else max(deadline - time.monotonic(), 0.5))
        with self.lock.write():
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
                # e.g. after a bulk load, which the automatic compaction trims only early on (while the
                # log is as long as the collection), the log holds most of the collection's records
                if self.saved_seq == self.applied_seq and self._log_outgrown(_CLOSE_TRIM_SHARE):
                    self._trim_quietly()
            self.reader.close()

    def _trim_quietly(self) -> None:
        """:meth:`_trim_log` at close, where a failure (a busy or full disk) is logged, not raised: the
        records are safe and the log is trimmed at the next chance."""
        if self.directory is None or self.read_only:
            return
        try:
            self._trim_log()
        except VectorStoreError as exc:
            logger.warning(
                "collection %d: the change log was not trimmed at close: %s", self.collection_id, exc
            )

    def discard(self) -> None:
        """The collection was deleted: stop indexing, never save again, release the reader."""
        self._stop.set()
        self.serving.withdraw()
        self.handoff.close()
        with self.lock.write():
            self.pending.clear()  # the background indexer finds nothing more to do
            self.directory = None
            self.reader.close()


def _only_its_own(known: Known) -> bool:
    """Whether the change-log range of this write, ``(after, seq]``, is exactly as long as its key list
    (see :meth:`IndexState._own_changes`)."""
    keys, _, seq, after = known
    return after >= 0 and len(keys) > 0 and seq - after == len(keys)


def _upserts(
    newest: int, keys: np.ndarray, vecs: np.ndarray
) -> tuple[int, dict[int, tuple[str, int]], np.ndarray, np.ndarray]:
    """Changes that upsert ``keys`` with ``vecs`` and end at ``newest``, as :meth:`IndexState._read_changes`
    returns them (only the op of each key is read back)."""
    return newest, dict.fromkeys(keys.tolist(), ("u", newest)), keys, vecs


def _training_order(keys: np.ndarray) -> list[np.ndarray]:
    """``keys`` in the steps :meth:`IndexState.compact_index` inserts them: first a quarter of them, at
    most :data:`_TRAIN_SAMPLE`, spread evenly over all, then the others in chunks of
    :data:`_REBUILD_CHUNK`, each step in the order given."""
    if len(keys) <= _REBUILD_CHUNK:
        return [keys] if len(keys) else []
    sample = np.zeros(len(keys), dtype=bool)
    sample[np.linspace(0, len(keys) - 1, min(_TRAIN_SAMPLE, len(keys) // 4)).astype(np.int64)] = True
    rest = keys[~sample]
    return [keys[sample]] + [rest[i : i + _REBUILD_CHUNK] for i in range(0, len(rest), _REBUILD_CHUNK)]
