"""``exact``: brute-force search in numpy (torch on a GPU when one is present), chunked over the stored rows.

It is the oracle every other backend is tested against, and the right choice for small collections.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from indexers.base import BaseIndex
from indexers.errors import InvalidIDError, InvalidInputError
from indexers.persistence import save_arrays
from indexers.products import inner_products
from indexers.scoring import exact_scores, normalize_rows, sort_rows, top_k
from indexers.spec import Device, Metric
from indexers.validation import check_device
from indexers.vector_table import VectorTable, block_crcs

__all__ = ["ExactIndex"]


class ExactIndex(BaseIndex):
    """Brute force over every stored vector; exact scores for all four metrics.

    Options:
        chunk_size: rows scored at once (bounds memory at ``queries x chunk_size`` floats).
        device: ``"auto"`` (CUDA through torch when available), ``"cpu"`` or ``"cuda"``.
    """

    kind = "exact"
    defaults: ClassVar[dict[str, Any]] = {"chunk_size": 65536, "device": "auto"}
    lazily_verified = frozenset({"vectors"})

    @property
    def scores_are_exact(self) -> bool:
        return True

    @property
    def stores_full_vectors(self) -> bool:
        return True

    def __init__(
        self, dim: int, metric: Metric | str = "cosine", *, chunk_size: int = 65536, device: Device = "auto"
    ) -> None:
        super().__init__(dim, metric, {"chunk_size": chunk_size, "device": device})
        self._table = VectorTable(self.dim)

    def _validate_options(self) -> None:
        size = self.options["chunk_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise InvalidInputError(f"chunk_size must be a positive int, got {size!r}")
        check_device(self.options["device"])

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        # Cosine is stored pre-normalised so search is a plain inner product.
        return normalize_rows(vectors) if self.metric == "cosine" else vectors

    def _add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._table.add(keys, self._prepare(vectors))

    def _remove(self, keys: np.ndarray) -> None:
        self._table.remove(keys)

    def _vectors_for(self, keys: np.ndarray) -> np.ndarray:
        return self._table.get(keys)

    def contains_many(self, keys: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``keys`` are in the index (vectorised)."""
        return self._table.contains(keys)

    def get_vectors(self, keys: np.ndarray) -> np.ndarray:
        """The stored rows of ``keys`` (normalised for cosine), vectorised.

        Raises:
            InvalidIDError: some key is not stored.
        """
        try:
            return self._table.get(keys)
        except KeyError as exc:
            raise InvalidIDError(str(exc.args[0]) if exc.args else "keys not stored") from exc

    def stored_keys(self) -> np.ndarray:
        """The keys in storage order (a view; do not modify)."""
        return self._table.keys

    def _use_torch(self) -> bool:
        if self.options["device"] == "cpu" or self.metric == "manhattan":
            return False
        return _cuda_available(explicit=self.options["device"] == "cuda")

    def _chunk_scores(self, q: np.ndarray, x: np.ndarray) -> np.ndarray:
        if self.metric in ("cosine", "dot"):
            if self._use_torch():
                import torch

                tq = torch.from_numpy(q).cuda()
                return (tq @ torch.from_numpy(x).cuda().T).cpu().numpy()
            return inner_products(q, x)
        return exact_scores(self.metric, q, x)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = normalize_rows(queries) if self.metric == "cosine" else queries
        keys, vecs = self._table.keys, self._table.vectors
        step = self.options["chunk_size"]
        best_k: np.ndarray | None = None
        best_s: np.ndarray | None = None
        for start in range(0, len(keys), step):
            ck, cs = top_k(self._chunk_scores(q, vecs[start : start + step]), keys[start : start + step], k)
            if best_k is None or best_s is None:
                best_k, best_s = ck, cs
            else:
                # merge two sorted, padded top-k results row by row
                best_k, best_s = sort_rows(
                    np.concatenate([best_k, ck], axis=1), np.concatenate([best_s, cs], axis=1), k
                )
        assert best_k is not None and best_s is not None
        return best_k, best_s

    def _write_files(self, directory: Path, tag: str) -> dict[str, Path]:
        vectors = np.ascontiguousarray(self._table.vectors)
        arrays = {"keys": self._table.keys, "vectors": vectors, "blocks": block_crcs(vectors)}
        return save_arrays(directory, tag, arrays)

    def _read_files(
        self, files: dict[str, Path], unverified: frozenset[str] | set[str] = frozenset()
    ) -> None:
        keys = np.load(files["keys"], allow_pickle=False).astype(np.int64, copy=False)
        # memory-mapped, read-only: the table copies it on its first write
        vecs = np.load(files["vectors"], allow_pickle=False, mmap_mode="r")
        if keys.ndim != 1 or vecs.shape != (len(keys), self.dim) or vecs.dtype != np.float32:
            raise ValueError(f"arrays have shapes {keys.shape} / {vecs.shape}, dtype {vecs.dtype}")
        self._table = VectorTable.from_arrays(keys, vecs)
        if "vectors" in unverified:
            if "blocks" not in files:
                raise ValueError(
                    "the vectors were saved without block checksums; they cannot be verified lazily"
                )
            self._table.check_blocks(np.load(files["blocks"], allow_pickle=False))
        self._set_loaded_keys(keys)


@functools.cache
def _cuda_available(explicit: bool) -> bool:
    """Whether torch sees a CUDA device. With ``device="auto"`` torch (seconds to import) is imported
    only where it already is or where an NVIDIA driver is present, so CPU-only processes never pay it."""
    driver = os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
    if not explicit and not driver and "torch" not in sys.modules:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
