from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest


@dataclass(frozen=True)
class Backend:
    """A backend configuration under test and how exact its answers are on small data."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    exact_keys: bool = True  # small-data results equal exact search
    score_tol: float = 1e-4  # |index score - exact score| for returned keys
    min_recall: float = 1.0
    vector_tol: float = 1e-6  # |stored vector read back - vector added| (lossy codes: larger)

    @property
    def id(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.kind}[{opts}]" if opts else self.kind


BACKENDS = [
    Backend("exact", score_tol=1e-5),
    Backend("faiss-flat"),
    # graph search is approximate even on small data (inner product is not a metric): recall, not equality
    Backend("faiss-hnsw", exact_keys=False, min_recall=0.95),
    # 8-bit codes: approximate scores (the store rescores them from SQLite)
    # (trained on the first 200 rows: later ones may clip at the trained range's edge)
    Backend(
        "faiss-hnsw-sq", {"train_size": 200}, score_tol=5e-2, vector_tol=5e-2, exact_keys=False, min_recall=0.9
    ),
    Backend("faiss-ivf", {"nlist": 8, "nprobe": 8, "train_size": 100}),
    Backend("faiss-ivf", {"nlist": 64}),  # never reaches train_size here: the exact pre-training path
    Backend(
        "faiss-ivfpq",
        {"nlist": 8, "nprobe": 8, "m": 4, "nbits": 6, "train_size": 300},
        exact_keys=False,
        min_recall=0.9,
    ),
    Backend(  # no float copy: raw PQ scores, the unrefined code path
        "faiss-ivfpq",
        {"nlist": 8, "nprobe": 8, "m": 16, "nbits": 6, "train_size": 300, "refine_factor": 0},
        exact_keys=False,
        score_tol=0.25,
        min_recall=0.7,
    ),
    Backend("usearch-hnsw", {"dtype": "f32"}, exact_keys=False, min_recall=0.95),
    Backend("usearch-hnsw", score_tol=2e-2, exact_keys=False, min_recall=0.9),
    Backend("usearch-hnsw", {"dtype": "i8"}, score_tol=6e-2, exact_keys=False, min_recall=0.8),
]


@pytest.fixture(params=BACKENDS, ids=[b.id for b in BACKENDS])
def backend(request) -> Backend:
    return request.param


def clustered(rng: np.random.Generator, n: int, dim: int, centres: int = 20) -> np.ndarray:
    """Vectors around a few centres: closer to real embeddings than isotropic noise."""
    c = rng.standard_normal((centres, dim)).astype(np.float32)
    x = c[rng.integers(0, centres, n)] + 0.4 * rng.standard_normal((n, dim)).astype(np.float32)
    return x.astype(np.float32)
