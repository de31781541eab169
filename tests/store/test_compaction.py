"""Compaction: the change log is trimmed below what the saved files reflect, freed pages go back to
the file system, and every state older than the trimmed log rebuilds instead of answering wrongly."""

from __future__ import annotations

import logging
import shutil
import sqlite3

import numpy as np

import indexers
import vectorstore as vs
from indexers.scoring import exact_scores
from tests.store.conftest import random_vectors
from vectorstore import index_state

DIM = 8


def _log_rows(path) -> int:
    con = sqlite3.connect(path / "store.sqlite3")
    try:
        return int(con.execute("SELECT count(*) FROM changes").fetchone()[0])
    finally:
        con.close()


def _wait_for_housekeeping(state) -> None:
    """Until the background indexer (which saves) and the compaction thread are done (bounded)."""
    for _ in range(400):
        busy = [t for t in (state._indexer, state._compactor) if t is not None and t.is_alive()]
        if not busy:
            return
        busy[0].join(0.05)


def _store_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _assert_exact(col: vs.Collection, truth: dict[str, np.ndarray], queries: np.ndarray) -> None:
    ids = sorted(truth)
    mat = np.stack([truth[i] for i in ids])
    for q in queries:
        scores = exact_scores("cosine", q[None, :], mat)[0]
        order = np.argsort(-scores, kind="stable")[:5]
        hits = col.query(query_embeddings=q, k=5)
        assert [h.id for h in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([h.score for h in hits], scores[order], atol=1e-5)


def _churn(col: vs.Collection, truth: dict[str, np.ndarray], rng, rounds: int, n: int) -> None:
    for _ in range(rounds):
        done = 0
        while done < n:
            size = int(rng.integers(50, 400))
            ids = [str(i) for i in rng.choice(n, size=min(size, n - done), replace=False)]
            vecs = random_vectors(rng, len(ids))
            col.upsert(ids=ids, embeddings=vecs, metadatas=[{"v": int(rng.integers(1000))}] * len(ids))
            truth.update(zip(ids, vecs))
            done += len(ids)


def test_compact_trims_the_log_and_a_reopen_replays_nothing_it_lost(tmp_path, caplog):
    rng = np.random.default_rng(0)
    path = tmp_path / "s"
    truth: dict[str, np.ndarray] = {}
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        vecs = random_vectors(rng, 600)
        col.add(ids=[str(i) for i in range(600)], embeddings=vecs)
        truth.update(zip(map(str, range(600)), vecs))
        _churn(col, truth, rng, 3, 600)
        col.delete(ids=["0", "1"])
        del truth["0"], truth["1"]
        before = _log_rows(path)
        removed = col.compact()
        assert removed > 0 and _log_rows(path) == before - removed
        assert _log_rows(path) <= 2  # only what the saved files do not need to replay remains
        _assert_exact(col, truth, random_vectors(rng, 10))
        col.upsert(ids=["5"], embeddings=random_vectors(rng, 1))  # after the trim: replayed on reopen
        truth["5"] = col.get(ids=["5"], include=["embeddings"]).embeddings[0]
    caplog.set_level(logging.INFO)
    with vs.Store(path) as store:
        col = store.get_collection("c")
        assert "rebuilding" not in caplog.text  # the saved files plus the kept log were enough
        _assert_exact(col, truth, random_vectors(rng, 10))


def test_a_node_whose_files_predate_the_trim_rebuilds(tmp_path, caplog):
    """An offline node (its own saved files) comes back after another compacted the log."""
    rng = np.random.default_rng(1)
    path = tmp_path / "s"
    truth: dict[str, np.ndarray] = {}
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="exact")
        vecs = random_vectors(rng, 300)
        col.add(ids=[str(i) for i in range(300)], embeddings=vecs)
        truth.update(zip(map(str, range(300)), vecs))
    offline = tmp_path / "offline-node-files"
    shutil.copytree(path / "indexes", offline)
    with vs.Store(path) as store:
        col = store.get_collection("c")
        _churn(col, truth, rng, 2, 300)
        col.delete(ids=["7"])
        del truth["7"]
        assert col.compact() > 0
    shutil.rmtree(path / "indexes")
    shutil.copytree(offline, path / "indexes")  # the node's old files are back
    caplog.set_level(logging.WARNING)
    with vs.Store(path) as store:
        col = store.get_collection("c")
        _assert_exact(col, truth, random_vectors(rng, 10))
        assert "cannot be caught up by replay" in caplog.text and "rebuilding" in caplog.text


