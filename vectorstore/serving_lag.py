"""Backpressure across processes: writers slow down to the indexing rate of the processes that serve.

Within one process a write waits while more than a few thousand vectors wait for the background
indexer (:meth:`IndexState.wait_for_backlog`), so the exact scan every query pays stays small. A
process that serves queries while *another* process writes has no such brake: each of its queries
applies the other's commits, and its own indexer falls behind the writer (which indexes the same
vectors in its own process), so its exact scan — and every query — grows without bound.

So each process that is serving queries reports how many vectors it has not indexed yet in a small
file beside the collection's index files (``serving/<pid>-<n>.json``, rewritten atomically at most
every :data:`REPORT_EVERY_S`), and a write in another process waits while a fresh report (younger
than :data:`FRESH_S`) says more than its limit — at most :data:`MAX_WAIT_S` per write, so a stuck
reader slows writers down but never stops them. Reports of processes that stopped serving go stale
and are ignored (and removed once old). Processes on other machines (a PostgreSQL store) do not see
each other's reports.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["FRESH_S", "MAX_WAIT_S", "REPORT_EVERY_S", "ServingLag"]

logger = logging.getLogger(__name__)

REPORT_EVERY_S = 0.05
FRESH_S = 1.0  # a report older than this is from a process that stopped serving (or died)
MAX_WAIT_S = 10.0  # at most this long one write waits for other processes' indexers
_REMOVE_AFTER_S = 60.0
_POLL_S = 0.01
_READ_EVERY_S = 0.05  # others_behind reuses its answer this long
_FOLDER = "serving"
_ids = itertools.count()


class ServingLag:
    """This process's report of its indexing backlog, and the reports of the others, for one collection.

    Args:
        directory: the collection's index directory (``None``: an in-memory store; nothing is reported
            or read).
        read_only: never write a report (the others' are still read).
    """

    def __init__(self, directory: Path | None, *, read_only: bool = False) -> None:
        self._folder = directory / _FOLDER if directory is not None else None
        self._read_only = read_only
        self._name = f"{os.getpid()}-{next(_ids)}.json"
        self._last_report = 0.0
        self._last_value = -1
        self._others, self._read_at = -1, float("-inf")  # others_behind's last answer, and when

    def report(self, behind: int) -> None:
        """Say that this process serves queries with ``behind`` vectors not indexed yet (rate-limited:
        a changed value is written at most every :data:`REPORT_EVERY_S`, an unchanged one every
        :data:`FRESH_S` / 2 to stay fresh)."""
        if self._folder is None or self._read_only:
            return
        now = time.monotonic()
        since = now - self._last_report
        if since < REPORT_EVERY_S or (behind == self._last_value and since < FRESH_S / 2):
            return
        self._last_report, self._last_value = now, behind
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            tmp = self._folder / f".{self._name}.tmp"
            tmp.write_text(json.dumps({"pid": os.getpid(), "behind": int(behind), "t": time.time()}))
            os.replace(tmp, self._folder / self._name)
        except OSError as exc:  # backpressure is an optimisation: never fail a query for it
            logger.debug("could not write the serving report in %s: %s", self._folder, exc)

    def withdraw(self) -> None:
        """Remove this process's report (it stopped serving or closed)."""
        self._last_value = -1
        if self._folder is None or self._read_only:
            return
        with contextlib.suppress(OSError):
            (self._folder / self._name).unlink(missing_ok=True)

    def others_behind(self) -> int:
        """The largest backlog a fresh report of another serving process states (0: none; -1: no
        other process is serving); the folder is read at most every ``_READ_EVERY_S`` (the
        background indexer asks before each slice), reusing the last answer in between."""
        now = time.monotonic()
        if now - self._read_at < _READ_EVERY_S:
            return self._others
        self._others, self._read_at = self._read_others(), now
        return self._others

    def _read_others(self) -> int:
        if self._folder is None:
            return -1
        try:
            entries = list(self._folder.glob("*.json"))
        except OSError:
            return -1
        now, worst = time.time(), -1
        for path in entries:
            if path.name == self._name:
                continue
            try:
                report = json.loads(path.read_text())
                age = now - float(report["t"])
                behind = int(report["behind"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced, or not ours to read
            if age > _REMOVE_AFTER_S:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            elif age <= FRESH_S:
                worst = max(worst, behind)
        return worst

    def others_serving(self) -> bool:
        """Whether another process (or another state of this collection) is serving queries now."""
        return self.others_behind() >= 0

    def wait_for_others(self, limit: int, stop: Callable[[], bool] | None = None) -> float:
        """Block while another serving process reports more than ``limit`` vectors not indexed, up to
        :data:`MAX_WAIT_S`; returns the seconds waited."""
        start = time.monotonic()
        while self.others_behind() > limit:
            if time.monotonic() - start > MAX_WAIT_S or (stop is not None and stop()):
                break
            time.sleep(_POLL_S)
        return time.monotonic() - start
