"""The shared base of every backend: key bookkeeping, the search contract (padding, filtering) and
save/load through :mod:`indexers.persistence`.

Contract every backend keeps (``tests/indexers`` checks it for each one):

- keys are non-negative int64; ``add`` of a key already present (or repeated in the batch) raises
  :class:`~indexers.errors.DuplicateIDError` and adds nothing — to replace, ``remove`` first;
- vectors are finite float32 ``[n, dim]``;
- ``search`` returns ``keys int64[q, k]`` and ``scores float32[q, k]``, higher is better, sorted,
  padded with ``-1`` / ``-inf`` when fewer than ``k`` exist (the arrays never shrink);
- ``allowed`` restricts results to those keys; selective sets (:func:`searched_exactly`) are searched
  exactly over the allowed vectors, broad ones through the backend's filtered search or over-fetching,
  and a row that comes back short while enough allowed keys exist is redone exactly;
- ``save(dir)`` writes the native file plus ``manifest.json`` atomically; ``load(dir)`` verifies the
  manifest and the file's size, and its CRC unless the file still has the size, mtime, inode and
  device recorded when it was written and checksummed (``verify="full"`` always recomputes it).
"""

from __future__ import annotations

import abc
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, ClassVar

import numpy as np

from indexers.errors import (
    DuplicateIDError,
    IncompatibleIndexError,
    IndexCorruptedError,
    InvalidIDError,
    InvalidInputError,
    UnsupportedMetricError,
)
from indexers.persistence import check_crc, verified_files, write_manifest
from indexers.scoring import check_metric, empty_results, exact_scores, top_k
from indexers.spec import IndexSpec
from indexers.validation import all_finite, check_keys, check_vectors, well_formed

__all__ = ["EXACT_FILTER_FRACTION", "EXACT_FILTER_MAX", "BaseIndex", "searched_exactly"]

# An allowed set at most this large (or this fraction of the index) is searched exactly over its
# vectors: below it, scoring every allowed vector costs less than a filtered graph walk, and the
# answer is exact. The store applies a higher threshold of its own before it asks the index
# (vectorstore.pipeline.EXACT_FILTER_MAX: its exact path reads its float32 cache, not the index).
EXACT_FILTER_MAX = 4096
EXACT_FILTER_FRACTION = 0.02

_NO_KEYS = np.empty(0, dtype=np.int64)


def searched_exactly(n_allowed: int, n_stored: int) -> bool:
    """Whether a filter allowing ``n_allowed`` of ``n_stored`` keys is answered by an exact scan."""
    return n_allowed <= max(EXACT_FILTER_MAX, EXACT_FILTER_FRACTION * n_stored)


