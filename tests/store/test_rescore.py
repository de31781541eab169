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
