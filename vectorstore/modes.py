"""The keyword and hybrid retrieval stages: BM25 candidates, their exact vector scores, and fusion.

Both run inside :func:`vectorstore.pipeline.run_query` with the index state's lock held and return
``[q, k]`` matrices (keys, exact vector scores, keyword scores, fused scores; padding ``-1`` / NaN),
which :func:`vectorstore.pipeline.to_hits` turns into hits. Every hit's ``score`` is the exact vector
similarity of the stored vector (DESIGN invariant 5), also for hits the vector leg never proposed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from indexers.scoring import exact_scores
from vectorstore import fusion as fuse

if TYPE_CHECKING:
    from vectorstore.index_state import IndexState

__all__ = ["ModeResults", "hybrid_stage", "keyword_stage"]


@dataclass(frozen=True)
class ModeResults:
    """``[q, k]`` results of a keyword or hybrid stage (padding: key -1, NaN scores)."""

    keys: np.ndarray
    scores: np.ndarray
    keyword_scores: np.ndarray
    fusion_scores: np.ndarray | None

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]],
        k: int,
        with_fusion: bool,
    ) -> ModeResults:
        q = len(rows)
        keys = np.full((q, k), -1, dtype=np.int64)
        scores = np.full((q, k), np.nan, dtype=np.float64)
        kw = np.full((q, k), np.nan, dtype=np.float64)
        fused = np.full((q, k), np.nan, dtype=np.float64) if with_fusion else None
        for i, (rk, rs, rkw, rf) in enumerate(rows):
            n = min(len(rk), k)
            keys[i, :n], scores[i, :n], kw[i, :n] = rk[:n], rs[:n], rkw[:n]
            if fused is not None and rf is not None:
                fused[i, :n] = rf[:n]
        return cls(keys, scores, kw, fused)


def _vector_scores(metric: str, state: IndexState, query: np.ndarray | None, keys: np.ndarray) -> np.ndarray:
    if query is None or not len(keys):
        return np.full(len(keys), np.nan, dtype=np.float64)
    return exact_scores(metric, query[None, :], state.get_vectors(keys))[0].astype(np.float64)


def keyword_stage(
    state: IndexState,
    metric: str,
    queries: np.ndarray | None,
    legs: Sequence[tuple[np.ndarray, np.ndarray]],
    k: int,
) -> ModeResults:
    """Keyword mode: each query's BM25 leg, best first, with exact vector scores (NaN without query
    vectors). Keys not yet applied to the index state (a write committed between the two catch-ups)
    are left out, so both modes see the same records."""
    rows = []
    for i, (keys, bm25) in enumerate(legs):
        ok = state.contains(keys) if len(keys) else np.zeros(0, bool)
        keys, bm25 = keys[ok][:k], bm25[ok][:k]
        q = queries[i] if queries is not None else None
        rows.append((keys, _vector_scores(metric, state, q, keys), bm25, None))
    return ModeResults.from_rows(rows, k, with_fusion=False)


def hybrid_stage(
    state: IndexState,
    metric: str,
    queries: np.ndarray,
    vector_legs: tuple[np.ndarray, np.ndarray],
    keyword_legs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    k: int,
    *,
    fusion: fuse.Fusion,
    rrf_k: float,
    weights: tuple[float, float],
    alpha: float,
) -> ModeResults:
    """Hybrid mode: fuse each query's vector leg (exact scores, best first) with its BM25 leg.

    ``keyword_legs[i]`` is (keys, BM25 scores, BM25 scores of the vector leg's row ``i``, NaN where a
    document matches no term). The union of both legs is scored on both sides: exact vector
    similarity for keys only the keyword leg found, BM25 for keys only the vector leg found. Hits
    are ordered by fused score, then exact vector score, then the smaller key.
    """
    rows = []
    v_keys_all, v_scores_all = vector_legs
    for i, (kw_keys, kw_scores, v_kw) in enumerate(keyword_legs):
        valid = v_keys_all[i] >= 0
        v_keys = v_keys_all[i][valid]
        v_scores = v_scores_all[i][valid].astype(np.float64)
        v_kw = v_kw[valid]
        ok = state.contains(kw_keys) if len(kw_keys) else np.zeros(0, bool)
        kw_keys, kw_scores = kw_keys[ok], kw_scores[ok]
        union = np.array(list(dict.fromkeys(v_keys.tolist() + kw_keys.tolist())), dtype=np.int64)
        if not len(union):
            rows.append((union, np.empty(0), np.empty(0), np.empty(0)))
            continue
        vec = dict(zip(v_keys.tolist(), v_scores.tolist()))
        kws = dict(zip(v_keys.tolist(), v_kw.tolist()))
        kws.update(zip(kw_keys.tolist(), kw_scores.tolist()))
        only_kw = np.array([key for key in kw_keys.tolist() if key not in vec], dtype=np.int64)
        vec.update(zip(only_kw.tolist(), _vector_scores(metric, state, queries[i], only_kw).tolist()))
        u_vec = np.array([vec[key] for key in union.tolist()], dtype=np.float64)
        u_kw = np.array([kws[key] for key in union.tolist()], dtype=np.float64)
        if fusion == "rrf":
            fused_map = fuse.rrf([v_keys, kw_keys], k=rrf_k, weights=weights)
            fused = np.array([fused_map[key] for key in union.tolist()], dtype=np.float64)
        else:
            v_range = (float(v_scores.min()), float(v_scores.max())) if len(v_scores) else (0.0, 0.0)
            k_range = (0.0, float(kw_scores.max())) if len(kw_scores) else (0.0, 0.0)
            fused = fuse.weighted(u_vec, u_kw, v_range, k_range, alpha=alpha)
        order = np.lexsort((union, -np.nan_to_num(u_vec, nan=-np.inf), -fused))[:k]
        rows.append((union[order], u_vec[order], u_kw[order], fused[order]))
    return ModeResults.from_rows(rows, k, with_fusion=True)
