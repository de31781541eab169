"""Position labels: FAISS structures whose ids are positions (HNSW graph nodes, rows of a refinement
copy), mapped back to the store's keys, with removal by marking positions dead and compaction."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from indexers.keymap import KeyMap

__all__ = ["PositionLabels", "label_arrays", "read_labels"]

_COMPACT_MIN_DEAD = 1000  # dead rows tolerated before a rebuild, whatever their share
_SENTINEL = np.array([-1], dtype=np.int64)


def label_arrays(labels: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays that save ``labels`` (role -> array): ``label_runs`` — ``[first key, length]`` of each
    run of consecutive keys at consecutive positions, 16 bytes per run — where that is smaller than the
    plain ``labels`` (8 bytes per position: a bulk load is one run, so its labels cost nothing)."""
    n = len(labels)
    if n < 2:
        return {"labels": labels}
    starts = np.concatenate([[0], np.flatnonzero(np.diff(labels) != 1) + 1])
    if 2 * len(starts) >= n:
        return {"labels": labels}
    lengths = np.diff(np.concatenate([starts, [n]]))
    return {"label_runs": np.stack([labels[starts], lengths], axis=1).astype(np.int64)}


def read_labels(files: dict[str, Any]) -> np.ndarray:
    """The labels saved by :func:`label_arrays` (either form), as int64; ValueError if malformed."""
    if "label_runs" not in files:
        return np.load(files["labels"], allow_pickle=False)
    runs = np.load(files["label_runs"], allow_pickle=False)
    if runs.ndim != 2 or runs.shape[1] != 2 or runs.dtype != np.int64 or (runs[:, 1] <= 0).any():
        raise ValueError(f"malformed label runs: shape {runs.shape}, dtype {runs.dtype}")
    first, lengths = runs[:, 0], runs[:, 1]
    offsets = np.cumsum(lengths) - lengths  # the position each run starts at
    return np.repeat(first - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


class PositionLabels:
    """FAISS ids that are positions (graph nodes, rows of a refinement copy), mapped back to keys.

    ``_labels[position]`` is the key stored there, ``-1`` once removed; ``_key_of`` is the same array
    with one more ``-1`` at the end, so that FAISS's ``-1`` padding maps to ``-1`` in a single take.
    """

    _key_of: np.ndarray
    _labels: np.ndarray
    _keymap: KeyMap  # key -> position of the live keys, vectorised, built on first lookup
    _dead: int
    _skip_dead: tuple[Any, Any] | None  # (IDSelectorBatch of dead positions, its negation), cached

    def _reset_labels(self) -> None:
        self._set_key_of(np.array([-1], dtype=np.int64))
        self._keymap = KeyMap()
        self._dead = 0

    def _set_key_of(self, key_of: np.ndarray) -> None:
        self._key_of = key_of  # the labels plus the trailing -1 sentinel
        self._labels = key_of[:-1]
        self._skip_dead = None

    def _append_labels(self, start: int, keys: np.ndarray) -> None:
        self._set_key_of(np.concatenate([self._labels, keys, _SENTINEL]))
        self._keymap.set(keys, np.arange(start, start + len(keys), dtype=np.int64))

    def _drop_labels(self, keys: np.ndarray) -> np.ndarray:
        """Mark ``keys`` removed; returns their positions."""
        positions = self._positions(keys)
        self._labels[positions] = -1
        self._keymap.clear(keys)
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
        """Positions of live ``keys`` (KeyError naming some that are not stored, unless ``missing_ok``:
        then the positions of those that are)."""
        found, positions = self._keymap.locate(self._labels, keys)
        if missing_ok:
            return positions[found]
        if not found.all():
            raise KeyError(f"keys not stored: {np.asarray(keys)[~found][:5].tolist()}")
        return positions

    def _live_mask(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` are stored (vectorised; the kinds' ``contains_many``)."""
        return self._keymap.locate(self._labels, keys)[0]

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
        self._keymap = KeyMap()
        self._dead = len(self._labels) - len(live_keys)
        return live_keys
