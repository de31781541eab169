"""Keyword and hybrid query modes on a store, against bm25s over the stored documents and brute force."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import vectorstore as vs
from indexers.scoring import exact_scores
from tests.helpers import bm25s_scores, build_tiny_bert
from vectorstore.errors import InvalidInputError
from vectorstore.keyword import Analyzer

bm25s = pytest.importorskip("bm25s")

DIM = 8
WORDS = [
    "apple",
    "banana",
    "cherry",
    "river",
    "mountain",
    "ocean",
    "forest",
    "desert",
    "quantum",
    "protein",
    "gene",
    "cell",
    "virus",
    "cancer",
    "running",
    "runs",
    "runner",
    "ran",
    "music",
    "guitar",
    "piano",
    "violin",
    "stock",
    "market",
    "price",
    "trade",
    "city",
    "town",
    "village",
]


def _docs(rng: np.random.Generator, n: int) -> list[str]:
    p = 1 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 14)), p=p)) for _ in range(n)]


def reference(ids: list[str], docs: list[str | None], query: str) -> dict[str, float]:
    """bm25s (Lucene BM25, k1=1.2, b=0.75) over the analyzer's terms of the stored documents: id ->
    score of every document that matches."""
    a = Analyzer()
    terms = {i: a.terms(d) for i, d in zip(ids, docs) if d is not None}
    return {i: s for i, s in bm25s_scores(terms, a.terms(query)).items() if s > 0}


def check_keyword_hits(hits, want: dict[str, float], k: int) -> None:
    """Hits are the reference's best k by BM25 (ties may fall either way at the cut)."""
    ranked = sorted(want.values(), reverse=True)
    assert len(hits) == min(k, len(want))
    for h in hits:
        assert h.id in want
        assert h.keyword_score == pytest.approx(want[h.id], rel=1e-5)
    got = [h.keyword_score for h in hits]
    assert got == sorted(got, reverse=True)
    np.testing.assert_allclose(got, ranked[: len(hits)], rtol=1e-5)


@pytest.fixture
def col(tmp_path):
    rng = np.random.default_rng(7)
    store = vs.Store(tmp_path / "store")
    c = store.create_collection("kw", model=None, embedding_dim=DIM, index="exact")
    n = 300
    docs: list[str | None] = list(_docs(rng, n))
    docs[5] = None  # a record without a document is never a keyword hit
    c.add(
        ids=[f"d{i}" for i in range(n)],
        documents=docs,
        embeddings=rng.standard_normal((n, DIM)).astype(np.float32),
        metadatas=[{"g": i % 3, "even": i % 2 == 0} for i in range(n)],
    )
    yield c
    store.close()


def _stored(c) -> tuple[list[str], list[str | None], np.ndarray, list]:
    got = c.get(include=["documents", "embeddings", "metadatas"])
    return got.ids, got.documents, np.asarray(got.embeddings), got.metadatas


QUERIES = ["apple river", "quantum protein gene", "Running MUSIC!", "the piano, the violin", "zebra"]


@pytest.mark.parametrize("query", QUERIES)
def test_keyword_mode_equals_reference_bm25(col, query):
    ids, docs, _, _ = _stored(col)
    hits = col.query(query, mode="keyword", k=15)
    check_keyword_hits(hits, reference(ids, docs, query), 15)
    assert all(math.isnan(h.score) and h.fusion_score is None for h in hits)  # no model, no vectors


def test_keyword_hits_carry_exact_vector_scores_given_query_embeddings(col):
    ids, docs, vecs, _ = _stored(col)
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    hits = col.query(query_embeddings=q, query_text="apple banana", mode="keyword", k=10)
    truth = exact_scores("cosine", q[None], vecs)[0]
    check_keyword_hits(hits, reference(ids, docs, "apple banana"), 10)
    for h in hits:
        assert h.score == pytest.approx(float(truth[ids.index(h.id)]), abs=1e-6)


