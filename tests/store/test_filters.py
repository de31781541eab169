"""The where language against a plain-Python oracle, and filtered queries against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from indexers.scoring import exact_scores
from tests.store.conftest import random_vectors

TOPICS = ["art", "sports", "music", "science"]


def _meta(i: int) -> dict:
    m = {
        "i": i,
        "topic": TOPICS[i % 4],
        "score": (i * 37 % 100) / 10,
        "flag": i % 3 == 0,
        "tags": [TOPICS[i % 4], f"t{i % 5}"],
    }
    if i % 7 == 0:
        m["maybe"] = None
    if i % 11 == 0:
        del m["topic"]
    return m


def _eq(v, x):
    if isinstance(x, bool) or isinstance(v, bool):
        return isinstance(x, bool) and isinstance(v, bool) and v == x
    if x is None or v is None:
        return v is None and x is None
    if isinstance(x, (int, float)) != isinstance(v, (int, float)):
        return False
    return v == x


def _match(m: dict, where: dict) -> bool:
    for key, spec in where.items():
        if key == "$and":
            if not all(_match(m, s) for s in spec):
                return False
            continue
        if key == "$or":
            if not any(_match(m, s) for s in spec):
                return False
            continue
        if not isinstance(spec, dict):
            spec = {"$eq": spec}
        present = key in m
        vals = m.get(key) if isinstance(m.get(key), list) else [m.get(key)]
        for op, x in spec.items():
            if op == "$eq":
                ok = present and any(_eq(v, x) for v in vals)
            elif op == "$ne":
                ok = not (present and any(_eq(v, x) for v in vals))
            elif op == "$in":
                ok = present and any(_eq(v, y) for v in vals for y in x)
            elif op == "$nin":
                ok = not (present and any(_eq(v, y) for v in vals for y in x))
            else:
                cmp = {
                    "$gt": lambda a, b: a > b,
                    "$gte": lambda a, b: a >= b,
                    "$lt": lambda a, b: a < b,
                    "$lte": lambda a, b: a <= b,
                }[op]
                same_kind = (
                    (lambda v: isinstance(v, str))
                    if isinstance(x, str)
                    else (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
                )
                ok = present and any(same_kind(v) and cmp(v, x) for v in vals)
            if not ok:
                return False
    return True


FILTERS = [
    {"topic": "art"},
    {"topic": {"$ne": "art"}},
    {"i": {"$gte": 50}},
    {"i": {"$gt": 10, "$lte": 20}},
    {"score": {"$lt": 2.5}},
    {"flag": True},
    {"flag": {"$eq": 1}},
    {"i": 1},
    {"i": 1.0},
    {"maybe": None},
    {"tags": "t3"},
    {"tags": {"$in": ["t1", "music"]}},
    {"topic": {"$nin": ["art", "sports"]}},
    {"topic": {"$gte": "n"}},
    {"$or": [{"topic": "art"}, {"i": {"$lt": 5}}]},
    {"$and": [{"topic": {"$in": ["art", "music"]}}, {"flag": False}]},
    {"topic": "sports", "score": {"$gte": 5}},
    {"i": {"$in": []}},
]


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    import vectorstore as vs

    rng = np.random.default_rng(5)
    store = vs.Store(tmp_path_factory.mktemp("f") / "s")
    col = store.create_collection("f", model=None, embedding_dim=8, index="faiss-hnsw")
    n = 300
    vecs = random_vectors(rng, n)
    metas = [_meta(i) for i in range(n)]
    col.add(
        ids=[f"id{i}" for i in range(n)],
        embeddings=vecs,
        metadatas=metas,
        documents=[f"Doc {i} about {TOPICS[i % 4]}" for i in range(n)],
    )
    yield col, vecs, metas
    store.close()


@pytest.mark.parametrize("where", FILTERS, ids=[str(f) for f in FILTERS])
def test_get_matches_oracle(filled, where):
    col, _, metas = filled
    expected = [f"id{i}" for i, m in enumerate(metas) if _match(m, where)]
    assert col.get(where=where).ids == expected


@pytest.mark.parametrize("where", FILTERS, ids=[str(f) for f in FILTERS])
def test_filtered_query_equals_brute_force(filled, where, rng):
    col, vecs, metas = filled
    allowed = np.array([i for i, m in enumerate(metas) if _match(m, where)], dtype=np.int64)
    q = random_vectors(rng, 4)
    hits = col.query(query_embeddings=q, k=10, where=where)
    for qi, row in enumerate(hits):
        if len(allowed) == 0:
            assert row == []
            continue
        s = exact_scores("cosine", q[qi : qi + 1], vecs[allowed])[0]
        order = allowed[np.argsort(-s, kind="stable")[:10]]
        assert [h.id for h in row] == [f"id{i}" for i in order]


def test_where_document(filled):
    col, _, _ = filled
    assert col.get(where_document={"$contains": "Doc 12 "}).ids == ["id12"]
    assert len(col.get(where_document={"$contains": "about art"}).ids) == 75
    assert len(col.get(where_document={"$contains": "ABOUT ART"}).ids) == 0  # case-sensitive
    q = np.ones(8, dtype=np.float32)
    assert col.query(query_embeddings=q, where_document={"$contains": "ABOUT ART"}) == []  # query path too
    assert len(col.query(query_embeddings=q, k=100, where_document={"$contains": "about art"})) == 75
    both = col.get(where={"i": {"$lt": 20}}, where_document={"$not_contains": "art"}).ids
    assert both == [f"id{i}" for i in range(20) if i % 4 != 0]
    assert col.get(where_document={"$contains": "50%_"}).ids == []  # LIKE wildcards are escaped


def test_broad_filter_uses_ann_path_and_stays_exact(tmp_path, rng):
    """A filter matching most rows goes through the ANN index with allowed keys; results equal brute force."""
    import vectorstore as vs
    from vectorstore import pipeline

    n = 3000
    vecs = random_vectors(rng, n, dim=16)
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("b", model=None, embedding_dim=16, index="faiss-flat")
        col.add(
            ids=[str(i) for i in range(n)],
            embeddings=vecs,
            metadatas=[{"even": i % 2 == 0} for i in range(n)],
        )
        old = pipeline.EXACT_FILTER_MAX
        pipeline.EXACT_FILTER_MAX = 100  # force the ANN path for a 50 % filter
        try:
            q = random_vectors(rng, 5, dim=16)
            hits = col.query(query_embeddings=q, k=10, where={"even": True})
        finally:
            pipeline.EXACT_FILTER_MAX = old
        allowed = np.arange(0, n, 2)
        for qi, row in enumerate(hits):
            s = exact_scores("cosine", q[qi : qi + 1], vecs[allowed])[0]
            assert [h.id for h in row] == [str(i) for i in allowed[np.argsort(-s, kind="stable")[:10]]]


@pytest.mark.slow
def test_broad_filters_through_the_index_filtered_search_equal_brute_force(tmp_path, monkeypatch):
    """A filter too broad for the exact paths of both the store and the index reaches the backend's own
    filtered search; the answers are the brute-force best of the matching records, with exact scores."""
    import vectorstore as vs
    from indexers.faiss.hnsw import FaissHNSWIndex
    from vectorstore import pipeline

    monkeypatch.setattr(pipeline, "EXACT_FILTER_MAX", 100)
    monkeypatch.setattr(pipeline, "EXACT_FILTER_FRACTION", 0.0)
    calls = []
    real = FaissHNSWIndex._search_filtered
    monkeypatch.setattr(
        FaissHNSWIndex, "_search_filtered", lambda self, *a: calls.append(1) or real(self, *a)
    )
    n = 10_000
    x = random_vectors(np.random.default_rng(8), n)
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("c", model=None, embedding_dim=8, index="faiss-hnsw")
        col.add(
            ids=[str(i) for i in range(n)], embeddings=x, metadatas=[{"even": i % 2 == 0} for i in range(n)]
        )
        col.wait_until_indexed()
        q = random_vectors(np.random.default_rng(9), 10)
        hits = col.query(query_embeddings=q, k=10, where={"even": True})
        assert calls
        rows = np.arange(0, n, 2)
        truth = exact_scores("cosine", q, x[rows])
        recall = []
        for qi, row in enumerate(hits):
            want = {str(rows[j]) for j in np.argsort(-truth[qi])[:10]}
            assert all(int(h.id) % 2 == 0 for h in row) and len(row) == 10
            recall.append(len(want & {h.id for h in row}) / 10)
            for h in row:
                np.testing.assert_allclose(
                    h.score, exact_scores("cosine", q[qi : qi + 1], x[int(h.id)][None])[0, 0], atol=1e-5
                )
        assert np.mean(recall) >= 0.95


def _string_index_entries(con) -> int:
    try:
        row = con.execute(
            # an index b-tree keeps entries in its interior pages too
            "SELECT sum(ncell) FROM dbstat WHERE name = 'ix_kv_str' AND pagetype IN ('leaf', 'internal')"
        ).fetchone()
    except Exception as exc:  # sqlite3 built without the dbstat table
        pytest.skip(f"this SQLite has no dbstat table: {exc}")
    return int(row[0] or 0)


def test_string_index_holds_string_values_only_and_string_lookups_use_it(tmp_path):
    import sqlite3

    from sqlalchemy import select
    from sqlalchemy.dialects import sqlite

    import vectorstore as vs
    from vectorstore.db.schema import records
    from vectorstore.filters import compile_where

    rng = np.random.default_rng(6)
    path = tmp_path / "s"
    n = 300
    metas = [_meta(i) for i in range(n)]
    with vs.Store(path) as store:
        col = store.create_collection("f", model=None, embedding_dim=8, index="exact")
        col.add(ids=[f"id{i}" for i in range(n)], embeddings=random_vectors(rng, n), metadatas=metas)
        cid = col.id
    strings = sum(
        isinstance(v, str)
        for m in metas
        for value in m.values()
        for v in (value if isinstance(value, list) else [value])
    )
    con = sqlite3.connect(path / "store.sqlite3")
    try:
        assert _string_index_entries(con) == strings  # numbers, booleans and nulls are not in it
        for where, index in (
            ({"topic": "art"}, "ix_kv_str"),
            ({"topic": {"$gte": "n"}}, "ix_kv_str"),
            ({"i": 3}, "ix_kv_num"),
        ):
            stmt = select(records.c.key).where(compile_where(cid, where))
            sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r[-1]) for r in con.execute("EXPLAIN QUERY PLAN " + sql))
            assert f"INDEX {index}" in plan, (where, plan)
        # a store created before the string index was partial has a full one: same answers
        con.execute("DROP INDEX ix_kv_str")
        con.execute(
            "CREATE INDEX ix_kv_str ON metadata_kv (collection_id, key, vtype, str_value, record_key)"
        )
        con.commit()
    finally:
        con.close()
    with vs.Store(path) as store:
        col = store.get_collection("f")
        for where in FILTERS:
            assert col.get(where=where).ids == [f"id{i}" for i, m in enumerate(metas) if _match(m, where)]
