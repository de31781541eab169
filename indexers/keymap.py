"""``KeyMap``: vectorised key -> position lookup for arrays of keys, built lazily and kept up to date.

The store's keys are its row ids, small dense integers, so the map is normally one ``int64`` array
indexed by key (a lookup is one gather); keys spread too thinly for that fall back to binary search
in a sorted copy. A keys array that is strictly increasing already (an index loaded or built by
appending rows in key order, nothing removed) needs neither: lookups binary-search it in place, so
the first query after a load allocates nothing. Building costs no per-key Python work, which keeps
loading a large index fast.
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
        # the keys array is strictly increasing with this many entries, its last key this one
        self._increasing: tuple[int, int] | None = None

    def reset(self) -> None:
        """Forget everything: the next lookup rebuilds from the keys array."""
        self._dense = None
        self._sorted = None
        self._increasing = None

    def set(self, keys: np.ndarray, positions: np.ndarray) -> None:
        """``keys`` now live at ``positions``."""
        self._sorted = None
        if self._increasing is not None and len(keys):
            n, last = self._increasing
            appended = int(positions[0]) == n and bool(np.all(np.diff(positions) == 1))
            if appended and int(keys[0]) > last and bool(np.all(np.diff(keys) > 0)):
                self._increasing = (n + len(keys), int(keys[-1]))
            else:
                self._increasing = None
        if self._dense is not None and len(keys):
            if int(keys.min()) >= 0 and int(keys.max()) < len(self._dense):
                self._dense[keys] = positions
            else:
                self._dense = None

    def clear(self, keys: np.ndarray) -> None:
        """``keys`` are gone."""
        self._sorted = None
        self._increasing = None  # their slots become -1 (or are refilled): no longer increasing
        if self._dense is not None and len(keys):
            self._dense[keys] = -1

    def locate(self, keys_array: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, positions) of ``queries`` in ``keys_array`` (positions are meaningless where not found)."""
        queries = np.asarray(queries, dtype=np.int64)
        if self._dense is None and self._sorted is None and self._increasing is None:
            self._build(keys_array)
        if self._increasing is not None:
            n = self._increasing[0]
            if n == 0:
                return np.zeros(len(queries), dtype=bool), np.zeros(len(queries), dtype=np.int64)
            at = np.minimum(np.searchsorted(keys_array[:n], queries), n - 1)
            return keys_array[at] == queries, at
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
        n = len(keys_array)
        if n and keys_array[0] >= 0 and bool((keys_array[1:] > keys_array[:-1]).all()):
            self._increasing = (n, int(keys_array[-1]))
            return
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
