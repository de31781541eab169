"""The vector index protocol, its spec, and the shared base that validates, filters and persists.

Contract every backend keeps (``tests/indexers`` checks it for each one):

- keys are non-negative int64; ``add`` of a key already present (or repeated in the batch) raises
  :class:`~vectorstore.errors.DuplicateIDError` and adds nothing — to replace, ``remove`` first;
- vectors are finite float32 ``[n, dim]``;
- ``search`` returns ``keys int64[q, k]`` and ``scores float32[q, k]``, higher is better, sorted,
  padded with ``-1`` / ``-inf`` when fewer than ``k`` exist (the arrays never shrink);
- ``allowed`` restricts results to those keys; selective sets are searched exactly over the allowed
  vectors, broad ones through the backend's filtered search or over-fetching, and a row that comes
  back short while enough allowed keys exist is redone exactly;
- ``save(dir)`` writes the native file plus ``manifest.json`` atomically; ``load(dir)`` verifies the
  manifest and the file's size, and its CRC unless the file still has the size, mtime, inode and
  device recorded when it was written and checksummed (``verify="full"`` always recomputes it).
"""

from __future__ import annotations

import abc
import contextlib
import json
import logging
import math
import os
import uuid
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from indexers.scoring import (
    check_metric,
    empty_results,
    exact_scores,
    normalize_finite_rows,
    normalize_rows,
    top_k,
)
from vectorstore.errors import (
    DimensionMismatchError,
    DuplicateIDError,
    IncompatibleIndexError,
    IndexCorruptedError,
    InvalidIDError,
    InvalidInputError,
    InvalidVectorError,
    UnsupportedMetricError,
)

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "BaseIndex",
    "IndexSpec",
    "VectorIndex",
    "read_manifest",
    "save_arrays",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

# An allowed set at most this large (or this fraction of the index) is searched exactly.
_EXACT_FILTER_MAX = 4096
_EXACT_FILTER_FRACTION = 0.02

_FLOAT32 = np.dtype(np.float32)


@dataclass(frozen=True)
class IndexSpec:
    """What an index is: backend kind, dimension, metric and backend options. Round-trips to JSON."""

    kind: str
    dim: int
    metric: str = "cosine"
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"kind": self.kind, "dim": self.dim, "metric": self.metric, "options": dict(self.options)}

    def to_json(self) -> str:
        """``json.dumps(to_dict())`` with sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexSpec:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                str(data["kind"]), int(data["dim"]), str(data["metric"]), dict(data.get("options") or {})
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"not an index spec: {data!r}") from exc

    @classmethod
    def from_json(cls, text: str) -> IndexSpec:
        """Inverse of :meth:`to_json`."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"index spec is not JSON: {text[:80]!r}") from exc


@runtime_checkable
class VectorIndex(Protocol):
    """The protocol collections program against."""

    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def spec(self) -> IndexSpec: ...

    sequence: int

    def add(self, keys: Any, vectors: Any) -> None: ...
    def remove(self, keys: Any) -> int: ...
    def search(self, queries: Any, k: int, *, allowed: Any = None) -> tuple[np.ndarray, np.ndarray]: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object) -> bool: ...
    def save(self, directory: str | os.PathLike[str], *, sequence: int | None = None) -> Path: ...


_NO_KEYS = np.empty(0, dtype=np.int64)


def require_finite(arr: np.ndarray, what: str) -> None:
    """The exact NaN/inf check, naming the first bad entry."""
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidVectorError(f"{what} contain NaN or inf (first at row {bad[0]}, column {bad[1]})")


def unit_rows_checked(vectors: np.ndarray, what: str) -> np.ndarray:
    """Unit-L2 rows of float32 ``vectors`` whose norms double as the NaN/inf check: one pass instead of
    two. Raises :class:`InvalidVectorError` naming the first bad entry."""
    out = normalize_finite_rows(vectors)
    if out is None:
        require_finite(vectors, what)  # raises, naming the first bad entry
        out = normalize_rows(vectors)  # finite entries whose squares overflow
    return out


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
    crc = 0
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            crc = zlib.crc32(view[:n], crc)  # releases the GIL: index and cache can verify in parallel
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


