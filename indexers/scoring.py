"""Exact scores and top-k selection in numpy: the definition every backend's scores are checked against.

Scores are higher-is-better: cosine, dot, ``-euclidean`` and ``-manhattan``.
"""

from __future__ import annotations

import math

import numpy as np

from indexers.errors import UnsupportedMetricError
from indexers.products import SMALL_BATCH, inner_products, squared_distances

__all__ = [
    "METRICS",
    "candidate_scores",
    "check_metric",
    "exact_scores",
    "normalize_finite_rows",
    "normalize_rows",
    "order_results",
    "pad_results",
    "sort_rows",
    "top_k",
]

METRICS: tuple[str, ...] = ("cosine", "dot", "euclidean", "manhattan")


def check_metric(metric: str) -> str:
    """Validate a metric name (``dot_product`` is accepted for ``dot``)."""
    m = str(getattr(metric, "value", metric)).lower()
    if m == "dot_product":
        m = "dot"
    if m not in METRICS:
        raise UnsupportedMetricError(f"unknown metric {metric!r}; expected one of {list(METRICS)}")
    return m


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Unit-L2 rows (zero rows stay zero), float32; finite rows whose squared norm overflows float32
    are normalised in float64 rather than collapsing to zero."""
    out = normalize_finite_rows(x)
    if out is not None:
        return out
    # some row's float32 norm is not finite: recompute it, in float64 for those rows
    norms = _row_norms(x)
    finite = np.isfinite(norms)[:, 0]
    out = _divide_by_norms(x, np.where(finite[:, None], norms, 1.0))
    out[~finite] = _normalize_wide(x[~finite])
    return out


def _row_norms(x: np.ndarray) -> np.ndarray:
    """``np.linalg.norm(x, axis=1, keepdims=True)``. For floats, einsum sums the squares without
    materialising ``x * x`` (a 300 MB temporary at 200k x 384, whose fresh pages cost more than the
    arithmetic), with the same accuracy to a few 1e-7 relative."""
    if x.dtype.kind == "f":
        return np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]
    return np.sqrt(np.add.reduce(x * x, axis=1, keepdims=True))


def _divide_by_norms(x: np.ndarray, norms: np.ndarray) -> np.ndarray:
    np.maximum(norms, 1e-12, out=norms)
    return (x / norms).astype(np.float32, copy=False)


def _normalize_wide(rows: np.ndarray) -> np.ndarray:
    """Rows whose float32 squared norm overflows, normalised in float64 (which holds the square of any
    float32); rows with NaN or inf stay NaN."""
    with np.errstate(invalid="ignore"):
        wide = rows.astype(np.float64)
        return (wide / np.linalg.norm(wide, axis=1, keepdims=True)).astype(np.float32)


def normalize_finite_rows(x: np.ndarray) -> np.ndarray | None:
    """:func:`normalize_rows`, or ``None`` when some row's float32 norm is not finite (a NaN or inf
    entry, or a sum of squares that overflows): the normalisation pass doubles as the finiteness check."""
    if x.shape[0] == 1 and x.dtype == np.float32:
        squared = float(np.dot(x[0], x[0]))
        # a Python float divisor is cast to float32 (NEP 50): float32 out, without making a numpy scalar
        return x / max(math.sqrt(squared), 1e-12) if math.isfinite(squared) else None
    norms = _row_norms(x)
    if not np.isfinite(norms).all():
        return None
    return _divide_by_norms(x, norms)


def exact_scores(metric: str, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``float32[q, n]`` exact scores of every query against every vector."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if x.ndim == 1:
        x = x[None, :]
    if metric == "dot":
        return inner_products(q, x)
    if metric == "cosine":
        return inner_products(normalize_rows(q), normalize_rows(x))
    if metric == "euclidean":
        small = squared_distances(q, x)  # a few queries: from the differences, on this thread
        if small is not None and np.isfinite(small).all():
            return -np.sqrt(small)
        # float64: the |q|² - 2q·x + |x|² expansion cancels badly for near neighbours in float32
        q64, x64 = q.astype(np.float64), x.astype(np.float64)
        sq = (q64 * q64).sum(1)[:, None] - 2.0 * (q64 @ x64.T) + (x64 * x64).sum(1)[None, :]
        return (-np.sqrt(np.maximum(sq, 0.0))).astype(np.float32)
    if metric == "manhattan":
        out = np.empty((q.shape[0], x.shape[0]), dtype=np.float32)
        x64 = x.astype(np.float64)
        for i in range(q.shape[0]):
            out[i] = -np.abs(x64 - q[i].astype(np.float64)).sum(axis=1)
        return out
    raise UnsupportedMetricError(f"unknown metric {metric!r}")


def candidate_scores(metric: str, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``float32[q, c]`` exact scores of ``queries[q, d]`` against their own ``candidates[q, c, d]``."""
    if metric in ("dot", "cosine"):
        if queries.shape[0] <= SMALL_BATCH:  # on this thread (see indexers.products)
            scores = np.empty(candidates.shape[:2], dtype=np.float32)
            for i in range(queries.shape[0]):
                scores[i] = inner_products(queries[i], candidates[i])[0]
        else:
            scores = np.matmul(candidates, queries[:, :, None])[:, :, 0]
        if metric == "cosine":
            # dot / (|c| |q|): the cosine of normalising both sides, to float32 rounding, in fewer passes
            c_norms = np.maximum(np.sqrt(np.einsum("qcd,qcd->qc", candidates, candidates)), 1e-12)
            q_norms = np.maximum(np.sqrt(np.einsum("qd,qd->q", queries, queries)), 1e-12)
            scores = scores / (c_norms * q_norms[:, None])
        return scores.astype(np.float32, copy=False)
    diff = candidates.astype(np.float64) - queries.astype(np.float64)[:, None, :]
    if metric == "euclidean":
        return (-np.sqrt((diff * diff).sum(axis=2))).astype(np.float32)
    if metric == "manhattan":
        return (-np.abs(diff).sum(axis=2)).astype(np.float32)
    raise UnsupportedMetricError(f"unknown metric {metric!r}")


