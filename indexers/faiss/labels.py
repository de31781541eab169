"""Position labels: FAISS structures whose ids are positions (HNSW graph nodes, rows of a refinement
copy), mapped back to the store's keys, with removal by marking positions dead and compaction."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

__all__ = ["PositionLabels"]

_COMPACT_MIN_DEAD = 1000  # dead rows tolerated before a rebuild, whatever their share
_SENTINEL = np.array([-1], dtype=np.int64)


class PositionLabels:
    """FAISS ids that are positions (graph nodes, rows of a refinement copy), mapped back to keys.

    ``_labels[position]`` is the key stored there, ``-1`` once removed; ``_key_of`` is the same array
    with one more ``-1`` at the end, so that FAISS's ``-1`` padding maps to ``-1`` in a single take.
    """

    _key_of: np.ndarray
    _labels: np.ndarray
    _internal_map: dict[int, int] | None
    _dead: int
    _skip_dead: tuple[Any, Any] | None  # (IDSelectorBatch of dead positions, its negation), cached

    def _reset_labels(self) -> None:
        self._set_key_of(np.array([-1], dtype=np.int64))
        self._internal_map = None
        self._dead = 0

    @property
    def _internal(self) -> dict[int, int]:
        """key -> position of every live key; built on first use (a removal, a key lookup or a filtered
        search), not by adds or loads: ~30 MB of Python objects per 200k keys that plain search never needs."""
        if self._internal_map is None:
            live = np.nonzero(self._labels >= 0)[0]
            self._internal_map = dict(zip(self._labels[live].tolist(), live.tolist()))
        return self._internal_map

    def _set_key_of(self, key_of: np.ndarray) -> None:
        self._key_of = key_of  # the labels plus the trailing -1 sentinel
        self._labels = key_of[:-1]
        self._skip_dead = None

    def _append_labels(self, start: int, keys: np.ndarray) -> None:
        self._set_key_of(np.concatenate([self._labels, keys, _SENTINEL]))
        internal = self._internal_map
        if internal is not None:  # kept up to date once built; otherwise built from the labels when needed
            internal.update(zip(keys.tolist(), range(start, start + len(keys))))

    def _drop_labels(self, keys: np.ndarray) -> np.ndarray:
        """Mark ``keys`` removed; returns their positions."""
        internal = self._internal
        positions = np.fromiter((internal.pop(k) for k in keys.tolist()), dtype=np.int64, count=len(keys))
        self._labels[positions] = -1
        self._dead += len(keys)
        self._skip_dead = None
        return positions

    def _dead_selector(self) -> tuple[Any, Any]:
        """(dead positions, the selector that excludes them), rebuilt only after a removal.

        The negation points at the batch without owning it: callers keep both alive while searching.
        """
        if self._skip_dead is None:
            dead = faiss.IDSelectorBatch(np.nonzero(self._labels < 0)[0].astype(np.int64))
            self._skip_dead = (dead, faiss.IDSelectorNot(dead))
        return self._skip_dead

    def _positions(self, keys: np.ndarray, missing_ok: bool = False) -> np.ndarray:
        internal = self._internal
        if missing_ok:
            return np.fromiter((internal[k] for k in keys.tolist() if k in internal), dtype=np.int64)
        return np.fromiter((internal[k] for k in keys.tolist()), dtype=np.int64, count=len(keys))

    def _live_entries(self, storage: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(live keys, their prepared vectors reconstructed from ``storage``, None when none live)."""
        live = np.nonzero(self._labels >= 0)[0]
        keys = self._labels[live].copy()
        vectors = storage.reconstruct_batch(live) if len(live) else None
        return keys, None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)

    def _needs_compaction(self) -> bool:
        return self._dead > _COMPACT_MIN_DEAD and self._dead * 2 > len(self._labels)

    def _load_labels(self, labels: np.ndarray) -> np.ndarray:
        """Adopt saved labels (no per-key work: the key map is built on first use); returns the live keys."""
        self._set_key_of(np.concatenate([labels.astype(np.int64, copy=False), _SENTINEL]))
        live_keys = self._labels[self._labels >= 0]
        self._internal_map = None
        self._dead = len(self._labels) - len(live_keys)
        return live_keys
