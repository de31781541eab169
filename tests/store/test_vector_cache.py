"""Where the query path's full-precision vectors live: the index's own storage for kinds that keep
float32 vectors (no second copy on disk or in memory), a cache of their own for the others — and in
both cases the same answers, the stored vectors returned, and an older save layout still read."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import vectorstore as vs
from indexers.exact import ExactIndex
from indexers.scoring import exact_scores
from vectorstore.derived_files import save_pair
from vectorstore.index_state import SYNC_INDEX_MAX
from vectorstore.vector_cache import OwnVectors, SharedVectors, TruthVectors

DIM = 24
# faiss-ivfpq: refined (the default), its float32 refinement copy is the cache; faiss-ivf reads
# vectors back one at a time, so it keeps a table of its own; faiss-hnsw-sq keeps 8-bit codes and is
# rescored from SQLite
LAYOUT: dict[str, type] = {
    "faiss-hnsw": SharedVectors,
    "exact": SharedVectors,
    "faiss-ivfpq": SharedVectors,
    "usearch-hnsw": OwnVectors,
    "faiss-ivf": OwnVectors,
    "faiss-hnsw-sq": TruthVectors,
}
KINDS = {kind: layout is not OwnVectors for kind, layout in LAYOUT.items()}  # no float32 copy saved


def _vectors(n: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # far from unit length, so a vector returned normalised would not pass for the stored one
    return (rng.standard_normal((n, DIM)) * rng.uniform(0.2, 9.0, (n, 1))).astype(np.float32)


def _generation(path: Path) -> Path:
    collection_dir = next((path / "indexes").iterdir())
    return collection_dir / json.loads((collection_dir / "CURRENT").read_text())["generation"]


def _options(kind: str) -> dict:
    # small lists probed exhaustively: exact answers, so brute force is the oracle for every kind
    if kind == "faiss-ivfpq":
        return {"nlist": 4, "nprobe": 4, "m": 12, "nbits": 4, "refine_factor": 100, "train_size": 600}
    if kind == "faiss-ivf":
        return {"nlist": 4, "nprobe": 4, "train_size": 600}
    return {}


def _check_exact(col: vs.Collection, ids: list[str], vecs: np.ndarray, where: dict | None = None) -> None:
    """Top-5 ids and scores equal brute force (over the rows ``where`` allows, bucket = i % 3)."""
    allowed = np.arange(len(vecs)) if where is None else np.nonzero(np.arange(len(vecs)) % 3 == where["b"])[0]
    q = vecs[::97][:12] * 0.5 + 0.05
    truth = exact_scores("cosine", q, vecs[allowed])
    for qi, row in enumerate(col.query(query_embeddings=q, k=5, where=where)):
        best = allowed[np.argsort(-truth[qi], kind="stable")[:5]]
        assert [h.id for h in row] == [ids[i] for i in best]
        np.testing.assert_allclose([h.score for h in row], np.sort(truth[qi])[::-1][:5], atol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_kind_that_keeps_full_vectors_is_its_own_cache(tmp_path, kind, caplog):
    path = tmp_path / "s"
    vecs = _vectors(1200)
    ids = [f"r{i}" for i in range(len(vecs))]
    with vs.Store(path) as store:
        col = store.create_collection(
            "c", model=None, embedding_dim=DIM, index=kind, index_options=_options(kind)
        )
        col.add(ids=ids, embeddings=vecs, metadatas=[{"b": i % 3} for i in range(len(vecs))])
        col.wait_until_indexed()
        cache = col._state.vectors
        assert type(cache) is LAYOUT[kind]
        if KINDS[kind]:
            assert cache.index is col._state.index and len(cache.overlay) == 0
    gen = _generation(path)
    assert (gen / "index").is_dir()
    assert (gen / "vectors").is_dir() is (not KINDS[kind])  # no second float32 copy on disk
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        _check_exact(col, ids, vecs)  # before the background check of the loaded files ends
        _check_exact(col, ids, vecs, where={"b": 1})  # the exact filtered path reads the cache
        col._state.wait_verified(60)
        _check_exact(col, ids, vecs)
    assert "rebuild" not in caplog.text


@pytest.mark.parametrize("kind", ["faiss-hnsw", "faiss-hnsw-sq", "usearch-hnsw"])
def test_returned_embeddings_are_the_stored_vectors(tmp_path, kind):
    path = tmp_path / "s"
    first, more = _vectors(300), _vectors(SYNC_INDEX_MAX + 500, seed=6)
    vecs = np.concatenate([first, more])
    ids = [f"r{i}" for i in range(len(vecs))]
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index=kind)
        col.add(ids=ids[:300], embeddings=first)
        col.add(ids=ids[300:], embeddings=more)  # larger than a synchronous insert: pending a while
        q = vecs[[3, 400, len(vecs) - 1]]
        for _ in range(2):  # while (maybe) pending, then indexed
            for qi, row in enumerate(col.query(query_embeddings=q, k=3, include=["embeddings"])):
                assert row[0].id == ids[[3, 400, len(vecs) - 1][qi]]
                for h in row:
                    np.testing.assert_array_equal(h.embedding, vecs[ids.index(h.id)])
            col.wait_until_indexed()
    with vs.Store(path) as store:
        col = store.get_collection("c")
        for _ in range(2):  # first while the loaded files are unverified, then verified
            row = col.query(query_embeddings=vecs[7:8], k=4, include=["embeddings"])[0]
            assert row[0].id == "r7"
            for h in row:
                np.testing.assert_array_equal(h.embedding, vecs[ids.index(h.id)])
            col._state.wait_verified(60)
        _check_exact(col, ids, vecs)


def test_pending_and_indexed_vectors_are_scored_alike(tmp_path):
    """Right after a large write the index holds part of the collection and the overlay the rest; a
    query (plain and exactly filtered) mixes both and must equal brute force."""
    vecs = _vectors(SYNC_INDEX_MAX * 3)
    ids = [f"r{i}" for i in range(len(vecs))]
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM)
        metas = [{"b": i % 3} for i in range(len(vecs))]
        col.add(ids=ids[:1000], embeddings=vecs[:1000], metadatas=metas[:1000])
        col.add(ids=ids[1000:], embeddings=vecs[1000:], metadatas=metas[1000:])
        state = col._state
        _check_exact(col, ids, vecs)
        _check_exact(col, ids, vecs, where={"b": 2})
        cache = state.vectors
        assert isinstance(cache, SharedVectors)
        assert len(cache) == len(vecs) == len(cache.index) + len(cache.overlay)
        col.wait_until_indexed()
        assert len(cache.overlay) == 0 and len(cache.index) == len(vecs)
        # replacing and deleting records, indexed or not, keeps both parts in step
        col.upsert(ids=ids[:10], embeddings=vecs[10:20])
        col.delete(ids=ids[20:30])
        keep = [i for i in range(len(vecs)) if not 20 <= i < 30]
        now = vecs.copy()
        now[:10] = vecs[10:20]
        _check_exact(col, [ids[i] for i in keep], now[keep])


def test_an_older_save_with_its_own_vector_cache_opens_without_a_rebuild(tmp_path, caplog):
    path = tmp_path / "s"
    vecs = _vectors(800)
    ids = [f"r{i}" for i in range(len(vecs))]
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM)
        col.add(ids=ids, embeddings=vecs)
        col.wait_until_indexed()
        state = col._state
        keys = state.all_keys()
        # the layout earlier versions wrote: the index plus a float32 copy of every vector
        cache = ExactIndex(DIM, "dot")
        cache.add(keys, state.stored_vectors(keys))
        save_pair(state.directory, state.index, cache, state.applied_seq, state.identity)
        state.saved_seq = state.applied_seq
    assert (_generation(path) / "vectors").is_dir()
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        _check_exact(col, ids, vecs)
        col.add(ids=["new"], embeddings=vecs[:1] * 2)
        col.persist()
    assert "rebuild" not in caplog.text
    assert not (_generation(path) / "vectors").exists()  # the next save drops the second copy


def test_a_lossy_kind_without_its_vector_cache_is_rebuilt(tmp_path, caplog):
    path = tmp_path / "s"
    vecs = _vectors(500)
    ids = [f"r{i}" for i in range(len(vecs))]
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="usearch-hnsw")
        col.add(ids=ids, embeddings=vecs)
    shutil.rmtree(_generation(path) / "vectors")
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        _check_exact(store.get_collection("c"), ids, vecs)
    assert "vector cache" in caplog.text and "rebuild" in caplog.text


def test_reopening_an_up_to_date_store_commits_nothing(tmp_path):
    """A fast reopen only reads: no schema write, no catch-up write, nothing saved (another
    connection's ``PRAGMA data_version`` moves on any commit by someone else)."""
    import sqlite3

    path = tmp_path / "s"
    vecs = _vectors(300)
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM)
        col.add(ids=[f"r{i}" for i in range(300)], embeddings=vecs)
    watcher = sqlite3.connect(path / "store.sqlite3")
    assert watcher.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental: set on the new file
    assert watcher.execute("PRAGMA page_size").fetchone()[0] == 16384
    before = watcher.execute("PRAGMA data_version").fetchone()[0]
    with vs.Store(path) as store:
        col = store.get_collection("c")
        assert col.query(query_embeddings=vecs[4:5], k=1)[0][0].id == "r4"
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
    with vs.Store(path) as store:  # and a write is still seen by the next open
        store.get_collection("c").add(ids=["x"], embeddings=vecs[:1] * -1)
    assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    watcher.close()


