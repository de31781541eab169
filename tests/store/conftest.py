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