def empty_results(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_queries`` rows of padding: ``-1`` keys, ``-inf`` scores."""
    return np.full((n_queries, k), -1, dtype=np.int64), np.full((n_queries, k), -np.inf, dtype=np.float32)


def pad_results(keys: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen ``[q, m]`` results to ``[q, k]`` with ``-1`` keys and ``-inf`` scores."""
    q, m = keys.shape
    if m == k:
        return keys, scores
    if m > k:
        return keys[:, :k], scores[:, :k]
    out_k = np.full((q, k), -1, dtype=np.int64)
    out_s = np.full((q, k), -np.inf, dtype=np.float32)
    out_k[:, :m] = keys
    out_s[:, :m] = scores
    return out_k, out_s


def _has_ties(scores: np.ndarray) -> bool:
    if scores.shape[0] == 1:
        # one short, sorted row: equal scores are neighbours, so a set of it is smaller exactly when two
        # neighbours tie; plain Python beats two ufunc dispatches here
        row = scores[0].tolist()
        return len(set(row)) < len(row)
    return bool((scores[:, 1:] == scores[:, :-1]).any())


def sort_rows(keys: np.ndarray, scores: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row best-first, equal scores by the smaller key, padding (``-1`` / ``-inf``) last; the
    first ``k`` columns when ``k`` is given. The one ordering every backend and merge agrees on."""
    order = np.lexsort((np.where(keys < 0, np.iinfo(np.int64).max, keys), -scores), axis=1)[:, :k]
    return np.take_along_axis(keys, order, axis=1), np.take_along_axis(scores, order, axis=1)


def order_results(keys: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Backend results already sorted best-first, with equal scores re-ordered by the smaller key, padded to ``k``.

    Padding (``-1`` keys) must carry ``-inf`` scores. Rows without ties are left as they are, which is
    the common case and keeps the single-query path to a couple of numpy calls.
    """
    m = keys.shape[1]
    if m > 1 and _has_ties(scores):
        keys, scores = sort_rows(keys, scores)
    return (keys, scores) if m == k else pad_results(keys, scores, k)


def top_k(scores: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of each row of ``scores[q, n]`` (labelled by ``keys[n]``), sorted, padded to ``k``.

    Ties are broken by the smaller key so that every backend orders equal scores the same way.
    """
    q, n = scores.shape
    if n == 0:
        return empty_results(q, k)
    kk = min(k, n)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < n else np.tile(np.arange(n), (q, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    part_keys = keys[part]
    order = np.lexsort((part_keys, -part_scores), axis=1)
    out_keys = np.take_along_axis(part_keys, order, axis=1).astype(np.int64, copy=False)
    out_scores = np.take_along_axis(part_scores, order, axis=1).astype(np.float32, copy=False)
    if kk < n:
        # argpartition picks arbitrarily among scores tied with the k-th: redo those rows in full
        kth = out_scores[:, -1]
        tied = np.nonzero((scores >= kth[:, None]).sum(axis=1) > kk)[0]
        for r in tied.tolist():
            cand = np.nonzero(scores[r] >= kth[r])[0]
            best = cand[np.lexsort((keys[cand], -scores[r, cand]))[:kk]]
            out_keys[r], out_scores[r] = keys[best], scores[r, best]
    return pad_results(out_keys, out_scores, k)
