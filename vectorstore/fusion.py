"""Rank fusion of result lists: reciprocal rank fusion and a convex combination of normalised scores.

Both work on one query's legs, each a best-first array of keys (and, for ``weighted``, their scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from vectorstore.errors import InvalidInputError

__all__ = ["FUSIONS", "Fusion", "check_fusion", "minmax", "rrf", "weighted"]

Fusion = Literal["rrf", "weighted"]
FUSIONS: tuple[str, ...] = ("rrf", "weighted")


def rrf(
    legs: Sequence[np.ndarray], *, k: float = 60.0, weights: Sequence[float] | None = None
) -> dict[int, float]:
    """Reciprocal rank fusion (Cormack et al. 2009): ``sum_leg w_leg / (k + rank)``, rank 1-based.

    Args:
        legs: each leg's keys, best first.
        k: the RRF constant (60 in the paper and in most engines).
        weights: one weight per leg (default all 1).

    Returns:
        key -> fused score, for every key of any leg.
    """
    w = [1.0] * len(legs) if weights is None else [float(x) for x in weights]
    out: dict[int, float] = {}
    for leg, wl in zip(legs, w):
        for rank, key in enumerate(np.asarray(leg).tolist(), start=1):
            out[key] = out.get(key, 0.0) + wl / (k + rank)
    return out


def minmax(scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``scores`` mapped so that ``lo`` -> 0 and ``hi`` -> 1, clipped to [0, 1] (all 1 when lo == hi)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not hi > lo:
        return np.where(np.isfinite(scores) & (scores >= hi), 1.0, 0.0)
    return np.clip((scores - lo) / (hi - lo), 0.0, 1.0)


def weighted(
    vector_scores: np.ndarray,
    keyword_scores: np.ndarray,
    vector_range: tuple[float, float],
    keyword_range: tuple[float, float],
    *,
    alpha: float = 0.5,
) -> np.ndarray:
    """Convex combination ``alpha * v + (1 - alpha) * kw`` of normalised scores.

    Each leg's scores are mapped to [0, 1] by the range given for it (the caller passes the vector
    leg's min and max, and ``(0, best BM25)`` for the keyword leg, whose scores start at 0); a key that
    does not match the keyword query (NaN keyword score) gets 0 from that leg.

    Returns:
        the fused score of each position.
    """
    v = minmax(np.nan_to_num(vector_scores, nan=-np.inf), *vector_range)
    kw = minmax(np.nan_to_num(keyword_scores, nan=-np.inf), *keyword_range)
    return alpha * v + (1.0 - alpha) * kw


def check_fusion(
    fusion: str, rrf_k: float, weights: Sequence[float] | None, alpha: float
) -> tuple[Fusion, float, tuple[float, float], float]:
    """Validate the fusion arguments of a hybrid query.

    Raises:
        InvalidInputError: an unknown fusion, ``rrf_k`` < 0, weights that are not two non-negative
            numbers, or ``alpha`` outside [0, 1].
    """
    if fusion not in FUSIONS:
        raise InvalidInputError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, (int, float, np.number)) or not rrf_k >= 0:
        raise InvalidInputError(f"rrf_k must be a number >= 0, got {rrf_k!r}")
    if weights is None:
        w = (1.0, 1.0)
    else:
        try:
            w = tuple(float(x) for x in weights)  # type: ignore[assignment]
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"weights must be two numbers (vector, keyword), got {weights!r}"
            ) from exc
        if len(w) != 2 or not all(x >= 0 and np.isfinite(x) for x in w) or sum(w) == 0:
            raise InvalidInputError(
                f"weights must be two numbers >= 0, not both 0 (vector, keyword), got {weights!r}"
            )
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0 <= alpha <= 1:
        raise InvalidInputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return fusion, float(rrf_k), (w[0], w[1]), float(alpha)  # type: ignore[return-value]
