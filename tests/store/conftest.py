from __future__ import annotations

import numpy as np
import pytest

import vectorstore as vs


@pytest.fixture
def store(tmp_path):
    s = vs.Store(tmp_path / "store")
    yield s
    s.close()


def random_vectors(rng: np.random.Generator, n: int, dim: int = 8) -> np.ndarray:
    return rng.standard_normal((n, dim)).astype(np.float32)


def spy_log_reads(monkeypatch) -> list[int]:
    """The ``since`` of every change-log read from SQLite (``Repository.changed_keys_since``)."""
    from vectorstore.db.repository import Repository

    reads: list[int] = []
    real = Repository.changed_keys_since

    def spy(conn, collection_id, seq):
        reads.append(seq)
        return real(conn, collection_id, seq)

    monkeypatch.setattr(Repository, "changed_keys_since", staticmethod(spy))
    return reads
