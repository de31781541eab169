"""The full-precision vectors a collection's queries read (rescoring, exact filtered scans, the scan of
not-yet-indexed vectors, dedupe), kept once beside the SQLite truth.

Two layouts, chosen by the index kind:

- :class:`SharedVectors` — the ANN index keeps every vector at float32 itself (``exact``,
  ``faiss-hnsw``): its storage *is* the cache, and only vectors applied but not yet indexed are held
  in a small overlay. Nothing else is saved, so on disk each vector exists twice in all (SQLite and
  the index file), and in memory once (the index's storage, memory-mapped after a reopen).
- :class:`OwnVectors` — the index keeps lossy codes (USearch f16/i8/b1, IVF-PQ, …) or reads vectors
  back slowly: a float32 table of its own (memory-mapped after a reopen), saved beside the index.
- :class:`TruthVectors` — the index keeps compact codes and asks to be rescored from the truth
  (``faiss-hnsw-sq``, :attr:`~indexers.BaseIndex.rescore_from_truth`): the vectors are read from SQLite
  by key when a query needs them (a few dozen per query), and only vectors applied but not yet
  indexed are held in an overlay. On disk each vector exists once at float32 (SQLite) plus its code.

Vectors read back from a :class:`SharedVectors` are as the index holds them — unit length for cosine
(equal scores) — so anything that must return the vectors as stored reads SQLite instead
(:attr:`VectorCache.raw` says which).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from indexers import BaseIndex
from indexers.exact import ExactIndex
from indexers.scoring import normalize_rows

__all__ = ["OwnVectors", "SharedVectors", "TruthReader", "TruthVectors", "VectorCache", "vector_cache_for"]


#: ``read(keys) -> (found mask, float32 vectors of the found keys in order)``: rows read from SQLite
TruthReader = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


class VectorCache:
    """Every applied key's float32 vector, for the query path."""

    #: whether :meth:`get_vectors` returns the vectors exactly as stored in SQLite
    raw: bool = True
    #: whether reading many vectors is a memory scan (False: each one is a database read)
    in_memory: bool = True

    def __len__(self) -> int:
        raise NotImplementedError

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """New (or replaced, after :meth:`remove`) keys, not yet in the ANN index."""
        raise NotImplementedError

    def remove(self, keys: np.ndarray) -> None:
        """Forget present ``keys`` (the caller removes them from the ANN index itself)."""
        raise NotImplementedError

    def indexed(self, keys: np.ndarray) -> None:
        """``keys`` (from :meth:`add`) were just added to the ANN index."""

    def add_indexed(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """New keys added to the ANN index at the same time (a rebuild)."""
        raise NotImplementedError

    def contains_many(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` are applied."""
        raise NotImplementedError

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        """float32 vectors of present ``keys`` (see :attr:`raw`)."""
        raise NotImplementedError

    def stored_keys(self) -> np.ndarray:
        """Every applied key (unordered)."""
        raise NotImplementedError

    @property
    def saved_part(self) -> ExactIndex | None:
        """What is saved beside the index (None: the index is the cache)."""
        return None

    def use_index(self, index: BaseIndex) -> None:
        """The ANN index was replaced by ``index`` holding the same keys and vectors (a compaction)."""


class OwnVectors(VectorCache):
    """A float32 table of its own (an :class:`~indexers.exact.ExactIndex` with the dot metric: raw rows)."""

    raw = True

    def __init__(self, table: ExactIndex) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.table.add(keys, vectors)

    def add_indexed(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.table.add(keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        self.table.remove(keys)

    def contains_many(self, keys: np.ndarray) -> np.ndarray:
        return self.table.contains_many(keys)

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        return self.table.get_vectors(keys)

    def stored_keys(self) -> np.ndarray:
        return self.table.stored_keys()

    @property
    def saved_part(self) -> ExactIndex:
        return self.table


class SharedVectors(VectorCache):
    """The ANN index's own float32 storage, plus an overlay for vectors it does not have yet."""

    raw = False

    def __init__(self, index: BaseIndex) -> None:
        self.index = index
        self.overlay = ExactIndex(index.dim, "dot")  # applied, not yet indexed: raw rows

    def __len__(self) -> int:
        return len(self.index) + len(self.overlay)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.overlay.add(keys, vectors)

    def remove(self, keys: np.ndarray) -> None:
        # the index drops its own part; only the overlay's is this cache's to remove
        if len(self.overlay):
            self.overlay.remove(keys[self.overlay.contains_many(keys)])

    def indexed(self, keys: np.ndarray) -> None:
        self.overlay.remove(keys)

    def contains_many(self, keys: np.ndarray) -> np.ndarray:
        found = self.index.contains_many(keys)
        if len(self.overlay):
            found |= self.overlay.contains_many(keys)
        return found

    def add_indexed(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        pass  # the index holds them

    def use_index(self, index: BaseIndex) -> None:
        self.index = index

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        if not len(self.overlay):
            return self.index.get_vectors(keys)
        pending = self.overlay.contains_many(keys)
        if not pending.any():
            return self.index.get_vectors(keys)
        out = np.empty((len(keys), self.index.dim), dtype=np.float32)
        rows = self.overlay.get_vectors(keys[pending])
        # as the index would hold them, so that one answer never mixes two forms
        out[pending] = normalize_rows(rows) if self.index.metric == "cosine" else rows
        if not pending.all():
            out[~pending] = self.index.get_vectors(keys[~pending])
        return out

    def stored_keys(self) -> np.ndarray:
        if not len(self.overlay):
            return self.index.keys()
        return np.concatenate([self.index.keys(), self.overlay.stored_keys()])


class TruthVectors(SharedVectors):
    """Vectors read from SQLite by key (the index holds codes only), plus the overlay of applied vectors
    the index does not have yet. A row that is gone from SQLite (deleted by a commit not applied here
    yet) or fails its checksum is served as the index decodes it: the query drops a deleted record at
    hydration anyway."""

    raw = True
    in_memory = False

    def __init__(self, index: BaseIndex, read: TruthReader) -> None:
        super().__init__(index)
        self.read = read

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return np.empty((0, self.index.dim), dtype=np.float32)
        out: np.ndarray | None = None
        rest = np.arange(len(keys))  # positions read from SQLite
        if len(self.overlay):
            pending = self.overlay.contains_many(keys)
            if pending.any():
                out = np.empty((len(keys), self.index.dim), dtype=np.float32)
                out[pending] = self.overlay.get_vectors(keys[pending])
                rest = np.nonzero(~pending)[0]
                if not len(rest):
                    return out
        found, vectors = self.read(keys if out is None else keys[rest])
        if out is None:
            if found.all():  # the common case (no key pending, every row found): no copies
                return vectors
            out = np.empty((len(keys), self.index.dim), dtype=np.float32)
        out[rest[found]] = vectors
        if not found.all():
            out[rest[~found]] = self.index.get_vectors(keys[rest[~found]])
        return out


def vector_cache_for(
    index: BaseIndex, saved: ExactIndex | None = None, read: TruthReader | None = None
) -> VectorCache:
    """The cache layout for ``index``: its own storage where it keeps full vectors; reads from SQLite
    (``read``) where it asks to be rescored from the truth; else ``saved`` (or a new, empty table)."""
    if index.stores_full_vectors:
        return SharedVectors(index)
    if index.rescore_from_truth and read is not None:
        return TruthVectors(index, read)
    return OwnVectors(saved if saved is not None else ExactIndex(index.dim, "dot"))
