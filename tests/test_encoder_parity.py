"""Our encoder and util functions against the reference sentence-transformers on real STS text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vectorstore import quantize_embeddings, util
from vectorstore.similarity import SimilarityFunction

st_util = pytest.importorskip("sentence_transformers.util")


def test_embeddings_match_reference(dev_embeddings, ref_dev_embeddings, dev_sentences):
    assert len(dev_sentences) >= 500
    assert dev_embeddings.shape == ref_dev_embeddings.shape == (len(dev_sentences), 384)
    assert dev_embeddings.dtype == np.float32
    np.testing.assert_allclose(dev_embeddings, ref_dev_embeddings, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["cosine", "dot", "euclidean", "manhattan"])
def test_similarity_matrices_match_reference(model, ref_model, dev_embeddings, ref_dev_embeddings, name):
    a, b = dev_embeddings[:200], dev_embeddings[200:400]
    model.similarity_fn_name = name
    ref_model.similarity_fn_name = name
    try:
        ours = model.similarity(a, b).numpy()
        ref = ref_model.similarity(ref_dev_embeddings[:200], ref_dev_embeddings[200:400]).numpy()
        pair_ours = model.similarity_pairwise(a, b).numpy()
        pair_ref = ref_model.similarity_pairwise(
            ref_dev_embeddings[:200], ref_dev_embeddings[200:400]
        ).numpy()
    finally:
        model.similarity_fn_name = "cosine"
        ref_model.similarity_fn_name = "cosine"
    assert ours.shape == (200, 200)
    # Same function, same inputs: equal to 1e-5 absolute for every function.
    model.similarity_fn_name = name
    try:
        same_inputs = model.similarity(ref_dev_embeddings[:200], ref_dev_embeddings[200:400]).numpy()
    finally:
        model.similarity_fn_name = "cosine"
    np.testing.assert_allclose(same_inputs, ref, atol=1e-5, rtol=0)
    # End to end (our embeddings vs theirs, which differ by ~1e-7): manhattan sums 384 terms into
    # values near -21, where one float32 ulp is 1.9e-6 and the summation noise alone reaches ~1e-5,
    # so it gets a relative bound of 1e-6 on top; the bounded functions keep 1e-5 absolute.
    rtol = 1e-6 if name == "manhattan" else 0
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=rtol)
    np.testing.assert_allclose(pair_ours, pair_ref, atol=1e-5, rtol=rtol)
    np.testing.assert_allclose(np.diag(ours), pair_ours, atol=1e-5, rtol=rtol)


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (util.cos_sim, "cos_sim"),
        (util.dot_score, "dot_score"),
        (util.euclidean_sim, "euclidean_sim"),
        (util.manhattan_sim, "manhattan_sim"),
        (util.pairwise_cos_sim, "pairwise_cos_sim"),
        (util.pairwise_dot_score, "pairwise_dot_score"),
        (util.pairwise_euclidean_sim, "pairwise_euclidean_sim"),
        (util.pairwise_manhattan_sim, "pairwise_manhattan_sim"),
    ],
)
def test_util_functions_match_reference(dev_embeddings, ours, ref):
    a, b = dev_embeddings[:50], dev_embeddings[50:100]
    np.testing.assert_allclose(ours(a, b).numpy(), getattr(st_util, ref)(a, b).numpy(), atol=1e-5, rtol=0)


def test_numpy_scores_equal_torch_functions(dev_embeddings):
    from vectorstore.similarity import numpy_scores

    a, b = dev_embeddings[:30] * 1.7, dev_embeddings[30:90]
    for fn in SimilarityFunction:
        torch_fn = SimilarityFunction.to_similarity_fn(fn)
        # distances reach ~30 here, where float32 summation order alone moves the 6th digit
        rtol = 1e-6 if fn in (SimilarityFunction.EUCLIDEAN, SimilarityFunction.MANHATTAN) else 0
        np.testing.assert_allclose(numpy_scores(fn, a, b), torch_fn(a, b).numpy(), atol=1e-5, rtol=rtol)


@pytest.mark.parametrize("score_function", ["cos_sim", "dot_score"])
def test_semantic_search_same_ids(dev_embeddings, score_function):
    queries, corpus = dev_embeddings[:40], dev_embeddings[40:]
    ours = util.semantic_search(
        queries,
        corpus,
        top_k=7,
        query_chunk_size=13,
        corpus_chunk_size=97,
        score_function=getattr(util, score_function),
    )
    ref = st_util.semantic_search(
        torch.from_numpy(queries),
        torch.from_numpy(corpus),
        top_k=7,
        score_function=getattr(st_util, score_function),
    )
    assert [[h["corpus_id"] for h in q] for q in ours] == [[h["corpus_id"] for h in q] for q in ref]
    for q_ours, q_ref in zip(ours, ref):
        np.testing.assert_allclose([h["score"] for h in q_ours], [h["score"] for h in q_ref], atol=1e-5)


def test_semantic_search_against_plain_topk(rng):
    """Odd chunk sizes must not change the answer (oracle: one full topk)."""
    q = rng.standard_normal((17, 24)).astype(np.float32)
    c = rng.standard_normal((301, 24)).astype(np.float32)
    full = util.cos_sim(q, c)
    vals, idx = torch.topk(full, 9, dim=1)
    got = util.semantic_search(q, c, top_k=9, query_chunk_size=5, corpus_chunk_size=31)
    assert [[h["corpus_id"] for h in row] for row in got] == idx.tolist()
    np.testing.assert_allclose([[h["score"] for h in row] for row in got], vals.numpy(), atol=1e-6)


def test_semantic_search_top_k_larger_than_corpus(rng):
    c = rng.standard_normal((3, 8)).astype(np.float32)
    got = util.semantic_search(c[0], c, top_k=10)
    assert len(got) == 1 and len(got[0]) == 3 and got[0][0]["corpus_id"] == 0


def test_paraphrase_mining_same_pairs(model, ref_model, dev_sentences):
    sents = dev_sentences[:300]
    ours = util.paraphrase_mining(
        model, sents, top_k=5, max_pairs=200, query_chunk_size=70, corpus_chunk_size=110
    )
    ref = st_util.paraphrase_mining(ref_model, sents, top_k=5, max_pairs=200)
    assert len(ours) == len(ref) == 200
    assert [(i, j) for _, i, j in ours] == [(i, j) for _, i, j in ref]
    np.testing.assert_allclose([s for s, _, _ in ours], [s for s, _, _ in ref], atol=1e-5)


def test_community_detection_same_communities(dev_embeddings):
    emb = torch.from_numpy(dev_embeddings)
    for threshold, min_size in [(0.6, 2), (0.5, 3)]:
        ours = util.community_detection(emb, threshold=threshold, min_community_size=min_size, batch_size=77)
        ref = st_util.community_detection(emb, threshold=threshold, min_community_size=min_size)
        assert ours, "expected some communities in real STS text"
        assert [sorted(c) for c in ours] == [sorted(c) for c in ref]
        assert [c[0] for c in ours] == [c[0] for c in ref]


@pytest.mark.parametrize("precision", ["float32", "int8", "uint8", "binary", "ubinary"])
def test_quantize_identical(dev_embeddings, precision):
    from sentence_transformers.util import quantize_embeddings as ref_quantize

    ours = quantize_embeddings(dev_embeddings, precision)
    ref = ref_quantize(dev_embeddings, precision)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    np.testing.assert_array_equal(ours, ref)
    calib = dev_embeddings[:300]
    if precision in ("int8", "uint8"):
        np.testing.assert_array_equal(
            quantize_embeddings(dev_embeddings[300:], precision, calibration_embeddings=calib),
            ref_quantize(dev_embeddings[300:], precision, calibration_embeddings=calib),
        )


def test_encode_precision_matches_quantize(model, dev_sentences, dev_embeddings):
    got = model.encode(dev_sentences[:120], precision="ubinary")
    np.testing.assert_array_equal(got, quantize_embeddings(dev_embeddings[:120], "ubinary"))


def test_sts_dev_spearman_matches_reference(model, ref_model, dev_pairs):
    from scipy.stats import spearmanr

    s1 = [p.sentence1 for p in dev_pairs]
    s2 = [p.sentence2 for p in dev_pairs]
    gold = [p.score for p in dev_pairs]
    ours = model.similarity_pairwise(model.encode(s1, batch_size=64), model.encode(s2, batch_size=64)).numpy()
    ref = ref_model.similarity_pairwise(
        ref_model.encode(s1, batch_size=64), ref_model.encode(s2, batch_size=64)
    ).numpy()
    rho_ours = spearmanr(gold, ours).statistic
    rho_ref = spearmanr(gold, ref).statistic
    assert rho_ours > 0.8  # all-MiniLM-L6-v2 scores about 0.87 on STS dev
    assert abs(rho_ours - rho_ref) < 0.001
