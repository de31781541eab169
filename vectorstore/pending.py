"""``PendingVectors``: the keys whose vectors are applied but not yet in the ANN index.

Queries scan them exactly, so no acknowledged record is missed while the background indexer catches
up. The scan reads contiguous blocks of their vectors, kept up to date incrementally rather than
gathered on every query: each applied batch becomes a block of its own (copied from the vectors its
writer had in hand), indexing takes keys oldest-first, so the first block shrinks to a view of its
remainder, and nothing already copied is copied again — a new batch never costs a query (or the
writer) a copy of the whole backlog.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["PendingVectors"]

Block = tuple[np.ndarray, np.ndarray]  # (keys, their rows [n, dim], C-contiguous)

# A block smaller than this is merged with the batch after it (a stream of single-row writes does not
# turn into thousands of tiny blocks, each a separate product in every query).
_MERGE_BELOW = 1024


class PendingVectors:
    """Applied-but-unindexed keys, oldest first, with lazily built contiguous blocks of their vectors.

    Keys added at the back become a new block on the next :meth:`blocks` (from the vectors :meth:`add`
    was given, else read for them alone); keys indexed from the front shrink the first blocks; any
    other change (a key discarded from the middle) drops the blocks, and the next call rebuilds them
    as one.

    Args:
        dim: the vectors' dimension.
        scan_form: applied to every row as it is copied (e.g. unit length for cosine scans).
    """

    def __init__(self, dim: int, scan_form: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.dim = dim
        self._scan_form = scan_form
        self._keys: dict[int, None] = {}  # insertion-ordered set
        # the copy, oldest first (None: no copy), and the batches added after it, not copied yet:
        # (keys, their vectors or None to read them)
        self._blocks: list[Block] | None = []
        self._tail: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._build = threading.Lock()  # blocks are built by concurrent readers

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def prepare(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as :meth:`add` keeps them: a C-contiguous float32 copy of their own, in scan
        form. Call it before taking the lock :meth:`add` runs under, so that adding is only a link."""
        rows = np.array(vectors, dtype=np.float32, order="C")
        if self._scan_form is not None:
            rows = np.ascontiguousarray(self._scan_form(rows), dtype=np.float32)
        return rows

    def add(self, keys: Iterable[int], vectors: np.ndarray | None = None) -> None:
        """Mark ``keys`` pending (newest last; keys already pending keep their place). ``vectors``:
        theirs, row for row, from :meth:`prepare`, when in hand: they become a block as they are
        (neither read nor copied again)."""
        key_list = [int(k) for k in keys]
        first: dict[int, int] = {}  # each new key's first position in the batch
        for i, k in enumerate(key_list):
            if k not in self._keys and k not in first:
                first[k] = i
        if not first:
            return
        new, take = list(first), list(first.values())
        self._keys.update(dict.fromkeys(new))
        if self._blocks is None:
            return
        new_keys = np.asarray(new, dtype=np.int64)
        if vectors is None:
            self._tail.append((new_keys, None))
            return
        rows = vectors if len(take) == len(key_list) else vectors[np.asarray(take)]
        if self._tail:  # keep the order: behind the batches waiting to be read
            self._tail.append((new_keys, rows))
        else:
            with self._build:
                self._blocks = self._appended(self._blocks, new_keys, rows)

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
        self._blocks = None if self._keys else []  # nothing pending: an empty copy is a whole one
        self._tail = []

    def oldest(self, n: int) -> np.ndarray:
        """Up to ``n`` keys, oldest first."""
        out = np.empty(min(n, len(self._keys)), dtype=np.int64)
        for i, k in zip(range(len(out)), self._keys):
            out[i] = k
        return out

    def oldest_rows(self, n: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Up to ``n`` keys, oldest first (as :meth:`oldest`), with their rows in scan form when the
        blocks hold them (else ``None``: the caller reads them), so that indexing a slice reads nothing."""
        with self._build:
            blocks = self._blocks
            if blocks is None:
                return self.oldest(n), None
            take, parts, rows = min(n, len(self._keys)), [], []
            for block_keys, block_rows in blocks:
                if take <= 0:
                    break
                parts.append(block_keys[:take])
                rows.append(block_rows[:take])
                take -= len(parts[-1])
        if take > 0:  # the rest are in batches not copied yet
            return self.oldest(n), None
        if not parts:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        if len(parts) == 1:
            return parts[0], rows[0]
        return np.concatenate(parts), np.concatenate(rows)

    def mark_indexed(self, keys: np.ndarray) -> None:
        """``keys`` (a prefix from :meth:`oldest`) went into the index."""
        for k in keys.tolist():
            self._keys.pop(k, None)
        if self._blocks is None:
            return
        blocks, rest = self._blocks, np.asarray(keys, dtype=np.int64)
        while len(rest) and blocks:
            block_keys, rows = blocks[0]
            m = min(len(block_keys), len(rest))
            if not np.array_equal(block_keys[:m], rest[:m]):
                self._drop_copy()  # not a prefix of the copy
                return
            blocks = blocks[1:] if m == len(block_keys) else [(block_keys[m:], rows[m:]), *blocks[1:]]
            rest = rest[m:]
        if len(rest):  # indexed past the copy, into batches not copied yet
            self._drop_copy()
            return
        self._blocks = blocks  # a new list: block lists handed out stay as they were

    def blocks(self, vectors_of: Callable[[np.ndarray], np.ndarray]) -> list[Block]:
        """Every pending key with its vector, as blocks ``(keys, rows [n, dim])`` oldest first, rows
        C-contiguous (the first block's may be a view of the rows after its indexed ones); read with
        ``vectors_of`` for keys added without vectors and reused until the next change. The list and
        its arrays are never written into by later changes."""
        with self._build:
            if self._blocks is None:
                keys = np.fromiter(self._keys, dtype=np.int64, count=len(self._keys))
                self._tail = []
                self._blocks = self._appended([], keys, self.prepare(vectors_of(keys)) if len(keys) else None)
            elif self._tail:
                tail, self._tail = self._tail, []
                blocks = self._blocks
                for keys, rows in tail:
                    blocks = self._appended(
                        blocks, keys, self.prepare(vectors_of(keys)) if rows is None else rows
                    )
                self._blocks = blocks
            return self._blocks

    @staticmethod
    def _appended(blocks: list[Block], keys: np.ndarray, rows: np.ndarray | None) -> list[Block]:
        """``blocks`` plus a block of ``keys`` and their prepared ``rows`` (a new list; a small last
        block is merged with it)."""
        if not len(keys) or rows is None:
            return blocks
        if blocks and len(blocks[-1][0]) < _MERGE_BELOW:
            last_keys, last_rows = blocks[-1]
            return [*blocks[:-1], (np.concatenate([last_keys, keys]), np.concatenate([last_rows, rows]))]
        return [*blocks, (keys, rows)]
