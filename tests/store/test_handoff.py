"""Batches a write-only state hands to the serving one (vectorstore.handoff): taken instead of reading
SQLite when they cover every unapplied change, and never trusted when damaged, foreign or partial."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import vectorstore as vs
from tests.store.conftest import random_vectors, spy_log_reads
from vectorstore import handoff, serving_lag
from vectorstore.handoff import Handoff


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A serving state (it queried) and a write-only one on the same store."""
    monkeypatch.setattr(serving_lag, "REPORT_EVERY_S", 0.0)
    monkeypatch.setattr(serving_lag, "_READ_EVERY_S", 0.0)
    store = vs.Store(tmp_path / "s")
    col = store.create_collection("c", model=None, embedding_dim=8)
    vecs = random_vectors(np.random.default_rng(1), 300)
    col.add(ids=[str(i) for i in range(300)], embeddings=vecs)
    col.wait_until_indexed()
    assert col.query(query_embeddings=vecs[0], k=1)[0].id == "0"  # serving: it reports
    other = vs.Store(tmp_path / "s")
    yield col, other.get_collection("c")
    other.close()
    store.close()


def _batches(col: vs.Collection) -> list:
    folder = col._state.directory / "handoff"
    return sorted(folder.glob("*.batch")) if folder.exists() else []


def test_the_serving_state_takes_a_handed_over_batch_instead_of_reading_sqlite(served, monkeypatch):
    col, writer = served
    new = random_vectors(np.random.default_rng(2), 60)
    reads = spy_log_reads(monkeypatch)
    writer.add(ids=[f"n{i}" for i in range(60)], embeddings=new)
    assert len(_batches(writer)) == 1 and not list((col._state.directory / "handoff").glob("*.coming"))
    assert writer._state.applied_seq < writer._state._newest_seq()  # left to the serving state
    for i in (0, 31, 59):
        hit = col.query(query_embeddings=new[i], k=1)[0]
        assert hit.id == f"n{i}" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert reads == []  # neither the change log nor the vectors were read from SQLite
    assert col._state.applied_seq == col._state._newest_seq()
    assert col.count() == 360
    writer._state.close()  # its batches go with it
    assert _batches(writer) == []


def test_a_damaged_batch_is_ignored_and_sqlite_read_instead(served, monkeypatch, caplog):
    col, writer = served
    new = random_vectors(np.random.default_rng(3), 40)
    writer.add(ids=[f"d{i}" for i in range(40)], embeddings=new)
    (path,) = _batches(writer)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped bit in the last vector
    path.write_bytes(bytes(data))
    reads = spy_log_reads(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="vectorstore.handoff"):
        hit = col.query(query_embeddings=new[39], k=1)[0]
    assert hit.id == "d39" and hit.score == pytest.approx(1.0, abs=1e-5)  # the stored vector
    assert reads  # read from SQLite
    assert any("ignoring handoff batch" in r.getMessage() for r in caplog.records)


def test_a_batch_that_covers_part_of_the_changes_is_not_taken(served, monkeypatch):
    col, writer = served
    a, b = random_vectors(np.random.default_rng(4), 20), random_vectors(np.random.default_rng(5), 20)
    writer.add(ids=[f"a{i}" for i in range(20)], embeddings=a)  # handed over
    monkeypatch.setattr(writer._state.handoff, "publish", lambda *args: None)
    writer.add(ids=[f"b{i}" for i in range(20)], embeddings=b)  # not handed over
    reads = spy_log_reads(monkeypatch)
    assert col.query(query_embeddings=b[3], k=1)[0].id == "b3"
    assert col.query(query_embeddings=a[4], k=1)[0].id == "a4"
    assert reads  # the batch alone did not cover (applied, newest]: everything was read from SQLite
    assert col.count() == 340


def test_a_batch_of_another_collection_identity_is_never_taken(tmp_path):
    ours = Handoff(tmp_path, {"store": "s1", "collection": 1, "created_at": 1.0})
    theirs = Handoff(
        tmp_path, {"store": "s1", "collection": 1, "created_at": 2.0}
    )  # recreated under the same id
    keys, vecs = np.arange(5, dtype=np.int64), random_vectors(np.random.default_rng(6), 5)
    theirs.announce(10, 15)
    theirs.publish(10, 15, keys, vecs)
    assert ours.offered_from(10)
    assert ours.take(10, 15, 8) is None
    taken = theirs.take(10, 15, 8)
    assert taken is not None
    np.testing.assert_array_equal(taken[0], keys)
    np.testing.assert_array_equal(taken[1], vecs)
    assert theirs.take(10, 16, 8) is None  # a change after the batch is not in it
    assert theirs.take(9, 15, 8) is None  # nor one before it


def test_batches_chain_and_an_announced_one_is_waited_for(tmp_path, monkeypatch):
    h = Handoff(tmp_path, {"store": "s"})
    rng = np.random.default_rng(7)
    v1, v2 = random_vectors(rng, 3), random_vectors(rng, 2)
    h.publish(0, 3, np.array([1, 2, 3]), v1)
    h.announce(3, 5)
    waited: list[float] = []

    def publish_while_waiting(seconds: float) -> None:  # the writer publishes while the reader waits
        waited.append(seconds)
        if len(waited) == 3:
            h.publish(3, 5, np.array([4, 5]), v2)

    monkeypatch.setattr(handoff.time, "sleep", publish_while_waiting)
    taken = h.take(0, 5, 8)
    assert taken is not None and len(waited) == 3
    np.testing.assert_array_equal(taken[0], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(taken[1], np.concatenate([v1, v2]))


def test_a_withdrawn_announcement_is_not_waited_for_and_old_batches_are_removed(tmp_path, monkeypatch):
    h = Handoff(tmp_path, {"store": "s"})
    h.announce(0, 4)
    h.withdraw(0, 4)  # the commit failed
    assert not h.offered_from(0) and h.take(0, 4, 8) is None
    h.publish(0, 2, np.array([1, 2]), random_vectors(np.random.default_rng(8), 2))
    monkeypatch.setattr(handoff, "KEEP_S", -1.0)  # everything published is old now
    h.publish(2, 3, np.array([3]), random_vectors(np.random.default_rng(9), 1))
    assert sorted(p.name for p in (tmp_path / "handoff").iterdir()) == []
