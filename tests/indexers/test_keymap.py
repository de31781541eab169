"""KeyMap against a dict oracle: every lookup mode (in-place binary search of an increasing keys
array, the dense map, the sorted copy) and every transition between them."""

from __future__ import annotations

import numpy as np
import pytest

from indexers.keymap import KeyMap


class _Labels:
    """A keys array as faiss-hnsw keeps it: appended positions, removed slots set to -1."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.int64)
        self.map = KeyMap()

    def append(self, keys: np.ndarray) -> None:
        start = len(self.keys)
        self.keys = np.concatenate([self.keys, keys])
        self.map.set(keys, np.arange(start, start + len(keys), dtype=np.int64))

    def remove(self, keys: np.ndarray) -> None:
        found, at = self.map.locate(self.keys, keys)
        assert found.all()
        self.keys[at] = -1
        self.map.clear(keys)

    def oracle(self) -> dict[int, int]:
        return {int(k): i for i, k in enumerate(self.keys.tolist()) if k >= 0}


def _check(labels: _Labels, rng: np.random.Generator) -> None:
    truth = labels.oracle()
    live = np.fromiter(truth, dtype=np.int64, count=len(truth))
    absent = rng.integers(-5, 3 * max(len(labels.keys), 10) + 10_000, size=50)
    queries = np.concatenate([rng.permutation(live)[:50], absent])
    found, at = labels.map.locate(labels.keys, queries)
    for q, f, a in zip(queries.tolist(), found.tolist(), at.tolist()):
        assert f == (q in truth), q
        if f:
            assert a == truth[q]


@pytest.mark.parametrize("seed", range(4))
def test_lookups_match_a_dict_through_appends_and_removals(seed):
    rng = np.random.default_rng(seed)
    labels = _Labels()
    modes = set()
    removed: list[int] = []
    next_key = 1
    for _ in range(60):
        op = rng.random()
        if op < 0.5:  # append increasing row ids, as the store does
            n = int(rng.integers(1, 200))
            labels.append(np.arange(next_key, next_key + n, dtype=np.int64))
            next_key += n
        elif op < 0.65:  # an out-of-order key (a removed id added again)
            if removed:
                labels.append(np.array([removed.pop(int(rng.integers(len(removed))))], dtype=np.int64))
        elif op < 0.68:  # a far key: beyond a dense map's headroom
            labels.append(np.array([next_key + 10**7], dtype=np.int64))
            next_key += 10**7 + 1
        else:
            live = np.fromiter(labels.oracle(), dtype=np.int64)
            if len(live):
                gone = rng.choice(live, size=min(len(live), int(rng.integers(1, 20))), replace=False)
                labels.remove(gone)
                removed.extend(int(k) for k in gone if k < 10**6)
        if rng.random() < 0.3:
            labels.map.reset()  # as after a load: rebuilt from the array on the next lookup
        _check(labels, rng)
        modes.add(
            "increasing"
            if labels.map._increasing is not None
            else "dense"
            if labels.map._dense is not None
            else "sorted"
        )
    assert len(modes) >= 2  # the sequence moves between lookup modes, each checked above


def test_an_increasing_array_is_searched_in_place_and_stays_so_while_appended_in_order():
    keys = np.arange(1, 1001, dtype=np.int64)
    km = KeyMap()
    found, at = km.locate(keys, np.array([1, 500, 1000, 1001, 0]))
    np.testing.assert_array_equal(found, [True, True, True, False, False])
    np.testing.assert_array_equal(at[found], [0, 499, 999])
    assert km._increasing == (1000, 1000) and km._dense is None  # nothing built
    more = np.arange(1001, 1101, dtype=np.int64)
    km.set(more, np.arange(1000, 1100))
    keys = np.concatenate([keys, more])
    assert km._increasing == (1100, 1100)
    assert km.locate(keys, np.array([1100]))[1].tolist() == [1099]
    km.set(np.array([5000]), np.array([1200]))  # not appended right after the last position
    assert km._increasing is None


def test_an_out_of_order_append_leaves_the_in_place_search():
    keys = np.arange(10, 20, dtype=np.int64)
    km = KeyMap()
    km.locate(keys, np.array([10]))
    assert km._increasing == (10, 19)
    keys = np.concatenate([keys, [3]])  # key 3 appended at position 10: the array is no longer sorted
    km.set(np.array([3]), np.array([10]))
    assert km._increasing is None
    found, at = km.locate(keys, np.array([3, 19, 10]))
    assert found.all() and at.tolist() == [10, 9, 0]


def test_sparse_keys_fall_back_to_a_sorted_copy():
    keys = np.array([10**9, 7, 3 * 10**9, -1, 42], dtype=np.int64)
    km = KeyMap()
    found, at = km.locate(keys, np.array([7, 42, 3 * 10**9, 10**9, 8, -1]))
    assert km._sorted is not None and km._dense is None and km._increasing is None
    np.testing.assert_array_equal(found, [True, True, True, True, False, False])
    np.testing.assert_array_equal(at[:4], [1, 4, 2, 0])
