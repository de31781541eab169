"""VectorTable: the key -> row lookups (dense array for row-id keys, sorted copy for spread keys) against a
dict; RowBlocks: block checksums checked once each, complete exactly when every block has been."""

from __future__ import annotations

import numpy as np
import pytest

from indexers.errors import IndexCorruptedError
from indexers.vector_table import BLOCK_ROWS, RowBlocks, VectorTable, block_crcs


@pytest.mark.parametrize("spread", [1, 10_000], ids=["dense-keys", "spread-keys"])
def test_lookups_follow_adds_and_removals(spread):
    rng = np.random.default_rng(3)
    table = VectorTable(4)
    model: dict[int, np.ndarray] = {}
    next_key = 0
    for step in range(40):
        if step % 3 == 2 and model:
            gone = rng.choice(sorted(model), size=min(len(model), 7), replace=False)
            table.remove(np.asarray(gone, dtype=np.int64))
            for key in gone.tolist():
                del model[key]
        else:
            keys = np.arange(next_key, next_key + 25, dtype=np.int64) * spread
            next_key += 25
            vecs = rng.standard_normal((25, 4)).astype(np.float32)
            table.add(keys, vecs)
            model.update(zip(keys.tolist(), vecs))
        stored = np.asarray(sorted(model), dtype=np.int64)
        # bulk lookups (dense gather or binary search) and small ones agree with the model
        np.testing.assert_array_equal(table.get(stored), np.stack([model[k] for k in stored.tolist()]))
        np.testing.assert_array_equal(
            table.get(stored[:5]), np.stack([model[k] for k in stored[:5].tolist()])
        )
        probe = (
            np.concatenate([stored, stored + 1, [10**12]])
            if spread > 1
            else np.concatenate([stored, [-1, 10**12]])
        )
        expect = np.array([k in model for k in probe.tolist()])
        np.testing.assert_array_equal(table.contains(probe), expect)
    assert (table._keymap._dense is not None) == (spread == 1)  # the dense map is used exactly for row-id-like keys
    with pytest.raises(KeyError):
        table.get(np.array([10**12], dtype=np.int64))


def test_adopted_arrays_get_a_dense_map_lazily():
    keys = np.arange(1000, dtype=np.int64)[::-1].copy()
    vecs = np.arange(4000, dtype=np.float32).reshape(1000, 4)
    table = VectorTable.from_arrays(keys, vecs)
    np.testing.assert_array_equal(table.get(np.array([999, 0, 500])), vecs[[0, 999, 499]])
    table.add(np.array([5000], dtype=np.int64), np.ones((1, 4), np.float32))  # beyond the map: rebuilt later
    np.testing.assert_array_equal(
        table.get(np.array([5000, 999])), np.stack([np.ones(4, np.float32), vecs[0]])
    )


def test_row_blocks_are_complete_exactly_when_every_block_was_checked():
    rng = np.random.default_rng(0)
    n_blocks = 5
    vecs = rng.standard_normal((BLOCK_ROWS * n_blocks - 3, 4)).astype(np.float32)  # last block short
    blocks = RowBlocks(block_crcs(vecs), len(vecs))
    assert not blocks.complete
    # the same rows again, rows in the same block, out-of-range and negative rows: one block checked
    for rows in ([0], [0, 1, BLOCK_ROWS - 1], [-1, len(vecs) + 7]):
        blocks.verify(vecs, np.array(rows))
    assert not blocks.complete
    blocks.verify(vecs, np.array([BLOCK_ROWS * b for b in range(1, n_blocks - 1)]))
    assert not blocks.complete  # the short last block is still unchecked
    blocks.verify(vecs, np.array([len(vecs) - 1]))
    assert blocks.complete

    garbled = vecs.copy()
    garbled[2 * BLOCK_ROWS + 1, 0] += 1.0
    blocks = RowBlocks(block_crcs(vecs), len(vecs))
    blocks.verify(garbled, np.array([0, BLOCK_ROWS]))  # intact blocks pass
    with pytest.raises(IndexCorruptedError, match="fail their checksum"):
        blocks.verify_all(garbled)
    assert not blocks.complete
    with pytest.raises(IndexCorruptedError, match="block checksums for a table"):
        RowBlocks(block_crcs(vecs), len(vecs) + BLOCK_ROWS)