def test_a_live_state_and_keyword_index_older_than_the_trim_rebuild(tmp_path):
    rng = np.random.default_rng(2)
    path = tmp_path / "s"
    truth: dict[str, np.ndarray] = {}
    reader = vs.Store(path)
    col = reader.create_collection("c", model=None, embedding_dim=DIM, index="usearch-hnsw")
    vecs = random_vectors(rng, 200)
    col.add(ids=[str(i) for i in range(200)], embeddings=vecs, documents=[f"doc {i}" for i in range(200)])
    truth.update(zip(map(str, range(200)), vecs))
    assert col.query("doc", mode="keyword", k=1)  # builds the keyword index here
    with vs.Store(path) as writer:  # another process: writes, then compacts
        other = writer.get_collection("c")
        _churn(other, truth, rng, 2, 200)
        other.upsert(ids=["42"], embeddings=random_vectors(rng, 1), documents=["zebra crossing"])
        truth["42"] = other.get(ids=["42"], include=["embeddings"]).embeddings[0]
        assert other.compact() > 0
    _assert_exact(col, truth, random_vectors(rng, 8))
    assert col.query("zebra", mode="keyword", k=1)[0].id == "42"
    reader.close()


def test_churn_leaves_the_disk_near_a_fresh_store(tmp_path):
    """Upsert 10x the collection size in random batches: compacted, the store is at most 1.3x a fresh
    store holding the same content."""
    rng = np.random.default_rng(3)
    n = 2000
    truth: dict[str, np.ndarray] = {}
    churned = tmp_path / "churned"
    with vs.Store(churned) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        vecs = random_vectors(rng, n)
        col.add(ids=[str(i) for i in range(n)], embeddings=vecs, metadatas=[{"v": 0}] * n)
        truth.update(zip(map(str, range(n)), vecs))
        _churn(col, truth, rng, 10, n)
        store.compact()
        final = col.get(include=["embeddings", "metadatas"])
    fresh = tmp_path / "fresh"
    with vs.Store(fresh) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        col.add(ids=final.ids, embeddings=final.embeddings, metadatas=final.metadatas)
    ratio = _store_bytes(churned) / _store_bytes(fresh)
    assert ratio <= 1.3, ratio
    with vs.Store(churned) as store:
        _assert_exact(store.get_collection("c"), truth, random_vectors(rng, 5))


def test_compaction_runs_by_itself_after_automatic_saves(tmp_path, monkeypatch):
    monkeypatch.setattr(index_state, "_PERSIST_MIN_CHANGES", 500)
    monkeypatch.setattr(index_state, "_COMPACT_MIN_CHANGES", 500)
    rng = np.random.default_rng(4)
    path = tmp_path / "s"
    truth: dict[str, np.ndarray] = {}
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        vecs = random_vectors(rng, 400)
        col.add(ids=[str(i) for i in range(400)], embeddings=vecs)
        truth.update(zip(map(str, range(400)), vecs))
        _churn(col, truth, rng, 5, 400)  # 2,000 more changes: saves and compactions are due
        col.wait_until_indexed()
        state = col._state
        _wait_for_housekeeping(state)  # the background thread saves, then a thread of its own compacts
        assert state._trimmed_below > 0
        assert _log_rows(path) < 2400 - 500
        _assert_exact(col, truth, random_vectors(rng, 5))


def _upsert(col: vs.Collection, truth: dict[str, np.ndarray], rng, ids: list[str]) -> None:
    vecs = random_vectors(rng, len(ids))
    col.upsert(ids=ids, embeddings=vecs)
    truth.update(zip(ids, vecs))


