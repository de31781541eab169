"""``faiss-flat``: exhaustive search in FAISS (``IndexIDMap2`` over ``IndexFlat``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from indexers.faiss.common import FAISS_METRIC, FaissBase, GpuReplica
from indexers.spec import Device, Metric
from indexers.validation import check_device

__all__ = ["FaissFlatIndex"]


class FaissFlatIndex(FaissBase):
    """``faiss-flat``: exhaustive search in FAISS (``IndexIDMap2`` over ``IndexFlat``).

    Options:
        device: ``"auto"`` (GPU replica when FAISS has GPUs), ``"cpu"`` or ``"cuda"``.
    """

    kind = "faiss-flat"
    defaults: ClassVar[dict[str, Any]] = {"device": "auto"}
    _map_on_load = True

    def __init__(self, dim: int, metric: Metric | str = "cosine", *, device: Device = "auto") -> None:
        super().__init__(dim, metric, {"device": device})
        self._index = faiss.IndexIDMap2(faiss.IndexFlat(self.dim, FAISS_METRIC[self.metric]))
        self._replica = GpuReplica()

    def _validate_options(self) -> None:
        check_device(self.options["device"])

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add_with_ids(self._prepare(vectors), keys)
        self._replica.invalidate()

    def _remove(self, keys: np.ndarray) -> None:
        self._index.remove_ids(faiss.IDSelectorBatch(keys))
        self._replica.invalidate()

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        return np.stack([self._index.reconstruct(int(k)) for k in keys]).astype(np.float32)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(k, self._index.ntotal)
        d, labels = self._replica.searcher(self._index, self.options["device"]).search(
            self._prepare(queries, "queries"), kk
        )
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

    def _read_files(
        self, files: dict[str, Path], unverified: frozenset[str] | set[str] = frozenset()
    ) -> None:
        self._index = self._check_index_file(self._read_index(files["index"]), faiss.IndexIDMap2)
        ids = faiss.vector_to_array(self._index.id_map)
        self._set_loaded_keys(ids.astype(np.int64))
        self._replica.invalidate()
