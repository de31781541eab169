"""BM25Index against a hand computation and the bm25s reference, through adds, replacements and deletes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import bm25s_scores
from vectorstore.keyword import BM25Index

bm25s = pytest.importorskip("bm25s")


def _ours(ix: BM25Index, query: list[str]) -> dict[int, float]:
    keys, scores = ix.search(query, k=10_000)
    return dict(zip(keys.tolist(), scores.tolist()))


def test_scores_equal_a_hand_computation():
    docs = [["cat", "sat", "mat"], ["dog", "cat"], ["mat", "mat", "grass"]]
    ix = BM25Index(k1=1.2, b=0.75)
    ix.add([10, 11, 12], docs)
    n, avgdl = 3, 8 / 3
    idf = math.log(1 + (n - 2 + 0.5) / (2 + 0.5))  # "mat" is in 2 of 3 documents

    def part(tf: int, dl: int) -> float:
        return idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))

    got = _ours(ix, ["mat"])
    assert got.keys() == {10, 12}
    assert got[10] == pytest.approx(part(1, 3), rel=1e-9)
    assert got[12] == pytest.approx(part(2, 3), rel=1e-9)
    keys, _ = ix.search(["mat"], k=5)
    assert keys.tolist() == [12, 10]  # best first; the non-matching document is absent


def test_scores_equal_bm25s_on_a_random_corpus():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    p = 1 / np.arange(1, 61) ** 1.1
    p /= p.sum()
    docs = {int(k): list(rng.choice(words, size=int(rng.integers(1, 40)), p=p)) for k in range(300)}
    ix = BM25Index()
    ix.add(list(docs), list(docs.values()))
    for _ in range(20):
        query = list(rng.choice(words, size=int(rng.integers(1, 6))))
        want = {k: v for k, v in bm25s_scores(docs, query).items() if v > 0}
        got = _ours(ix, query)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5)


def test_repeated_query_terms_count_once_and_unknown_terms_match_nothing():
    ix = BM25Index()
    ix.add([1, 2], [["a", "b"], ["b", "c"]])
    assert _ours(ix, ["a", "a", "a"]) == _ours(ix, ["a"])
    assert _ours(ix, ["zzz"]) == {}
    assert _ours(ix, []) == {}


def test_ties_go_to_the_smaller_key_at_the_cut():
    ix = BM25Index()
    ix.add([9, 3, 7, 5], [["x"], ["x"], ["x"], ["y"]])
    keys, scores = ix.search(["x"], k=2)
    assert keys.tolist() == [3, 7]
    assert scores[0] == scores[1]


def test_allowed_restricts_to_the_given_keys_with_whole_collection_statistics():
    rng = np.random.default_rng(1)
    docs = {k: list(rng.choice(list("abcdefgh"), size=8)) for k in range(100)}
    ix = BM25Index()
    ix.add(list(docs), list(docs.values()))
    allowed = np.arange(0, 100, 3)
    keys, scores = ix.search(["a", "c"], k=10, allowed=allowed)
    full = _ours(ix, ["a", "c"])
    brute = sorted(((-s, k) for k, s in full.items() if k in set(allowed.tolist())))[:10]
    assert keys.tolist() == [k for _, k in brute]
    np.testing.assert_allclose(scores, [-s for s, _ in brute])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove"]),
            st.lists(st.integers(0, 30), min_size=1, max_size=8),
            st.integers(0, 2**32 - 1),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_any_sequence_of_writes_scores_like_a_fresh_index(ops):
    ix = BM25Index()
    live: dict[int, list[str]] = {}
    for op, keys, seed in ops:
        keys = list(dict.fromkeys(keys))
        if op == "add":
            rng = np.random.default_rng(seed)
            docs = [list(rng.choice(list("abcdef"), size=int(rng.integers(0, 6)))) for _ in keys]
            ix.add(keys, docs)
            live.update(zip(keys, docs))
        else:
            assert ix.remove(keys) == sum(k in live for k in keys)
            for k in keys:
                live.pop(k, None)
    assert len(ix) == len(live)
    fresh = BM25Index()
    fresh.add(list(live), list(live.values()))
    for query in (["a"], ["b", "c"], ["a", "d", "f"], ["e"]):
        got, want = _ours(ix, query), _ours(fresh, query)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], rel=1e-9)
        if live and any(live.values()):
            ref = {k: v for k, v in bm25s_scores(live, query).items() if v > 0}
            assert got.keys() == ref.keys()


def test_many_writes_after_the_build_merge_and_stay_exact():
    rng = np.random.default_rng(3)
    ix = BM25Index()
    live: dict[int, list[str]] = {}
    for step in range(12):  # enough appended postings and deletes to trigger merges
        keys = list(range(step * 9000, step * 9000 + 9000))
        docs = [list(rng.choice(list("abcdefghij"), size=6)) for _ in keys]
        ix.add(keys, docs)
        live.update(zip(keys, docs))
        gone = list(range(step * 9000, step * 9000 + 6000))
        ix.remove(gone)
        for k in gone:
            live.pop(k)
    fresh = BM25Index()
    fresh.add(list(live), list(live.values()))
    got, want = _ours(ix, ["a", "j"]), _ours(fresh, ["a", "j"])
    assert got.keys() == want.keys()
    assert max(abs(got[k] - want[k]) for k in want) < 1e-9
