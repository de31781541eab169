"""Saved index files: atomic writes (temp name, fsync, manifest renamed last), the JSON manifest, and
the checks a load runs before anything is trusted (sizes, CRCs, format version)."""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from indexers.errors import IncompatibleIndexError, IndexCorruptedError, InvalidInputError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "check_crc",
    "read_manifest",
    "save_arrays",
    "verified_files",
    "write_manifest",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_SMALL_FILE = 16 << 20  # bytes: files up to this size are always checksummed when loaded
_CRC_WINDOW = 64 << 20  # bytes mapped at once while checksumming (a multiple of the page size)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _crc32(path: Path) -> int:
    with open(path, "rb", buffering=0) as fh:
        return _crc32_of(fh.fileno())


def _crc32_of(fd: int) -> int:
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    # checksummed where the page cache holds it (no copy into a buffer), a window at a time so a
    # large file is never mapped whole; zlib.crc32 releases the GIL while it runs
    crc = 0
    for start in range(0, size, _CRC_WINDOW):
        length = min(_CRC_WINDOW, size - start)
        with mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=start) as view:
            crc = zlib.crc32(view, crc)
    return crc


def _stat_signature(st: os.stat_result) -> list[int]:
    """Size, modification time (ns), inode and device: any rewrite, copy or in-place edit changes one of them."""
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def save_arrays(directory: Path, tag: str, arrays: Mapping[str, np.ndarray]) -> dict[str, Path]:
    """Write each array as ``index-{tag}.{role}.npy`` (plain .npy arrays, object arrays refused); returns role -> path."""
    out: dict[str, Path] = {}
    for role, array in arrays.items():
        path = directory / f"index-{tag}.{role}.npy"
        with open(path, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        out[role] = path
    return out


def write_manifest(directory: Path, tag: str, written: Mapping[str, Path], facts: Mapping[str, Any]) -> None:
    """Fsync and checksum the ``written`` files, then publish them by renaming the manifest into place.

    ``facts`` are the backend's own entries (backend, dim, metric, options, sequence, count). A crash
    before the rename leaves the previous manifest, which still names the previous files; files no
    manifest names any more are removed afterwards.
    """
    files: dict[str, Any] = {}
    for role, path in written.items():
        _fsync_file(path)
        st = path.stat()
        files[role] = {
            "name": path.name,
            "size": st.st_size,
            "crc32": _crc32(path),
            # the file as written and checksummed: a load that finds the same stat skips the CRC pass
            "stat": _stat_signature(st),
        }
    manifest = {"format_version": FORMAT_VERSION, **facts, "files": files}
    tmp = directory / f".{MANIFEST_NAME}.{tag}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _fsync_file(tmp)
    os.replace(tmp, directory / MANIFEST_NAME)
    _fsync_dir(directory)
    keep = {p.name for p in written.values()} | {MANIFEST_NAME}
    for old in directory.iterdir():
        if old.name not in keep and old.name.startswith(("index-", ".manifest.json.")):
            with contextlib.suppress(OSError):
                old.unlink()


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of a saved index."""
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise IndexCorruptedError(f"no index manifest at {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptedError(f"index manifest {path} is unreadable: {exc}") from exc
    if not isinstance(manifest, dict):
        raise IndexCorruptedError(f"index manifest {path} is not a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IncompatibleIndexError(
            f"index at {directory} has format version {version!r}; this library reads {FORMAT_VERSION}"
        )
    for key in ("backend", "dim", "metric", "options", "sequence", "files"):
        if key not in manifest:
            raise IndexCorruptedError(f"index manifest {path} lacks {key!r}")
    return manifest


def verified_files(
    directory: Path, manifest: Mapping[str, Any], verify: bool | str, lazy_roles: frozenset[str] = frozenset()
) -> tuple[dict[str, Path], set[str]]:
    """role -> path of every file the manifest names, each checked for presence and size, plus the
    roles whose CRC was *not* computed here because they are verified later.

    ``verify``:
        ``"full"``: every file's CRC now.
        ``True``: every file's CRC now, except a file of ``lazy_roles`` (which its backend verifies block
            by block on first use) whose stat is still the one recorded when it was written.
        ``"lazy"``: like ``True``, and any other large file (over 16 MiB) whose stat is unchanged is
            deferred too (small ones — keys, labels, block checksums — are checked now): the
            loaded index lists it in ``pending_verification`` and :meth:`BaseIndex.verify_pending`
            checks it (the store does so in a background thread, keeping reopening fast).
        ``False``: sizes only.
    """
    if verify not in (True, False, "full", "lazy"):
        raise InvalidInputError(f"verify must be True, False, 'full' or 'lazy', got {verify!r}")
    manifest_mtime = (directory / MANIFEST_NAME).stat().st_mtime_ns
    files: dict[str, Path] = {}
    deferred: set[str] = set()
    for role, info in manifest["files"].items():
        try:
            path = directory / str(info["name"])
            if "/" in str(info["name"]) or not path.is_file():
                raise IndexCorruptedError(f"index file {path} named by the manifest is missing")
            st = path.stat()
            if st.st_size != int(info["size"]):
                raise IndexCorruptedError(
                    f"index file {path} has {st.st_size} bytes, the manifest says {info['size']}"
                )
            # Unchanged only when written in an earlier clock tick than the manifest: mtimes are coarse,
            # so an edit in the same tick as the save could otherwise keep the recorded stat.
            unchanged = info.get("stat") == _stat_signature(st) and st.st_mtime_ns < manifest_mtime
            if verify is False:
                pass
            elif (
                unchanged
                and verify != "full"
                and (role in lazy_roles or (verify == "lazy" and st.st_size > _SMALL_FILE))
            ):
                deferred.add(role)
            elif _crc32(path) != int(info["crc32"]):
                raise IndexCorruptedError(f"index file {path} fails its checksum (garbled)")
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptedError(
                f"index manifest in {directory} has a bad file entry: {info!r}"
            ) from exc
        files[role] = path
    return files, deferred


def check_crc(path: Path, expected: int, fh: BinaryIO | None = None) -> None:
    """Raise :class:`IndexCorruptedError` when ``path``'s CRC32 is not ``expected``.

    ``fh``: the file opened when it was loaded — checked through it, so a file that another process
    has since unlinked (an older generation it cleaned up) is still checked as loaded.
    """
    crc = _crc32_of(fh.fileno()) if fh is not None else _crc32(path)
    if crc != int(expected):
        raise IndexCorruptedError(f"index file {path} fails its checksum (garbled)")