class BaseIndex(abc.ABC):
    """Validation, filtering, padding and persistence shared by every backend.

    Subclasses set ``kind``, ``metrics`` and ``defaults`` (their persisted options, which are also their
    keyword-only constructor arguments) and implement the ``_add`` / ``_remove`` / ``_search`` /
    ``_vectors_for`` / ``_write_files`` / ``_read_files`` hooks.
    """

    kind: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]] = ("cosine", "dot", "euclidean", "manhattan")
    defaults: ClassVar[Mapping[str, Any]] = {}
    # file roles the backend verifies itself, block by block, on first use after a load
    lazily_verified: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, dim: int, metric: str, options: Mapping[str, Any]) -> None:
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim <= 0:
            raise InvalidInputError(f"dim must be a positive integer, got {dim!r}")
        m = check_metric(metric)
        if m not in self.metrics:
            raise UnsupportedMetricError(
                f"backend {self.kind!r} does not support metric {m!r}; it supports {list(self.metrics)}"
            )
        self._dim = int(dim)
        self._ones = np.ones(self._dim, dtype=np.float32)
        self._metric = m
        self.options: Mapping[str, Any] = MappingProxyType({**self.defaults, **options})
        self._validate_options()
        # fixed by metric and options, and read on every add and search: computed once
        self._prepare_checks_finite = self._prepare_rejects_nonfinite()
        self._key_set: set[int] | None = set()
        self._loaded_keys = _NO_KEYS  # a loaded index's keys, made into ``_key_set`` on first need
        self.sequence = 0
        # caller-defined facts saved in the manifest (the store records where the index came from)
        self.tags: dict[str, Any] = {}
        # files loaded with verify="lazy" whose checksum is still to be checked: role -> (path, crc)
        self.pending_verification: dict[str, tuple[Path, int]] = {}
        self._pending_handles: dict[str, BinaryIO] = {}  # those files, opened when loaded

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Refuse option names this backend does not have, listing the valid ones."""
        unknown = sorted(set(options) - set(cls.defaults))
        if unknown:
            raise InvalidInputError(
                f"unknown option(s) {unknown} for backend {cls.kind!r}; valid options: {sorted(cls.defaults)}"
            )

    @property
    def _keys(self) -> set[int]:
        """The stored keys as a set; a loaded index builds it on first use, so loading stays O(files)."""
        keys = self._key_set
        if keys is None:
            keys = self._key_set = set(self._loaded_keys.tolist())
            self._loaded_keys = _NO_KEYS
        return keys

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
        :func:`~indexers.validation.unit_rows_checked`, the cosine normalisation) before changing or
        searching anything, so :meth:`add` and :meth:`search` skip their own pass over the vectors.
        Asked once, at construction; the answer is kept as ``_prepare_checks_finite``."""
        return False

    @property
    def scores_are_exact(self) -> bool:
        """Whether :meth:`search` scores are the exact similarity of the vectors as added, to float32
        rounding (an index that keeps them at full precision), so a caller need not rescore them."""
        return False

    @property
    def stores_full_vectors(self) -> bool:
        """Whether the index keeps every vector at full float32 precision and :meth:`get_vectors` reads
        them back cheaply (as added; unit length for cosine), so a caller can use the index as its
        vector store instead of keeping a copy of its own."""
        return False

    @property
    def rescore_from_truth(self) -> bool:
        """Whether the index keeps only compact codes and its caller should rescore candidates from the
        full-precision vectors it already keeps elsewhere (the store's SQLite truth) rather than hold a
        float32 copy beside the index."""
        return False

    @property
    def default_oversample(self) -> int:
        """ANN candidates per requested result a caller should rescore exactly when it asks for no
        other number: the coarser the index's scores, the more candidates exact rescoring needs to
        restore the exact ranking (4 unless the kind knows better)."""
        return 4

    @property
    def needs_retraining(self) -> bool:
        """Whether the vectors added since the index was trained fit its trained structure poorly (a
        quantizer's learned range clips many of their values), so that rebuilding it from the stored
        vectors, which trains it afresh, would find better candidates. False for untrained kinds."""
        return False

    @property
    def removed_entries(self) -> int:
        """Entries the index still holds for removed keys (an HNSW graph cannot drop a node): space it
        gives back only when rebuilt from its live vectors. 0 for kinds that drop entries at once."""
        return 0

    def contains_many(self, keys: Any) -> np.ndarray:
        """Boolean mask: which of ``keys`` are stored."""
        k = np.asarray(keys, dtype=np.int64)
        return np.fromiter((x in self._keys for x in k.tolist()), dtype=bool, count=len(k))

    def get_vectors(self, keys: Any) -> np.ndarray:
        """The stored vectors of ``keys`` as the index holds them (unit length for cosine; lossy for
        quantized kinds), float32 ``[n, dim]``.

        Raises:
            InvalidIDError: some key is not stored.
        """
        k = np.asarray(keys, dtype=np.int64)
        missing = ~self.contains_many(k)
        if missing.any():
            raise InvalidIDError(f"keys not stored: {k[missing][:5].tolist()}")
        return self._vectors_for(k) if len(k) else np.empty((0, self._dim), dtype=np.float32)

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
        return f"{type(self).__name__}(dim={self._dim}, metric={self._metric!r}, n={len(self)}, options={dict(self.options)})"

    # ------------------------------------------------------------------ validation
    def _validate_options(self) -> None:  # noqa: B027 - optional hook, most backends override it
        """Subclasses check their option values here."""

    def _check_vectors(self, vectors: Any, what: str = "vectors", finite: bool = True) -> np.ndarray:
        """Validated C-contiguous float32 ``[n, dim]``; ``finite=False`` leaves the NaN/inf check of
        well-formed float32 input to the caller (an add whose normalisation pass checks it instead)."""
        if well_formed(vectors, self._dim) and (not finite or all_finite(vectors, self._ones)):
            return vectors  # the common case, decided with one numpy reduction
        return check_vectors(vectors, self._dim, what)

    # ------------------------------------------------------------------ public operations
    def add(self, keys: Any, vectors: Any) -> None:
        """Add ``vectors[i]`` under ``keys[i]``; all-or-nothing.

        Raises:
            DuplicateIDError: a key is repeated in the batch or already stored.
            DimensionMismatchError, InvalidVectorError, InvalidIDError: bad input.
        """
        k = check_keys(keys)
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
        k = check_keys(keys)
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
            and well_formed(queries, self._dim)
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
        if searched_exactly(len(allowed_keys), len(self)):
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
            cand = check_keys(np.asarray(list(allowed) if isinstance(allowed, Iterable) else allowed))
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
    def save(
        self,
        directory: str | os.PathLike[str],
        *,
        sequence: int | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the native file(s) and ``manifest.json`` atomically into ``directory``.

        The manifest is renamed into place last, so a crash leaves either the old or the new index.
        ``sequence`` and ``tags`` (JSON values) are recorded in the manifest and restored by loading.
        """
        if sequence is not None:
            self.sequence = int(sequence)
        if tags is not None:
            self.tags = dict(tags)
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tag = uuid.uuid4().hex[:12]
        written = self._write_files(d, tag)
        facts = {
            "backend": self.kind,
            "dim": self._dim,
            "metric": self._metric,
            "options": dict(self.options),
            "sequence": self.sequence,
            "count": len(self),
            "tags": self.tags,
        }
        write_manifest(d, tag, written, facts)
        return d

    def verify_pending(self) -> None:
        """Check the checksums :func:`~indexers.load_index` deferred (``verify="lazy"``).

        Raises:
            IndexCorruptedError: a file fails its checksum (the index must not be used).
        """
        for role, (path, crc) in list(self.pending_verification.items()):
            handle = self._pending_handles.get(role)
            try:
                check_crc(path, crc, handle)
            finally:
                if handle is not None:
                    handle.close()
                    del self._pending_handles[role]
            del self.pending_verification[role]
        self._on_verified()

    @property
    def verifies_reads(self) -> bool:
        """Whether the stored vectors this index serves (``get_vectors``) are known to be the saved ones:
        once no checksum is deferred any more, or earlier for kinds that check each block of their
        storage as it is read."""
        return not self.pending_verification

    def _on_verified(self) -> None:  # noqa: B027 - optional hook
        """Called once no checksum of the loaded files is deferred any more."""

    @classmethod
    def _restore(cls, directory: Path, manifest: dict[str, Any], verify: bool | str) -> BaseIndex:
        files, deferred = verified_files(directory, manifest, verify, cls.lazily_verified)
        try:
            options = dict(manifest["options"])
            cls.check_options(options)
            index = cls(int(manifest["dim"]), str(manifest["metric"]), **options)
        except (InvalidInputError, TypeError, ValueError) as exc:
            raise IncompatibleIndexError(
                f"saved index in {directory} has options this version rejects: {exc}"
            ) from exc
        try:
            index._read_files(files, deferred & cls.lazily_verified)
        except (IndexCorruptedError, IncompatibleIndexError):
            raise
        except Exception as exc:  # the backend's own error: translate at the seam
            raise IndexCorruptedError(f"cannot read {index.kind} index in {directory}: {exc}") from exc
        if len(index) != int(manifest.get("count", len(index))):
            raise IndexCorruptedError(
                f"index in {directory} holds {len(index)} vectors, the manifest says {manifest.get('count')}"
            )
        index.sequence = int(manifest["sequence"])
        tags = manifest.get("tags") or {}
        if not isinstance(tags, dict):
            raise IndexCorruptedError(f"index manifest in {directory} has tags that are not an object")
        index.tags = tags
        index.pending_verification = {
            role: (files[role], int(manifest["files"][role]["crc32"]))
            for role in deferred - cls.lazily_verified
        }
        try:  # held open until checked: another process may unlink the files of a replaced generation
            index._pending_handles = {
                role: open(files[role], "rb", buffering=0)  # noqa: SIM115 - closed once checked
                for role in index.pending_verification
            }
        except OSError as exc:
            raise IndexCorruptedError(f"index file in {directory} vanished while loading: {exc}") from exc
        if not index.pending_verification:
            index._on_verified()
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
    def _read_files(
        self, files: dict[str, Path], unverified: frozenset[str] | set[str] = frozenset()
    ) -> None:
        """Read what :meth:`_write_files` wrote (the keys set included); ``unverified`` names the roles
        of :attr:`lazily_verified` whose checksums this backend must check on first use."""
