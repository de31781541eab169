"""Checks of what callers hand an index: keys, vectors, option values. Each error names the bad value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from indexers.errors import DimensionMismatchError, InvalidIDError, InvalidInputError, InvalidVectorError
from indexers.scoring import normalize_finite_rows, normalize_rows

__all__ = [
    "all_finite",
    "check_device",
    "check_keys",
    "check_positive",
    "check_vectors",
    "require_finite",
    "unit_rows_checked",
    "well_formed",
]

_FLOAT32 = np.dtype(np.float32)


def require_finite(arr: np.ndarray, what: str) -> None:
    """The exact NaN/inf check, naming the first bad entry."""
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InvalidVectorError(f"{what} contain NaN or inf (first at row {bad[0]}, column {bad[1]})")


def unit_rows_checked(vectors: np.ndarray, what: str) -> np.ndarray:
    """Unit-L2 rows of float32 ``vectors`` whose norms double as the NaN/inf check: one pass instead of
    two. Raises :class:`InvalidVectorError` naming the first bad entry."""
    out = normalize_finite_rows(vectors)
    if out is None:
        require_finite(vectors, what)  # raises, naming the first bad entry
        out = normalize_rows(vectors)  # finite entries whose squares overflow
    return out


def check_keys(keys: Any) -> np.ndarray:
    """A 1-D int64 array of non-negative keys (``-1`` is the padding key)."""
    arr = np.asarray(keys)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidIDError(f"keys must be a 1-D array of integers, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidIDError(f"keys must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise InvalidIDError(f"keys must be non-negative (-1 is the padding key), got {int(arr.min())}")
    return arr


def all_finite(vectors: np.ndarray, ones: np.ndarray) -> bool:
    """Whether every entry is finite, judged from the row sums (one BLAS call: NaN and inf survive a sum).

    A sum can also overflow on finite entries beyond ~1e34; such rows just take the slow, exact check.
    """
    sums = np.dot(vectors, ones)
    return math.isfinite(sums[0]) if len(sums) == 1 else bool(np.isfinite(sums).all())


def well_formed(vectors: Any, dim: int) -> bool:
    """Already a C-contiguous float32 ``[n, dim]`` array: nothing to convert."""
    return (
        type(vectors) is np.ndarray
        and vectors.dtype is _FLOAT32
        and vectors.ndim == 2
        and vectors.shape[1] == dim
        and vectors.flags.c_contiguous
    )


def check_vectors(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """Validated C-contiguous, finite float32 ``[n, dim]`` (one row may be given as a 1-D query)."""
    try:
        arr = np.asarray(vectors)
    except (TypeError, ValueError) as exc:
        raise InvalidVectorError(f"{what} cannot be read as an array: {exc}") from exc
    if arr.ndim == 1 and what == "queries":
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidVectorError(f"{what} must be 2-D [n, {dim}], got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise DimensionMismatchError(f"{what} have dimension {arr.shape[1]}, the index has {dim}")
    if arr.size and not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidVectorError(f"{what} must be numeric, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    require_finite(arr, what)
    return arr


def check_positive(name: str, value: Any) -> None:
    """An option that must be a positive int."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidInputError(f"option {name} must be a positive int, got {value!r}")


def check_device(value: Any) -> None:
    """The ``device`` option of the backends that can use a GPU."""
    if value not in ("auto", "cpu", "cuda"):
        raise InvalidInputError(f"device must be 'auto', 'cpu' or 'cuda', got {value!r}")
