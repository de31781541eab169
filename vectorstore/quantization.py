"""Scalar and binary quantization of float32 embeddings.

``int8`` / ``uint8`` map each dimension's calibration range ``[min, max]`` onto 256 buckets;
``binary`` / ``ubinary`` keep one sign bit per dimension, packed eight to a byte (``binary`` is the
packed byte shifted by -128 so it fits int8). The arrays are identical to sentence-transformers'
``quantize_embeddings`` for the same input.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch

from vectorstore.errors import InvalidInputError

__all__ = ["Precision", "quantize_embeddings"]

logger = logging.getLogger(__name__)

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "uint8", "binary", "ubinary")


def _as_numpy(embeddings: object) -> np.ndarray:
    if isinstance(embeddings, torch.Tensor):
        return embeddings.detach().float().cpu().numpy()
    if isinstance(embeddings, list) and embeddings and isinstance(embeddings[0], torch.Tensor):
        return torch.stack(embeddings).detach().float().cpu().numpy()
    return np.asarray(embeddings)


def calibration_ranges(embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension ``[min; max]`` ranges, shape ``(2, dim)``, computed from ``embeddings``."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise InvalidInputError(
            f"int8/uint8 ranges need at least two embeddings to calibrate on, got shape {emb.shape}; "
            "pass `ranges` or `calibration_embeddings`"
        )
    return np.vstack((emb.min(axis=0), emb.max(axis=0)))


def quantize_embeddings(
    embeddings: torch.Tensor | np.ndarray | list[torch.Tensor] | list[np.ndarray],
    precision: Precision,
    ranges: np.ndarray | None = None,
    calibration_embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """Quantize float embeddings to a lower precision.

    Args:
        embeddings: float embeddings, ``(n, dim)`` or ``(dim,)``.
        precision: ``"float32"``, ``"int8"``, ``"uint8"``, ``"binary"`` or ``"ubinary"``.
        ranges: for int8/uint8, a ``(2, dim)`` array of per-dimension minima and maxima.
        calibration_embeddings: for int8/uint8 without ``ranges``, embeddings to take the ranges from
            (defaults to ``embeddings`` themselves, which needs at least two rows).

    Returns:
        The quantized array (``float32``, ``int8`` or ``uint8``); binary kinds have ``ceil(dim / 8)`` columns.

    Raises:
        InvalidInputError: for an unknown precision, integer input, or ranges that cannot be computed.
    """
    if precision not in PRECISIONS:
        raise InvalidInputError(f"Unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    emb = _as_numpy(embeddings)
    if emb.dtype in (np.int8, np.uint8):
        raise InvalidInputError(f"embeddings to quantize must be float, got {emb.dtype}")

    if precision == "float32":
        return emb.astype(np.float32)

    if precision in ("int8", "uint8"):
        if emb.ndim == 2 and emb.shape[0] == 0:
            return np.zeros(emb.shape, dtype=np.int8 if precision == "int8" else np.uint8)
        if ranges is None:
            source = emb if calibration_embeddings is None else np.asarray(calibration_embeddings)
            if source.ndim == 2 and source.shape[0] < 100:
                logger.warning(
                    "computing %s quantization ranges from only %d embeddings", precision, len(source)
                )
            ranges = calibration_ranges(source)
        ranges = np.asarray(ranges).astype(np.float32, copy=False)
        if ranges.shape != (2, emb.shape[-1]):
            raise InvalidInputError(f"ranges must have shape (2, {emb.shape[-1]}), got {ranges.shape}")
        starts = ranges[0, :]
        steps = (ranges[1, :] - starts) / 255
        steps = np.where(steps == 0, 1, steps)
        buckets = np.clip(np.floor((emb - starts) / steps), 0, 255)
        if precision == "uint8":
            return buckets.astype(np.uint8)
        return (buckets - 128).astype(np.int8)

    packed = np.packbits(emb > 0, axis=-1)
    if precision == "ubinary":
        return packed
    return (packed - 128).astype(np.int8)
