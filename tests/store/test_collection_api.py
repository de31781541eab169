"""Store and Collection behaviour: CRUD, validation, config checks, persistence."""

from __future__ import annotations

import numpy as np
import pytest

import vectorstore as vs
from tests.store.conftest import random_vectors
from vectorstore.errors import (
    CollectionConfigError,
    CollectionExistsError,
    CollectionNotFoundError,
    DimensionMismatchError,
    DuplicateIDError,
    InvalidCollectionNameError,
    InvalidFilterError,
    InvalidIDError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidVectorError,
)


def byo(store, name="c", dim=8, index="exact", metric="cosine"):
    return store.create_collection(name, model=None, embedding_dim=dim, index=index, metric=metric)


def test_add_get_count_peek(store, rng):
    col = byo(store)
    vecs = random_vectors(rng, 5)
    col.add(
        ids=list("abcde"),
        embeddings=vecs,
        documents=[f"doc {i}" for i in range(5)],
        metadatas=[{"i": i} for i in range(5)],
    )
    assert col.count() == 5
    got = col.get(ids=["d", "a", "zz"], include=["documents", "metadatas", "embeddings"])
    assert (
        got.ids == ["d", "a"]
        and got.documents == ["doc 3", "doc 0"]
        and got.metadatas == [{"i": 3}, {"i": 0}]
    )
    np.testing.assert_array_equal(got.embeddings, vecs[[3, 0]])
    assert col.peek(2).ids == ["a", "b"]
    assert col.get(limit=2, offset=3).ids == ["d", "e"]
    assert col.get(where={"i": {"$gte": 3}}).ids == ["d", "e"]


def test_query_scores_are_exact_and_sorted(store, rng):
    for metric in ("cosine", "dot", "euclidean", "manhattan"):
        col = byo(store, name=f"m-{metric}", metric=metric, index="faiss-flat")
        vecs = random_vectors(rng, 50)
        col.add(ids=[str(i) for i in range(50)], embeddings=vecs)
        q = random_vectors(rng, 3)
        hits = col.query(query_embeddings=q, k=7)
        assert len(hits) == 3 and all(len(h) == 7 for h in hits)
        fn = vs.SimilarityFunction.to_similarity_fn(metric)
        truth = fn(q, vecs).numpy()
        for qi, row in enumerate(hits):
            expected = np.argsort(-truth[qi], kind="stable")[:7]
            assert [h.id for h in row] == [str(i) for i in expected]
            np.testing.assert_allclose([h.score for h in row], truth[qi][expected], rtol=1e-5, atol=1e-5)
            assert [h.rank for h in row] == list(range(7))
        single = col.query(query_embeddings=q[0], k=2)
        assert isinstance(single, list) and isinstance(single[0], vs.Hit)


def test_fewer_hits_than_k_when_fewer_records(store, rng):
    col = byo(store)
    col.add(ids=["a", "b"], embeddings=random_vectors(rng, 2))
    assert len(col.query(query_embeddings=random_vectors(rng, 1)[0], k=10)) == 2


def test_duplicate_ids_write_nothing(store, rng):
    col = byo(store)
    col.add(ids=["a", "b"], embeddings=random_vectors(rng, 2))
    with pytest.raises(DuplicateIDError, match="'b'"):
        col.add(ids=["c", "b"], embeddings=random_vectors(rng, 2))
    with pytest.raises(DuplicateIDError, match="'x'"):
        col.add(ids=["x", "y", "x"], embeddings=random_vectors(rng, 3))
    assert col.count() == 2 and col.get(ids=["c", "x", "y"]).ids == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ids": [""]}, InvalidIDError, "non-empty"),
        ({"ids": [3]}, InvalidIDError, "3"),
        ({"ids": ["a"], "embeddings": [[np.nan] * 8]}, InvalidVectorError, "non-finite"),
        ({"ids": ["a"], "embeddings": [[1.0] * 7]}, DimensionMismatchError, "7"),
        ({"ids": ["a", "b"], "embeddings": [[1.0] * 8]}, InvalidVectorError, "1 embeddings for 2"),
        (
            {"ids": ["a"], "embeddings": [[1.0] * 8], "metadatas": [{"k": {"nested": 1}}]},
            InvalidMetadataError,
            "dict",
        ),
        (
            {"ids": ["a"], "embeddings": [[1.0] * 8], "metadatas": [{"k": float("nan")}]},
            InvalidMetadataError,
            "nan",
        ),
        ({"ids": ["a"], "embeddings": [[1.0] * 8], "metadatas": [{"$k": 1}]}, InvalidMetadataError, r"\$k"),
        ({"ids": ["a"], "documents": ["text"]}, InvalidInputError, "no model"),
    ],
)
def test_bad_input_is_rejected_and_nothing_written(store, rng, kwargs, error, match):
    col = byo(store)
    col.add(ids=["keep"], embeddings=random_vectors(rng, 1))
    with pytest.raises(error, match=match):
        col.add(**kwargs)
    assert col.get().ids == ["keep"]


