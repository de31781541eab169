"""``faiss-ivfpq``: inverted lists of product-quantized codes (``IndexIVFPQ``), in two classes.

- :class:`FaissRefinedIVFPQIndex` (``refine_factor >= 1``, the default 10): the ``refine_factor * k``
  best PQ candidates are rescored exactly against a float32 copy of the vectors inside FAISS
  (``IndexRefineFlat``). The lists then hold positions in that copy, mapped back to keys like
  ``faiss-hnsw``; removal takes codes out of the lists and the copy is compacted once more than half
  of it is dead. Search runs on the CPU even when FAISS has GPUs.
- :class:`FaissIVFPQIndex` (``refine_factor=0``): no float copy, raw PQ scores — the store rescores
  from its own vectors anyway, with its own over-fetch.

:func:`indexers.make_index` picks the class from ``refine_factor``; both save as kind ``faiss-ivfpq``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from indexers.errors import IncompatibleIndexError, InvalidInputError
from indexers.faiss.common import FAISS_METRIC, owned_copy
from indexers.faiss.ivf import IVFLists, TrainedLater
from indexers.faiss.labels import PositionLabels
from indexers.persistence import save_arrays
from indexers.scoring import empty_results
from indexers.spec import Device, Metric
from indexers.validation import check_positive

__all__ = ["PQ_DEFAULTS", "FaissIVFPQIndex", "FaissRefinedIVFPQIndex"]

logger = logging.getLogger(__name__)

# The options of kind ``faiss-ivfpq`` and their make_index defaults (refined, m = dim // 4).
PQ_DEFAULTS: dict[str, Any] = {
    "nlist": 256,
    "nprobe": 64,
    "m": None,
    "nbits": 8,
    "refine_factor": 10,
    "train_size": None,
    "device": "auto",
}


def default_m(dim: int) -> int:
    """4 dimensions per sub-quantizer where that divides (at 200k real-derived vectors dim/8 reached
    recall 0.88-0.94), else the next divisor that does."""
    return next(m for m in (dim // 4, dim // 8, dim // 2, 1) if m and dim % m == 0)


def _pq_options(dim: int, **options: Any) -> dict[str, Any]:
    """The options as persisted: ``m`` resolved to a number."""
    return {**options, "m": default_m(dim) if options["m"] is None else options["m"]}


def _check_pq(index: Any) -> None:
    check_positive("m", index.options["m"])
    check_positive("nbits", index.options["nbits"])
    if index.dim % index.options["m"]:
        raise InvalidInputError(f"m={index.options['m']} must divide the dimension {index.dim}")
    rf = index.options["refine_factor"]
    if not isinstance(rf, int) or isinstance(rf, bool) or rf < 0:
        raise InvalidInputError(f"refine_factor must be an int >= 0, got {rf!r}")


def _new_pq(index: Any) -> Any:
    quantizer = faiss.IndexFlat(index.dim, FAISS_METRIC[index.metric])
    return faiss.IndexIVFPQ(
        quantizer,
        index.dim,
        index.options["nlist"],
        index.options["m"],
        index.options["nbits"],
        FAISS_METRIC[index.metric],
    )


class FaissIVFPQIndex(IVFLists):
    """``faiss-ivfpq`` with ``refine_factor=0``: raw PQ scores (approximate), no float32 copy.

    Options:
        nlist (256), nprobe (64), m: sub-quantizers (``dim // 4`` when it divides), nbits (8),
        train_size (``max(39 * nlist, 1000)``), device.
    """

    kind = "faiss-ivfpq"
    metrics = ("cosine", "dot", "euclidean")
    defaults: ClassVar[dict[str, Any]] = PQ_DEFAULTS
    _map_on_load = True

    def __init__(
        self,
        dim: int,
        metric: Metric | str = "cosine",
        *,
        nlist: int = 256,
        nprobe: int = 64,
        m: int | None = None,
        nbits: int = 8,
        refine_factor: int = 0,
        train_size: int | None = None,
        device: Device = "auto",
    ) -> None:
        if refine_factor:
            raise InvalidInputError(
                f"FaissIVFPQIndex keeps no float copy (refine_factor=0), got refine_factor={refine_factor!r}; "
                "use FaissRefinedIVFPQIndex"
            )
        super().__init__(
            dim,
            metric,
            _pq_options(
                int(dim),
                nlist=nlist,
                nprobe=nprobe,
                m=m,
                nbits=nbits,
                refine_factor=0,
                train_size=train_size,
                device=device,
            ),
        )

    def _validate_options(self) -> None:
        super()._validate_options()
        _check_pq(self)

    @property
    def scores_are_exact(self) -> bool:
        return False  # PQ codes: approximate scores

    def _new_ivf(self) -> Any:
        return _new_pq(self)

    def _trained_read_files(self, files: dict[str, Path]) -> None:
        if "labels" in files:
            raise ValueError("the file holds a refinement copy but the options ask for refine_factor=0")
        super()._trained_read_files(files)


class FaissRefinedIVFPQIndex(TrainedLater, PositionLabels):
    """``faiss-ivfpq`` with ``refine_factor >= 1`` (the default): PQ candidates rescored exactly from a
    float32 copy inside FAISS (``IndexRefineFlat``).

    Options:
        nlist (256), nprobe (64), m: sub-quantizers (``dim // 4`` when it divides), nbits (8),
        refine_factor (10), train_size (``max(39 * nlist, 1000)``), device (search stays on the CPU).
    """

    kind = "faiss-ivfpq"
    metrics = ("cosine", "dot", "euclidean")
    defaults: ClassVar[dict[str, Any]] = PQ_DEFAULTS
    _map_on_load = True

    @property
    def removed_entries(self) -> int:
        return self._dead  # rows of removed keys still in the refinement copy

    @property
    def stores_full_vectors(self) -> bool:
        return True  # the refinement's float32 copy (or, before training, the exact buffer)

    def __init__(
        self,
        dim: int,
        metric: Metric | str = "cosine",
        *,
        nlist: int = 256,
        nprobe: int = 64,
        m: int | None = None,
        nbits: int = 8,
        refine_factor: int = 10,
        train_size: int | None = None,
        device: Device = "auto",
    ) -> None:
        if isinstance(refine_factor, int) and not isinstance(refine_factor, bool) and refine_factor == 0:
            raise InvalidInputError("refine_factor=0 keeps no float copy: use FaissIVFPQIndex")
        super().__init__(
            dim,
            metric,
            _pq_options(
                int(dim),
                nlist=nlist,
                nprobe=nprobe,
                m=m,
                nbits=nbits,
                refine_factor=refine_factor,
                train_size=train_size,
                device=device,
            ),
        )
        self._index: Any = None  # the IndexIVFPQ inside the refinement wrapper
        self._refined: Any = None  # the IndexRefineFlat, once trained
        self._flat: Any = None  # its float32 copy (positions are the lists' ids)
        self._reset_labels()

    def _validate_options(self) -> None:
        super()._validate_options()
        _check_pq(self)

    def _train(self, keys: np.ndarray, prepared: np.ndarray) -> None:
        base = _new_pq(self)
        base.train(prepared[: self.train_size])
        self._adopt_refined(faiss.IndexRefineFlat(base))
        self._trained_add(keys, prepared)

    def _adopt_refined(self, refined: Any) -> None:
        base = faiss.downcast_index(refined.base_index)
        base.nprobe = self.options["nprobe"]
        refined.k_factor = float(self.options["refine_factor"])
        self._index, self._refined, self._flat = base, refined, faiss.downcast_index(refined.refine_index)

    def _take_ownership(self) -> None:
        # the copy keeps nprobe, efSearch and k_factor (FAISS serialises them); only the handles move
        self._adopt_refined(owned_copy(self._refined))

    def _trained_add(self, keys: np.ndarray, prepared: np.ndarray) -> None:
        # Not IndexRefine.add: after removals the lists hold fewer codes than the copy holds rows,
        # so the codes are given their rows in the copy as ids explicitly.
        start = self._flat.ntotal
        self._index.add_with_ids(prepared, np.arange(start, start + len(keys), dtype=np.int64))
        self._flat.add(prepared)
        self._refined.ntotal = self._flat.ntotal
        self._append_labels(start, keys)

    def _trained_remove(self, keys: np.ndarray) -> None:
        self._index.remove_ids(faiss.IDSelectorBatch(self._drop_labels(keys)))
        if self._needs_compaction():
            live_keys, vectors = self._live_entries(self._flat)
            logger.info("faiss-ivfpq: compacting the refinement copy (%d removed rows)", self._dead)
            self._refined.reset()  # empties lists and copy, keeps the trained quantizers
            self._reset_labels()
            if vectors is not None:
                self._trained_add(live_keys, vectors)

    def _trained_vectors_for(self, keys: np.ndarray) -> np.ndarray:
        return np.asarray(self._flat.reconstruct_batch(self._positions(keys)), dtype=np.float32)

    def _trained_search(self, prepared: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        d, ids = self._refined.search(prepared, min(k, len(self)))
        return self._finish(d, self._key_of[ids], k)

    def _trained_search_filtered(
        self, q: np.ndarray, k: int, allowed_keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
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
        return self._finish(d, self._key_of[labels], k)

    def _trained_write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        path = directory / f"index-{tag}.faiss"
        faiss.write_index(self._refined, str(path))
        return {"index": path, **save_arrays(directory, tag, {"labels": self._labels})}

    def _trained_read_files(self, files: dict[str, Path]) -> None:
        if "refine_keys" in files:
            raise IncompatibleIndexError(
                "this faiss-ivfpq index was saved by an earlier development version; rebuild it"
            )
        if "labels" not in files:
            raise ValueError("the options ask for refinement but the file holds no refinement copy")
        refined = self._read_index(files["index"])
        labels = np.load(files["labels"], allow_pickle=False)
        if not isinstance(refined, faiss.IndexRefineFlat):
            raise ValueError(f"expected an IndexRefineFlat, found {type(refined).__name__}")
        base = faiss.downcast_index(refined.base_index)
        flat = faiss.downcast_index(refined.refine_index)
        if not isinstance(base, faiss.IndexIVFPQ) or base.d != self.dim or labels.ndim != 1:
            raise ValueError(f"refined index wraps {type(base).__name__} of dimension {base.d}")
        if len(labels) != flat.ntotal or base.ntotal != int((labels >= 0).sum()):
            raise ValueError(f"{len(labels)} labels for a copy of {flat.ntotal} rows and {base.ntotal} codes")
        self._adopt_refined(refined)
        self._set_loaded_keys(self._load_labels(labels))
