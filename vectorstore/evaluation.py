"""Evaluation of an embedding model on STS-format data: Spearman and Pearson of similarity vs gold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vectorstore.datasets import STSPair
from vectorstore.errors import InvalidInputError

if TYPE_CHECKING:
    from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = ["STSResult", "evaluate_sts", "pearson", "rank_average", "spearman"]


def rank_average(x: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (as ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    starts = np.r_[0, np.nonzero(np.diff(sorted_x))[0] + 1]
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length vectors."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson of the average ranks)."""
    return pearson(rank_average(np.asarray(a)), rank_average(np.asarray(b)))


@dataclass(frozen=True)
class STSResult:
    """Correlations of model similarity with gold scores."""

    spearman: float
    pearson: float
    n_pairs: int
    similarity: str


def evaluate_sts(model: SentenceTransformer, pairs: list[STSPair], *, batch_size: int = 64) -> STSResult:
    """Embed both sentences of every pair, score them with the model's similarity, correlate with gold.

    Raises:
        InvalidInputError: fewer than two pairs.
    """
    if len(pairs) < 2:
        raise InvalidInputError(f"need at least 2 STS pairs to correlate, got {len(pairs)}")
    a = model.encode([p.sentence1 for p in pairs], batch_size=batch_size)
    b = model.encode([p.sentence2 for p in pairs], batch_size=batch_size)
    sims = model.similarity_pairwise(a, b).numpy()
    gold = np.array([p.score for p in pairs])
    return STSResult(spearman(gold, sims), pearson(gold, sims), len(pairs), model.similarity_fn_name)
