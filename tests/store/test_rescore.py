"""pipeline.rescore on one query: padding anywhere in the candidate row (index part, then pending keys)."""

from __future__ import annotations

import numpy as np

from indexers.exact import ExactIndex
from indexers.scoring import exact_scores
from vectorstore import pipeline


def test_single_query_rescore_skips_padding_between_index_and_pending_candidates():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    vectors = ExactIndex(8, "dot")
    vectors.add(np.arange(6), x)
    q = rng.standard_normal((1, 8)).astype(np.float32)
    cand = np.array([[2, 4, -1, -1, 5, 0]])  # index results padded, then two pending keys
    for metric in ("cosine", "dot", "euclidean"):
        keys, scores = pipeline.rescore(metric, vectors, q, cand, 6)
        want = exact_scores(metric, q, x[[2, 4, 5, 0]])[0]
        order = np.argsort(-want, kind="stable")
        np.testing.assert_array_equal(keys[0, :4], np.array([2, 4, 5, 0])[order])
        np.testing.assert_allclose(scores[0, :4], want[order], atol=1e-6)
        assert keys[0, 4:].tolist() == [-1, -1] and np.isneginf(scores[0, 4:]).all()


def test_best_scored_merges_pending_candidates_with_ties_and_padding():
    """The no-rescore path for exact-scoring indexes: index part and pending part, each sorted with
    padding, merge into best-first rows with ties to the smaller key, exactly like a full sort."""
    cand = np.array(
        [
            [7, 3, -1, 9, 2, -1],  # index: 7, 3, padding; pending: 9, 2, padding
            [1, 4, 6, 8, 5, 0],
        ]
    )
    scores = np.array(
        [
            [0.9, 0.5, -np.inf, 0.9, 0.7, -np.inf],  # 9 ties 7
            [0.8, 0.3, 0.1, 0.6, 0.3, 0.2],  # 5 ties 4
        ],
        dtype=np.float32,
    )
    keys, got = pipeline.best_scored(cand, scores, 3, 5)
    assert keys.tolist() == [[7, 9, 2, 3, -1], [1, 8, 4, 5, 0]]
    np.testing.assert_allclose(got[0, :4], [0.9, 0.9, 0.7, 0.5])
    assert np.isneginf(got[0, 4])
    np.testing.assert_allclose(got[1], [0.8, 0.6, 0.3, 0.3, 0.2])
    # the index's rows alone are already ordered: they are cut (or padded) to k as they are
    keys, got = pipeline.best_scored(cand[:, :3], scores[:, :3], 3, 2)
    assert keys.tolist() == [[7, 3], [1, 4]]
    keys, got = pipeline.best_scored(cand[:, :3], scores[:, :3], 3, 4)
    assert keys.tolist() == [[7, 3, -1, -1], [1, 4, 6, -1]]