def test_upsert_update_delete(store, rng):
    col = byo(store, index="faiss-hnsw")
    vecs = random_vectors(rng, 4)
    col.add(ids=list("abcd"), embeddings=vecs, metadatas=[{"t": "x"}] * 4, documents=list("ABCD"))
    new = random_vectors(rng, 2)
    col.upsert(ids=["a", "e"], embeddings=new, metadatas=[{"t": "y"}, {"t": "y"}])
    assert col.count() == 5
    top = col.query(query_embeddings=new[0], k=1)[0]
    assert top.id == "a" and top.score == pytest.approx(1.0, abs=1e-5)
    assert col.get(where={"t": "y"}).ids == ["a", "e"]
    col.update(ids=["b"], metadatas=[{"t": "z"}])
    assert col.get(ids=["b"]).documents == ["B"] and col.get(ids=["b"]).metadatas == [{"t": "z"}]
    with pytest.raises(InvalidIDError, match="nope"):
        col.update(ids=["nope"], metadatas=[{"t": 1}])
    assert col.delete(ids=["a", "missing"]) == 1
    assert col.delete(where={"t": "x"}) == 2  # c, d
    assert sorted(col.get().ids) == ["b", "e"]
    assert {h.id for h in col.query(query_embeddings=vecs[2], k=10)} == {"b", "e"}
    with pytest.raises(InvalidInputError):
        col.delete()


def test_collections_lifecycle_and_config_checks(store):
    byo(store, "one")
    with pytest.raises(CollectionExistsError):
        byo(store, "one")
    assert store.list_collections() == ["one"]
    assert store.get_collection("one").dim == 8
    with pytest.raises(CollectionConfigError, match="embedding_dim 9"):
        store.get_collection("one", embedding_dim=9)
    with pytest.raises(CollectionConfigError, match="index 'faiss-hnsw'"):
        store.get_or_create_collection("one", model=None, embedding_dim=8, index="faiss-hnsw")
    with pytest.raises(CollectionNotFoundError):
        store.get_collection("two")
    for bad in ["", "../etc", "a/b", "x" * 65, ".."]:
        with pytest.raises(InvalidCollectionNameError):
            store.create_collection(bad, model=None, embedding_dim=4)
    store.delete_collection("one")
    assert store.list_collections() == []
    with pytest.raises(CollectionNotFoundError):
        store.delete_collection("one")


def test_a_collection_created_without_an_index_gets_the_default_for_its_metric(store):
    assert store.create_collection("a", model=None, embedding_dim=8).config.index.kind == "faiss-hnsw-sq"
    manhattan = store.create_collection("m", model=None, embedding_dim=8, metric="manhattan")
    assert manhattan.config.index.kind == "faiss-hnsw"  # faiss-hnsw-sq does not serve manhattan
    # a collection of another kind (e.g. the default of an older release) opens when no kind is named
    store.create_collection("old", model=None, embedding_dim=8, index="faiss-hnsw")
    assert (
        store.get_or_create_collection("old", model=None, embedding_dim=8).config.index.kind == "faiss-hnsw"
    )
    with pytest.raises(CollectionConfigError, match="index 'faiss-hnsw-sq'"):
        store.get_or_create_collection("old", model=None, embedding_dim=8, index="faiss-hnsw-sq")


def test_model_collection_embeds_documents_and_queries(store, model):
    col = store.create_collection("text", index="faiss-hnsw")
    assert col.dim == 384 and col.metric == "cosine"
    docs = [
        "Berlin has 3.7 million inhabitants.",
        "Cats sleep sixteen hours a day.",
        "The Nile is a long river.",
    ]
    col.add(ids=["berlin", "cats", "nile"], documents=docs)
    hits = col.query("How many people live in Berlin?", k=3)
    assert hits[0].id == "berlin"
    expected = model.encode(docs)
    got = col.get(ids=["berlin", "cats", "nile"], include=["embeddings"]).embeddings
    np.testing.assert_allclose(got, expected, atol=1e-5)
    q = model.encode("How many people live in Berlin?")
    np.testing.assert_allclose(hits[0].score, float(expected[0] @ q), atol=1e-5)
    col.update(ids=["cats"], documents=["Berlin is the capital of Germany."])
    np.testing.assert_allclose(
        col.get(ids=["cats"], include=["embeddings"]).embeddings[0],
        model.encode("Berlin is the capital of Germany."),
        atol=1e-5,
    )


def test_reopen_keeps_everything(tmp_path, rng):
    vecs = random_vectors(rng, 30)
    with vs.Store(tmp_path / "s") as store:
        col = byo(store, index="faiss-hnsw")
        col.add(ids=[str(i) for i in range(30)], embeddings=vecs, metadatas=[{"i": i} for i in range(30)])
        before = col.query(query_embeddings=vecs[:3], k=5)
    with vs.Store(tmp_path / "s") as store:
        col = store.get_collection("c")
        assert col.count() == 30 and col.index_kind == "faiss-hnsw"
        after = col.query(query_embeddings=vecs[:3], k=5)
        assert [[h.id for h in r] for r in after] == [[h.id for h in r] for r in before]
        assert col.get(ids=["7"]).metadatas == [{"i": 7}]


