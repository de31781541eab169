"""``PendingVectors``: the keys whose vectors are applied but not yet in the ANN index.

Queries scan them exactly, so no acknowledged record is missed while the background indexer catches
up. The scan reads one contiguous snapshot of their vectors, kept up to date incrementally rather
than gathered on every query: indexing takes keys oldest-first, so after each indexed chunk the
snapshot stays valid as a view of its remainder, and newly applied keys are appended to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["PendingVectors"]


class PendingVectors:
    """Applied-but-unindexed keys, oldest first, with a lazily built contiguous copy of their vectors.

    The copy lives in a growable buffer: keys indexed from the front move its start, keys added at the
    back are appended (only their vectors are read, on the next :meth:`snapshot`), so a steady stream
    of small batches never re-reads the whole backlog; any other change (a key discarded from the
    middle) drops the copy, and the next snapshot rebuilds it.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._keys: dict[int, None] = {}  # insertion-ordered set
        # the copy: rows [lo, hi) of the buffers are the oldest pending keys, in order; ``_tail`` holds
        # the keys added after them (not copied yet). ``_buf_keys`` None: no copy.
        self._buf_keys: np.ndarray | None = None
        self._buf_vecs = np.empty((0, dim), np.float32)
        self._lo = self._hi = 0
        self._tail: list[int] = []
        self._build = threading.Lock()  # snapshots are taken by concurrent readers

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, keys: Iterable[int]) -> None:
        """Mark ``keys`` pending (newest last; keys already pending keep their place)."""
        new = [k for k in dict.fromkeys(keys) if k not in self._keys]
        self._keys.update(dict.fromkeys(new))
        if self._buf_keys is not None:
            self._tail.extend(new)

    def discard(self, keys: Iterable[int]) -> None:
        """Forget ``keys`` (deleted or replaced records); absent keys are ignored."""
        removed = False
        for k in keys:
            if k in self._keys:
                del self._keys[k]
                removed = True
        if removed:
            self._drop_copy()

    def clear(self) -> None:
        """Forget every key."""
        self._keys.clear()
        self._drop_copy()

    def _drop_copy(self) -> None:
        self._buf_keys, self._buf_vecs = None, np.empty((0, self.dim), np.float32)
        self._lo = self._hi = 0
        self._tail = []

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
        n = len(keys)
        if self._buf_keys is None:
            return
        if n <= self._hi - self._lo and np.array_equal(self._buf_keys[self._lo : self._lo + n], keys):
            self._lo += n  # the copy's remainder stays valid: nothing copied
        else:
            self._drop_copy()

    def snapshot(self, vectors_of: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(keys, their vectors as one C-contiguous ``[n, dim]`` array), read with ``vectors_of`` for
        the keys not copied yet and reused until the next change; the arrays are views that later
        changes never write into."""
        with self._build:
            if self._buf_keys is None:
                keys = np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))
                self._buf_keys, self._buf_vecs, self._lo, self._hi = keys, self._buf_vecs[:0], 0, 0
                self._tail = []
                self._append(keys, vectors_of)
            elif self._tail:
                tail = np.asarray(self._tail, dtype=np.int64)
                self._tail = []
                self._append(tail, vectors_of)
            assert self._buf_keys is not None
            return self._buf_keys[self._lo : self._hi], self._buf_vecs[self._lo : self._hi]

    def _append(self, keys: np.ndarray, vectors_of: Callable[[np.ndarray], np.ndarray]) -> None:
        assert self._buf_keys is not None
        m = len(keys)
        if not m:
            return
        vecs = np.asarray(vectors_of(keys), dtype=np.float32)
        live = self._hi - self._lo
        if self._hi + m > len(self._buf_keys) or len(self._buf_vecs) < len(self._buf_keys):
            # a new buffer with room to grow (views handed out keep the old one alive)
            cap = max(2 * (live + m), 1024)
            buf_keys = np.empty(cap, dtype=np.int64)
            buf_vecs = np.empty((cap, self.dim), dtype=np.float32)
            buf_keys[:live] = self._buf_keys[self._lo : self._hi]
            buf_vecs[:live] = self._buf_vecs[self._lo : self._hi]
            self._buf_keys, self._buf_vecs, self._lo, self._hi = buf_keys, buf_vecs, 0, live
        self._buf_keys[self._hi : self._hi + m] = keys
        self._buf_vecs[self._hi : self._hi + m] = vecs
        self._hi += m