class BaseIndex(abc.ABC):
    """Validation, filtering, padding and persistence shared by every backend.

    Subclasses set ``kind``, ``metrics`` and ``defaults`` (their persisted options) and implement the
    ``_add`` / ``_remove`` / ``_search`` / ``_vectors_for`` / ``_write_files`` / ``_read_files`` hooks.
    """

    kind: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]] = ("cosine", "dot", "euclidean", "manhattan")
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, dim: int, metric: str = "cosine", **options: Any) -> None:
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim <= 0:
            raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
        m = check_metric(metric)
        if m not in self.metrics:
            raise UnsupportedMetricError(
                f"backend {self.kind!r} does not support metric {m!r}; it supports {list(self.metrics)}"
            )
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise InvalidInputError(
                f"unknown option(s) {unknown} for backend {self.kind!r}; valid options: {sorted(self.defaults)}"
            )
        self._dim = int(dim)
        self._ones = np.ones(self._dim, dtype=np.float32)
        self._metric = m
        self.options: dict[str, Any] = {**self.defaults, **options}
        self._validate_options()
        # fixed by metric and options, and read on every add and search: computed once
        self._prepare_checks_finite = self._prepare_rejects_nonfinite()
        self._key_set: set[int] | None = set()
        self._loaded_keys = _NO_KEYS  # a loaded index's keys, made into ``_key_set`` on first need
        self.sequence = 0

    @property
    def _keys(self) -> set[int]:
        """The stored keys as a set; a loaded index builds it on first use, so loading stays O(files)."""
        keys = self._key_set
        if keys is None:
            keys = self._key_set = set(self._loaded_keys.tolist())
            self._loaded_keys = _NO_KEYS
        return keys

    @_keys.setter
    def _keys(self, keys: set[int]) -> None:
        self._key_set = keys
        self._loaded_keys = _NO_KEYS

    def _set_loaded_keys(self, keys: np.ndarray) -> None:
        """Record the keys of a just-loaded index without building the set yet."""
        self._key_set = None
        self._loaded_keys = np.asarray(keys, dtype=np.int64)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    @property
    def metric(self) -> str:
        """``cosine``, ``dot``, ``euclidean`` or ``manhattan``."""
        return self._metric

    @property
    def spec(self) -> IndexSpec:
        """Kind, dim, metric and options of this index."""
        return IndexSpec(self.kind, self._dim, self._metric, dict(self.options))

    def _prepare_rejects_nonfinite(self) -> bool:
        """Whether ``_add`` and the unfiltered ``_search`` reject NaN/inf themselves (through
        :func:`unit_rows_checked`, the cosine normalisation) before changing or searching anything, so
        :meth:`add` and :meth:`search` skip their own pass over the vectors. Asked once, at
        construction; the answer is kept as ``_prepare_checks_finite``."""
        return False

    @property
    def scores_are_exact(self) -> bool:
        """Whether :meth:`search` scores are the exact similarity of the vectors as added, to float32
        rounding (an index that keeps them at full precision), so a caller need not rescore them."""
        return False

    def __len__(self) -> int:
        keys = self._key_set
        return len(self._loaded_keys) if keys is None else len(keys)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (int, np.integer)) and int(key) in self._keys

    def keys(self) -> np.ndarray:
        """All stored keys (unordered)."""
        if self._key_set is None:
            return self._loaded_keys.copy()
        return np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self._dim}, metric={self._metric!r}, n={len(self)}, options={self.options})"

    # ------------------------------------------------------------------ validation
    def _validate_options(self) -> None:  # noqa: B027 - optional hook, most backends override it
        """Subclasses check their option values here."""

    def _check_keys(self, keys: Any) -> np.ndarray:
        arr = np.asarray(keys)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise InvalidIDError(f"keys must be a 1-D array of integers, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InvalidIDError(f"keys must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and arr.min() < 0:
            raise InvalidIDError(f"keys must be non-negative (-1 is the padding key), got {int(arr.min())}")
        return arr

    def _all_finite(self, vectors: np.ndarray) -> bool:
        """Whether every entry is finite, judged from the row sums (one BLAS call: NaN and inf survive a sum).

        A sum can also overflow on finite entries beyond ~1e34; such rows just take the slow, exact check.
        """
        sums = np.dot(vectors, self._ones)
        return math.isfinite(sums[0]) if len(sums) == 1 else bool(np.isfinite(sums).all())

    def _well_formed(self, vectors: Any) -> bool:
        """Already a C-contiguous float32 ``[n, dim]`` array: nothing to convert."""
        return (
            type(vectors) is np.ndarray
            and vectors.dtype is _FLOAT32
            and vectors.ndim == 2
            and vectors.shape[1] == self._dim
            and vectors.flags.c_contiguous
        )

    def _check_vectors(self, vectors: Any, what: str = "vectors", finite: bool = True) -> np.ndarray:
        """Validated C-contiguous float32 ``[n, dim]``; ``finite=False`` leaves the NaN/inf check of
        well-formed float32 input to the caller (an add whose normalisation pass checks it instead)."""
        if self._well_formed(vectors) and (not finite or self._all_finite(vectors)):
            return vectors  # the common case, decided with one numpy reduction
        try:
            arr = np.asarray(vectors)
        except (TypeError, ValueError) as exc:
            raise InvalidVectorError(f"{what} cannot be read as an array: {exc}") from exc
        if arr.ndim == 1 and what == "queries":
            arr = arr[None, :]
        if arr.ndim != 2:
            raise InvalidVectorError(f"{what} must be 2-D [n, {self._dim}], got shape {arr.shape}")
        if arr.shape[1] != self._dim:
            raise DimensionMismatchError(f"{what} have dimension {arr.shape[1]}, the index has {self._dim}")
        if arr.size and not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InvalidVectorError(f"{what} must be numeric, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        require_finite(arr, what)
        return arr

    # ------------------------------------------------------------------ public operations
    def add(self, keys: Any, vectors: Any) -> None:
        """Add ``vectors[i]`` under ``keys[i]``; all-or-nothing.

        Raises:
            DuplicateIDError: a key is repeated in the batch or already stored.
            DimensionMismatchError, InvalidVectorError, InvalidIDError: bad input.
        """
        k = self._check_keys(keys)
        v = self._check_vectors(vectors, finite=not self._prepare_checks_finite)
        if len(k) != len(v):
            raise InvalidInputError(f"got {len(k)} keys for {len(v)} vectors")
        if len(k) == 0:
            return
        # a strictly increasing batch (the usual bulk load) cannot repeat a key: one vectorised check
        increasing = len(k) == 1 or bool((k[1:] > k[:-1]).all())
        if not increasing and len(np.unique(k)) != len(k):
            uniq, counts = np.unique(k, return_counts=True)
            raise DuplicateIDError(f"keys repeated within the batch: {uniq[counts > 1][:10].tolist()}")
        if len(self) == 0:
            # into an empty index: the key set is built on first need, as after a load
            self._before_write()
            self._add(k, v)
            self._set_loaded_keys(k.copy())
            return
        klist = k.tolist()
        if not self._keys.isdisjoint(klist):
            present = [x for x in klist if x in self._keys]
            raise DuplicateIDError(
                f"keys already in the index (remove them first to replace): {present[:10]}"
            )
        self._before_write()
        self._add(k, v)
        self._keys.update(klist)

    def remove(self, keys: Any) -> int:
        """Remove the given keys; unknown keys are ignored. Returns how many were removed."""
        k = self._check_keys(keys)
        present = np.unique(np.array([x for x in k.tolist() if x in self._keys], dtype=np.int64))
        if len(present) == 0:
            return 0
        self._before_write()
        self._remove(present)
        self._keys.difference_update(present.tolist())
        return len(present)

    def search(self, queries: Any, k: int, *, allowed: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best keys and scores for each query (see the module docstring for the contract)."""
        if (
            allowed is None
            and type(k) is int
            and k > 0
            and self._prepare_checks_finite
            and len(self)
            and self._well_formed(queries)
            and len(queries)
        ):
            # the hot path: ``_search`` checks finiteness in its normalisation pass
            return self._search(queries, k)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        q = self._check_vectors(queries, "queries")
        if len(q) == 0:
            return empty_results(0, k)
        if allowed is None:
            if not len(self):
                return empty_results(len(q), k)
            return self._search(q, k)
        # Unknown keys in ``allowed`` are harmless to the backends' filtered searches, so a broad
        # set is passed on as given; only the exact paths need the stored subset.
        allowed_keys = self._allowed_array(allowed)
        if len(allowed_keys) <= max(_EXACT_FILTER_MAX, _EXACT_FILTER_FRACTION * len(self)):
            present = self._present(allowed_keys)
            if len(present) == 0:
                return empty_results(len(q), k)
            return self._search_exact_subset(q, k, present)
        keys, scores = self._search_filtered(q, k, allowed_keys)
        short = np.nonzero((keys >= 0).sum(axis=1) < k)[0]
        if len(short):
            present = self._present(allowed_keys)
            still_short = short[(keys[short] >= 0).sum(axis=1) < min(k, len(present))]
            if len(still_short):
                sk, ss = self._search_exact_subset(q[still_short], k, present)
                keys[still_short], scores[still_short] = sk, ss
        return keys, scores

    def _allowed_array(self, allowed: Any) -> np.ndarray:
        if isinstance(allowed, (set, frozenset)):
            cand = np.fromiter((int(x) for x in allowed), dtype=np.int64, count=len(allowed))
        else:
            cand = self._check_keys(np.asarray(list(allowed) if isinstance(allowed, Iterable) else allowed))
        return np.unique(cand)

    def _present(self, keys: np.ndarray) -> np.ndarray:
        """The stored ones among ``keys``. A Python pass over the keys: only small or rare paths call it."""
        return np.array([x for x in keys.tolist() if x in self._keys], dtype=np.int64)

    def _search_exact_subset(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over ``allowed_keys``: non-empty, and all of them stored."""
        vectors = self._vectors_for(allowed_keys)
        return top_k(exact_scores(self._metric, q, vectors), allowed_keys, k)

    def _search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Broad filters: over-fetch from the unfiltered search until ``k`` allowed keys survive."""
        n = len(self)
        fetch = min(n, max(2 * k, int(k * n / max(len(allowed_keys), 1) * 1.5)))
        while True:
            keys, scores = self._search(q, fetch)
            mask = np.isin(keys, allowed_keys)
            if fetch >= n or (mask.sum(axis=1) >= k).all():
                break
            fetch = min(n, fetch * 2)
        out_k = np.full((len(q), k), -1, dtype=np.int64)
        out_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        for i in range(len(q)):
            sel = np.nonzero(mask[i])[0][:k]
            out_k[i, : len(sel)] = keys[i, sel]
            out_s[i, : len(sel)] = scores[i, sel]
        return out_k, out_s

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str], *, sequence: int | None = None) -> Path:
        """Write the native file(s) and ``manifest.json`` atomically into ``directory``.

        The manifest is renamed into place last, so a crash leaves either the old or the new index.
        """
        if sequence is not None:
            self.sequence = int(sequence)
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:12]
        written = self._write_files(d, tag)
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
        manifest = {
            "format_version": FORMAT_VERSION,
            "backend": self.kind,
            "dim": self._dim,
            "metric": self._metric,
            "options": self.options,
            "sequence": self.sequence,
            "count": len(self),
            "files": files,
        }
        tmp = d / f".{MANIFEST_NAME}.{tag}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        _fsync_file(tmp)
        os.replace(tmp, d / MANIFEST_NAME)
        _fsync_dir(d)
        keep = {p.name for p in written.values()} | {MANIFEST_NAME}
        for old in d.iterdir():
            if old.name not in keep and old.name.startswith(("index-", ".manifest.json.")):
                with contextlib.suppress(OSError):
                    old.unlink()
        return d

    @classmethod
    def _restore(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> BaseIndex:
        if verify not in (True, False, "full"):
            raise InvalidInputError(f"verify must be True, False or 'full', got {verify!r}")
        manifest_mtime = (directory / MANIFEST_NAME).stat().st_mtime_ns
        files: dict[str, Path] = {}
        for role, info in manifest["files"].items():
            try:
                path = directory / str(info["name"])
                if "/" in str(info["name"]) or not path.is_file():
                    raise IndexCorruptedError(f"index file {path} named by the manifest is missing")
                size = path.stat().st_size
                if size != int(info["size"]):
                    raise IndexCorruptedError(
                        f"index file {path} has {size} bytes, the manifest says {info['size']}"
                    )
                st = path.stat()
                # Trusted only when written in an earlier clock tick than the manifest: mtimes are coarse,
                # so an edit in the same tick as the save could otherwise keep the recorded stat.
                unchanged = (
                    verify != "full"
                    and info.get("stat") == _stat_signature(st)
                    and st.st_mtime_ns < manifest_mtime
                )
                if verify and not unchanged and _crc32(path) != int(info["crc32"]):
                    raise IndexCorruptedError(f"index file {path} fails its checksum (garbled)")
            except (KeyError, TypeError, ValueError) as exc:
                raise IndexCorruptedError(
                    f"index manifest in {directory} has a bad file entry: {info!r}"
                ) from exc
            files[role] = path
        try:
            index = cls(int(manifest["dim"]), str(manifest["metric"]), **dict(manifest["options"]))
        except (InvalidInputError, TypeError, ValueError) as exc:
            raise IncompatibleIndexError(
                f"saved index in {directory} has options this version rejects: {exc}"
            ) from exc
        try:
            index._read_files(files)
        except (IndexCorruptedError, IncompatibleIndexError):
            raise
        except Exception as exc:  # the backend's own error: translate at the seam
            raise IndexCorruptedError(f"cannot read {index.kind} index in {directory}: {exc}") from exc
        if len(index) != int(manifest.get("count", len(index))):
            raise IndexCorruptedError(
                f"index in {directory} holds {len(index)} vectors, the manifest says {manifest.get('count')}"
            )
        index.sequence = int(manifest["sequence"])
        return index

    # ------------------------------------------------------------------ backend hooks
    def _before_write(self) -> None:  # noqa: B027 - optional hook
        """Called once input is validated, right before ``_add`` / ``_remove`` change anything."""

    @abc.abstractmethod
    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add validated, new keys."""

    @abc.abstractmethod
    def _remove(self, keys: np.ndarray) -> None:
        """Remove keys that are known to be present."""

    @abc.abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Unfiltered search on a non-empty index, padded to ``k``."""

    @abc.abstractmethod
    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        """The stored vectors of present keys (as the backend holds them; may be lossy)."""

    @abc.abstractmethod
    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        """Write the native file(s) into ``directory`` under names starting ``index-{tag}``."""

    @abc.abstractmethod
    def _read_files(self, files: dict[str, Path]) -> None:
        """Read what :meth:`_write_files` wrote (the keys set included)."""