def test_unknown_filter_operator_named(store, rng):
    col = byo(store)
    col.add(ids=["a"], embeddings=random_vectors(rng, 1))
    with pytest.raises(InvalidFilterError, match=r"\$regex"):
        col.query(query_embeddings=random_vectors(rng, 1)[0], where={"k": {"$regex": "x"}})
    with pytest.raises(InvalidFilterError, match=r"\$xor"):
        col.get(where={"$xor": [{"a": 1}]})
    with pytest.raises(InvalidFilterError, match=r"\$in"):
        col.get(where={"a": {"$in": 3}})
    with pytest.raises(InvalidFilterError, match=r"\$startswith"):
        col.get(where_document={"$startswith": "x"})


def test_background_indexing_never_misses_acknowledged_records(tmp_path, rng, monkeypatch):
    from vectorstore import index_state

    monkeypatch.setattr(index_state, "SYNC_INDEX_MAX", 10)
    monkeypatch.setattr(index_state, "_INDEX_CHUNK", 7)
    vecs = random_vectors(rng, 600)
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("bg", model=None, embedding_dim=8, index="faiss-hnsw")
        col.add(ids=[str(i) for i in range(600)], embeddings=vecs)
        # right after the write, whatever the indexer has reached, every record is findable
        for i in (0, 299, 599):
            assert col.query(query_embeddings=vecs[i], k=1)[0].id == str(i)
        state = col._state
    # close() drained the pending vectors into the index before saving it
    assert not state.pending and len(state.index) == 600
    with vs.Store(tmp_path / "s") as store:
        col = store.get_collection("bg")
        assert len(col._state.index) == 600 and not col._state.pending
        assert col.query(query_embeddings=vecs[123], k=1)[0].id == "123"


def test_failed_encoding_mid_ingest_writes_nothing(store, model, monkeypatch):
    from vectorstore import writes

    monkeypatch.setattr(writes, "_ENCODE_CHUNK", 2)
    store.models.encoders["all-MiniLM-L6-v2"] = model
    col = store.create_collection("t")
    real = model.encode_document
    calls = {"n": 0}

    def flaky(texts, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("encoder failed")
        return real(texts, **kwargs)

    monkeypatch.setattr(model, "encode_document", flaky)
    docs = [f"sentence number {i}" for i in range(6)]
    with pytest.raises(RuntimeError, match="encoder failed"):
        col.add(ids=[str(i) for i in range(6)], documents=docs)
    assert col.count() == 0
    monkeypatch.setattr(model, "encode_document", real)
    col.add(ids=[str(i) for i in range(6)], documents=docs)  # chunks of 2, written while encoding
    assert col.get().ids == [str(i) for i in range(6)] and col.get().documents == docs
    np.testing.assert_allclose(
        col.get(ids=["4"], include=["embeddings"]).embeddings[0], model.encode(docs[4]), atol=1e-5
    )
    with pytest.raises(DuplicateIDError):
        col.add(ids=["9", "3"], documents=["x", "y"])
    assert col.count() == 6


def test_store_from_url_with_index_dir(tmp_path, rng):
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    vecs = random_vectors(rng, 20)
    with vs.Store(url=url, index_dir=tmp_path / "idx") as store:
        byo(store).add(ids=[str(i) for i in range(20)], embeddings=vecs)
    assert any((tmp_path / "idx").rglob("manifest.json"))
    with vs.Store(url=url) as store:  # no index dir: rebuilt from the database on open
        col = store.get_collection("c")
        assert col.query(query_embeddings=vecs[3], k=1)[0].id == "3"
    with pytest.raises(InvalidInputError, match="exactly one"):
        vs.Store()


def test_metadata_is_stored_as_compact_json_and_read_back_equal(tmp_path, rng):
    """``records.metadata`` holds JSON without spaces after its separators (a byte per key and value
    less on every row); what comes back is the metadata as given, after an add and after an update."""
    import json
    import sqlite3

    meta = {"bucket": 7, "tags": ["a", "b c"], "x": 1.5, "y": None, "ok": True, "s": "é: ,"}
    with vs.Store(tmp_path / "s") as store:
        col = byo(store)
        col.add(ids=["a", "b"], embeddings=random_vectors(rng, 2, 8), metadatas=[meta, {"k": 1}])
        col.update(ids=["b"], metadatas=[{"k": 2, "l": [1, 2]}])
        assert col.get(ids=["a", "b"]).metadatas == [meta, {"k": 2, "l": [1, 2]}]
    conn = sqlite3.connect(tmp_path / "s" / "store.sqlite3")
    stored = dict(conn.execute("SELECT id, metadata FROM records").fetchall())
    conn.close()
    assert stored["a"] == json.dumps(meta, separators=(",", ":"))
    assert stored["b"] == '{"k":2,"l":[1,2]}'
