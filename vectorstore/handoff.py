"""Batches a write-only process hands to the process that serves the collection on this machine.

A process that only writes leaves applying and indexing its commits to the process serving the
collection (:meth:`IndexState._left_to_others`). That process then had to read each batch back from
SQLite: 5,000 rows of 1.5 KB vectors, 20-70 ms on two busy cores, on the path of the query that
first saw the commit — and every query scheduled behind it waited too. So the writer also leaves
the vectors it has in hand in a file beside the collection's index files, and the serving process
takes them from there instead of from SQLite:

- before committing, the writer *announces* the batch's change-log range ``(after, seq]``
  (an empty ``<after>-<seq>.coming`` file), so that a query seeing the commit knows the vectors
  are on their way and waits a few ms for them rather than reading SQLite;
- after the commit, it *publishes* them (``<after>-<seq>.batch``: a header with the range, the
  collection's identity and a CRC32 of the payload, then the keys and float32 vectors, written to a
  temporary name and renamed) and removes the announcement; a failed commit only removes it;
- the serving process takes a chain of batches covering exactly the changes it has not applied
  (``(applied, newest]``), each checked against its CRC and identity. Anything else — a gap, a
  change of another kind, a damaged or missing file — and it reads SQLite as before, so a handoff
  file is only ever a shortcut, never the truth.

A batch is only published for a range that holds nothing but the write's own upserts, one per key
(the writer held the database's write lock from reading ``after`` to its commit). Files are removed
by their writer after :data:`KEEP_S` and by anyone after :data:`STALE_S` (a writer that died).
Processes on other machines (a PostgreSQL store) do not see each other's files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["KEEP_S", "STALE_S", "WAIT_S", "Handoff"]

logger = logging.getLogger(__name__)

KEEP_S = 10.0  # a writer removes its published batches this long after publishing them
STALE_S = 60.0  # anybody removes handoff files this old (their writer died or never came back)
WAIT_S = 0.05  # how long a reader waits for an announced batch to be published
_FRESH_S = 2.0  # an announcement older than this is not waited for
_POLL_S = 0.001
_FOLDER = "handoff"
_MAGIC = b"VSHANDF1"


class Handoff:
    """The handoff folder of one collection.

    Args:
        directory: the collection's index directory (``None``: an in-memory store; nothing is handed
            over).
        identity: the collection's identity (store, collection, creation time): a file written for
            another store or an earlier collection of the same id is never taken.
        read_only: never write (batches of others are still taken).
    """

    def __init__(
        self, directory: Path | None, identity: Mapping[str, Any], *, read_only: bool = False
    ) -> None:
        self._folder = directory / _FOLDER if directory is not None else None
        self._identity = dict(identity)
        self._read_only = read_only
        self._published: list[tuple[float, Path]] = []  # (when, file) of this process's batches
        self._lock = threading.Lock()  # writers of several threads publish and prune

    @property
    def enabled(self) -> bool:
        """Whether batches can be handed over here (a store on disk)."""
        return self._folder is not None

    # ------------------------------------------------------------------ the writer
    def announce(self, after: int, seq: int) -> None:
        """Say that the batch of the change-log range ``(after, seq]`` is about to commit."""
        if self._folder is None or self._read_only:
            return
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            (self._folder / f"{after}-{seq}.coming").touch()
        except OSError as exc:  # a shortcut only: the reader reads SQLite instead
            logger.debug("could not announce a handoff batch in %s: %s", self._folder, exc)

    def withdraw(self, after: int, seq: int) -> None:
        """The announced batch will not be published (its commit failed, or it is not a plain batch)."""
        if self._folder is not None:
            with contextlib.suppress(OSError):
                (self._folder / f"{after}-{seq}.coming").unlink(missing_ok=True)

    def publish(self, after: int, seq: int, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Leave the committed batch ``(after, seq]`` — ``keys`` and their float32 ``vectors`` — for
        the serving process, then remove its announcement and this process's old batches."""
        if self._folder is None or self._read_only:
            return
        keys = np.ascontiguousarray(keys, dtype="<i8")
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        crc = _crc(keys, vectors)
        header = json.dumps(
            {
                "after": after,
                "seq": seq,
                "n": len(keys),
                "dim": vectors.shape[1],
                "crc": crc,
                "identity": self._identity,
            },
            sort_keys=True,
        ).encode()
        final = self._folder / f"{after}-{seq}.batch"
        tmp = self._folder / f".{after}-{seq}.{os.getpid()}.tmp"
        try:
            self._folder.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(_MAGIC + len(header).to_bytes(4, "little") + header)
                f.write(keys.data)
                f.write(vectors.data)
            os.replace(tmp, final)
            with self._lock:
                self._published.append((time.monotonic(), final))
        except OSError as exc:
            logger.debug("could not publish a handoff batch in %s: %s", self._folder, exc)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        finally:
            self.withdraw(after, seq)
        self._prune()

    def close(self) -> None:
        """Remove every batch this process published."""
        with self._lock:
            published, self._published = self._published, []
        for _, path in published:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)

    def _prune(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [path for when, path in self._published if now - when > KEEP_S]
            self._published = [(when, path) for when, path in self._published if now - when <= KEEP_S]
        for path in old:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        assert self._folder is not None
        cutoff = time.time() - STALE_S
        with contextlib.suppress(OSError):
            for entry in os.scandir(self._folder):
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)

    # ------------------------------------------------------------------ the reader
    def offered_from(self, since: int) -> bool:
        """Whether some batch starting right after ``since`` is published or announced (one listing of
        a small folder: the check before anything else is read)."""
        if self._folder is None:
            return False
        prefix = f"{since}-"
        try:
            return any(n.startswith(prefix) for n in os.listdir(self._folder))
        except OSError:
            return False

    def take(self, since: int, newest: int, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Keys and vectors of the published batches that cover exactly the changes ``(since, newest]``,
        oldest first; None where any part of that range is not a published, intact batch (waiting
        up to :data:`WAIT_S` for announced ones)."""
        if self._folder is None or newest <= since:
            return None
        deadline = time.monotonic() + WAIT_S
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        at = since
        while at < newest:
            found = self._next(at, newest, deadline)
            if found is None:
                return None
            seq, path = found
            batch = self._read(path, at, seq, dim)
            if batch is None:
                return None
            parts.append(batch)
            at = seq
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([k for k, _ in parts]), np.concatenate([v for _, v in parts])

    def _next(self, after: int, newest: int, deadline: float) -> tuple[int, Path] | None:
        """(seq, file) of the published batch starting at ``after``, waiting while it is announced."""
        assert self._folder is not None
        prefix = f"{after}-"
        while True:
            try:
                names = [n for n in os.listdir(self._folder) if n.startswith(prefix)]
            except OSError:
                return None
            for name in names:
                stem, _, kind = name.partition(".")
                if kind == "batch":
                    seq = int(stem[len(prefix) :])
                    return (seq, self._folder / name) if seq <= newest else None
            coming = [n for n in names if n.endswith(".coming")]
            if not coming or time.monotonic() >= deadline or not self._fresh(self._folder / coming[0]):
                return None
            time.sleep(_POLL_S)

    @staticmethod
    def _fresh(path: Path) -> bool:
        try:
            return time.time() - path.stat().st_mtime < _FRESH_S
        except OSError:
            return False

    def _read(self, path: Path, after: int, seq: int, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The batch in ``path`` if it is intact and is the one for ``(after, seq]`` of this collection."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        try:
            if data[:8] != _MAGIC:
                raise ValueError("not a handoff batch")
            size = int.from_bytes(data[8:12], "little")
            header = json.loads(data[12 : 12 + size])
            n = int(header["n"])
            start = 12 + size
            keys = np.frombuffer(data, dtype="<i8", count=n, offset=start)
            vectors = np.frombuffer(data, dtype="<f4", count=n * dim, offset=start + 8 * n).reshape(n, dim)
            if (
                (header["after"], header["seq"], header["dim"]) != (after, seq, dim)
                or header["identity"] != self._identity
                or len(data) != start + 8 * n + 4 * n * dim
                or _crc(keys, vectors) != header["crc"]
            ):
                raise ValueError("the batch does not match its header, this collection or its range")
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring handoff batch %s (reading the changes from SQLite): %s", path.name, exc)
            return None
        return keys, vectors


def _crc(keys: np.ndarray, vectors: np.ndarray) -> int:
    """CRC32 of a batch's payload: its keys' bytes, then its vectors'."""
    return zlib.crc32(vectors.data.cast("B"), zlib.crc32(keys.data.cast("B")))
