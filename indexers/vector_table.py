"""``VectorTable``: keys and float32 vectors in growable arrays, the storage of the exact index and of
untrained IVF buffers."""

from __future__ import annotations

import zlib

import numpy as np

from indexers.errors import IndexCorruptedError
from indexers.keymap import KeyMap

__all__ = ["BLOCK_ROWS", "RowBlocks", "VectorTable", "block_crcs"]

BLOCK_ROWS = 8  # rows per checksummed block of a saved table: small, so a first query reads and checks little


def block_crcs(vectors: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """CRC32 of each ``block_rows``-row block of a C-contiguous array, as uint32."""
    n = len(vectors)
    return np.fromiter(
        (zlib.crc32(vectors[s : s + block_rows].data) for s in range(0, n, block_rows)),
        dtype=np.uint32,
        count=(n + block_rows - 1) // block_rows,
    )


class RowBlocks:
    """The :data:`BLOCK_ROWS`-row block checksums of an array loaded from a file, each block checked the
    first time a row of it is read: a large file is trusted block by block as it is used, instead of
    being read whole before the first answer.

    Args:
        crcs: :func:`block_crcs` of the array as it was saved.
        n_rows: rows the loaded array has (the checksums must cover exactly these).

    Raises:
        IndexCorruptedError: ``crcs`` does not cover ``n_rows`` rows.
    """

    def __init__(self, crcs: np.ndarray, n_rows: int) -> None:
        if len(crcs) != (n_rows + BLOCK_ROWS - 1) // BLOCK_ROWS:
            raise IndexCorruptedError(f"{len(crcs)} block checksums for a table of {n_rows} rows")
        self._crcs = np.asarray(crcs, dtype=np.uint32)
        self._done = np.zeros(len(crcs), dtype=bool)
        self._left = len(crcs)  # blocks not checked yet (so ``complete`` costs no scan)
        self._n = n_rows

    @property
    def complete(self) -> bool:
        """Whether every block has been checked."""
        return self._left == 0

    def verify(self, array: np.ndarray, rows: np.ndarray) -> None:
        """Check the blocks of ``rows`` not checked yet; ``array`` is the loaded data (rows past the
        loaded ones were added since and are not checked).

        Raises:
            IndexCorruptedError: a block's bytes are not what was saved.
        """
        rows = np.asarray(rows, dtype=np.int64)
        todo = np.unique(rows[(rows >= 0) & (rows < self._n)] // BLOCK_ROWS)
        todo = todo[~self._done[todo]]
        for b in todo.tolist():
            start = b * BLOCK_ROWS
            if zlib.crc32(np.ascontiguousarray(array[start : start + BLOCK_ROWS]).data) != int(self._crcs[b]):
                raise IndexCorruptedError(
                    f"stored vectors in rows {start}..{start + BLOCK_ROWS - 1} fail their checksum (garbled)"
                )
            self._done[b] = True
            self._left -= 1

    def verify_all(self, array: np.ndarray) -> None:
        """Check every block not checked yet."""
        self.verify(array, np.nonzero(~self._done)[0] * BLOCK_ROWS)


class VectorTable:
    """Keys and float32 vectors in growable arrays, with O(1) removal by swapping in the last row.

    The key -> row dict is built only when first needed (removal, small lookups). Bulk lookups use
    a dense ``key -> row`` array while the keys are small integers (the store's row ids: one gather
    per lookup), else a cached sorted copy of the keys; both are built lazily, so loading a large
    table costs no per-key Python work, and the dense array is kept up to date by writes.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._keys = np.empty(0, dtype=np.int64)
        self._vecs = np.empty((0, dim), dtype=np.float32)
        self._n = 0
        self._row_map: dict[int, int] | None = {}
        self._keymap = KeyMap()  # key -> row, vectorised, built on first lookup
        # a loaded table whose storage is checked block by block on first use
        self._blocks: RowBlocks | None = None

    @classmethod
    def from_arrays(cls, keys: np.ndarray, vectors: np.ndarray) -> VectorTable:
        """Adopt ``keys`` / ``vectors`` as the table's storage (no copy, no per-key work)."""
        table = cls(vectors.shape[1])
        table._keys, table._vecs, table._n = keys, vectors, len(keys)
        table._row_map = None
        return table

    def __len__(self) -> int:
        return self._n

    def check_blocks(self, crcs: np.ndarray) -> None:
        """Verify the storage lazily: each :data:`BLOCK_ROWS`-row block against ``crcs`` on first use."""
        blocks = RowBlocks(crcs, self._n)
        self._blocks = None if blocks.complete else blocks

    def _verify_rows(self, rows: np.ndarray) -> None:
        blocks = self._blocks
        if blocks is None or not len(rows):
            return
        blocks.verify(self._vecs, rows)
        if blocks.complete:
            self._blocks = None

    def verify_all(self) -> None:
        """Check every block still unverified (before a whole-table scan, a write or a save)."""
        if self._blocks is not None:
            self._blocks.verify_all(self._vecs)
            self._blocks = None

    @property
    def _row(self) -> dict[int, int]:
        if self._row_map is None:
            self._row_map = dict(zip(self._keys[: self._n].tolist(), range(self._n)))
        return self._row_map

    @property
    def keys(self) -> np.ndarray:
        return self._keys[: self._n]

    @property
    def vectors(self) -> np.ndarray:
        """Every stored row (verified first, once, when the table was loaded unverified)."""
        self.verify_all()
        return self._vecs[: self._n]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.verify_all()  # block checksums describe the rows as loaded, not as they will be
        need = self._n + len(keys)
        if need > len(self._keys) or not self._vecs.flags.writeable:
            cap = max(need, int(len(self._keys) * 1.5) + 1024)
            new_keys = np.empty(cap, dtype=np.int64)
            new_vecs = np.empty((cap, self.dim), dtype=np.float32)
            new_keys[: self._n] = self._keys[: self._n]
            new_vecs[: self._n] = self._vecs[: self._n]
            self._keys, self._vecs = new_keys, new_vecs
        self._keys[self._n : need] = keys
        self._vecs[self._n : need] = vectors
        if self._row_map is not None:
            for i, key in enumerate(keys.tolist()):
                self._row_map[key] = self._n + i
        self._keymap.set(keys, np.arange(self._n, need, dtype=np.int64))
        self._n = need

    def remove(self, keys: np.ndarray) -> None:
        self.verify_all()
        if not self._vecs.flags.writeable:
            self.add(np.empty(0, np.int64), np.empty((0, self.dim), np.float32))  # take a private copy
        row_map = self._row
        for key in keys.tolist():
            row = row_map.pop(key)
            last = self._n - 1
            self._keymap.clear(np.array([key], dtype=np.int64))
            if row != last:
                moved = int(self._keys[last])
                self._keys[row] = moved
                self._vecs[row] = self._vecs[last]
                row_map[moved] = row
                self._keymap.set(np.array([moved], dtype=np.int64), np.array([row], dtype=np.int64))
            self._n = last

    def _locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, rows) of ``keys``."""
        return self._keymap.locate(self._keys[: self._n], keys)

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Row numbers of present keys (KeyError naming some that are not stored)."""
        if len(keys) < 64 and self._row_map is not None:
            return np.fromiter((self._row_map[k] for k in keys.tolist()), dtype=np.int64, count=len(keys))
        found, rows = self._locate(keys)
        if not found.all():
            raise KeyError(f"keys not stored: {keys[~found][:5].tolist()}")
        return rows

    def get(self, keys: np.ndarray) -> np.ndarray:
        rows = self.rows(np.asarray(keys, dtype=np.int64))
        self._verify_rows(rows)
        return self._vecs[rows]

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` are stored (vectorised)."""
        return self._locate(np.asarray(keys, dtype=np.int64))[0]