def test_a_code_index_reads_no_more_rows_than_it_rescores(tmp_path):
    """faiss-hnsw-sq keeps no float32 copy: a filter selecting many rows is searched over the codes and
    only the candidates are read back from SQLite (never the whole matching set), and the answer is
    still brute force's."""
    vecs = _vectors(1500)
    ids = [f"r{i}" for i in range(len(vecs))]
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw-sq")
        col.add(ids=ids, embeddings=vecs, metadatas=[{"b": i % 3} for i in range(len(vecs))])
        col.wait_until_indexed()
        cache = col._state.vectors
        assert isinstance(cache, TruthVectors) and col._state.index.is_trained
        read, sizes = cache.read, []

        def counting(keys):
            sizes.append(len(keys))
            return read(keys)

        cache.read = counting
        _check_exact(col, ids, vecs, where={"b": 1})  # 500 rows match; k=5, oversample 2: 10 read
        assert sizes and max(sizes) <= 10


def test_the_rescoring_width_is_the_index_kinds_unless_given(tmp_path):
    """Unfiltered queries rescore k x the index kind's default oversample (2 for faiss-hnsw-sq's 8-bit
    codes, 4 for coarser ones), or k x ``oversample`` when given; either way the exact answer."""
    vecs = _vectors(1500)
    ids = [f"r{i}" for i in range(len(vecs))]
    with vs.Store(tmp_path / "s") as store:
        widths = {}
        for qtype, expected in (("8bit", 2), ("4bit", 4)):
            col = store.create_collection(
                qtype, model=None, embedding_dim=DIM, index="faiss-hnsw-sq", index_options={"qtype": qtype}
            )
            col.add(ids=ids, embeddings=vecs)
            col.wait_until_indexed()
            assert col._state.index.default_oversample == expected
            cache = col._state.vectors
            read, sizes = cache.read, []

            def counting(keys, read=read, sizes=sizes):
                sizes.append(len(keys))
                return read(keys)

            cache.read = counting
            _check_exact(col, ids, vecs)
            default = set(sizes)
            sizes.clear()
            col.query(query_embeddings=vecs[:3], k=5, oversample=6)
            widths[qtype] = (default, set(sizes))
        assert widths == {"8bit": ({10}, {30}), "4bit": ({20}, {30})}
        flat = store.create_collection("flat", model=None, embedding_dim=DIM, index="faiss-hnsw")
        assert flat._state.index.default_oversample == 4