@pytest.mark.parametrize(
    "where,where_document",
    [({"g": 1}, None), (None, {"$contains": "river"}), ({"even": True}, {"$not_contains": "apple"})],
)
def test_filtered_keyword_equals_brute_force_over_the_filtered_set(col, where, where_document):
    ids, docs, _, metas = _stored(col)
    query = "apple river ocean music"
    full = reference(ids, docs, query)  # BM25 statistics are the whole collection's

    def keep(i: int) -> bool:
        ok = where is None or all(metas[i][k] == v for k, v in where.items())
        if where_document is not None and docs[i] is not None:
            if "$contains" in where_document:
                ok = ok and where_document["$contains"] in docs[i]
            else:
                ok = ok and where_document["$not_contains"] not in docs[i]
        return ok

    want = {rid: s for rid, s in full.items() if keep(ids.index(rid))}
    hits = col.query(query, mode="keyword", k=20, where=where, where_document=where_document)
    check_keyword_hits(hits, want, 20)


def test_upsert_update_and_delete_keep_keyword_search_exact(col):
    rng = np.random.default_rng(3)
    col.query("apple", mode="keyword")  # built before the writes: they must be applied, not rebuilt
    col.upsert(
        ids=["d1", "new1"],
        documents=["zebra zebra apple", "zebra mountain"],
        embeddings=rng.standard_normal((2, DIM)),
    )
    col.update(ids=["d7"], documents=["zebra"], embeddings=rng.standard_normal((1, DIM)))
    col.update(ids=["d3"], metadatas={"g": 9})  # metadata only: document unchanged
    col.delete(ids=["d4", "new1"])
    col.delete(where={"g": 2})
    ids, docs, _, _ = _stored(col)
    for query in ("zebra", "apple mountain", "river"):
        check_keyword_hits(col.query(query, mode="keyword", k=50), reference(ids, docs, query), 50)
    assert {h.id for h in col.query("zebra", mode="keyword", k=50)} == {"d1", "d7"}


def test_a_second_process_writes_are_seen_on_the_next_query(tmp_path, col):
    col.query("apple", mode="keyword")
    path = col.index_files_dir()
    assert path is not None
    store_dir = Path(path).parents[1]
    child = textwrap.dedent(
        """
        import sys, numpy as np, vectorstore as vs
        with vs.Store(sys.argv[1]) as s:
            c = s.get_collection("kw")
            c.add(ids=["other"], documents=["xylophone apple"], embeddings=np.ones((1, DIM)))
            c.delete(ids=["d0"])
        """
    ).replace("DIM", str(DIM))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    subprocess.run([sys.executable, "-c", child, str(store_dir)], check=True, env=env, timeout=120)
    hits = col.query("xylophone", mode="keyword")
    assert [h.id for h in hits] == ["other"]
    ids, docs, _, _ = _stored(col)
    assert "d0" not in ids
    check_keyword_hits(col.query("apple", mode="keyword", k=30), reference(ids, docs, "apple"), 30)


CHILD = textwrap.dedent(
    """
    import sys, numpy as np, vectorstore as vs
    store = vs.Store(sys.argv[1])
    col = store.get_or_create_collection("crash", model=None, embedding_dim=4, index="exact")
    rng = np.random.default_rng(0)
    for b in range(10_000):
        col.add(ids=[f"b{b}-{i}" for i in range(40)],
                documents=[f"batch{b} item{i} common words here" for i in range(40)],
                embeddings=rng.standard_normal((40, 4)))
        if b % 5 == 2:
            col.delete(ids=[f"b{b}-0"])
        print(b, flush=True)
    """
)


def test_keyword_search_survives_sigkill_mid_ingest(tmp_path):
    path = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    acked, deadline = -1, time.time() + 120
    while acked < 12 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked = int(line)
    time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for line in proc.stdout.read().split():
        acked = max(acked, int(line))
    assert acked >= 12
    with vs.Store(path) as store:
        col = store.get_collection("crash")
        ids, docs, _, _ = _stored(col)
        for b in range(acked + 1):  # every acknowledged batch is keyword-searchable, deletes applied
            hits = col.query(f"batch{b}", mode="keyword", k=100)
            assert len(hits) == (39 if b % 5 == 2 else 40)
        check_keyword_hits(
            col.query("item3 common", mode="keyword", k=25), reference(ids, docs, "item3 common"), 25
        )


