"""``RWLock``: many readers or one writer, re-entrant, readers preferred over a waiting writer, and
phase-fair when writers queue: a writer that lets go while readers wait hands the lock to all of them
before the next writer.

The index state's searches (and its saves, which only read) share the lock; changes to the index or
the vector cache take it alone. Readers are preferred: a query is not made to wait for a writer that
has not got the lock yet, so queries mostly wait only for a change being applied (short by
construction: inserts and catch-up work in slices of a few milliseconds). So that a steady stream of
overlapping readers cannot starve a writer, new readers do queue once a writer has waited longer
than :data:`WRITER_PATIENCE_S` — except while a *long* reader (a save, which takes seconds) holds the
lock: no writer can get in before it ends anyway, so holding queries back meanwhile would only stall
them for the whole save, and the writer's patience is counted from the save's end. A thread holding the
write lock may take either lock again; a reader may take the read lock again, but asking for the
write lock while holding only the read lock is a bug and raises instead of deadlocking.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["WRITER_PATIENCE_S", "RWLock"]

WRITER_PATIENCE_S = 0.05


class RWLock:
    """A re-entrant reader-preferring readers-writer lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> read depth
        self._writer: int | None = None
        self._write_depth = 0
        self._waiting: list[float] = []  # when each waiting writer started waiting (monotonic)
        self._read_waiting = 0  # readers waiting to enter
        # set when a writer lets go while readers wait: they all enter before the next writer, so a
        # queue of writers (a write, the indexer, a save's drain) cannot hold queries back for long
        self._readers_turn = False
        self._long = 0  # long readers holding the lock
        self._long_ended = 0.0  # when the last long reader let go (monotonic)

    @contextmanager
    def read(self, *, long: bool = False) -> Iterator[None]:
        """Hold the lock shared (or nested inside this thread's write lock).

        ``long``: this reader holds the lock for seconds (a save); while it does, waiting writers do
        not hold back new readers (see the module docstring).
        """
        me = threading.get_ident()
        with self._cond:
            if self._writer != me and me not in self._readers and not self._may_read():
                self._read_waiting += 1
                try:
                    while not self._may_read():
                        self._cond.wait(WRITER_PATIENCE_S if self._waiting else None)
                finally:
                    self._read_waiting -= 1
                    if not self._read_waiting:
                        self._readers_turn = False  # every waiting reader is in: writers may go next
                        self._cond.notify_all()
            self._readers[me] = self._readers.get(me, 0) + 1
            if long:
                self._long += 1
        try:
            yield
        finally:
            with self._cond:
                if long:
                    self._long -= 1
                    if not self._long:
                        self._long_ended = time.monotonic()
                depth = self._readers[me] - 1
                if depth:
                    self._readers[me] = depth
                else:
                    del self._readers[me]
                    self._cond.notify_all()

    def acquire_write(self, timeout: float | None = None) -> bool:
        """Take the lock alone; False when ``timeout`` (seconds) passed first.

        Raises:
            RuntimeError: this thread holds the read lock but not the write lock.
        """
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._write_depth += 1
                return True
            if me in self._readers:
                raise RuntimeError("RWLock: a reader cannot upgrade to the write lock")
            started = time.monotonic()
            self._waiting.append(started)
            try:
                free = lambda: self._writer is None and not self._readers and not self._readers_turn  # noqa: E731
                if not self._cond.wait_for(free, timeout):
                    return False
            finally:
                self._waiting.remove(started)
                self._cond.notify_all()  # readers held back for this writer re-check
            self._writer, self._write_depth = me, 1
            return True

    def _may_read(self) -> bool:
        return self._writer is None and (self._readers_turn or not self._writer_starving())

    def _writer_starving(self) -> bool:
        if not self._waiting or self._long:
            return False
        waited_since = max(min(self._waiting), self._long_ended)
        return time.monotonic() - waited_since > WRITER_PATIENCE_S

    def release_write(self) -> None:
        """Release one level of this thread's write lock."""
        with self._cond:
            if self._writer != threading.get_ident():
                raise RuntimeError("RWLock: release_write by a thread that does not hold it")
            self._write_depth -= 1
            if self._write_depth == 0:
                self._writer = None
                self._readers_turn = self._read_waiting > 0
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock alone (re-entrant)."""
        self.acquire_write()
        try:
            yield
        finally:
            self.release_write()

    def held_by_me(self) -> bool:
        """Whether this thread holds the lock in either mode."""
        me = threading.get_ident()
        return self._writer == me or me in self._readers
