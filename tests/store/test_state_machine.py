"""Hypothesis state machine: add / upsert / update / delete / get / query against a plain dict model,
interleaved with saves, compactions, reopening the store and changing how many new vectors a write
indexes itself (the rest go to the background indexer)."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import vectorstore as vs
from vectorstore import index_state
from vectorstore.errors import DuplicateIDError, InvalidIDError

DIM = 4
ids_st = st.lists(st.sampled_from([f"r{i}" for i in range(12)]), min_size=1, max_size=5, unique=True)
meta_st = st.fixed_dictionaries({"g": st.integers(0, 2)})


def vec_st(n: int):
    return st.lists(
        st.lists(
            st.floats(-1, 1, allow_nan=False, width=32).filter(lambda x: abs(x) > 1e-3),
            min_size=DIM,
            max_size=DIM,
        ),
        min_size=n,
        max_size=n,
    )


def make_machine(kind: str) -> type[RuleBasedStateMachine]:
    class CollectionMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dir = tempfile.mkdtemp()
            self.store = vs.Store(self.dir)
            self.col = self.store.create_collection("m", model=None, embedding_dim=DIM, index=kind)
            self.model: dict[str, tuple[np.ndarray, str | None, dict | None]] = {}
            self.sync_max = index_state.SYNC_INDEX_MAX

        def teardown(self) -> None:
            index_state.SYNC_INDEX_MAX = self.sync_max
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

        @rule(n=st.sampled_from([0, 1, 3, 2000]))
        def set_sync_threshold(self, n):
            index_state.SYNC_INDEX_MAX = n  # 0: every write leaves its vectors to the background indexer

        @rule()
        def persist(self):
            self.col.persist()

        @rule()
        def compact(self):
            self.col.compact()

        @rule(wait=st.booleans())
        def reopen(self, wait):
            self.store.close(wait=wait)  # without waiting, pending vectors are replayed from the log
            self.store = vs.Store(self.dir)
            self.col = self.store.get_collection("m")

        @rule(data=st.data(), ids=ids_st)
        def add(self, data, ids):
            vecs = np.array(data.draw(vec_st(len(ids))), dtype=np.float32)
            metas = [data.draw(meta_st) for _ in ids]
            if any(i in self.model for i in ids):
                with pytest.raises(DuplicateIDError):
                    self.col.add(ids=ids, embeddings=vecs, metadatas=metas, documents=ids)
                return
            self.col.add(ids=ids, embeddings=vecs, metadatas=metas, documents=ids)
            for i, v, m in zip(ids, vecs, metas):
                self.model[i] = (v, i, m)

        @rule(data=st.data(), ids=ids_st)
        def upsert(self, data, ids):
            vecs = np.array(data.draw(vec_st(len(ids))), dtype=np.float32)
            metas = [data.draw(meta_st) for _ in ids]
            self.col.upsert(ids=ids, embeddings=vecs, metadatas=metas)
            for i, v, m in zip(ids, vecs, metas):
                doc = self.model[i][1] if i in self.model else None
                self.model[i] = (v, doc, m)

        @rule(data=st.data(), ids=ids_st)
        def upsert_vectors_only(self, data, ids):
            """Fields not given stay as they are for existing records (new ones get none)."""
            vecs = np.array(data.draw(vec_st(len(ids))), dtype=np.float32)
            self.col.upsert(ids=ids, embeddings=vecs)
            for i, v in zip(ids, vecs):
                old = self.model.get(i)
                self.model[i] = (v, old[1] if old else None, old[2] if old else None)

        @rule(data=st.data(), ids=ids_st)
        def update_meta(self, data, ids):
            metas = [data.draw(meta_st) for _ in ids]
            if not all(i in self.model for i in ids):
                with pytest.raises(InvalidIDError):
                    self.col.update(ids=ids, metadatas=metas)
                return
            self.col.update(ids=ids, metadatas=metas)
            for i, m in zip(ids, metas):
                v, doc, _ = self.model[i]
                self.model[i] = (v, doc, m)

        @rule(ids=ids_st)
        def delete_ids(self, ids):
            assert self.col.delete(ids=ids) == len([i for i in ids if i in self.model])
            for i in ids:
                self.model.pop(i, None)

        @rule(g=st.integers(0, 2))
        def delete_where(self, g):
            gone = [i for i, (_, _, m) in self.model.items() if m and m["g"] == g]
            assert self.col.delete(where={"g": g}) == len(gone)
            for i in gone:
                del self.model[i]

        @rule(data=st.data(), k=st.integers(1, 6), g=st.one_of(st.none(), st.integers(0, 2)))
        def query(self, data, k, g):
            q = np.array(data.draw(vec_st(1))[0], dtype=np.float32)
            where = {"g": g} if g is not None else None
            hits = self.col.query(query_embeddings=q, k=k, where=where)
            pool = {i: v for i, (v, _, m) in self.model.items() if g is None or (m and m["g"] == g)}
            scores = {i: float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q))) for i, v in pool.items()}
            want = sorted(scores, key=lambda i: -scores[i])[:k]
            assert len(hits) == len(want)
            for h in hits:
                assert h.score == pytest.approx(scores[h.id], abs=1e-5)
            # equal up to ties: the k-th best score must agree
            assert [round(h.score, 4) for h in hits] == [round(scores[i], 4) for i in want]

        @invariant()
        def contents_agree(self):
            got = self.col.get(include=["documents", "metadatas", "embeddings"])
            assert sorted(got.ids) == sorted(self.model)
            for rid, doc, meta, emb in zip(got.ids, got.documents, got.metadatas, got.embeddings):
                v, d, m = self.model[rid]
                np.testing.assert_array_equal(emb, v)
                assert doc == d and meta == m

    CollectionMachine.__name__ = f"CollectionMachine_{kind.replace('-', '_')}"
    return CollectionMachine


for _kind in ("exact", "faiss-hnsw", "faiss-hnsw-sq"):  # sq: below train_size, read from SQLite
    _m = make_machine(_kind)
    _m.TestCase.settings = settings(
        max_examples=20, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
    )
    globals()[f"TestCollection_{_kind.replace('-', '_')}"] = _m.TestCase