def test_a_schema_1_store_is_migrated_and_keyword_searchable(tmp_path):
    path = tmp_path / "store"
    with vs.Store(path) as store:
        c = store.create_collection("old", model=None, embedding_dim=4, index="exact")
        c.add(ids=["a", "b", "c"], documents=["red fox", "blue fox", "green"], embeddings=np.eye(4)[:3])
    # make it look as vectorstore 0.1 wrote it: schema 1 (no vector checksums), no keyword settings
    db = sqlite3.connect(path / vs.store.DB_FILE)
    db.execute("ALTER TABLE vectors DROP COLUMN crc")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.execute("UPDATE collections SET config = json_remove(config, '$.keyword')")
    db.commit()
    db.close()
    with vs.Store(path) as store:
        c = store.get_collection("old")
        assert [h.id for h in c.query("fox blue", mode="keyword")] == ["b", "a"]
        assert store.verify().ok  # the migration checksummed the stored vectors
    db = sqlite3.connect(path / vs.store.DB_FILE)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    assert db.execute("SELECT count(*) FROM vectors WHERE crc IS NULL").fetchone()[0] == 0
    db.close()


HOSTILE = [
    '"apple" NEAR(river ocean, 2)',
    "apple* -river: (music) AND OR NOT",
    "!!! ... ???",
    "",
    "🍎 apple 🌊",
    "apple " * 2000,
    "x" * 10_000,
    "'; DROP TABLE records; --",
]


@pytest.mark.parametrize("query", HOSTILE)
@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_hostile_query_text_never_raises_and_matches_only_its_words(col, query, mode):
    ids, docs, _, _ = _stored(col)
    q = np.random.default_rng(0).standard_normal(DIM).astype(np.float32)
    hits = col.query(query_embeddings=q, query_text=query, mode=mode, k=10)
    want = reference(ids, docs, query)
    if mode == "keyword":
        check_keyword_hits(hits, want, 10)
    else:
        assert len(hits) == 10  # the vector leg always contributes
        for h in hits:
            if h.keyword_score is not None:
                assert h.keyword_score == pytest.approx(want[h.id], rel=1e-5)
            else:
                assert h.id not in want
    assert col.count() == 300  # nothing was executed


def test_hybrid_hits_carry_exact_scores_and_are_ordered_by_fusion(col):
    ids, docs, vecs, _ = _stored(col)
    rng = np.random.default_rng(5)
    q = rng.standard_normal(DIM).astype(np.float32)
    text = "apple quantum music"
    truth = exact_scores("cosine", q[None], vecs)[0]
    kw = reference(ids, docs, text)
    for fusion in ("rrf", "weighted"):
        hits = col.query(
            query_embeddings=q, query_text=text, mode="hybrid", k=20, fusion=fusion, candidates=30
        )
        assert len(hits) == 20
        fused = [h.fusion_score for h in hits]
        assert all(f is not None for f in fused) and fused == sorted(fused, reverse=True)
        for h in hits:
            assert h.score == pytest.approx(float(truth[ids.index(h.id)]), abs=1e-6)
            if h.id in kw:
                assert h.keyword_score == pytest.approx(kw[h.id], rel=1e-5)
            else:
                assert h.keyword_score is None
    # RRF by hand: each leg's best 30 (vector by exact score, keyword by BM25), 1 / (60 + rank)
    v_rank = {ids[j]: r for r, j in enumerate(np.argsort(-truth, kind="stable")[:30], 1)}
    k_rank = {rid: r for r, rid in enumerate(sorted(kw, key=lambda i: (-kw[i], ids.index(i)))[:30], 1)}
    want = {
        rid: (1 / (60 + v_rank[rid]) if rid in v_rank else 0)
        + (1 / (60 + k_rank[rid]) if rid in k_rank else 0)
        for rid in set(v_rank) | set(k_rank)
    }
    hits = col.query(query_embeddings=q, query_text=text, mode="hybrid", k=5, fusion="rrf", candidates=30)
    for h in hits:
        assert h.fusion_score == pytest.approx(want[h.id], rel=1e-9)
    assert hits[0].fusion_score == pytest.approx(max(want.values()), rel=1e-9)


