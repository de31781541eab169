"""``faiss-ivf`` and the shared life of the IVF kinds: an exact buffer until ``train_size`` vectors
exist, then a trained structure that the concrete kind defines."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from indexers.base import BaseIndex
from indexers.errors import InvalidInputError
from indexers.faiss.common import FAISS_METRIC, FaissBase, GpuReplica
from indexers.persistence import save_arrays
from indexers.scoring import empty_results, exact_scores, top_k
from indexers.spec import Device, Metric
from indexers.validation import check_device, check_positive
from indexers.vector_table import VectorTable

__all__ = ["FaissIVFIndex", "IVFLists", "TrainedLater"]


class TrainedLater(FaissBase):
    """Vectors are kept in an exact table (searched by brute force) until ``train_size`` of them exist;
    the first ``add`` that reaches it trains on everything stored (:meth:`_train`) and from then on every
    operation goes to the subclass's ``_trained_*`` hooks.

    Common options: nlist, nprobe, train_size (``None``: ``max(39 * nlist, 1000)``), device.
    """

    def __init__(self, dim: int, metric: str, options: dict[str, Any]) -> None:
        super().__init__(dim, metric, options)
        self._buffer: VectorTable | None = VectorTable(self.dim)
        self._replica = GpuReplica()

    def _validate_options(self) -> None:
        check_positive("nlist", self.options["nlist"])
        check_positive("nprobe", self.options["nprobe"])
        ts = self.options["train_size"]
        if ts is not None and (not isinstance(ts, int) or ts < self.options["nlist"]):
            raise InvalidInputError(f"train_size must be None or an int >= nlist, got {ts!r}")
        check_device(self.options["device"])

    @property
    def is_trained(self) -> bool:
        """Whether the trained structure exists (before that, search is exact)."""
        return self._buffer is None

    @property
    def train_size(self) -> int:
        """How many vectors trigger training."""
        ts = self.options["train_size"]
        return int(ts) if ts is not None else max(39 * self.options["nlist"], 1000)

    # ------------------------------------------------------------------ the buffer, then the hooks
    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        prepared = self._prepare(vectors)
        self._replica.invalidate()
        buffer = self._buffer
        if buffer is None:
            self._trained_add(keys, prepared)
            return
        if len(buffer) + len(keys) < self.train_size:
            buffer.add(keys, prepared)
            return
        # Enough vectors: train on them and fill the lists directly, without copying the batch into the buffer.
        if len(buffer):
            keys = np.concatenate([buffer.keys, keys])
            prepared = np.concatenate([buffer.vectors, prepared])
        self._train(keys, prepared)
        self._buffer = None

    def _remove(self, keys: np.ndarray) -> None:
        self._replica.invalidate()
        if self._buffer is None:
            self._trained_remove(keys)
        else:
            self._buffer.remove(keys)

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        if self._buffer is None:
            return self._trained_vectors_for(keys)
        return self._buffer.get(keys)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        prepared = self._prepare(queries, "queries")
        buffer = self._buffer
        if buffer is None:
            return self._trained_search(prepared, k)
        # Queries and buffer are both prepared, so cosine is their inner product (no renormalising
        # the buffer on every search).
        metric = "dot" if self._metric == "cosine" else self._metric
        return top_k(exact_scores(metric, prepared, buffer.vectors), buffer.keys, k)

    def _search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._buffer is None:
            return self._trained_search_filtered(q, k, allowed_keys)
        present = self._present(allowed_keys)
        if len(present) == 0:
            return empty_results(len(q), k)
        return BaseIndex._search_exact_subset(self, q, k, present)

    def _search_exact_subset(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._buffer is None:
            return self._trained_search_exact_subset(q, k, allowed_keys)
        return super()._search_exact_subset(q, k, allowed_keys)

    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        buffer = self._buffer
        if buffer is None:
            return self._trained_write_files(directory, tag)
        return save_arrays(directory, tag, {"buffer_keys": buffer.keys, "buffer_vectors": buffer.vectors})

    def _read_files(
        self, files: dict[str, Path], unverified: frozenset[str] | set[str] = frozenset()
    ) -> None:
        self._replica.invalidate()
        if "buffer_keys" in files:
            keys = np.load(files["buffer_keys"], allow_pickle=False).astype(np.int64)
            vecs = np.load(files["buffer_vectors"], allow_pickle=False)
            if vecs.shape != (len(keys), self.dim) or vecs.dtype != np.float32:
                raise ValueError(f"buffer arrays have shapes {keys.shape} / {vecs.shape}")
            self._buffer = VectorTable(self.dim)
            self._buffer.add(keys, vecs)
            self._set_loaded_keys(keys)
            return
        self._trained_read_files(files)
        self._buffer = None

    # ------------------------------------------------------------------ the trained structure
    @abc.abstractmethod
    def _train(self, keys: np.ndarray, prepared: np.ndarray) -> None:
        """Train on ``prepared`` (at least ``train_size`` rows) and hold all of them."""

    @abc.abstractmethod
    def _trained_add(self, keys: np.ndarray, prepared: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _trained_remove(self, keys: np.ndarray) -> None: ...

    @abc.abstractmethod
    def _trained_vectors_for(self, keys: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def _trained_search(self, prepared: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    @abc.abstractmethod
    def _trained_search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def _trained_search_exact_subset(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return BaseIndex._search_exact_subset(self, q, k, allowed_keys)

    @abc.abstractmethod
    def _trained_write_files(self, directory: Path, tag: str) -> dict[str, Path]: ...

    @abc.abstractmethod
    def _trained_read_files(self, files: dict[str, Path]) -> None: ...


class IVFLists(TrainedLater):
    """The trained structure of the unrefined IVF kinds: FAISS inverted lists keyed by the store's keys
    (``IndexIVFFlat`` or ``IndexIVFPQ``, from :meth:`_new_ivf`)."""

    _index: Any = None

    @abc.abstractmethod
    def _new_ivf(self) -> Any:
        """An untrained FAISS IVF index for this kind's options."""

    def _train(self, keys: np.ndarray, prepared: np.ndarray) -> None:
        index = self._new_ivf()
        index.train(prepared[: self.train_size])
        index.add_with_ids(prepared, keys)
        index.nprobe = self.options["nprobe"]
        self._index = index

    def _trained_add(self, keys: np.ndarray, prepared: np.ndarray) -> None:
        self._index.add_with_ids(prepared, keys)

    def _trained_remove(self, keys: np.ndarray) -> None:
        # a hashtable direct map (built on demand by _vectors_for) only accepts an explicit id array
        hashed = self._index.direct_map.type != faiss.DirectMap.NoMap
        self._index.remove_ids(faiss.IDSelectorArray(keys) if hashed else faiss.IDSelectorBatch(keys))

    def _trained_vectors_for(self, keys: np.ndarray) -> np.ndarray:
        if self._index.direct_map.type == faiss.DirectMap.NoMap:
            # built only when asked: a hashtable over every id costs half the build time
            self._index.set_direct_map_type(faiss.DirectMap.Hashtable)
        return np.stack([self._index.reconstruct(int(k)) for k in keys]).astype(np.float32)

    def _trained_search_exact_subset(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        # Visiting every list with an ID selector scores exactly the allowed vectors for IVF-flat, which
        # keeps them exact (for IVF-PQ it is the PQ score of every allowed vector).
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

    def _trained_search(self, prepared: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        searcher = self._replica.searcher(self._index, self.options["device"], nprobe=self.options["nprobe"])
        d, labels = searcher.search(prepared, min(k, len(self)))
        return self._finish(d, labels, k)

    def _trained_search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._search_selected(q, k, allowed_keys, self.options["nprobe"])

    def _trained_write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        path = directory / f"index-{tag}.faiss"
        faiss.write_index(self._index, str(path))
        return {"index": path}

    def _trained_read_files(self, files: dict[str, Path]) -> None:
        index = self._check_index_file(self._read_index(files["index"]), faiss.IndexIVF)
        index.nprobe = self.options["nprobe"]
        self._index = index
        self._set_loaded_keys(self._list_ids())

    def _list_ids(self) -> np.ndarray:
        invlists = self._index.invlists
        parts = []
        for lst in range(self._index.nlist):
            size = invlists.list_size(lst)
            if size:
                parts.append(faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy())
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


class FaissIVFIndex(IVFLists):
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

    def __init__(
        self,
        dim: int,
        metric: Metric | str = "cosine",
        *,
        nlist: int = 256,
        nprobe: int = 32,
        train_size: int | None = None,
        device: Device = "auto",
    ) -> None:
        super().__init__(
            dim, metric, {"nlist": nlist, "nprobe": nprobe, "train_size": train_size, "device": device}
        )

    def _new_ivf(self) -> Any:
        quantizer = faiss.IndexFlat(self.dim, FAISS_METRIC[self.metric])
        return faiss.IndexIVFFlat(quantizer, self.dim, self.options["nlist"], FAISS_METRIC[self.metric])
