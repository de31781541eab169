"""A collection's derived files on disk: its ANN index and, for index kinds that do not keep full
float32 vectors themselves, a float32 vector cache, saved together as one generation and published by
renaming one pointer file.

Layout (``directory`` is ``indexes/<id>-<name>/``)::

    CURRENT                 {"generation": "gen-...", "sequence": ..., "identity": {...}}
    gen-<seq>-<tag>/index/    the ANN index (manifest.json + native file)
    gen-<seq>-<tag>/vectors/  the vector cache (manifest.json + .npy arrays), absent when the index
                              is the cache (``exact``, ``faiss-hnsw``) or vectors are read from SQLite
                              (``faiss-hnsw-sq``): see vectorstore.vector_cache
    .save.lock              flock'ed by the process saving (processes sharing the store save in turn)

A save writes a new generation beside the current one and renames ``CURRENT`` over the old pointer
last, so a crash or a full disk at any point leaves the previous, consistent pair in place: the index
and the vector cache can never disagree. Each manifest and the pointer carry the identity of the
database and collection they were built from (the store's random id, the collection's id and creation
time), and a load refuses files of another database or of an earlier collection of the same name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import indexers
from indexers import BaseIndex, IndexSpec
from indexers.exact import ExactIndex
from indexers.persistence import _fsync_dir, _fsync_file
from vectorstore.errors import (
    DiskFullError,
    IncompatibleIndexError,
    IndexCorruptedError,
    IndexSaveError,
    StorageError,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: saves of several processes are not serialised
    fcntl = None  # type: ignore[assignment]

__all__ = ["CURRENT", "SavedPair", "has_saved_files", "load_pair", "save_error", "save_pair"]

CURRENT = "CURRENT"
SAVE_LOCK = ".save.lock"  # held (flock) by the process saving into the directory
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_LOW_SPACE = 4 << 20  # bytes: a failed write with less than this left is taken for a full disk


@dataclass(frozen=True)
class SavedPair:
    """An index and (where its kind needs one) vector cache loaded from one generation."""

    index: BaseIndex
    vectors: ExactIndex | None
    sequence: int


def has_saved_files(directory: Path) -> bool:
    """Whether ``directory`` holds a published generation."""
    return (directory / CURRENT).is_file()


def save_error(exc: BaseException, directory: Path) -> StorageError:
    """The error a failed save is reported as: :class:`DiskFullError` when the disk is full (the errno
    says so, or the device has almost nothing left — numpy, FAISS and USearch report short writes in
    their own words), else :class:`IndexSaveError`; both name the directory."""
    full = isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS
    if not full:
        with contextlib.suppress(OSError):
            probe = directory
            while not probe.exists() and probe != probe.parent:
                probe = probe.parent
            full = shutil.disk_usage(probe).free < _LOW_SPACE
    if full:
        return DiskFullError(
            f"no space left on the device of {directory} while saving index files "
            f"(SQLite still holds every record; the save is retried later): {exc}"
        )
    return IndexSaveError(
        f"could not save index files in {directory} (SQLite still holds every record): {exc}"
    )


def save_pair(
    directory: Path,
    index: BaseIndex,
    vectors: ExactIndex | None,
    sequence: int,
    identity: Mapping[str, Any],
) -> None:
    """Write ``index`` and ``vectors`` (None: the index is the cache) as a new generation and publish it;
    on any failure remove what was written and raise (:func:`save_error`), leaving the previous
    generation current.

    Processes sharing the store save one at a time (an exclusive lock on ``SAVE_LOCK``), so one never
    removes a generation another is still writing; and a save never replaces a published generation
    that reflects more changes (another process saved later state meanwhile): it then writes nothing.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise save_error(exc, directory) from exc
    with _save_lock(directory):
        if _published_sequence(directory, identity) > sequence:
            return
        gen = directory / f"gen-{sequence}-{uuid.uuid4().hex[:8]}"
        try:
            if vectors is not None:
                vectors.save(gen / "vectors", sequence=sequence, tags=dict(identity))
            index.save(gen / "index", sequence=sequence, tags=dict(identity))
            _publish(directory, {"generation": gen.name, "sequence": sequence, "identity": dict(identity)})
        except Exception as exc:
            shutil.rmtree(gen, ignore_errors=True)
            for tmp in directory.glob(f".{CURRENT}.*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
            if isinstance(exc, IndexCorruptedError):
                raise  # the data being saved failed its own check: not a write failure
            raise save_error(exc, directory) from exc
        _remove_older(directory, gen.name)


@contextlib.contextmanager
def _save_lock(directory: Path) -> Iterator[None]:
    """Hold the store-wide (all processes) save lock of ``directory``; a no-op where ``fcntl`` is missing."""
    try:
        fd = os.open(directory / SAVE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise save_error(exc, directory) from exc
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _published_sequence(directory: Path, identity: Mapping[str, Any]) -> int:
    """The sequence of the generation ``CURRENT`` names, if it is one of these records (else -1)."""
    try:
        pointer = json.loads((directory / CURRENT).read_text())
        if pointer.get("identity") == dict(identity) and (directory / str(pointer["generation"])).is_dir():
            return int(pointer["sequence"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent or unreadable: anything may replace it
    return -1


def _publish(directory: Path, pointer: Mapping[str, Any]) -> None:
    """Point ``CURRENT`` at a written generation, atomically and durably."""
    tmp = directory / f".{CURRENT}.{pointer['generation']}.tmp"
    tmp.write_text(json.dumps(pointer, sort_keys=True))
    _fsync_file(tmp)
    os.replace(tmp, directory / CURRENT)
    _fsync_dir(directory)


def _remove_older(directory: Path, current: str) -> None:
    """Remove every generation but ``current``, and leftovers of saves killed midway.

    Called under the save lock, once ``current`` is published: older generations are unreferenced and
    no other save is writing one. A process that still maps their files keeps reading them (the inodes
    live on until unmapped), and files whose check it deferred are checked through the handles it
    opened when loading them.
    """
    for old in directory.iterdir():
        if old.name != current and (old.name.startswith("gen-") or old.name in ("index", "vectors")):
            shutil.rmtree(old, ignore_errors=True)
        elif old.name.startswith(f".{CURRENT}.") and old.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                old.unlink()


def load_pair(
    directory: Path, spec: IndexSpec, identity: Mapping[str, Any], newest: int, *, verify: bool | str = True
) -> SavedPair:
    """Load the current generation.

    Raises:
        IndexCorruptedError: a file is missing, truncated or garbled, or the pair disagrees.
        IncompatibleIndexError: files of another database or collection, of another kind, dimension or
            metric, or reflecting changes the database does not have.
    """
    try:
        pointer = json.loads((directory / CURRENT).read_text())
        gen = directory / str(pointer["generation"])
        if "/" in str(pointer["generation"]) or not gen.is_dir():
            raise IndexCorruptedError(
                f"{directory / CURRENT} names a missing generation {pointer['generation']!r}"
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexCorruptedError(f"index pointer {directory / CURRENT} is unreadable: {exc}") from exc
    if pointer.get("identity") != dict(identity):
        raise IncompatibleIndexError(
            f"index files in {directory} were built from another database or an earlier collection of "
            f"this name ({pointer.get('identity')} vs {dict(identity)})"
        )
    index = indexers.load_index(gen / "index", expect=spec, verify=verify)
    vectors: ExactIndex | None = None
    if not (index.stores_full_vectors or index.rescore_from_truth):  # else no cache is saved (the index
        # is the cache, or vectors are read from SQLite; an older save's copy is ignored)
        if not (gen / "vectors").is_dir():
            raise IndexCorruptedError(f"the vector cache of {gen} is missing")
        loaded = indexers.load_index(
            gen / "vectors", expect=IndexSpec("exact", spec.dim, "dot", {}), verify=verify
        )
        if not isinstance(loaded, ExactIndex):
            raise IncompatibleIndexError(f"the vector cache in {gen} is a {loaded.kind} index")
        vectors = loaded
    for part in (index,) if vectors is None else (index, vectors):
        if part.tags != dict(identity) or part.sequence != pointer.get("sequence"):
            raise IndexCorruptedError(
                f"index files in {gen} disagree with their pointer (seq {part.sequence}, tags {part.tags})"
            )
    if index.sequence > newest:
        raise IncompatibleIndexError(
            f"index reflects seq {index.sequence}, newer than the database's {newest}"
        )
    return SavedPair(index, vectors, index.sequence)
