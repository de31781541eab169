"""FAISS backends: ``faiss-flat``, ``faiss-hnsw``, ``faiss-ivf`` and ``faiss-ivfpq``.

Cosine is served as inner product over L2-normalised vectors; euclidean scores are ``-sqrt(L2²)``;
manhattan uses FAISS's L1 metric (flat, HNSW and IVF-flat only; PQ codes cannot do L1).

Loading maps the large flat float storage of ``faiss-flat``, ``faiss-hnsw`` and ``faiss-ivfpq`` (its
refinement copy) read-only from the file instead of copying it: a 200k x 384 graph opens in about
10 ms instead of 0.4 s, and processes that open the same files share those pages. The first ``add``
or ``remove`` afterwards copies the index into memory once (FAISS cannot write to mapped storage).
Index files are replaced by rename, never rewritten in place, so a mapping stays valid.

GPU: when FAISS reports GPUs (the ``faiss-gpu`` package), ``faiss-flat`` and ``faiss-ivf`` search a
GPU replica of the CPU index (``device="auto"``); ``device="cpu"`` forces CPU. The CPU index stays
the master copy, so saving and removal behave the same everywhere.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from indexers.base import BaseIndex, save_arrays, unit_rows_checked
from indexers.exact import VectorTable
from indexers.scoring import (
    empty_results,
    exact_scores,
    order_results,
    top_k,
)
from vectorstore.errors import IncompatibleIndexError, InvalidInputError

__all__ = ["FaissFlatIndex", "FaissHNSWIndex", "FaissIVFIndex", "FaissIVFPQIndex", "faiss_gpu_count"]

logger = logging.getLogger(__name__)

_FAISS_METRIC = {
    "cosine": faiss.METRIC_INNER_PRODUCT,
    "dot": faiss.METRIC_INNER_PRODUCT,
    "euclidean": faiss.METRIC_L2,
    "manhattan": faiss.METRIC_L1,
}


def faiss_gpu_count() -> int:
    """Number of GPUs the installed FAISS build can use (0 for faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except Exception:
        return 0


def _check_positive(options: dict[str, Any], *names: str) -> None:
    for name in names:
        value = options[name]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InvalidInputError(f"option {name} must be a positive int, got {value!r}")


def _check_device(options: dict[str, Any]) -> None:
    if options.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda', got {options['device']!r}")


# Zero-copy loading of flat storage, where this FAISS build offers it; otherwise files are read into memory.
_MMAP_FLAG: int | None = getattr(faiss, "IO_FLAG_MMAP_IFC", None)


def _owned_copy(index: Any) -> Any:
    """A copy of ``index`` that owns all of its storage (a serialise / deserialise round trip)."""
    return faiss.deserialize_index(faiss.serialize_index(index))


class _FaissBase(BaseIndex):
    """Score conversion, vector preparation and mapped loading shared by the FAISS kinds."""

    # Kinds whose bulk is flat float storage map it from the file on load (IO_FLAG_MMAP_IFC).
    _map_on_load: ClassVar[bool] = False
    _mapped = False
    _index: Any

    def _read_index(self, path: Path) -> Any:
        self._mapped = self._map_on_load and _MMAP_FLAG is not None
        if self._mapped:
            return faiss.read_index(str(path), _MMAP_FLAG)
        return faiss.read_index(str(path))

    def _before_write(self) -> None:
        # FAISS aborts the whole process (an assertion, not an exception) on a write to mapped
        # storage, so every add and remove passes here first and takes ownership once.
        if self._mapped:
            t = time.perf_counter()
            self._take_ownership()
            self._mapped = False
            logger.debug(
                "%s: copied the mapped index into memory in %.3fs", self.kind, time.perf_counter() - t
            )

    def _take_ownership(self) -> None:
        self._index = _owned_copy(self._index)

    @property
    def scores_are_exact(self) -> bool:
        # Inner products over the float32 vectors as added (normalised for cosine). L2 may go through
        # FAISS's |q|² - 2q·x + |x|² expansion, which cancels badly for near neighbours: not claimed.
        return self._metric in ("cosine", "dot")

    def _prepare_rejects_nonfinite(self) -> bool:
        return self._metric == "cosine"

    def _prepare(self, vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
        """What FAISS is given. Every kind's ``_add`` and ``_search`` pass their input through here
        first: for cosine, the normalisation is also the NaN/inf check (``_prepare_checks_finite``)."""
        return unit_rows_checked(vectors, what) if self._metric == "cosine" else vectors

    def _to_scores(self, distances: np.ndarray, labels: np.ndarray) -> np.ndarray:
        # FAISS hands back fresh float32 arrays, so they are converted in place.
        metric = self._metric
        if metric == "euclidean":
            scores = np.sqrt(np.maximum(distances, 0.0, out=distances), out=distances)
            np.negative(scores, out=scores)
        elif metric == "manhattan":
            scores = np.negative(distances, out=distances)
        else:
            scores = distances
        last = labels.item(-1) if len(labels) == 1 else labels[:, -1].min()
        if last < 0:  # FAISS pads at the end of a row
            scores[labels < 0] = -np.inf
        return scores

    def _finish(self, distances: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's sorted rows (``keys`` already mapped) as our results: scores higher-is-better,
        equal scores re-ordered by key so that all backends agree, padded to ``k``."""
        return order_results(keys, self._to_scores(distances, keys), k)


class FaissFlatIndex(_FaissBase):
    """``faiss-flat``: exhaustive search in FAISS (``IndexIDMap2`` over ``IndexFlat``).

    Options:
        device: ``"auto"`` (GPU replica when FAISS has GPUs), ``"cpu"`` or ``"cuda"``.
    """

    kind = "faiss-flat"
    defaults: ClassVar[dict[str, Any]] = {"device": "auto"}
    _map_on_load = True

    def __init__(self, dim: int, metric: str = "cosine", **options: Any) -> None:
        super().__init__(dim, metric, **options)
        self._index = faiss.IndexIDMap2(faiss.IndexFlat(self.dim, _FAISS_METRIC[self.metric]))
        self._gpu: Any = None

    def _validate_options(self) -> None:
        _check_device(self.options)

    def _searcher(self) -> Any:
        if self.options["device"] == "cpu" or faiss_gpu_count() == 0:
            return self._index
        if self._gpu is None:
            self._gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self._index)
        return self._gpu

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(self._prepare(vectors), keys)
        self._gpu = None

    def _remove(self, keys: np.ndarray) -> None:
        self._index.remove_ids(faiss.IDSelectorBatch(keys))
        self._gpu = None

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        return np.stack([self._index.reconstruct(int(k)) for k in keys]).astype(np.float32)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, self._index.ntotal)
        d, labels = self._searcher().search(self._prepare(queries, "queries"), kk)
        return self._finish(d, labels, k)

    def _search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        selector = faiss.IDSelectorBatch(allowed_keys)
        params = faiss.SearchParameters()
        params.sel = selector
        kk = min(k, len(allowed_keys))
        d, labels = self._index.search(self._prepare(q, "queries"), kk, params=params)
        return self._finish(d, labels, k)

    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        path = directory / f"index-{tag}.faiss"
        faiss.write_index(self._index, str(path))
        return {"index": path}

    def _read_files(self, files: dict[str, Path]) -> None:
        index = self._read_index(files["index"])
        if index.d != self.dim:
            raise ValueError(f"FAISS index has dimension {index.d}, manifest says {self.dim}")
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"expected an IndexIDMap2, found {type(index).__name__}")
        self._index = index
        ids = faiss.vector_to_array(self._index.id_map)
        self._set_loaded_keys(ids.astype(np.int64))
        self._gpu = None


_COMPACT_MIN_DEAD = 1000  # dead rows tolerated before a rebuild, whatever their share
_SENTINEL = np.array([-1], dtype=np.int64)


class _PositionLabels:
    """FAISS ids that are positions (graph nodes, rows of a refinement copy), mapped back to keys.

    ``_labels[position]`` is the key stored there, ``-1`` once removed; ``_key_of`` is the same array
    with one more ``-1`` at the end, so that FAISS's ``-1`` padding maps to ``-1`` in a single take.
    """

    _key_of: np.ndarray
    _labels: np.ndarray
    _internal_map: dict[int, int] | None
    _dead: int
    _skip_dead: tuple[Any, Any] | None  # (IDSelectorBatch of dead positions, its negation), cached

    def _reset_labels(self) -> None:
        self._set_key_of(np.array([-1], dtype=np.int64))
        self._internal_map = None
        self._dead = 0

    @property
    def _internal(self) -> dict[int, int]:
        """key -> position of every live key; built on first use (a removal, a key lookup or a filtered
        search), not by adds or loads: ~30 MB of Python objects per 200k keys that plain search never needs."""
        if self._internal_map is None:
            live = np.nonzero(self._labels >= 0)[0]
            self._internal_map = dict(zip(self._labels[live].tolist(), live.tolist()))
        return self._internal_map

    def _set_key_of(self, key_of: np.ndarray) -> None:
        self._key_of = key_of  # the labels plus the trailing -1 sentinel
        self._labels = key_of[:-1]
        self._skip_dead = None

    def _append_labels(self, start: int, keys: np.ndarray) -> None:
        self._set_key_of(np.concatenate([self._labels, keys, _SENTINEL]))
        internal = self._internal_map
        if internal is not None:  # kept up to date once built; otherwise built from the labels when needed
            internal.update(zip(keys.tolist(), range(start, start + len(keys))))

    def _drop_labels(self, keys: np.ndarray) -> np.ndarray:
        """Mark ``keys`` removed; returns their positions."""
        internal = self._internal
        positions = np.fromiter((internal.pop(k) for k in keys.tolist()), dtype=np.int64, count=len(keys))
        self._labels[positions] = -1
        self._dead += len(keys)
        self._skip_dead = None
        return positions

    def _dead_selector(self) -> tuple[Any, Any]:
        """(dead positions, the selector that excludes them), rebuilt only after a removal.

        The negation points at the batch without owning it: callers keep both alive while searching.
        """
        if self._skip_dead is None:
            dead = faiss.IDSelectorBatch(np.nonzero(self._labels < 0)[0].astype(np.int64))
            self._skip_dead = (dead, faiss.IDSelectorNot(dead))
        return self._skip_dead

    def _positions(self, keys: np.ndarray, missing_ok: bool = False) -> np.ndarray:
        internal = self._internal
        if missing_ok:
            return np.fromiter((internal[k] for k in keys.tolist() if k in internal), dtype=np.int64)
        return np.fromiter((internal[k] for k in keys.tolist()), dtype=np.int64, count=len(keys))

    def _live_entries(self, storage: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(live keys, their prepared vectors reconstructed from ``storage``, None when none live)."""
        live = np.nonzero(self._labels >= 0)[0]
        keys = self._labels[live].copy()
        vectors = storage.reconstruct_batch(live) if len(live) else None
        return keys, None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)

    def _needs_compaction(self) -> bool:
        return self._dead > _COMPACT_MIN_DEAD and self._dead * 2 > len(self._labels)

    def _load_labels(self, labels: np.ndarray) -> np.ndarray:
        """Adopt saved labels (no per-key work: the key map is built on first use); returns the live keys."""
        self._set_key_of(np.concatenate([labels.astype(np.int64, copy=False), _SENTINEL]))
        live_keys = self._labels[self._labels >= 0]
        self._internal_map = None
        self._dead = len(self._labels) - len(live_keys)
        return live_keys


class FaissHNSWIndex(_FaissBase, _PositionLabels):
    """``faiss-hnsw``: ``IndexHNSWFlat`` graph search.

    HNSW graphs cannot drop nodes, so removal marks the node's internal id dead (search skips it
    through an ID selector) and the graph is rebuilt from its own vectors once more than half of
    it is dead.

    Options:
        M: graph degree (32). efConstruction: build beam (200). efSearch: search beam (64, raised to k).
    """

    kind = "faiss-hnsw"
    defaults: ClassVar[dict[str, Any]] = {"M": 32, "efConstruction": 200, "efSearch": 64}
    _map_on_load = True

    def __init__(self, dim: int, metric: str = "cosine", **options: Any) -> None:
        super().__init__(dim, metric, **options)
        self._reset_graph()

    def _validate_options(self) -> None:
        _check_positive(self.options, "M", "efConstruction", "efSearch")

    def _reset_graph(self) -> None:
        self._index = faiss.IndexHNSWFlat(self.dim, self.options["M"], _FAISS_METRIC[self.metric])
        self._index.hnsw.efConstruction = self.options["efConstruction"]
        self._index.hnsw.efSearch = self.options["efSearch"]
        self._reset_labels()

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        start = self._index.ntotal
        self._index.add(self._prepare(vectors))
        self._append_labels(start, keys)

    def _remove(self, keys: np.ndarray) -> None:
        self._drop_labels(keys)
        if self._needs_compaction():
            self._compact()

    def _compact(self) -> None:
        keys, vectors = self._live_entries(self._index)
        logger.info("faiss-hnsw: rebuilding graph without %d removed vectors", self._dead)
        self._reset_graph()
        if vectors is not None:
            # vectors are already prepared (normalised for cosine); add them as they are
            self._index.add(vectors)
            self._append_labels(0, keys)

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        return np.asarray(self._index.reconstruct_batch(self._positions(keys)), dtype=np.float32)

    def _run(self, queries: np.ndarray, kk: int, k: int, *selectors: Any) -> tuple[np.ndarray, np.ndarray]:
        """The ``kk`` (<= stored) best of each query, padded to ``k``. ``selectors`` keeps every SWIG
        selector object alive for the call; the last one is used."""
        prepared = self._prepare(queries, "queries")
        if selectors or kk > self.options["efSearch"]:
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.options["efSearch"], kk)
            if selectors:
                params.sel = selectors[-1]
            d, ids = self._index.search(prepared, kk, params=params)
        else:
            d, ids = self._index.search(prepared, kk)
        return self._finish(d, self._key_of[ids], k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, len(self))
        if self._dead:
            return self._run(queries, kk, k, *self._dead_selector())
        return self._run(queries, kk, k)

    def _search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = self._positions(allowed_keys, missing_ok=True)
        if len(ids) == 0:
            return empty_results(len(q), k)
        return self._run(q, min(k, len(ids)), k, faiss.IDSelectorBatch(ids))

    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        path = directory / f"index-{tag}.faiss"
        faiss.write_index(self._index, str(path))
        return {"index": path, **save_arrays(directory, tag, {"labels": self._labels})}

    def _read_files(self, files: dict[str, Path]) -> None:
        index = self._read_index(files["index"])
        labels = np.load(files["labels"], allow_pickle=False)
        if index.d != self.dim or labels.ndim != 1 or len(labels) != index.ntotal:
            raise ValueError(
                f"graph of {index.ntotal} x {index.d} does not match {len(labels)} labels / dim {self.dim}"
            )
        self._index = index
        self._index.hnsw.efSearch = self.options["efSearch"]
        self._set_loaded_keys(self._load_labels(labels))


class FaissIVFIndex(_FaissBase):
    """``faiss-ivf``: inverted lists of exact vectors (``IndexIVFFlat``).

    Until ``train_size`` vectors exist (default ``max(39 * nlist, 1000)``) vectors are kept in an
    exact table and searched by brute force; the first ``add`` that reaches it trains the coarse
    quantizer on everything stored and moves the vectors into the inverted lists.

    Options:
        nlist: number of lists (256). nprobe: lists visited per query (32). train_size: see above.
        device: ``"auto"`` / ``"cpu"`` / ``"cuda"`` (GPU replica for search when FAISS has GPUs).
    """

    kind = "faiss-ivf"
    defaults: ClassVar[dict[str, Any]] = {"nlist": 256, "nprobe": 32, "train_size": None, "device": "auto"}

    def __init__(self, dim: int, metric: str = "cosine", **options: Any) -> None:
        super().__init__(dim, metric, **options)
        self._buffer: VectorTable | None = VectorTable(self.dim)
        self._index: Any = None
        self._gpu: Any = None

    def _validate_options(self) -> None:
        _check_positive(self.options, "nlist", "nprobe")
        ts = self.options["train_size"]
        if ts is not None and (not isinstance(ts, int) or ts < self.options["nlist"]):
            raise InvalidInputError(f"train_size must be None or an int >= nlist, got {ts!r}")
        _check_device(self.options)

    @property
    def is_trained(self) -> bool:
        """Whether the inverted lists exist (before that, search is exact)."""
        return self._index is not None

    @property
    def train_size(self) -> int:
        """How many vectors trigger training."""
        ts = self.options["train_size"]
        return int(ts) if ts is not None else max(39 * self.options["nlist"], 1000)

    def _new_ivf(self) -> Any:
        quantizer = faiss.IndexFlat(self.dim, _FAISS_METRIC[self.metric])
        return faiss.IndexIVFFlat(quantizer, self.dim, self.options["nlist"], _FAISS_METRIC[self.metric])

    def _train(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        index = self._new_ivf()
        index.train(vectors[: self.train_size])
        index.add_with_ids(vectors, keys)
        index.nprobe = self.options["nprobe"]
        self._index = index
        self._buffer = None

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        prepared = self._prepare(vectors)
        self._gpu = None
        if self._index is not None:
            self._index.add_with_ids(prepared, keys)
            return
        assert self._buffer is not None
        if len(self._buffer) + len(keys) < self.train_size:
            self._buffer.add(keys, prepared)
            return
        # Enough vectors: train on them and fill the lists directly, without copying the batch into the buffer.
        if len(self._buffer):
            keys = np.concatenate([self._buffer.keys, keys])
            prepared = np.concatenate([self._buffer.vectors, prepared])
        self._train(keys, prepared)

    def _remove(self, keys: np.ndarray) -> None:
        self._gpu = None
        if self._index is not None:
            # a hashtable direct map (built on demand by _vectors_for) only accepts an explicit id array
            hashed = self._index.direct_map.type != faiss.DirectMap.NoMap
            self._index.remove_ids(faiss.IDSelectorArray(keys) if hashed else faiss.IDSelectorBatch(keys))
        else:
            assert self._buffer is not None
            self._buffer.remove(keys)

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        if self._index is None:
            assert self._buffer is not None
            return self._buffer.get(keys)
        if self._index.direct_map.type == faiss.DirectMap.NoMap:
            # built only when asked: a hashtable over every id costs half the build time
            self._index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return np.stack([self._index.reconstruct(int(k)) for k in keys]).astype(np.float32)

    def _search_exact_subset(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            return super()._search_exact_subset(q, k, allowed_keys)
        # Visiting every list with an ID selector scores exactly the allowed vectors (IVF-flat keeps them exact).
        return self._search_selected(q, k, allowed_keys, self.options["nlist"])

    def _search_selected(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray, nprobe: int
    ) -> tuple[np.ndarray, np.ndarray]:
        selector = faiss.IDSelectorBatch(allowed_keys)
        params = faiss.SearchParametersIVF()
        params.sel = selector
        params.nprobe = nprobe
        d, labels = self._index.search(self._prepare(q, "queries"), min(k, len(allowed_keys)), params=params)
        return self._finish(d, labels, k)

    def _searcher(self) -> Any:
        if self.options["device"] == "cpu" or faiss_gpu_count() == 0:
            return self._index
        if self._gpu is None:
            self._gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, self._index)
            self._gpu.nprobe = self.options["nprobe"]
        return self._gpu

    def _search_buffer(self, prepared: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search of the untrained buffer. Queries and buffer are both prepared, so cosine is
        their inner product (no renormalising the buffer on every search)."""
        assert self._buffer is not None
        metric = "dot" if self._metric == "cosine" else self._metric
        return top_k(exact_scores(metric, prepared, self._buffer.vectors), self._buffer.keys, k)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        prepared = self._prepare(queries, "queries")
        if self._index is None:
            return self._search_buffer(prepared, k)
        kk = min(k, len(self))
        d, labels = self._searcher().search(prepared, kk)
        return self._finish(d, labels, k)

    def _search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            present = self._present(allowed_keys)
            if len(present) == 0:
                return empty_results(len(q), k)
            return self._search_exact_subset(q, k, present)
        return self._search_selected(q, k, allowed_keys, self.options["nprobe"])

    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        if self._index is None:
            assert self._buffer is not None
            return save_arrays(
                directory, tag, {"buffer_keys": self._buffer.keys, "buffer_vectors": self._buffer.vectors}
            )
        path = directory / f"index-{tag}.faiss"
        faiss.write_index(self._index, str(path))
        return {"index": path}

    def _read_files(self, files: dict[str, Path]) -> None:
        self._gpu = None
        if "index" not in files:
            keys = np.load(files["buffer_keys"], allow_pickle=False).astype(np.int64)
            vecs = np.load(files["buffer_vectors"], allow_pickle=False)
            if vecs.shape != (len(keys), self.dim) or vecs.dtype != np.float32:
                raise ValueError(f"buffer arrays have shapes {keys.shape} / {vecs.shape}")
            self._buffer = VectorTable(self.dim)
            self._buffer.add(keys, vecs)
            self._index = None
            self._set_loaded_keys(keys)
            return
        index = self._read_index(files["index"])
        if index.d != self.dim:
            raise ValueError(f"FAISS index has dimension {index.d}, manifest says {self.dim}")
        if not isinstance(index, faiss.IndexIVF):
            raise ValueError(f"expected an IVF index, found {type(index).__name__}")
        index.nprobe = self.options["nprobe"]
        self._index = index
        self._buffer = None
        self._set_loaded_keys(self._list_ids())

    def _list_ids(self) -> np.ndarray:
        invlists = self._index.invlists
        parts = []
        for lst in range(self._index.nlist):
            size = invlists.list_size(lst)
            if size:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


class FaissIVFPQIndex(FaissIVFIndex, _PositionLabels):
    """``faiss-ivfpq``: inverted lists of product-quantized codes (``IndexIVFPQ``).

    PQ scores are approximate, so by default the ``refine_factor * k`` best PQ candidates are
    rescored exactly against a float32 copy of the vectors inside FAISS (``IndexRefineFlat``; the
    lists then hold positions in that copy, mapped back to keys like ``faiss-hnsw``; removal takes
    codes out of the lists and the copy is compacted once more than half of it is dead).
    ``refine_factor=0`` drops the copy and returns raw PQ scores — the store rescores from SQLite
    anyway, with its own over-fetch. With refinement, search runs on the CPU even when FAISS has GPUs.

    Options:
        nlist (256), nprobe (64), m: sub-quantizers (``dim // 4`` when it divides), nbits (8),
        refine_factor (10), train_size (``max(39 * nlist, 1000)``), device.
    """

    kind = "faiss-ivfpq"
    metrics = ("cosine", "dot", "euclidean")
    defaults: ClassVar[dict[str, Any]] = {
        "nlist": 256,
        "nprobe": 64,
        "m": None,
        "nbits": 8,
        "refine_factor": 10,
        "train_size": None,
        "device": "auto",
    }
    _map_on_load = True

    def __init__(self, dim: int, metric: str = "cosine", **options: Any) -> None:
        super().__init__(dim, metric, **options)
        self._refined: Any = None  # the IndexRefineFlat, once trained with refine_factor > 0
        self._flat: Any = None  # its float32 copy (positions are the lists' ids)
        self._reset_labels()

    def _validate_options(self) -> None:
        super()._validate_options()
        if self.options["m"] is None:
            # 4 dimensions per sub-quantizer: at 200k real-derived vectors dim/8 reached recall 0.88-0.94
            self.options["m"] = next(
                m for m in (self.dim // 4, self.dim // 8, self.dim // 2, 1) if m and self.dim % m == 0
            )
        _check_positive(self.options, "m", "nbits")
        if self.dim % self.options["m"]:
            raise InvalidInputError(f"m={self.options['m']} must divide the dimension {self.dim}")
        rf = self.options["refine_factor"]
        if not isinstance(rf, int) or isinstance(rf, bool) or rf < 0:
            raise InvalidInputError(f"refine_factor must be an int >= 0, got {rf!r}")

    def _new_ivf(self) -> Any:
        quantizer = faiss.IndexFlat(self.dim, _FAISS_METRIC[self.metric])
        return faiss.IndexIVFPQ(
            quantizer,
            self.dim,
            self.options["nlist"],
            self.options["m"],
            self.options["nbits"],
            _FAISS_METRIC[self.metric],
        )

    def _train(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if not self.options["refine_factor"]:
            super()._train(keys, vectors)
            return
        base = self._new_ivf()
        base.train(vectors[: self.train_size])
        self._adopt_refined(faiss.IndexRefineFlat(base))
        self._append(keys, vectors)

    def _append(self, keys: np.ndarray, prepared: np.ndarray) -> None:
        # Not IndexRefine.add: after removals the lists hold fewer codes than the copy holds rows,
        # so the codes are given their rows in the copy as ids explicitly.
        start = self._flat.ntotal
        self._index.add_with_ids(prepared, np.arange(start, start + len(keys), dtype=np.int64))
        self._flat.add(prepared)
        self._refined.ntotal = self._flat.ntotal
        self._append_labels(start, keys)

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if self._refined is None:
            super()._add(keys, vectors)  # the exact buffer, training (-> _train), or unrefined lists
            return
        self._append(keys, self._prepare(vectors))

    def _remove(self, keys: np.ndarray) -> None:
        if self._refined is None:
            super()._remove(keys)
            return
        self._index.remove_ids(faiss.IDSelectorBatch(self._drop_labels(keys)))
        if self._needs_compaction():
            live_keys, vectors = self._live_entries(self._flat)
            logger.info("faiss-ivfpq: compacting the refinement copy (%d removed rows)", self._dead)
            self._refined.reset()  # empties lists and copy, keeps the trained quantizers
            self._reset_labels()
            if vectors is not None:
                self._append(live_keys, vectors)

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        if self._refined is None:
            return super()._vectors_for(keys)
        return np.asarray(self._flat.reconstruct_batch(self._positions(keys)), dtype=np.float32)

    def _search_exact_subset(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._refined is not None:
            return BaseIndex._search_exact_subset(self, q, k, allowed_keys)
        return super()._search_exact_subset(q, k, allowed_keys)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._refined is None:
            return super()._search(queries, k)
        d, ids = self._refined.search(self._prepare(queries, "queries"), min(k, len(self)))
        keys = self._key_of[ids]
        return self._finish(d, keys, k)

    def _search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._refined is None:
            return super()._search_filtered(q, k, allowed_keys)
        ids = self._positions(allowed_keys, missing_ok=True)
        if len(ids) == 0:
            return empty_results(len(q), k)
        selector = faiss.IDSelectorBatch(ids)
        base_params = faiss.SearchParametersIVF()
        base_params.sel = selector
        base_params.nprobe = self.options["nprobe"]
        params = faiss.IndexRefineSearchParameters()
        params.k_factor = float(self.options["refine_factor"])
        params.base_index_params = base_params
        d, labels = self._refined.search(self._prepare(q, "queries"), min(k, len(ids)), params=params)
        keys = self._key_of[labels]
        return self._finish(d, keys, k)

    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        if self._refined is None:
            return super()._write_files(directory, tag)
        path = directory / f"index-{tag}.faiss"
        faiss.write_index(self._refined, str(path))
        return {"index": path, **save_arrays(directory, tag, {"labels": self._labels})}

    def _read_files(self, files: dict[str, Path]) -> None:
        if "refine_keys" in files:
            raise IncompatibleIndexError(
                "this faiss-ivfpq index was saved by an earlier development version; rebuild it"
            )
        if "labels" not in files:
            super()._read_files(files)  # the exact buffer, or unrefined lists
            if self.options["refine_factor"] and self._index is not None:
                raise ValueError("the options ask for refinement but the file holds no refinement copy")
            return
        refined = self._read_index(files["index"])
        labels = np.load(files["labels"], allow_pickle=False)
        if not isinstance(refined, faiss.IndexRefineFlat) or not self.options["refine_factor"]:
            raise ValueError(f"expected an IndexRefineFlat, found {type(refined).__name__}")
        base = faiss.downcast_index(refined.base_index)
        flat = faiss.downcast_index(refined.refine_index)
        if not isinstance(base, faiss.IndexIVFPQ) or base.d != self.dim or labels.ndim != 1:
            raise ValueError(f"refined index wraps {type(base).__name__} of dimension {base.d}")
        if len(labels) != flat.ntotal or base.ntotal != int((labels >= 0).sum()):
            raise ValueError(f"{len(labels)} labels for a copy of {flat.ntotal} rows and {base.ntotal} codes")
        self._adopt_refined(refined)
        self._set_loaded_keys(self._load_labels(labels))

    def _adopt_refined(self, refined: Any) -> None:
        base = faiss.downcast_index(refined.base_index)
        base.nprobe = self.options["nprobe"]
        refined.k_factor = float(self.options["refine_factor"])
        self._index, self._refined, self._flat = base, refined, faiss.downcast_index(refined.refine_index)
        self._buffer, self._gpu = None, None

    @property
    def scores_are_exact(self) -> bool:
        # refined scores come from the float32 copy; raw PQ scores are approximate
        return super().scores_are_exact and bool(self.options["refine_factor"])

    def _take_ownership(self) -> None:
        # the copy keeps nprobe, efSearch and k_factor (FAISS serialises them); only the handles move
        if self._refined is None:
            super()._take_ownership()
        else:
            self._adopt_refined(_owned_copy(self._refined))
