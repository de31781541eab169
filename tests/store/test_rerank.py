"""The rerank stage of Collection.query against CrossEncoder.predict applied by hand."""

from __future__ import annotations

import numpy as np
import pytest

import vectorstore as vs
from tests.helpers import build_tiny_bert


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("rerank_ce"), num_labels=1, initializer_range=0.3)


@pytest.fixture(scope="module")
def corpus(dev_sentences):
    return dev_sentences[:300]


@pytest.fixture
def col(tmp_path, ce_dir, corpus):
    store = vs.Store(tmp_path / "store", device="cpu")
    c = store.create_collection("docs", index="exact", reranker=str(ce_dir))
    c.add(
        ids=[f"d{i}" for i in range(len(corpus))],
        documents=corpus,
        metadatas=[{"i": i} for i in range(len(corpus))],
    )
    yield c
    store.close()


QUERIES = ["A man is playing a guitar.", "Stocks fell sharply today.", "A woman slices an onion."]


def expected(col, ce: vs.CrossEncoder, query: str, k: int, rerank_k: int, **kw):
    """The candidates by similarity, then sorted by predict() by hand."""
    cands = col.query(query, k=rerank_k, rerank=False, **kw)
    scores = ce.predict([(query, h.document) for h in cands])
    order = np.argsort(-scores, kind="stable")[:k]
    return [cands[i] for i in order], scores[order], {h.id for h in cands}


def test_rerank_order_equals_predict_sorting(col, ce_dir):
    ce = vs.CrossEncoder(ce_dir, device="cpu")
    for q in QUERIES:
        want, want_scores, cand_ids = expected(col, ce, q, 5, 20)
        got = col.query(q, k=5, rerank=True, rerank_k=20)
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.rerank_score for h in got], want_scores, atol=1e-6)
        assert {h.id for h in got} <= cand_ids  # never an id that was not a candidate
        assert [h.rank for h in got] == list(range(5))
        for h, w in zip(got, want):  # score stays the exact similarity
            assert h.score == pytest.approx(w.score, abs=1e-6)
            assert h.document == w.document and h.metadata == w.metadata
    # reranking actually reorders something in these queries
    plain = [[h.id for h in col.query(q, k=5, rerank=False)] for q in QUERIES]
    reranked = [[h.id for h in col.query(q, k=5, rerank=True, rerank_k=20)] for q in QUERIES]
    assert plain != reranked


def test_default_rerank_k_and_collection_default(col, ce_dir):
    ce = vs.CrossEncoder(ce_dir, device="cpu")
    want, _, _ = expected(col, ce, QUERIES[0], 10, 50)
    assert [h.id for h in col.query(QUERIES[0], k=10)] == [
        h.id for h in want
    ]  # rerank=None uses the reranker
    assert all(h.rerank_score is None for h in col.query(QUERIES[0], k=10, rerank=False))


def test_batched_queries_rerank_like_single_ones(col):
    batch = col.query(QUERIES, k=4, rerank=True, rerank_k=15)
    singles = [col.query(q, k=4, rerank=True, rerank_k=15) for q in QUERIES]
    assert [[h.id for h in row] for row in batch] == [[h.id for h in row] for row in singles]
    for row, one in zip(batch, singles):
        np.testing.assert_allclose([h.rerank_score for h in row], [h.rerank_score for h in one], atol=1e-6)


def test_rerank_with_filter_and_include(col, ce_dir):
    ce = vs.CrossEncoder(ce_dir, device="cpu")
    where = {"i": {"$lt": 100}}
    want, _, _ = expected(col, ce, QUERIES[1], 5, 30, where=where)
    got = col.query(QUERIES[1], k=5, rerank=True, rerank_k=30, where=where, include=["metadatas"])
    assert [h.id for h in got] == [h.id for h in want]
    assert all(h.document is None and h.metadata["i"] < 100 for h in got)


def test_rerank_with_an_explicit_cross_encoder(tmp_path, ce_dir, corpus):
    ce = vs.CrossEncoder(ce_dir, device="cpu")
    with vs.Store(tmp_path / "s2", device="cpu") as store:
        c = store.create_collection("plain", index="exact")
        c.add(ids=[f"d{i}" for i in range(100)], documents=corpus[:100])
        assert all(h.rerank_score is None for h in c.query(QUERIES[0], k=3))  # no reranker: no rerank
        with pytest.raises(vs.InvalidInputError, match="no reranker"):
            c.query(QUERIES[0], rerank=True)
        got = c.query(QUERIES[0], k=3, rerank=ce, rerank_k=10)
        cands = c.query(QUERIES[0], k=10)
        s = ce.predict([(QUERIES[0], h.document) for h in cands])
        assert [h.id for h in got] == [cands[i].id for i in np.argsort(-s, kind="stable")[:3]]


def test_rerank_errors(col):
    with pytest.raises(vs.InvalidInputError, match="rerank_k"):
        col.query(QUERIES[0], k=10, rerank=True, rerank_k=5)
    vec = col.model.encode_query(QUERIES[0])
    with pytest.raises(vs.InvalidInputError, match="query text"):
        col.query(query_embeddings=vec, rerank=True)
    assert all(h.rerank_score is None for h in col.query(query_embeddings=vec, k=3))  # default: similarity
    with pytest.raises(vs.InvalidInputError):
        col.query(QUERIES[0], rerank="yes")


def test_reranker_is_persisted_and_checked(tmp_path, ce_dir, corpus):
    path = tmp_path / "s3"
    with vs.Store(path, device="cpu") as store:
        store.create_collection("docs", index="exact", reranker=vs.CrossEncoder(ce_dir, device="cpu"))
    with vs.Store(path, device="cpu") as store:
        c = store.get_collection("docs")
        assert c.reranker_name == str(ce_dir)
        assert isinstance(c.reranker, vs.CrossEncoder)
        c.add(ids=["a", "b"], documents=corpus[:2])
        assert c.query(QUERIES[0], k=2)[0].rerank_score is not None
    three = build_tiny_bert(tmp_path / "ce3", num_labels=3)
    with vs.Store(tmp_path / "s4", device="cpu") as store:
        with pytest.raises(vs.CollectionConfigError, match="one-label"):
            store.create_collection("x", reranker=str(three))
        with pytest.raises(vs.ModelLoadError):
            store.create_collection("y", reranker=str(tmp_path / "missing"))
        assert store.list_collections() == []