def test_compact_rebuilds_a_graph_that_holds_removed_nodes(tmp_path):
    """An HNSW graph keeps a node for every replaced vector; compact() rebuilds it once they are a
    tenth of it (and leaves it alone below that), and the rebuilt graph is what is saved."""
    rng = np.random.default_rng(5)
    n = 3000
    path = tmp_path / "s"
    truth: dict[str, np.ndarray] = {}
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        _upsert(col, truth, rng, [str(i) for i in range(n)])
        col.wait_until_indexed()  # so each replaced vector leaves a dead node behind
        _upsert(col, truth, rng, [str(i) for i in rng.choice(n, 200, replace=False)])
        col.wait_until_indexed()
        state = col._state
        assert state.index.removed_entries == 200
        col.compact()
        assert state.index.removed_entries == 200  # under a tenth (and under 1,000): kept
        # (kept under half of the graph, where removal itself would rebuild it)
        _upsert(col, truth, rng, [str(i) for i in rng.choice(n, 1100, replace=False)])
        col.wait_until_indexed()
        assert state.index.removed_entries == 1300
        old = state.index
        col.compact()
        assert state.index is not old and state.index.removed_entries == 0
        assert len(state.index) == n
        _assert_exact(col, truth, random_vectors(rng, 10))
    with vs.Store(path) as store:
        col = store.get_collection("c")
        assert col._state.index.removed_entries == 0  # the saved file is the rebuilt graph
        _assert_exact(col, truth, random_vectors(rng, 10))


