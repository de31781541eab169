"""``usearch-hnsw``: USearch's HNSW with f32 / f16 / i8 / b1 storage.

Metrics: cosine (``cos``), dot (``ip``), euclidean (``l2sq``, reported as ``-sqrt``). USearch has no
L1 metric, so manhattan is refused. ``dtype="b1"`` stores the sign bit of each dimension and ranks
by Hamming distance (scores are ``-hamming``): a coarse first stage meant to be rescored exactly,
with no recall promise of its own.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from usearch.index import Index

from indexers.base import BaseIndex
from indexers.errors import InvalidInputError, UnsupportedMetricError
from indexers.scoring import empty_results, order_results, top_k
from indexers.spec import Metric
from indexers.validation import check_positive, unit_rows_checked

__all__ = ["USearchDtype", "USearchIndex"]

USearchDtype = Literal["f32", "f16", "i8", "b1"]

_METRICS = {"cosine": "cos", "dot": "ip", "euclidean": "l2sq"}
_DTYPES = ("f32", "f16", "i8", "b1")
_PARALLEL_ADD_MIN = 10_000


class USearchIndex(BaseIndex):
    """``usearch-hnsw``.

    Options:
        connectivity (32), expansion_add (200), expansion_search (64, raised to k), dtype (``"f16"``;
        ``"i8"`` only with cosine, since it casts unit-range values).
    """

    kind = "usearch-hnsw"
    metrics = ("cosine", "dot", "euclidean")
    defaults: ClassVar[dict[str, Any]] = {
        "connectivity": 32,
        "expansion_add": 200,
        "expansion_search": 64,
        "dtype": "f16",
    }

    def __init__(
        self,
        dim: int,
        metric: Metric | str = "cosine",
        *,
        connectivity: int = 32,
        expansion_add: int = 200,
        expansion_search: int = 64,
        dtype: USearchDtype = "f16",
    ) -> None:
        super().__init__(
            dim,
            metric,
            {
                "connectivity": connectivity,
                "expansion_add": expansion_add,
                "expansion_search": expansion_search,
                "dtype": dtype,
            },
        )
        self._index = self._new_index()

    def _validate_options(self) -> None:
        for name in ("connectivity", "expansion_add", "expansion_search"):
            check_positive(name, self.options[name])
        if self.options["dtype"] not in _DTYPES:
            raise InvalidInputError(f"dtype must be one of {list(_DTYPES)}, got {self.options['dtype']!r}")
        if self.options["dtype"] == "i8" and self.metric != "cosine":
            # USearch's i8 maps [-1, 1] onto [-127, 127]: only unit vectors survive the cast
            raise UnsupportedMetricError(f"usearch dtype 'i8' needs the cosine metric, got {self.metric!r}")

    @property
    def scores_are_exact(self) -> bool:
        return bool(self.options["dtype"] == "f32") and self.metric in ("cosine", "dot")

    @property
    def _binary(self) -> bool:
        return bool(self.options["dtype"] == "b1")

    def _new_index(self) -> Index:
        self._expansion = self.options["expansion_search"]
        # expansion_search is index state: a search that sets it runs alone, so concurrent searches
        # (readers share the store's lock) never use another's setting
        self._search_lock = threading.Lock()
        return Index(
            ndim=self.dim,
            metric="hamming" if self._binary else _METRICS[self.metric],
            dtype=self.options["dtype"],
            connectivity=self.options["connectivity"],
            expansion_add=self.options["expansion_add"],
            expansion_search=self.options["expansion_search"],
        )

    def _prepare_rejects_nonfinite(self) -> bool:
        return self._metric == "cosine" and not self._binary

    def _prepare(self, vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
        """What USearch is given; ``_add`` and ``_search`` pass their input through here first. For
        cosine the normalisation is also the NaN/inf check (``_prepare_checks_finite``)."""
        if self._binary:
            return np.packbits(vectors > 0, axis=1)
        return unit_rows_checked(vectors, what) if self._metric == "cosine" else vectors

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        # Parallel insertion makes the graph depend on thread timing; small batches are built on one
        # thread so that results are reproducible, large ones use every core.
        threads = 1 if len(keys) < _PARALLEL_ADD_MIN else 0
        self._index.add(keys.astype(np.uint64), self._prepare(vectors), threads=threads)

    def _remove(self, keys: np.ndarray) -> None:
        self._index.remove(keys.astype(np.uint64))

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        got = np.asarray(self._index.get(keys.astype(np.uint64)))
        if self._binary:
            return np.where(np.unpackbits(got.astype(np.uint8), axis=1)[:, : self.dim] > 0, 1.0, -1.0).astype(
                np.float32
            )
        return got.astype(np.float32)

    def _search_exact_subset(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if not self._binary:
            return super()._search_exact_subset(q, k, allowed_keys)
        codes = np.asarray(self._index.get(allowed_keys.astype(np.uint64))).astype(np.uint8)
        qb = np.packbits(q > 0, axis=1)
        ham = np.unpackbits(qb[:, None, :] ^ codes[None, :, :], axis=2).sum(axis=2)
        return top_k(-ham.astype(np.float32), allowed_keys, k)

    def _to_scores(self, distances: np.ndarray) -> np.ndarray:
        d = distances.astype(np.float32, copy=False)
        if self._binary:
            return -d
        if self.metric == "euclidean":
            return -np.sqrt(np.maximum(d, 0.0))
        return 1.0 - d  # cos and ip distances are 1 - similarity

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, len(self))
        expansion = max(self.options["expansion_search"], kk)
        prepared = self._prepare(queries, "queries")
        with self._search_lock:
            if expansion != self._expansion:
                self._index.expansion_search = self._expansion = expansion
            # threads=0 (USearch's pool, also its default) even for one query: threads=1 is faster only
            # on tiny indexes and measurably slower on large ones (benchmarks/indexers.py).
            m = self._index.search(prepared, kk, threads=0)
        if m.keys.ndim == 1:  # one query: USearch returns only the matches it found, best first
            keys = m.keys.astype(np.int64)[None, :]
            scores = self._to_scores(m.distances)[None, :]
        else:  # a batch: rows padded past ``counts`` with garbage
            keys = m.keys.astype(np.int64)
            scores = self._to_scores(m.distances)
            if m.counts.min() < keys.shape[1]:
                pad = np.arange(keys.shape[1])[None, :] >= m.counts[:, None]
                keys[pad] = -1
                scores[pad] = -np.inf
        if keys.shape[1] == 0:
            return empty_results(len(queries), k)
        return order_results(keys, scores, k)

    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        path = directory / f"index-{tag}.usearch"
        self._index.save(str(path))
        return {"index": path}

    def _read_files(
        self, files: dict[str, Path], unverified: frozenset[str] | set[str] = frozenset()
    ) -> None:
        index = self._new_index()
        index.load(str(files["index"]))
        if index.ndim != self.dim:
            raise ValueError(f"USearch index has dimension {index.ndim}, manifest says {self.dim}")
        self._index = index
        self._set_loaded_keys(np.asarray(index.keys).astype(np.int64))
