"""Backpressure across processes (vectorstore.serving_lag): a writer waits while another state serving
the collection reports a large indexing backlog, never longer than the bound, and stale reports are
ignored."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np

import vectorstore as vs
from tests.store.conftest import random_vectors
from vectorstore import index_state, serving_lag
from vectorstore.serving_lag import ServingLag


def test_reports_are_read_by_others_and_go_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(serving_lag, "_READ_EVERY_S", 0.0)  # every call reads the folder
    reader, writer = ServingLag(tmp_path), ServingLag(tmp_path)
    assert writer.others_behind() == -1 and not writer.others_serving()
    reader.report(5_000)
    assert writer.others_behind() == 5_000 and writer.others_serving()
    assert reader.others_behind() == -1  # its own report is not another's
    monkeypatch.setattr(serving_lag, "REPORT_EVERY_S", 0.0)
    reader.report(120)
    assert writer.others_behind() == 120
    reader.withdraw()
    assert writer.others_behind() == -1
    # a report older than FRESH_S (a process that stopped serving or died) is ignored
    (tmp_path / "serving" / "99999-0.json").write_text(
        json.dumps({"pid": 99999, "behind": 10**6, "t": time.time() - 2 * serving_lag.FRESH_S})
    )
    (tmp_path / "serving" / "garbled.json").write_text("{not json")
    assert writer.others_behind() == -1


def test_others_reports_are_read_at_most_every_interval(tmp_path, monkeypatch):
    """The indexer asks before each slice: the folder is read again only after the interval."""
    monkeypatch.setattr(serving_lag, "REPORT_EVERY_S", 0.0)
    monkeypatch.setattr(serving_lag, "_READ_EVERY_S", 0.3)
    reader, writer = ServingLag(tmp_path), ServingLag(tmp_path)
    reader.report(700)
    assert writer.others_behind() == 700
    reader.report(5)
    assert writer.others_behind() == 700  # the last answer, not a new read
    time.sleep(0.35)
    assert writer.others_behind() == 5


def test_read_only_and_in_memory_states_report_nothing(tmp_path):
    ServingLag(tmp_path, read_only=True).report(9_999)
    ServingLag(None).report(9_999)
    assert not (tmp_path / "serving").exists()
    assert ServingLag(None).others_behind() == -1


def test_wait_for_others_waits_until_the_backlog_drains_and_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(serving_lag, "_READ_EVERY_S", 0.0)
    monkeypatch.setattr(serving_lag, "REPORT_EVERY_S", 0.0)
    reader, writer = ServingLag(tmp_path), ServingLag(tmp_path)
    reader.report(3_000)
    threading.Timer(0.3, reader.report, args=(1_000,)).start()
    waited = writer.wait_for_others(2_000)
    assert 0.25 <= waited < 5.0  # released by the drained report, not by the bound
    assert writer.wait_for_others(2_000) < 0.05  # under the limit: no wait
    reader.report(50_000)
    monkeypatch.setattr(serving_lag, "MAX_WAIT_S", 0.2)
    t = time.monotonic()
    writer.wait_for_others(2_000)  # a reader that never catches up slows writes, never stops them
    assert 0.2 <= time.monotonic() - t < 2.0


def test_a_write_waits_for_another_serving_state_s_backlog(tmp_path, monkeypatch):
    """Two states of one collection (as two processes): while the serving one reports more unindexed
    vectors than the limit, the other's add does not return; once it reports the backlog drained,
    the add returns, and the reader finds what was written."""
    store = vs.Store(tmp_path / "s")
    col = store.create_collection("c", model=None, embedding_dim=8)
    vecs = random_vectors(np.random.default_rng(0), 300)
    col.add(ids=[str(i) for i in range(300)], embeddings=vecs)
    col.wait_until_indexed()
    col.persist()
    state = col._state
    monkeypatch.setattr(serving_lag, "REPORT_EVERY_S", 0.0)
    monkeypatch.setattr(serving_lag, "_READ_EVERY_S", 0.0)
    state.serving.report(index_state.BACKLOG_SERVING + 1)  # the reader, far behind
    other = vs.Store(tmp_path / "s")
    theirs = other.get_collection("c")
    done = threading.Event()
    writer = threading.Thread(
        target=lambda: (theirs.add(ids=["new"], embeddings=vecs[:1] * -1), done.set()), daemon=True
    )
    writer.start()
    try:
        assert not done.wait(0.5), "the write did not wait for the serving state's backlog"
        state.serving.report(0)  # caught up
        assert done.wait(10)
        assert col.query(query_embeddings=vecs[0] * -1, k=1)[0].id == "new"
    finally:
        state.serving.withdraw()
        writer.join(10)
        other.close()
        store.close()
    assert not list((tmp_path / "s").rglob(f"serving/{os.getpid()}-*.json"))  # withdrawn on close


def test_a_write_only_state_leaves_its_commits_to_the_serving_one(tmp_path, monkeypatch):
    """While another state serves the collection (and so applies and indexes every commit), a state
    that serves no queries commits without applying or indexing its own write; its first query
    catches up from the change log, and once nobody serves, writes are applied by their writer again."""
    monkeypatch.setattr(serving_lag, "REPORT_EVERY_S", 0.0)
    monkeypatch.setattr(serving_lag, "_READ_EVERY_S", 0.0)
    store = vs.Store(tmp_path / "s")
    col = store.create_collection("c", model=None, embedding_dim=8)
    vecs = random_vectors(np.random.default_rng(1), 400)
    col.add(ids=[str(i) for i in range(300)], embeddings=vecs[:300])
    col.wait_until_indexed()
    col.persist()
    assert col.query(query_embeddings=vecs[0], k=1)[0].id == "0"  # serving: it reports
    other, third = vs.Store(tmp_path / "s"), vs.Store(tmp_path / "s")
    try:
        theirs = other.get_collection("c")
        mine = theirs._state
        before = mine.applied_seq
        theirs.add(ids=[str(i) for i in range(300, 350)], embeddings=vecs[300:350])
        assert mine.applied_seq == before < mine._newest_seq()  # committed, not applied here
        assert not mine.pending and len(mine) == 300
        # the serving state applies it; the write-only one catches up at its first query
        assert col.query(query_embeddings=vecs[320], k=1)[0].id == "320"
        assert theirs.query(query_embeddings=vecs[340], k=1)[0].id == "340"
        assert mine.applied_seq == mine._newest_seq()
        # nobody serves any more: a write-only state applies its own write again
        for state in (col._state, mine):
            monkeypatch.setattr(state, "_last_query", 0.0)  # its indexer does not report either
            state.drain()
            if state._indexer is not None:  # a slice it started while serving reports once more
                state._indexer.join(10)
            state.serving.withdraw()
        third_col = third.get_collection("c")
        third_col.add(ids=[str(i) for i in range(350, 400)], embeddings=vecs[350:400])
        assert third_col._state.applied_seq == third_col._state._newest_seq()
        assert len(third_col._state) == 400
    finally:
        third.close()
        other.close()
        store.close()
