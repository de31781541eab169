"""``PendingVectors``: the keys whose vectors are applied but not yet in the ANN index.

Queries scan them exactly, so no acknowledged record is missed while the background indexer catches
up. The scan reads one contiguous snapshot of their vectors, built once after a change rather than
gathered on every query; indexing takes keys oldest-first, so after each indexed chunk the snapshot
stays valid as a view of its remainder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["PendingVectors"]


class PendingVectors:
    """Applied-but-unindexed keys, oldest first, with a lazily built contiguous copy of their vectors."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._keys: dict[int, None] = {}  # insertion-ordered set
        self._snapshot: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, keys: Iterable[int]) -> None:
        """Mark ``keys`` pending (newest last)."""
        before = len(self._keys)
        self._keys.update(dict.fromkeys(keys))
        if len(self._keys) != before:
            self._snapshot = None

    def discard(self, keys: Iterable[int]) -> None:
        """Forget ``keys`` (deleted or replaced records); absent keys are ignored."""
        removed = False
        for k in keys:
            if k in self._keys:
                del self._keys[k]
                removed = True
        if removed:
            self._snapshot = None

    def clear(self) -> None:
        """Forget every key."""
        self._keys.clear()
        self._snapshot = None

    def oldest(self, n: int) -> np.ndarray:
        """Up to ``n`` keys, oldest first."""
        out = np.empty(min(n, len(self._keys)), dtype=np.int64)
        for i, k in zip(range(len(out)), self._keys):
            out[i] = k
        return out

    def mark_indexed(self, keys: np.ndarray) -> None:
        """``keys`` (a prefix from :meth:`oldest`) went into the index."""
        for k in keys.tolist():
            self._keys.pop(k, None)
        snap = self._snapshot
        n = len(keys)
        if snap is not None and np.array_equal(snap[0][:n], keys):
            self._snapshot = (snap[0][n:], snap[1][n:])  # views: nothing copied
        else:
            self._snapshot = None

    def snapshot(self, vectors_of: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(keys, their vectors as one C-contiguous ``[n, dim]`` array), built with ``vectors_of``
        after a change and reused until the next one."""
        if self._snapshot is None:
            keys = np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))
            vecs = vectors_of(keys) if len(keys) else np.empty((0, self.dim), np.float32)
            self._snapshot = (keys, np.ascontiguousarray(vecs, dtype=np.float32))
        return self._snapshot
