"""The query read path on both of its routes: the private SQLite connection (``direct``) and the engine
route every other SQLAlchemy dialect takes. Both must answer every query identically, and the
engine route must be the one actually taken when it is forced."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import vectorstore as vs
from indexers.scoring import exact_scores
from tests.store.conftest import random_vectors
from vectorstore.db.reader import Reader

N = 300


def _build(tmp_path, direct: bool, monkeypatch) -> tuple[vs.Store, vs.Collection]:
    from vectorstore import index_state

    monkeypatch.setattr(index_state, "Reader", functools.partial(Reader, direct=direct))
    store = vs.Store(tmp_path / ("direct" if direct else "engine"))
    col = store.create_collection("c", model=None, embedding_dim=8, index="faiss-hnsw")
    rng = np.random.default_rng(3)
    col.add(
        ids=[f"r{i}" for i in range(N)],
        embeddings=random_vectors(rng, N),
        documents=[f"doc {i} {'even' if i % 2 == 0 else 'odd'}" for i in range(N)],
        metadatas=[{"i": i, "bucket": i % 10, "tags": [f"t{i % 3}"]} for i in range(N)],
    )
    return store, col


def _answer(col: vs.Collection, queries: np.ndarray) -> list:
    out = []
    for kwargs in (
        {},
        {"where": {"bucket": 3}},
        {"where": {"i": {"$gte": 50}}, "where_document": {"$contains": "even"}},
        {"where": {"$or": [{"tags": "t1"}, {"bucket": {"$in": [2, 4]}}]}},
        {"include": ["documents", "metadatas", "embeddings"]},
    ):
        hits = col.query(query_embeddings=queries, k=7, **kwargs)
        out.append(
            [
                [
                    (
                        h.id,
                        round(h.score, 5),
                        h.document,
                        h.metadata,
                        None if h.embedding is None else h.embedding.tolist(),
                    )
                    for h in row
                ]
                for row in hits
            ]
        )
    return out


def test_engine_route_answers_like_the_direct_route(tmp_path, monkeypatch):
    queries = random_vectors(np.random.default_rng(9), 5)
    store_d, col_d = _build(tmp_path, True, monkeypatch)
    store_e, col_e = _build(tmp_path, False, monkeypatch)
    try:
        assert col_d._state.reader.direct and not col_e._state.reader.direct
        direct, engine = _answer(col_d, queries), _answer(col_e, queries)
        assert engine == direct
        # and against brute force over the filtered rows: both routes are right, not merely equal
        got = col_e.query(query_embeddings=queries[0], k=5, where={"bucket": 3})
        rows = [i for i in range(N) if i % 10 == 3]
        vecs = col_e.get(ids=[f"r{i}" for i in rows], include=["embeddings"]).embeddings
        want = exact_scores("cosine", queries[:1], vecs)[0]
        order = np.argsort(-want)[:5]
        assert [h.id for h in got] == [f"r{rows[j]}" for j in order]
        np.testing.assert_allclose([h.score for h in got], want[order], atol=1e-5)
    finally:
        store_d.close()
        store_e.close()


def test_engine_route_sees_another_writers_commits(tmp_path, monkeypatch):
    """Without PRAGMA data_version the engine route reads the change log on every query."""
    store, col = _build(tmp_path, False, monkeypatch)
    try:
        other = vs.Store(tmp_path / "engine")
        try:
            v = np.ones((1, 8), np.float32)
            other.get_collection("c").add(ids=["new"], embeddings=v, documents=["new one"])
        finally:
            other.close()
        hit = col.query(query_embeddings=v[0], k=1)[0]
        assert hit.id == "new" and hit.document == "new one"
    finally:
        store.close()


def test_reader_translates_database_errors(tmp_path):
    from sqlalchemy import text

    from vectorstore.errors import StorageError

    store = vs.Store(tmp_path / "s")
    try:
        for direct in (True, False):
            reader = Reader(store.engine, direct=direct)
            with pytest.raises(StorageError, match="while reading for a query"):
                reader.rows(lambda: text("SELECT * FROM no_such_table"))  # type: ignore[arg-type, return-value]
            reader.close()
    finally:
        store.close()


def test_reads_above_the_bound_variable_limit_fall_back_to_chunked_statements(tmp_path, monkeypatch):
    """More keys than one direct statement may bind: the reader declines, and the state reads the
    same rows through the chunked engine statements instead."""
    from vectorstore.db import reader as reader_mod

    store, col = _build(tmp_path, True, monkeypatch)
    try:
        state = col._state
        keys = np.sort(state.all_keys())[:40]
        want_records = state.hydrate(keys.tolist())
        want_vectors = state.stored_vectors(keys)
        assert len(want_records) == 40
        monkeypatch.setattr(reader_mod, "DIRECT_MAX_KEYS", 16)
        assert state.reader.record_rows(keys.tolist()) is None
        assert state.reader.vector_rows(keys.tolist()) is None
        assert state.reader.record_rows(keys[:16].tolist()) is not None
        got_records = state.hydrate(keys.tolist())
        assert {k: (r.id, r.document, r.metadata) for k, r in got_records.items()} == {
            k: (r.id, r.document, r.metadata) for k, r in want_records.items()
        }
        np.testing.assert_array_equal(state.stored_vectors(keys), want_vectors)
        ids = [want_records[int(k)].id for k in keys]
        np.testing.assert_array_equal(
            want_vectors, np.asarray(col.get(ids=ids, include=["embeddings"]).embeddings, np.float32)
        )
    finally:
        store.close()
