"""Processes sharing a store save their derived files in turn: one never removes a generation another
is still writing, and a save never replaces a generation that reflects more changes."""

from __future__ import annotations

import json
import logging
import threading
import time

import numpy as np

import indexers
import vectorstore as vs
from tests.store.conftest import random_vectors
from vectorstore.derived_files import CURRENT, load_pair, save_pair


def _pointer(store_path) -> tuple[dict, object]:
    directory = next((store_path / "indexes").iterdir())
    return json.loads((directory / CURRENT).read_text()), directory


def test_two_stores_saving_at_once_take_turns_and_publish_the_newest(tmp_path, caplog):
    path = tmp_path / "s"
    vecs = random_vectors(np.random.default_rng(0), 600)
    ids = [str(i) for i in range(600)]
    with vs.Store(path) as first:
        col = first.create_collection("c", model=None, embedding_dim=8, index="faiss-hnsw")
        col.add(ids=ids[:200], embeddings=vecs[:200])
        col.persist()
    a, b = vs.Store(path), vs.Store(path)  # two processes' states over one store
    try:
        col_a, col_b = a.get_collection("c"), b.get_collection("c")
        col_a.add(ids=ids[200:400], embeddings=vecs[200:400])
        written, release = threading.Event(), threading.Event()
        index_a = col_a._state.index
        real_save = index_a.save

        def slow_save(*args, **kwargs):  # A's generation is on disk, not yet published
            out = real_save(*args, **kwargs)
            written.set()
            release.wait(30)
            return out

        index_a.save = slow_save  # type: ignore[method-assign]
        errors: list[BaseException] = []

        def run(fn) -> threading.Thread:
            def target() -> None:
                try:
                    fn()
                except BaseException as exc:  # reported below
                    errors.append(exc)

            t = threading.Thread(target=target)
            t.start()
            return t

        saver_a = run(col_a.persist)
        assert written.wait(30)
        col_b.add(ids=ids[400:], embeddings=vecs[400:])  # B has applied A's changes and its own
        saver_b = run(col_b.persist)
        time.sleep(0.5)
        b_waited = saver_b.is_alive()  # for A's save to end, instead of removing A's files
        release.set()
        saver_a.join(30)
        saver_b.join(30)
        assert not errors, errors
        assert b_waited
        pointer, directory = _pointer(path)
        assert pointer["sequence"] == col_b._state.applied_seq > col_a._state.saved_seq
        assert (directory / pointer["generation"]).is_dir()
        assert [p.name for p in directory.iterdir() if p.name.startswith("gen-")] == [pointer["generation"]]
    finally:
        a.close()
        b.close()
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:  # loads B's save, rebuilds nothing
        col = store.get_collection("c")
        assert len(col._state.index) == 600 and not col._state.pending
        for i in (0, 250, 599):
            assert col.query(query_embeddings=vecs[i], k=1)[0].id == ids[i]
    assert "rebuild" not in caplog.text


def test_a_save_never_replaces_a_generation_that_reflects_more_changes(tmp_path):
    spec = indexers.IndexSpec("exact", 8, "cosine", {})
    identity = {"store": "x", "collection": 1}
    newer, older = indexers.make_index(spec), indexers.make_index(spec)
    vecs = random_vectors(np.random.default_rng(1), 20)
    newer.add(np.arange(20), vecs)
    older.add(np.arange(10), vecs[:10])
    save_pair(tmp_path, newer, None, 20, identity)
    save_pair(tmp_path, older, None, 10, identity)  # a slower process's save of earlier state
    pair = load_pair(tmp_path, spec, identity, newest=20)
    assert pair.sequence == 20 and len(pair.index) == 20
    save_pair(tmp_path, older, None, 30, {"store": "y", "collection": 1})  # another store's: replaced
    assert json.loads((tmp_path / CURRENT).read_text())["sequence"] == 30
