"""What the FAISS kinds share: metric mapping, score conversion, cosine preparation, mapped loading
and the GPU search replica."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from indexers.base import BaseIndex
from indexers.scoring import order_results
from indexers.validation import unit_rows_checked

__all__ = ["FAISS_METRIC", "FaissBase", "GpuReplica", "faiss_gpu_count", "owned_copy"]

logger = logging.getLogger(__name__)

FAISS_METRIC = {
    "cosine": faiss.METRIC_INNER_PRODUCT,
    "dot": faiss.METRIC_INNER_PRODUCT,
    "euclidean": faiss.METRIC_L2,
    "manhattan": faiss.METRIC_L1,
}

# Zero-copy loading of flat storage, where this FAISS build offers it; otherwise files are read into memory.
_MMAP_FLAG: int | None = getattr(faiss, "IO_FLAG_MMAP_IFC", None)


def faiss_gpu_count() -> int:
    """Number of GPUs the installed FAISS build can use (0 for faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except Exception:
        return 0


def owned_copy(index: Any) -> Any:
    """A copy of ``index`` that owns all of its storage (a serialise / deserialise round trip)."""
    return faiss.deserialize_index(faiss.serialize_index(index))


class GpuReplica:
    """A GPU copy of a CPU index used for search only, made on first use and dropped on every write.

    The CPU index stays the master copy, so saving and removal behave the same with or without GPUs.
    """

    def __init__(self) -> None:
        self._gpu: Any = None

    def invalidate(self) -> None:
        """The CPU index changed: the next search makes a fresh replica."""
        self._gpu = None

    def searcher(self, index: Any, device: str, **attrs: Any) -> Any:
        """``index`` itself (``device="cpu"`` or no GPU), else its replica with ``attrs`` set on it."""
        if device == "cpu" or faiss_gpu_count() == 0:
            return index
        if self._gpu is None:
            self._gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            for name, value in attrs.items():
                setattr(self._gpu, name, value)
        return self._gpu


class FaissBase(BaseIndex):
    """Score conversion, vector preparation and mapped loading shared by the FAISS kinds."""

    # Kinds whose bulk is flat float storage map it from the file on load (IO_FLAG_MMAP_IFC).
    _map_on_load: ClassVar[bool] = False
    _mapped = False
    _index: Any

    def _read_index(self, path: Path) -> Any:
        flag = _MMAP_FLAG
        self._mapped = self._map_on_load and flag is not None
        if self._mapped:
            return faiss.read_index(str(path), flag)
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
        self._index = owned_copy(self._index)

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

    def _check_index_file(self, index: Any, expected: type) -> Any:
        """A loaded FAISS index of the expected type and of this dimension (ValueError otherwise)."""
        if index.d != self.dim:
            raise ValueError(f"FAISS index has dimension {index.d}, manifest says {self.dim}")
        if not isinstance(index, expected):
            raise ValueError(f"expected a {expected.__name__}, found {type(index).__name__}")
        return index