def test_hybrid_weights_and_alpha_move_the_ranking_towards_one_leg(col):
    q = np.random.default_rng(6).standard_normal(DIM).astype(np.float32)
    text = "apple river"
    vector_only = [h.id for h in col.query(query_embeddings=q, k=10)]
    keyword_only = [h.id for h in col.query(query_embeddings=q, query_text=text, mode="keyword", k=10)]
    as_vector = col.query(
        query_embeddings=q, query_text=text, mode="hybrid", k=10, fusion="weighted", alpha=1.0
    )
    as_keyword = col.query(
        query_embeddings=q, query_text=text, mode="hybrid", k=10, fusion="weighted", alpha=0.0
    )
    assert [h.id for h in as_vector] == vector_only
    assert [round(h.keyword_score, 9) for h in as_keyword] == [
        round(h.keyword_score, 9)
        for h in col.query(query_embeddings=q, query_text=text, mode="keyword", k=10)
    ]
    rrf_vector = col.query(
        query_embeddings=q, query_text=text, mode="hybrid", k=10, fusion="rrf", weights=(1, 0)
    )
    assert [h.id for h in rrf_vector] == vector_only
    assert keyword_only  # the query does match documents


def test_batched_keyword_and_hybrid_queries_equal_single_ones(col):
    rng = np.random.default_rng(8)
    qs = rng.standard_normal((3, DIM)).astype(np.float32)
    texts = ["apple", "quantum gene", "zebra"]
    for mode in ("keyword", "hybrid"):
        batched = col.query(query_embeddings=qs, query_text=texts, mode=mode, k=7)
        for i in range(3):
            single = col.query(query_embeddings=qs[i], query_text=texts[i], mode=mode, k=7)
            assert [h.id for h in batched[i]] == [h.id for h in single]
            for a, b in zip(batched[i], single):  # float32 vector scores of a batch may differ by rounding
                assert a.keyword_score == b.keyword_score
                assert a.score == pytest.approx(b.score, abs=1e-6)
                if mode == "hybrid":
                    assert a.fusion_score == pytest.approx(b.fusion_score, abs=1e-6)


def test_bad_mode_and_fusion_arguments_raise_clear_errors(col):
    q = np.zeros(DIM, np.float32) + 1
    bad = [
        {"mode": "bm25"},
        {"mode": "hybrid", "fusion": "max"},
        {"mode": "hybrid", "alpha": 1.5},
        {"mode": "hybrid", "rrf_k": -1},
        {"mode": "hybrid", "weights": (1,)},
        {"mode": "hybrid", "weights": (0, 0)},
    ]
    for kw in bad:
        with pytest.raises(InvalidInputError):
            col.query(query_embeddings=q, query_text="apple", **kw)
    with pytest.raises(InvalidInputError, match="query text"):
        col.query(query_embeddings=q, mode="keyword")
    with pytest.raises(InvalidInputError, match="no model"):
        col.query("apple", mode="hybrid")  # nothing to embed the text with
    with pytest.raises(InvalidInputError, match="query_embeddings"):
        col.query(query_text="apple", mode="keyword")
    with pytest.raises(InvalidInputError, match="query texts"):
        col.query(query_embeddings=np.ones((2, DIM)), query_text=["a"], mode="hybrid")
    assert col.count() == 300


def test_keyword_mode_on_a_collection_without_documents_finds_nothing(tmp_path):
    with vs.Store(tmp_path / "s") as store:
        c = store.create_collection("v", model=None, embedding_dim=4, index="exact")
        c.add(ids=["a"], embeddings=np.ones((1, 4)))
        assert c.query("anything", mode="keyword") == []


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("kw_ce"), num_labels=1, initializer_range=0.3)


def test_hybrid_with_the_model_and_a_reranker(tmp_path, dev_sentences, ce_dir):
    corpus = dev_sentences[:200]
    with vs.Store(tmp_path / "s", device="cpu") as store:
        c = store.create_collection("m", index="exact", reranker=str(ce_dir))
        c.add(ids=[f"s{i}" for i in range(len(corpus))], documents=corpus)
        query = "A man is playing a guitar."
        fused = c.query(query, mode="hybrid", k=30, rerank=False)
        qv = c.model.encode_query([query])[0]
        same = c.query(query_embeddings=qv, query_text=query, mode="hybrid", k=30, rerank=False)
        assert [h.id for h in fused] == [h.id for h in same]
        got = c.query(query, mode="hybrid", k=5, rerank_k=30)
        ce = vs.CrossEncoder(str(ce_dir), device="cpu")
        scores = ce.predict([(query, h.document) for h in fused])
        want = [fused[i].id for i in np.argsort(-scores, kind="stable")[:5]]
        assert [h.id for h in got] == want
        assert all(h.fusion_score is not None and h.rerank_score is not None for h in got)
