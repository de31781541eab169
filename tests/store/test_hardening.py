"""Hostile and awkward input gets a clear VectorStoreError and changes nothing; the store's lifecycle
is safe (exit without close, bounded close, closed stores refuse work); re-runs write nothing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vectorstore as vs
from indexers.scoring import exact_scores
from tests.store.conftest import random_vectors

N = 200


def _filled(store: vs.Store, name: str = "c", metric: str = "cosine", n: int = N) -> vs.Collection:
    col = store.create_collection(name, model=None, embedding_dim=8, index="faiss-hnsw", metric=metric)
    rng = np.random.default_rng(1)
    col.add(
        ids=[f"r{i}" for i in range(n)],
        embeddings=random_vectors(rng, n),
        documents=[f"document {i}" for i in range(n)],
        metadatas=[{"i": i, "s": f"s{i}", "even": i % 2 == 0} for i in range(n)],
    )
    return col


def _snapshot(col: vs.Collection) -> tuple:
    got = col.get(include=["documents", "metadatas", "embeddings"])
    return got.ids, got.documents, got.metadatas, got.embeddings.tobytes()


# ---------------------------------------------------------------------- filters that used to escape
def test_in_and_nin_take_100k_values(store):
    col = _filled(store)
    values = list(range(0, 100_000, 1))  # 100k values, of which the stored 0..199 are the first ones
    assert sorted(col.get(where={"i": {"$in": values[::2]}}).ids) == sorted(f"r{i}" for i in range(0, N, 2))
    assert sorted(col.get(where={"i": {"$nin": values[:150]}}).ids) == sorted(f"r{i}" for i in range(150, N))
    strings = [f"s{i}" for i in range(100_000)]
    assert len(col.get(where={"s": {"$in": strings}}).ids) == N
    q = random_vectors(np.random.default_rng(2), 1)[0]
    hits = col.query(query_embeddings=q, k=5, where={"i": {"$in": values[1::2]}})  # odd i, through a query
    assert len(hits) == 5 and all(int(h.id[1:]) % 2 == 1 for h in hits)
    # typed as $eq is: 1 matches the int 1, never True; True matches only bools
    assert col.get(where={"even": {"$in": [True, *range(500)]}}).ids  # bools and ints mixed
    assert set(col.get(where={"even": {"$in": [1, 0] * 300}}).ids) == set()


def test_wide_or_and_and_work_and_oversized_filters_are_refused(store):
    col = _filled(store)
    wide = {"$or": [{"i": i} for i in range(10_000)]}
    assert len(col.get(where=wide).ids) == N
    assert len(col.get(where={"$and": [{"i": {"$gte": 0}}] * 5_000}).ids) == N
    before = _snapshot(col)
    with pytest.raises(vs.InvalidFilterError, match="comparisons"):
        col.get(where={"$or": [{"i": i} for i in range(20_000)]})
    deep: dict = {"i": 1}
    for _ in range(400):
        deep = {"$and": [deep]}
    for call in (lambda: col.get(where=deep), lambda: col.query(query_embeddings=np.ones(8), where=deep)):
        with pytest.raises(vs.InvalidFilterError, match="nested"):
            call()
    very_deep: dict = {"$contains": "x"}
    for _ in range(5_000):
        very_deep = {"$or": [very_deep]}
    with pytest.raises(vs.InvalidFilterError, match="nested"):
        col.get(where_document=very_deep)
    with pytest.raises(vs.InvalidFilterError, match="finite"):
        col.get(where={"i": {"$lt": float("nan")}})
    with pytest.raises(vs.InvalidFilterError, match="finite"):
        col.get(where={"i": {"$in": [1, float("inf")]}})
    assert _snapshot(col) == before


def test_k_beyond_the_collection_returns_everything_without_allocating_by_k(store):
    col = _filled(store, n=50)
    q = random_vectors(np.random.default_rng(3), 2)
    hits = col.query(query_embeddings=q, k=10**9)
    truth = exact_scores("cosine", q, col.get(include=["embeddings"]).embeddings)
    assert [len(row) for row in hits] == [50, 50]
    np.testing.assert_allclose([h.score for h in hits[0]], np.sort(truth[0])[::-1], atol=1e-5)
    assert len(col.query(query_embeddings=q[0], k=10**9, where={"i": {"$lt": 10}})) == 10
    assert [h.id for h in col.query(query_embeddings=q[0], k=np.int64(3))] == [h.id for h in hits[0][:3]]


# ---------------------------------------------------------------------- errors that were not ours
def test_errors_that_escaped_are_vectorstore_errors(store, tmp_path):
    col = _filled(store)
    before = _snapshot(col)
    with pytest.raises(vs.InvalidIDError, match="Unicode"):
        col.add(ids=["\ud800"], embeddings=np.ones((1, 8)))
    (tmp_path / "file").write_text("x")
    with pytest.raises(vs.VectorStoreError):
        vs.Store(tmp_path / "file" / "sub")
    with pytest.raises(vs.InvalidInputError, match="URL"):
        vs.Store(url="not a url")
    with pytest.raises(vs.InvalidInputError, match="empty"):
        vs.Store("")
    with pytest.raises(vs.InvalidInputError, match="model name"):
        vs.SentenceTransformer(None)  # type: ignore[arg-type]
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(vs.InvalidInputError, match="CUDA"):
            vs.SentenceTransformer("all-MiniLM-L6-v2", device="cuda")
    assert _snapshot(col) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_a_store_in_a_read_only_directory_is_a_storage_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(vs.StorageError):
            vs.Store(locked / "s")
    finally:
        locked.chmod(0o700)


def test_values_that_were_accepted_silently_are_refused(store):
    col = _filled(store)
    before = _snapshot(col)
    with pytest.raises(vs.InvalidVectorError, match="complex"):
        col.add(ids=["x"], embeddings=np.ones((1, 8)) * (1 + 1j))
    with pytest.raises(vs.InvalidVectorError, match="bool"):
        col.add(ids=["x"], embeddings=np.ones((1, 8), dtype=bool))
    with pytest.raises(vs.InvalidVectorError, match="all zeros"):
        col.add(ids=["x"], embeddings=np.zeros((1, 8)))
    with pytest.raises(vs.InvalidVectorError, match="all zeros"):
        col.query(query_embeddings=np.zeros(8))
    for bad in (2, float("nan"), float("inf"), True, "0.9"):
        with pytest.raises(vs.InvalidInputError, match="threshold"):
            col.find_duplicates(threshold=bad)
    with pytest.raises(vs.InvalidInputError, match="threshold"):
        col.add(ids=["x"], embeddings=np.ones((1, 8)), on_duplicate="skip", duplicate_threshold=1.5)
    assert _snapshot(col) == before
    dot = store.create_collection("dot", model=None, embedding_dim=8, metric="dot", index="exact")
    dot.add(ids=["z"], embeddings=np.zeros((1, 8)))  # a zero vector is meaningful for dot
    assert dot.query(query_embeddings=np.ones(8), k=1)[0].score == 0.0


def test_numpy_scalars_and_empty_lists_are_accepted_consistently(store):
    col = _filled(store)
    col.add(
        ids=[np.str_("np")],
        embeddings=np.ones((1, 8), np.float32),
        metadatas=[
            {"a": np.int64(3), "b": np.float32(0.5), "c": np.bool_(True), "d": [np.int32(1), np.str_("x")]}
        ],
    )
    meta = col.get(ids=["np"]).metadatas[0]
    assert meta == {"a": 3, "b": 0.5, "c": True, "d": [1, "x"]}
    assert [type(meta[k]) for k in "abc"] == [int, float, bool]
    assert col.get(where={"c": True}, ids=["np"]).ids == ["np"]  # stored as a bool, not as 1
    count = col.count()
    assert col.add(ids=[], embeddings=[]).ids == []
    assert col.add(ids=[], embeddings=np.zeros((0, 8))).ids == []
    assert col.upsert(ids=[], embeddings=[]) == vs.results.WriteCounts(0, 0, 0)
    assert col.query(query_embeddings=np.zeros((0, 8))) == []
    assert col.count() == count


# ---------------------------------------------------------------------- re-runs write nothing
def test_an_identical_upsert_writes_nothing(store):
    from vectorstore.db.engine import read_tx
    from vectorstore.db.repository import Repository

    col = _filled(store, n=20)
    got = col.get(include=["documents", "metadatas", "embeddings"])
    with read_tx(store.engine) as conn:
        seq = Repository.max_seq(conn, col.id)
    counts = col.upsert(
        ids=got.ids, documents=got.documents, metadatas=got.metadatas, embeddings=got.embeddings
    )
    assert counts == vs.results.WriteCounts(added=0, updated=0, unchanged=20)
    with read_tx(store.engine) as conn:
        assert Repository.max_seq(conn, col.id) == seq  # no change-log rows
    meta = [dict(m) for m in got.metadatas]
    meta[3]["i"] = True  # True is not 3: a change
    meta[4]["i"] = float(meta[4]["i"])  # 4.0 is stored as a float: a change of type
    emb = got.embeddings.copy()
    emb[5, 0] += 1e-3
    counts = col.upsert(
        ids=[*got.ids, "new"],
        documents=[*got.documents, "n"],
        metadatas=[*meta, None],
        embeddings=np.vstack([emb, np.ones((1, 8))]),
    )
    assert counts == vs.results.WriteCounts(added=1, updated=3, unchanged=17)
    assert col.get(ids=["r3"]).metadatas[0]["i"] is True


# ---------------------------------------------------------------------- lifecycle
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "n", "seed"), [("usearch-hnsw", 20_000, 1), ("faiss-hnsw", 3_000, 2), ("faiss-hnsw", 20_000, 3)]
)
def test_exit_without_close_is_clean_and_loses_nothing(tmp_path, kind, n, seed):
    code = textwrap.dedent(
        f"""
        import numpy as np, vectorstore as vs
        store = vs.Store({str(tmp_path / "s")!r})
        col = store.create_collection("c", model=None, embedding_dim=32, index={kind!r})
        x = np.random.default_rng({seed}).standard_normal(({n}, 32)).astype(np.float32)
        col.add(ids=[str(i) for i in range({n})], embeddings=x)
        print("added", flush=True)
        """
    )  # no close(): the interpreter exits with the background indexer busy
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "added" in proc.stdout and "terminate called" not in proc.stderr
    with vs.Store(tmp_path / "s") as store:
        col = store.get_collection("c")
        assert col.count() == n
        x = np.random.default_rng(seed).standard_normal((n, 32)).astype(np.float32)
        assert col.query(query_embeddings=x[n - 1], k=1)[0].id == str(n - 1)


def test_close_is_bounded_and_the_rest_is_replayed(tmp_path, monkeypatch):
    from vectorstore import index_state
    from vectorstore import store as store_module

    monkeypatch.setattr(index_state, "SYNC_INDEX_MAX", 10)
    monkeypatch.setattr(index_state, "_INDEX_CHUNK", 5)
    # no background indexing and no time to index at close: the batch stays pending
    monkeypatch.setattr(index_state.IndexState, "_start_indexer", lambda self: None)
    monkeypatch.setattr(store_module, "CLOSE_TIMEOUT_S", 0.0)
    x = random_vectors(np.random.default_rng(4), 3000)
    store = vs.Store(tmp_path / "s")
    col = store.create_collection("c", model=None, embedding_dim=8, index="faiss-hnsw")
    col.add(ids=[str(i) for i in range(100)], embeddings=x[:100])
    col.persist()
    saved = col._state.saved_seq
    col.add(ids=[str(i) for i in range(100, 3000)], embeddings=x[100:])  # background indexing
    state = col._state
    store.close()
    assert state.pending  # left to the change log, not indexed and saved at close
    with pytest.raises(vs.StoreClosedError):
        col.count()
    with vs.Store(tmp_path / "s") as again:
        c = again.get_collection("c")
        assert c._state.saved_seq == saved  # nothing inconsistent was saved; the log was replayed
        assert c.count() == 3000 and c.query(query_embeddings=x[2999], k=1)[0].id == "2999"
        again.close(wait=True)
        assert not c._state.pending


def test_a_closed_store_refuses_every_operation(tmp_path):
    store = vs.Store(tmp_path / "s")
    col = _filled(store)
    store.close()
    store.close()  # twice is fine
    assert store.closed
    ops = [
        lambda: col.count(),
        lambda: col.query(query_embeddings=np.ones(8)),
        lambda: col.add(ids=["late"], embeddings=np.ones((1, 8))),
        lambda: col.upsert(ids=["late"], embeddings=np.ones((1, 8))),
        lambda: col.update(ids=["r1"], metadatas={"x": 1}),
        lambda: col.delete(ids=["r1"]),
        lambda: col.get(),
        lambda: col.find_duplicates(),
        lambda: store.get_collection("c"),
        lambda: store.list_collections(),
    ]
    for op in ops:
        with pytest.raises(vs.StoreClosedError):
            op()
    with vs.Store(tmp_path / "s") as store:
        assert store.get_collection("c").get(ids=["late"]).ids == []


# ---------------------------------------------------------------------- progress output
def test_one_bar_per_operation_and_silence_when_asked(store, model, capsys, monkeypatch):
    store.models.encoders["all-MiniLM-L6-v2"] = model
    col = store.create_collection("t")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    docs = [f"short text {i}" for i in range(2_100)]
    col.add(ids=[str(i) for i in range(2_100)], documents=docs, show_progress_bar=False)
    assert capsys.readouterr().err == ""
    col.upsert(ids=[f"b{i}" for i in range(2_100)], documents=docs)  # default on a terminal: one bar
    err = capsys.readouterr().err
    assert "Embedding t" in err and "Batches" not in err


# ---------------------------------------------------------------------- fuzz: nothing escapes, nothing changes
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_ops = st.sampled_from(["$eq", "$ne", "$gt", "$lt", "$in", "$nin", "$and", "$or", "$contains", "$bogus"])
_filter = st.recursive(
    _json,
    lambda inner: st.dictionaries(st.one_of(_ops, st.sampled_from(["i", "s", "even"])), inner, max_size=2),
    max_leaves=6,
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=_filter,
    where_document=_filter,
    ids=_json,
    metadatas=_json,
    k=_json,
    include=_json,
    embeddings=st.one_of(_json, st.just(np.zeros((1, 8))), st.just(np.full((1, 8), np.nan))),
)
def test_fuzz_every_error_is_ours_and_nothing_changes(
    fuzz_store, where, where_document, ids, metadatas, k, include, embeddings
):
    col = fuzz_store.get_collection("c")
    before = _snapshot(col)
    calls = [
        lambda: col.get(where=where, where_document=where_document),
        lambda: col.query(
            query_embeddings=np.ones(8),
            k=k if isinstance(k, int) and not isinstance(k, bool) and k > 0 else 3,
            where=where,
            where_document=where_document,
        ),
        lambda: col.query(query_embeddings=np.ones(8), k=k, include=include),
        lambda: col.add(ids=ids, embeddings=embeddings, metadatas=metadatas),
        lambda: col.upsert(ids=ids, embeddings=embeddings, metadatas=metadatas, documents=where),
        lambda: col.delete(where=where, where_document=where_document, ids=["never-stored"]),
        lambda: col.find_duplicates(threshold=k, where=where),
    ]
    for call in calls:
        with contextlib.suppress(vs.VectorStoreError):
            call()
    after = _snapshot(col)
    # a valid add/upsert of new ids may have written; the 200 records themselves never change
    n = len(before[0])
    assert after[0][:n] == before[0] and after[1][:n] == before[1] and after[2][:n] == before[2]
    assert after[3][: len(before[3])] == before[3]
    new = [i for i in after[0] if i not in before[0]]
    if new:
        col.delete(ids=new)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    store = vs.Store(tmp_path_factory.mktemp("fuzz") / "s")
    _filled(store)
    yield store
    store.close()


# ---------------------------------------------------------------------- read-only stores
def _tree_digest(path: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file but SQLite's WAL coordination files (a WAL reader may create an
    empty -wal and a -shm index beside the database; neither holds data)."""
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in path.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def test_a_read_only_store_serves_queries_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "s"
    x = random_vectors(np.random.default_rng(6), 350)
    with vs.Store(path) as store:
        store.create_collection("c", model=None, embedding_dim=8).add(
            ids=[str(i) for i in range(300)], embeddings=x[:300]
        )
    # 50 more records committed by a process that saves no index files: the saved files are stale
    with vs.Store(url=f"sqlite:///{path / 'store.sqlite3'}") as writer:
        writer.get_collection("c").add(ids=[str(i) for i in range(300, 350)], embeddings=x[300:])
    before = _tree_digest(path)
    with vs.Store(path, read_only=True) as store:
        assert store.read_only
        col = store.get_collection("c")
        truth = exact_scores("cosine", x[:40] + 0.01, x)
        for qi, row in enumerate(col.query(query_embeddings=x[:40] + 0.01, k=1)):
            assert row[0].id == str(int(np.argmax(truth[qi])))
        assert col.count() == 350
        for op in (
            lambda: col.add(ids=["new"], embeddings=np.ones((1, 8))),
            lambda: col.upsert(ids=["1"], embeddings=np.ones((1, 8))),
            lambda: col.update(ids=["1"], metadatas={"a": 1}),
            lambda: col.delete(ids=["1"]),
            lambda: col.persist(),
            lambda: store.create_collection("d", model=None, embedding_dim=8),
            lambda: store.delete_collection("c"),
            lambda: store.verify(repair=True),
        ):
            with pytest.raises(vs.ReadOnlyStoreError):
                op()
        assert store.verify().ok
    assert _tree_digest(path) == before  # not a byte written, not even the index files it lacked
    wal = path / "store.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    from vectorstore.cli import main

    assert main(["info", str(path), "--read-only"]) == 0 and "350 records" in capsys.readouterr().out
    with pytest.raises(vs.StorageError, match="read-only"):
        vs.Store(tmp_path / "nothing-here", read_only=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_a_store_whose_files_are_not_writable_opens_read_only(tmp_path):
    path = tmp_path / "s"
    with vs.Store(path) as store:
        store.create_collection("c", model=None, embedding_dim=8).add(ids=["a"], embeddings=np.ones((1, 8)))
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        with vs.Store(path) as store:
            assert (
                store.read_only
                and store.get_collection("c").query(query_embeddings=np.ones(8), k=1)[0].id == "a"
            )
    finally:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_vacuum_gives_deleted_space_back_and_keeps_every_record(tmp_path):
    import sqlite3

    rng = np.random.default_rng(0)
    path = tmp_path / "store"
    with vs.Store(path) as store:
        col = store.create_collection("v", model=None, embedding_dim=64, index="exact")
        vecs = rng.standard_normal((6000, 64)).astype(np.float32)
        ids = [f"r{i}" for i in range(len(vecs))]
        col.add(ids=ids, embeddings=vecs, documents=[f"document number {i} " * 8 for i in range(len(vecs))])
        col.delete(ids=ids[:5000])
        db = path / vs.store.DB_FILE
        probe = sqlite3.connect(db)
        probe.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the deletes now sit in the file as free pages
        assert probe.execute("PRAGMA freelist_count").fetchone()[0] > 0
        size_before = db.stat().st_size
        freed = store.vacuum()
        size_after = db.stat().st_size + (path / (vs.store.DB_FILE + "-wal")).stat().st_size
        assert freed == size_before - size_after
        assert size_after < size_before / 2  # most rows were deleted: a checkpoint alone would not shrink it
        assert probe.execute("PRAGMA freelist_count").fetchone()[0] == 0
        probe.close()
        q = rng.standard_normal((3, 64)).astype(np.float32)
        hits = col.query(query_embeddings=q, k=5)  # the open collection still answers
        truth = np.argsort(-exact_scores("cosine", q, vecs[5000:]), axis=1)[:, :5]
        assert [[h.id for h in row] for row in hits] == [[ids[5000 + j] for j in row] for row in truth]
        col.add(ids=["new"], embeddings=vecs[:1])  # and takes writes
    with vs.Store(path) as store:
        assert store.get_collection("v").count() == 1001
        assert store.verify().ok
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_vacuum_refuses_a_read_only_store(tmp_path):
    with vs.Store(tmp_path / "s") as store:
        store.create_collection("v", model=None, embedding_dim=4, index="exact")
    with vs.Store(tmp_path / "s", read_only=True) as store, pytest.raises(vs.ReadOnlyStoreError):
        store.vacuum()
