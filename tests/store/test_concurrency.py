"""Reads beside writes: queries never wait for a save, never insert into the graph, and many threads
writing and querying at once get exact, complete answers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import vectorstore as vs
from indexers.scoring import exact_scores
from tests.store.conftest import random_vectors, spy_log_reads
from vectorstore import index_state
from vectorstore.pending import PendingVectors
from vectorstore.rwlock import RWLock

# ---------------------------------------------------------------------- RWLock


def test_rwlock_readers_share_writers_exclude_and_reentry_works():
    lock = RWLock()
    both_inside = threading.Barrier(2, timeout=10)

    def reader() -> None:
        with lock.read():
            both_inside.wait()  # only passes if two readers hold the lock at once

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not both_inside.broken

    with lock.write(), lock.write(), lock.read():  # re-entrant, and a writer may read
        assert lock.held_by_me()
        got = []
        t = threading.Thread(target=lambda: got.append(lock.acquire_write(timeout=0.05)))
        t.start()
        t.join()
        assert got == [False]  # another thread cannot write meanwhile
    assert not lock.held_by_me()
    with lock.read(), pytest.raises(RuntimeError, match="upgrade"):
        lock.acquire_write()


def test_rwlock_a_writer_is_not_starved_by_overlapping_readers():
    lock = RWLock()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with lock.read():
                stop.wait(0.002)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        assert lock.acquire_write(timeout=10)  # readers overlap all the time, yet the writer gets in
        lock.release_write()
    finally:
        stop.set()
        for t in readers:
            t.join()


def test_rwlock_queued_writers_hand_the_lock_to_waiting_readers_in_turn():
    """Three writers that always want the lock (a write, the indexer, a save's drain) do not keep a
    reader out: each writer that lets go while a reader waits lets it in before the next writer."""
    lock = RWLock()
    stop = threading.Event()
    grants = [0]

    def writer() -> None:
        while not stop.is_set():
            with lock.write():
                grants[0] += 1
                time.sleep(0.005)

    writers = [threading.Thread(target=writer) for _ in range(3)]
    for t in writers:
        t.start()
    passed: list[int] = []

    def reader() -> None:
        for _ in range(30):
            before = grants[0]
            with lock.read():
                passed.append(grants[0] - before)  # writer turns taken while this reader waited
            time.sleep(0.003)

    time.sleep(0.2)  # writers queue up, each waiting longer than the writer patience
    r = threading.Thread(target=reader)
    r.start()
    r.join(30)
    starved = r.is_alive()
    stop.set()
    for t in [*writers, r]:
        t.join()
    assert not starved, f"the reader got in {len(passed)} times in 30 s"
    assert max(passed) <= 1, passed


# ---------------------------------------------------------------------- PendingVectors


def _joined(pending: PendingVectors, vectors_of) -> tuple[np.ndarray, np.ndarray]:
    """The pending blocks as one (keys, rows) pair."""
    blocks = pending.blocks(vectors_of)
    if not blocks:
        return np.empty(0, np.int64), np.empty((0, pending.dim), np.float32)
    return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])


def test_pending_snapshot_follows_every_change():
    rng = np.random.default_rng(0)
    table = {k: rng.standard_normal(4).astype(np.float32) for k in range(200)}
    pending = PendingVectors(4)
    model: dict[int, None] = {}
    read: list[int] = []  # keys whose vectors each snapshot read

    def rows(keys: np.ndarray) -> np.ndarray:
        return np.stack([table[int(k)] for k in keys]) if len(keys) else np.empty((0, 4), np.float32)

    def counted(keys: np.ndarray) -> np.ndarray:
        read.extend(keys.tolist())
        return rows(keys)

    for step in range(600):
        action = rng.integers(5)
        if action == 4:  # appended batches (as writes arrive): only the new keys' vectors are read
            held_keys, held_vecs = _joined(pending, counted)  # a reader still using its snapshot
            was_keys, was_vecs = held_keys.copy(), held_vecs.copy()
            new = [int(k) for k in rng.choice(200, 6, replace=False) if int(k) not in model]
            given = rng.random() < 0.5  # the writer's vectors in hand: copied, not read
            batch = new + new[:2]  # a key repeated in a batch counts once
            pending.add(batch, pending.prepare(rows(np.asarray(batch, dtype=np.int64))) if given else None)
            model.update(dict.fromkeys(new))
            read.clear()
            keys, vecs = _joined(pending, counted)
            assert read == ([] if given else new), step
            np.testing.assert_array_equal(held_keys, was_keys)  # appends never write into it
            np.testing.assert_array_equal(held_vecs, was_vecs)
        elif action == 0:
            new = [int(k) for k in rng.choice(200, 5, replace=False)]
            pending.discard(new)  # as catch-up does: a changed key moves to the end
            for k in new:
                model.pop(k, None)
            pending.add(new)
            model.update(dict.fromkeys(new))
        elif action == 1:
            gone = [int(k) for k in rng.choice(200, 3, replace=False)]
            pending.discard(gone)
            for k in gone:
                model.pop(k, None)
        elif action == 2:
            head = pending.oldest(int(rng.integers(0, 6)))
            assert head.tolist() == list(model)[: len(head)]
            pending.mark_indexed(head)
            for k in head.tolist():
                del model[k]
        if rng.random() < 0.3:
            continue  # changes pile up before the next snapshot
        keys, vecs = _joined(pending, rows)
        assert keys.tolist() == list(model), step
        np.testing.assert_array_equal(vecs, rows(keys))
        assert vecs.flags.c_contiguous or len(keys) == 0
        assert len(pending) == len(model)


def test_pending_blocks_copy_given_vectors_once_in_scan_form():
    """Vectors prepared for ``add`` are copied through ``scan_form`` (unit rows for cosine), the same
    as rows read for keys added without them; a new batch becomes a block of its own, and the blocks
    already built are reused, not copied again (indexing from the front shrinks them to views)."""
    rng = np.random.default_rng(3)
    table = rng.standard_normal((5000, 4)).astype(np.float32) * 5
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    reads: list[int] = []

    def read(keys: np.ndarray) -> np.ndarray:
        reads.extend(keys.tolist())
        return table[keys]

    pending = PendingVectors(4, unit)
    pending.add(range(2000))
    first = pending.blocks(read)
    assert reads == list(range(2000))
    reads.clear()
    pending.add(range(2000, 4000), pending.prepare(table[2000:4000]))
    pending.add([4000])  # read, merged into nothing: the block before it is large
    blocks = pending.blocks(read)
    assert reads == [4000]
    assert [len(k) for k, _ in blocks] == [2000, 2000, 1]
    assert blocks[0][1] is first[0][1]  # reused as it was
    keys, vecs = _joined(pending, read)
    assert keys.tolist() == list(range(4001))
    np.testing.assert_allclose(vecs, unit(table[:4001]), rtol=1e-6)
    pending.mark_indexed(pending.oldest(2500))
    shrunk = pending.blocks(read)
    assert [len(k) for k, _ in shrunk] == [1500, 1]
    assert np.shares_memory(shrunk[0][1], blocks[1][1]) and shrunk[0][1].flags.c_contiguous
    assert reads == [4000] and len(blocks) == 3  # nothing read again; the list handed out is unchanged


def test_pending_oldest_rows_come_from_the_blocks_in_order():
    """The indexer's slice takes the oldest keys with their scan-form rows from the blocks (across a
    block boundary); where the blocks do not hold them (dropped, or a batch not copied yet) it gets
    the keys alone and reads the rows itself."""
    rng = np.random.default_rng(4)
    table = rng.standard_normal((3000, 4)).astype(np.float32) * 3
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    pending = PendingVectors(4, unit)
    pending.add(range(1500), pending.prepare(table[:1500]))
    pending.add(range(1500, 3000), pending.prepare(table[1500:3000]))
    keys, rows = pending.oldest_rows(1600)
    assert keys.tolist() == pending.oldest(1600).tolist() == list(range(1600))
    assert rows is not None
    np.testing.assert_allclose(rows, unit(table[:1600]), rtol=1e-6)
    pending.mark_indexed(keys)
    keys, rows = pending.oldest_rows(10)
    assert keys.tolist() == list(range(1600, 1610)) and rows is not None
    np.testing.assert_allclose(rows, unit(table[1600:1610]), rtol=1e-6)
    pending.add([5000])  # no vectors given: not in the blocks until they are built
    keys, rows = pending.oldest_rows(5000)
    assert keys.tolist() == [*range(1600, 3000), 5000] and rows is None
    pending.discard([2000])  # drops the blocks
    keys, rows = pending.oldest_rows(3)
    assert keys.tolist() == [1600, 1601, 1602] and rows is None


def test_background_indexing_reads_no_vector_back_from_sqlite(tmp_path, monkeypatch):
    """A batch applied with its vectors in hand is indexed from the pending blocks: the index's own
    vector reads are not called while the write lock is held, and the records are found after."""
    store = vs.Store(tmp_path / "s")
    col = store.create_collection("c", model=None, embedding_dim=8, index="faiss-hnsw-sq")
    vecs = random_vectors(np.random.default_rng(5), 3000)
    state = col._state
    reads: list[int] = []
    get = state.vectors.get_vectors
    monkeypatch.setattr(state.vectors, "get_vectors", lambda keys: (reads.append(len(keys)), get(keys))[1])
    try:
        col.add(ids=[str(i) for i in range(3000)], embeddings=vecs)  # > SYNC_INDEX_MAX: in the background
        col.wait_until_indexed()
        assert reads == []
        assert len(state.index) == 3000 and not state.pending
        assert col.query(query_embeddings=vecs[2999], k=1)[0].id == "2999"
    finally:
        store.close()


# ---------------------------------------------------------------------- the store


def _collection(
    tmp_path, n: int = 400, index: str = "faiss-hnsw"
) -> tuple[vs.Store, vs.Collection, np.ndarray]:
    store = vs.Store(tmp_path / "s")
    col = store.create_collection("c", model=None, embedding_dim=8, index=index)
    vecs = random_vectors(np.random.default_rng(1), n)
    col.add(ids=[str(i) for i in range(n)], embeddings=vecs)
    col.wait_until_indexed()
    return store, col, vecs


def test_a_query_does_not_wait_for_a_save(tmp_path, monkeypatch):
    store, col, vecs = _collection(tmp_path)
    col.add(ids=["late"], embeddings=vecs[:1] * -1)  # something unsaved
    saving, release = threading.Event(), threading.Event()
    real_save = index_state.save_pair
    order: list[str] = []

    def slow_save(*args, **kwargs):
        saving.set()
        release.wait(30)  # held until the test has queried
        order.append("save done")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(index_state, "save_pair", slow_save)
    saver = threading.Thread(target=col.persist)
    saver.start()
    assert saving.wait(30)
    hit = col.query(query_embeddings=vecs[5], k=1)[0]  # would block until release if reads waited
    order.append("query done")
    release.set()
    saver.join(30)
    store.close()
    assert hit.id == "5"
    assert order == ["query done", "save done"]


def test_a_query_does_not_wait_for_a_save_while_a_write_waits_for_it(tmp_path, monkeypatch):
    """A write of this process waits for the save to end; a query meanwhile neither waits for that
    write to be applied nor queues behind it, and once the save ends the write lands."""
    store, col, vecs = _collection(tmp_path)
    col.add(ids=["late"], embeddings=vecs[:1] * -1)  # something unsaved
    saving, release = threading.Event(), threading.Event()
    real_save = index_state.save_pair

    def slow_save(*args, **kwargs):
        saving.set()
        release.wait(30)
        return real_save(*args, **kwargs)

    monkeypatch.setattr(index_state, "save_pair", slow_save)
    saver = threading.Thread(target=col.persist)
    saver.start()
    assert saving.wait(30)
    new = random_vectors(np.random.default_rng(7), 1)
    writer = threading.Thread(target=lambda: col.add(ids=["new"], embeddings=new))
    writer.start()
    time.sleep(0.3)  # the write has committed and waits for the lock, well past the writer patience
    assert writer.is_alive()
    answers: list[str] = []
    querier = threading.Thread(
        target=lambda: answers.extend(h.id for h in col.query(query_embeddings=vecs[5], k=1))
    )
    querier.start()
    querier.join(5)
    done_during_save = not querier.is_alive()
    release.set()
    for t in (querier, saver, writer):
        t.join(30)
    try:
        assert done_during_save, "the query waited for the save"
        assert answers == ["5"]
        assert col.query(query_embeddings=new[0], k=1)[0].id == "new"
    finally:
        store.close()


def _pause_own_apply(monkeypatch, col):
    """Make this process's next write stop after its commit has landed, before it is applied; returns
    (landed, go): set once it stopped, set to let it go on."""
    landed, go = threading.Event(), threading.Event()
    real_catch_up = col._state.catch_up

    def slow_apply(known=None, **kwargs):
        if known is not None:  # the writer, its commit landed
            landed.set()
            go.wait(30)
        return real_catch_up(known, **kwargs)

    monkeypatch.setattr(col._state, "catch_up", slow_apply)
    return landed, go


def _spy_change_reads(monkeypatch) -> list[str]:
    """Names of the threads that read changes back from SQLite."""
    readers: list[str] = []
    real_read = index_state.IndexState._read_changes

    def spy(self, since, known):
        readers.append(threading.current_thread().name)
        return real_read(self, since, known)

    monkeypatch.setattr(index_state.IndexState, "_read_changes", spy)
    return readers


def test_a_query_answers_beside_this_process_s_landed_unapplied_commit(tmp_path, monkeypatch):
    """Between a write's commit and its apply, a query neither waits for the writer nor reads the batch
    back from SQLite: the write is not acknowledged yet, so it answers from the state before it; once
    ``add`` has returned, every query finds the batch."""
    store, col, _ = _collection(tmp_path)
    readers = _spy_change_reads(monkeypatch)
    landed, go = _pause_own_apply(monkeypatch, col)
    new = random_vectors(np.random.default_rng(5), 50)
    writer = threading.Thread(
        target=lambda: col.add(ids=[f"n{i}" for i in range(50)], embeddings=new), name="writer"
    )
    writer.start()
    assert landed.wait(30)
    answers: list[str] = []
    querier = threading.Thread(
        target=lambda: answers.extend(h.id for h in col.query(query_embeddings=new[3], k=3)), name="querier"
    )
    querier.start()
    querier.join(10)
    answered_while_paused = not querier.is_alive()
    go.set()
    writer.join(30)
    querier.join(30)
    try:
        assert answered_while_paused, "the query waited for this process's writer"
        # nobody read the batch back: the writer applied its own commit from the vectors in hand
        assert readers == []
        assert answers and not any(a.startswith("n") for a in answers)  # the state before the write
        assert col.query(query_embeddings=new[3], k=1)[0].id == "n3"  # acknowledged: found
    finally:
        store.close()


def test_a_query_applies_another_writers_commit_beside_this_process_s_unapplied_one(tmp_path, monkeypatch):
    """A commit of another writer that lands after this process's unapplied one is acknowledged: a
    query meanwhile applies it (and the batch before it) itself and finds it."""
    store, col, _ = _collection(tmp_path)
    landed, go = _pause_own_apply(monkeypatch, col)
    new = random_vectors(np.random.default_rng(6), 50)
    writer = threading.Thread(target=lambda: col.add(ids=[f"n{i}" for i in range(50)], embeddings=new))
    writer.start()
    assert landed.wait(30)
    theirs = random_vectors(np.random.default_rng(8), 5)
    try:
        with vs.Store(tmp_path / "s") as other:  # another writer (its own state, as another process)
            other.get_collection("c").add(ids=[f"o{i}" for i in range(5)], embeddings=theirs)
        assert col.query(query_embeddings=theirs[2], k=1)[0].id == "o2"
        assert col.query(query_embeddings=new[7], k=1)[0].id == "n7"  # read back with it, in order
    finally:
        go.set()
        writer.join(30)
    assert col.query(query_embeddings=new[9], k=1)[0].id == "n9"
    assert col.count() == 400 + 50 + 5
    store.close()


def test_a_query_applies_another_writers_batch_without_inserting_into_the_graph(tmp_path, monkeypatch):
    store, col, _ = _collection(tmp_path)
    monkeypatch.setattr(index_state.IndexState, "_start_indexer", lambda self: None)  # no background help
    more = random_vectors(np.random.default_rng(2), 100)
    with vs.Store(tmp_path / "s") as other:  # another writer (its own state, as another process)
        other.get_collection("c").add(ids=[f"n{i}" for i in range(100)], embeddings=more)
    before = len(col._state.index)
    for i in (0, 57, 99):
        assert col.query(query_embeddings=more[i], k=1)[0].id == f"n{i}"  # found at once, exactly
    assert len(col._state.index) == before  # the query did not insert them into the graph
    assert len(col._state.pending) == 100  # they wait for the indexer, scanned exactly meanwhile
    col.wait_until_indexed()
    assert len(col._state.index) == before + 100 and not col._state.pending
    store.close()


def test_writes_keep_the_backlog_small_while_queries_are_served(tmp_path, monkeypatch):
    """Unqueried, a write returns with up to BACKLOG_MAX vectors left to the background indexer; once
    queries are being served, writes wait until at most BACKLOG_SERVING are (each query scans them)."""
    monkeypatch.setattr(index_state, "SYNC_INDEX_MAX", 10)
    monkeypatch.setattr(index_state, "BACKLOG_MAX", 10_000)
    monkeypatch.setattr(index_state, "BACKLOG_SERVING", 50)
    real_index_some = index_state.IndexState._index_some

    def slow_index_some(self, n):  # an indexer slower than the writes: a backlog builds up
        time.sleep(0.002)
        return real_index_some(self, min(n, 2))

    monkeypatch.setattr(index_state.IndexState, "_index_some", slow_index_some)
    store, col, _ = _collection(tmp_path, 100)
    more = random_vectors(np.random.default_rng(3), 600)
    col._state._last_query = float("-inf")  # nobody has queried
    col.add(ids=[f"a{i}" for i in range(400)], embeddings=more[:400])
    assert len(col._state.pending) > 50  # left to the indexer: the bound is BACKLOG_MAX
    assert col.query(query_embeddings=more[7], k=1)[0].id == "a7"  # pending rows are scanned exactly
    served = threading.Event()

    def reader() -> None:  # queries keep arriving while the next write runs
        while not served.is_set():
            col.query(query_embeddings=more[0], k=1)
            time.sleep(0.01)

    t = threading.Thread(target=reader)
    t.start()
    try:
        col.add(ids=[f"b{i}" for i in range(200)], embeddings=more[400:])
        assert len(col._state.pending) <= 50  # queries are being served: the write waited
    finally:
        served.set()
        t.join()
    assert col.query(query_embeddings=more[450], k=1)[0].id == "b50"
    col.wait_until_indexed()
    store.close()


@pytest.mark.parametrize("index", ["faiss-hnsw", "faiss-hnsw-sq", "usearch-hnsw", "exact"])
def test_many_threads_writing_and_querying_at_once(tmp_path, monkeypatch, index):
    monkeypatch.setattr(index_state, "SYNC_INDEX_MAX", 50)  # most batches go to the background indexer
    monkeypatch.setattr(index_state, "BACKLOG_MAX", 300)  # and writers meet the backlog bound
    monkeypatch.setattr(index_state, "BACKLOG_SERVING", 300)  # (the one while queries run, too)
    store, col, vecs = _collection(tmp_path, 300, index)
    rng = np.random.default_rng(7)
    extra = random_vectors(rng, 4 * 400)
    errors: list[BaseException] = []
    acked: list[int] = []
    acked_lock = threading.Lock()

    def writer(w: int) -> None:
        try:
            for b in range(8):
                lo = w * 400 + b * 50
                col.add(ids=[f"x{j}" for j in range(lo, lo + 50)], embeddings=extra[lo : lo + 50])
                with acked_lock:
                    acked.extend(range(lo, lo + 50))
                # every acknowledged record of this writer is found by its own vector
                probe = lo + int(rng.integers(50))
                assert col.query(query_embeddings=extra[probe], k=1)[0].id == f"x{probe}"
        except BaseException as exc:  # reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(40):
                batch = col.query(query_embeddings=vecs[:3], k=5)  # batched
                assert [h[0].id for h in batch] == ["0", "1", "2"]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    assert col.count() == 300 + len(acked) == 300 + 4 * 400
    # the final answers equal brute force over everything stored
    allv = np.concatenate([vecs, extra])
    ids = [str(i) for i in range(300)] + [f"x{j}" for j in range(1600)]
    col.wait_until_indexed()
    for q in allv[::97]:
        truth = np.argsort(-exact_scores("cosine", q[None, :], allv)[0], kind="stable")[:5]
        got = col.query(query_embeddings=q, k=5)
        assert got[0].id == ids[truth[0]]
        np.testing.assert_allclose(
            [h.score for h in got], exact_scores("cosine", q[None, :], allv)[0][truth], atol=1e-5
        )
    store.close()


def test_a_write_applies_its_own_commit_without_reading_the_log_back(tmp_path, monkeypatch):
    store, col, _ = _collection(tmp_path)
    reads = spy_log_reads(monkeypatch)
    more = random_vectors(np.random.default_rng(11), 30)
    col.add(ids=[f"n{i}" for i in range(30)], embeddings=more)
    col.upsert(ids=["3", "n4"], embeddings=-more[:2])  # replaces: both keys change
    assert reads == []  # each write knew its whole change-log range
    assert col.query(query_embeddings=more[7], k=1)[0].id == "n7"
    hit = col.query(query_embeddings=-more[0], k=1)[0]
    assert hit.id == "3" and hit.score == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(col.get(ids=["3"], include=["embeddings"]).embeddings[0], -more[0], rtol=1e-6)
    np.testing.assert_allclose(col.get(ids=["n4"], include=["embeddings"]).embeddings[0], -more[1], rtol=1e-6)
    store.close()


def test_a_write_after_another_processs_commit_reads_the_log_and_applies_both(tmp_path, monkeypatch):
    store, col, _ = _collection(tmp_path)
    theirs = random_vectors(np.random.default_rng(12), 5)
    with vs.Store(tmp_path / "s") as other:  # another writer (its own state, as another process)
        other.get_collection("c").add(ids=[f"o{i}" for i in range(5)], embeddings=theirs)
    reads = spy_log_reads(monkeypatch)
    mine = random_vectors(np.random.default_rng(13), 5)
    col.add(ids=[f"m{i}" for i in range(5)], embeddings=mine)
    assert reads  # a change it did not make came before its own: the log is read
    assert col.query(query_embeddings=theirs[1], k=1)[0].id == "o1"
    assert col.query(query_embeddings=mine[2], k=1)[0].id == "m2"
    assert col.count() == 400 + 5 + 5
    store.close()


def test_an_upsert_that_changes_some_records_only_reads_the_log(tmp_path, monkeypatch):
    # an unchanged record takes no log row, so the write's range does not name every key: read it
    store, col, vecs = _collection(tmp_path)
    reads = spy_log_reads(monkeypatch)
    new = random_vectors(np.random.default_rng(14), 1)
    col.upsert(ids=["0", "1"], embeddings=np.stack([vecs[0], new[0]]))
    assert reads
    assert col.query(query_embeddings=new[0], k=1)[0].id == "1"
    assert col.query(query_embeddings=vecs[0], k=1)[0].id == "0"
    store.close()