def test_changes_made_while_the_graph_is_rebuilt_are_replayed_into_it(tmp_path, monkeypatch):
    """Writes that land while compact() builds the new graph (it holds no lock then) reach the new
    graph: upserts, deletes and new records, in the off-lock replay and in the final one."""
    monkeypatch.setattr(index_state, "_REBUILD_CHUNK", 500)
    monkeypatch.setattr(index_state, "_REBUILD_FINAL", 100)
    rng = np.random.default_rng(6)
    n = 3000
    truth: dict[str, np.ndarray] = {}
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        _upsert(col, truth, rng, [str(i) for i in range(n)])
        col.wait_until_indexed()  # so each replaced vector leaves a dead node behind
        _upsert(col, truth, rng, [str(i) for i in range(1500)])
        col.wait_until_indexed()
        state = col._state
        old = state.index
        next_new = iter(range(n, n + 10_000))
        hooked: list[int] = []

        def write_meanwhile(size: int) -> None:
            live = sorted(truth)
            _upsert(col, truth, rng, [live[i] for i in rng.choice(len(live), size, replace=False)])
            gone = [live[i] for i in rng.choice(len(live), size // 5, replace=False)]
            col.delete(ids=gone)
            for g in gone:
                truth.pop(g, None)
            _upsert(col, truth, rng, [str(next(next_new)) for _ in range(size // 5)])
            col.wait_until_indexed()

        real = indexers.make_index

        def make_index(spec):
            built = real(spec)
            add = built.add
            calls = [0]

            def add_and_write(keys, vectors):
                add(keys, vectors)
                calls[0] += 1
                if calls[0] in (2, 7):  # midway through the build; then in the off-lock replay
                    hooked.append(calls[0])
                    write_meanwhile(300 if calls[0] == 2 else 40)

            built.add = add_and_write
            return built

        monkeypatch.setattr(indexers, "make_index", make_index)
        assert state.compact_index()
        monkeypatch.setattr(indexers, "make_index", real)
        assert hooked == [2, 7]
        assert state.index is not old
        assert len(state.index) == len(truth) == col.count()
        keys = state.index.keys()
        records = state.hydrate(keys.tolist())
        assert sorted(records[k].id for k in keys.tolist()) == sorted(truth)
        expected = np.stack([truth[records[k].id] for k in keys.tolist()])
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)  # cosine: kept at unit length
        np.testing.assert_allclose(state.index.get_vectors(keys), expected, atol=1e-6)
        _assert_exact(col, truth, random_vectors(rng, 20))


def test_an_index_whose_range_clips_new_vectors_is_trained_afresh_in_the_background(tmp_path, caplog):
    """faiss-hnsw-sq learns each dimension's range from its first batch. A later batch far outside it
    is clipped by the codes; the store then rebuilds the index beside the live one, trained on a sample
    spread over every stored vector, and saves it: afterwards the codes decode close to the stored
    vectors, and the answers stay exact throughout."""
    rng = np.random.default_rng(7)
    first = rng.normal(size=(300, DIM)).astype(np.float32)
    first[:, DIM // 2 :] *= 0.01  # the first batch lives in the first half of the dimensions
    later = rng.normal(size=(600, DIM)).astype(np.float32)
    later[:, : DIM // 2] *= 0.01  # the later one in the second half: far outside the learned range
    truth = dict(zip(map(str, range(900)), np.concatenate([first, later])))
    path = tmp_path / "s"
    with vs.Store(path) as store:
        col = store.create_collection(
            "c", model=None, embedding_dim=DIM, index="faiss-hnsw-sq", index_options={"train_size": 200}
        )
        col.add(ids=[str(i) for i in range(300)], embeddings=first)
        col.wait_until_indexed()
        state = col._state
        trained_first = state.index
        with caplog.at_level(logging.INFO, logger="vectorstore"):
            col.add(ids=[str(i) for i in range(300, 900)], embeddings=later)
            col.wait_until_indexed()
            for _ in range(400):
                busy = [t for t in (state._indexer, state._compactor) if t is not None and t.is_alive()]
                if not busy:
                    break
                busy[0].join(0.05)
        assert state.index is not trained_first
        assert "trained afresh" in caplog.text
        later_keys = np.sort(state.index.keys())[300:]
        unit = later / np.linalg.norm(later, axis=1, keepdims=True)
        before = np.abs(trained_first.get_vectors(later_keys) - unit).max()
        after = np.abs(state.index.get_vectors(later_keys) - unit).max()
        assert before > 0.3 and after < 0.02, (before, after)
        assert not state.index.needs_retraining
        assert state.saved_seq == state.applied_seq > 0  # and saved
        _assert_exact(col, truth, random_vectors(rng, 5))
    with vs.Store(path) as store:
        state = store.get_collection("c")._state
        np.testing.assert_allclose(state.index.get_vectors(later_keys), unit, atol=0.02)


def test_the_rebuild_inserts_a_spread_sample_first_then_every_other_key_once():
    keys = np.arange(100, 50_100, dtype=np.int64)
    steps = index_state._training_order(keys)
    first = steps[0]
    assert len(first) == index_state._TRAIN_SAMPLE
    assert first[0] == keys[0] and first[-1] == keys[-1]  # spread over the whole range
    assert np.abs(np.diff(first) - len(keys) / len(first)).max() <= 1.01
    assert all(len(s) <= index_state._REBUILD_CHUNK for s in steps[1:])
    np.testing.assert_array_equal(np.sort(np.concatenate(steps)), keys)  # each key exactly once
    small = np.arange(10, dtype=np.int64)
    assert [s.tolist() for s in index_state._training_order(small)] == [small.tolist()]
    assert index_state._training_order(np.empty(0, dtype=np.int64)) == []


def test_an_index_that_keeps_asking_to_be_retrained_is_retrained_once_per_doubling(
    tmp_path, monkeypatch, caplog
):
    """Data that clips even against a range learned from a sample of all of it keeps the index asking
    for retraining after every rebuild: the store retrains once, then waits until the collection has
    doubled, instead of rebuilding in a loop."""
    from indexers.faiss import hnsw_sq

    asking = [False]
    monkeypatch.setattr(
        hnsw_sq.FaissHNSWSQIndex, "needs_retraining", property(lambda self: asking[0] and self.is_trained)
    )
    rng = np.random.default_rng(8)
    vecs = random_vectors(rng, 1810)
    truth = dict(zip(map(str, range(1810)), vecs))

    def settle(state) -> None:
        for _ in range(200):
            busy = [t for t in (state._indexer, state._compactor) if t is not None and t.is_alive()]
            if not busy:
                return
            busy[0].join(0.05)

    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection(
            "c", model=None, embedding_dim=DIM, index="faiss-hnsw-sq", index_options={"train_size": 200}
        )
        col.add(ids=[str(i) for i in range(900)], embeddings=vecs[:900])
        col.wait_until_indexed()
        state = col._state
        settle(state)
        asking[0] = True
        with caplog.at_level(logging.INFO, logger="vectorstore"):
            assert state.compact_index()  # retrained
            assert not state.compact_index()  # still asking, but not doubled since
            col.add(ids=[str(i) for i in range(900, 910)], embeddings=vecs[900:910])
            col.wait_until_indexed()
            settle(state)
            assert caplog.text.count("trained afresh") == 1
            col.add(ids=[str(i) for i in range(910, 1810)], embeddings=vecs[910:])  # doubled: once more
            col.wait_until_indexed()
            settle(state)
        assert caplog.text.count("trained afresh") == 2
        _assert_exact(col, truth, random_vectors(rng, 5))


def test_close_trims_a_log_as_long_as_the_collection_and_the_reopen_loads_the_saved_files(
    tmp_path, monkeypatch, caplog
):
    # a bulk load leaves one change per record: once the saved files reflect it, replaying it would
    # cost what a rebuild costs, so closing trims it (and the file shrinks by its pages)
    monkeypatch.setattr(index_state, "_COMPACT_MIN_CHANGES", 500)
    rng = np.random.default_rng(7)
    path = tmp_path / "s"
    vecs = random_vectors(rng, 1200)
    truth = dict(zip(map(str, range(1200)), vecs))
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        col.add(ids=list(truth), embeddings=vecs)
    assert _log_rows(path) <= 1  # trimming keeps the change at the saved seq itself
    with caplog.at_level(logging.INFO, logger="vectorstore"), vs.Store(path) as store:
        col = store.get_collection("c")
        _assert_exact(col, truth, random_vectors(rng, 5))
    assert not [r for r in caplog.records if "rebuilding" in r.getMessage()]


def test_close_keeps_a_log_shorter_than_the_collection(tmp_path, monkeypatch):
    # the log of a few changes to a large collection is what another process replays instead of
    # rebuilding: closing keeps it
    monkeypatch.setattr(index_state, "_COMPACT_MIN_CHANGES", 500)
    rng = np.random.default_rng(8)
    path = tmp_path / "s"
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        col.add(ids=[str(i) for i in range(1200)], embeddings=random_vectors(rng, 1200))
    after_load = _log_rows(path)
    assert after_load <= 1  # the load's log was trimmed (the test above)
    with vs.Store(path) as store:
        col = store.get_collection("c")
        col.upsert(ids=[str(i) for i in range(100)], embeddings=random_vectors(rng, 100))
    assert _log_rows(path) == after_load + 100


def test_close_trims_the_log_of_a_bulk_load_that_compacted_early_on(tmp_path, monkeypatch):
    # the automatic compaction trims the log while it is as long as the collection (the first save
    # of a load); what the rest of the load adds is most of the collection again: close trims it
    monkeypatch.setattr(index_state, "_PERSIST_MIN_CHANGES", 300)
    monkeypatch.setattr(index_state, "_COMPACT_MIN_CHANGES", 300)
    rng = np.random.default_rng(9)
    path = tmp_path / "s"
    truth: dict[str, np.ndarray] = {}
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        for start in range(0, 1500, 300):
            vecs = random_vectors(rng, 300)
            ids = [str(i) for i in range(start, start + 300)]
            col.add(ids=ids, embeddings=vecs)
            truth.update(zip(ids, vecs))
            col.wait_until_indexed()
            state = col._state
            _wait_for_housekeeping(state)  # the automatic save and compaction
        assert 0 < state._trimmed_below < 1500 - 750  # it compacted early, not since
        assert _log_rows(path) > 750
    assert _log_rows(path) <= 1
    with vs.Store(path) as store:
        _assert_exact(store.get_collection("c"), truth, random_vectors(rng, 5))
