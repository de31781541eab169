"""``KeyMap``: vectorised key -> position lookup for arrays of keys, built lazily and kept up to date.

The store's keys are its row ids, small dense integers, so the map is normally one ``int64`` array
indexed by key (a lookup is one gather); keys spread too thinly for that fall back to binary search
in a sorted copy. Building either costs no per-key Python work, which keeps loading a large index fast.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KeyMap"]

_DENSE_SLACK = 4096  # a dense map may be this much (plus 2x the key count) larger than the keys


class KeyMap:
    """Positions of keys in a ``keys`` array (entries below zero are empty slots).

    ``set`` / ``clear`` keep a built dense map current; anything a dense map cannot absorb (a key
    beyond its headroom) drops it, and the next :meth:`locate` rebuilds from ``keys``.
    """

    def __init__(self) -> None:
        self._dense: np.ndarray | None = None  # key -> position, -1 where absent
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (sorted keys, their positions)

    def reset(self) -> None:
        """Forget everything: the next lookup rebuilds from the keys array."""
        self._dense = None
        self._sorted = None

    def set(self, keys: np.ndarray, positions: np.ndarray) -> None:
        """``keys`` now live at ``positions``."""
        self._sorted = None
        if self._dense is not None and len(keys):
            if int(keys.min()) >= 0 and int(keys.max()) < len(self._dense):
                self._dense[keys] = positions
            else:
                self._dense = None

    def clear(self, keys: np.ndarray) -> None:
        """``keys`` are gone."""
        self._sorted = None
        if self._dense is not None and len(keys):
            self._dense[keys] = -1

    def locate(self, keys_array: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, positions) of ``queries`` in ``keys_array`` (positions are meaningless where not found)."""
        queries = np.asarray(queries, dtype=np.int64)
        if self._dense is None and self._sorted is None:
            self._build(keys_array)
        dense = self._dense
        if dense is not None:
            if not len(queries):
                return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
            if int(queries.min()) >= 0 and int(queries.max()) < len(dense):
                rows = dense[queries]
            else:
                inside = (queries >= 0) & (queries < len(dense))
                rows = np.where(inside, dense[np.where(inside, queries, 0)], -1)
            return rows >= 0, rows
        assert self._sorted is not None
        sorted_keys, sorted_pos = self._sorted
        if len(sorted_keys) == 0:
            return np.zeros(len(queries), dtype=bool), np.zeros(len(queries), dtype=np.int64)
        at = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
        return sorted_keys[at] == queries, sorted_pos[at]

    def _build(self, keys_array: np.ndarray) -> None:
        live = np.nonzero(keys_array >= 0)[0]
        keys = keys_array[live]
        top = int(keys.max()) if len(keys) else -1
        if top < 2 * len(keys) + _DENSE_SLACK:
            dense = np.full(top + top // 4 + 1024, -1, dtype=np.int64)  # headroom for appended row ids
            dense[keys] = live
            self._dense = dense
        else:
            order = np.argsort(keys, kind="stable")
            self._sorted = (keys[order], live[order].astype(np.int64))
