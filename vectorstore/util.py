"""Helpers in the shape of ``sentence_transformers.util``: similarity, search, mining, clustering.

All of them work on embeddings held in memory. For data that lives in a store, use the
:class:`~vectorstore.Collection` methods, which run the same ideas over an index.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vectorstore.duplicates import claim_communities
from vectorstore.errors import InvalidInputError
from vectorstore.quantization import quantize_embeddings
from vectorstore.similarity import (
    ArrayLike,
    SimilarityFunction,
    _to_float_tensor,
    cos_sim,
    dot_score,
    euclidean_sim,
    manhattan_sim,
    pairwise_cos_sim,
    pairwise_dot_score,
    pairwise_euclidean_sim,
    pairwise_manhattan_sim,
)

if TYPE_CHECKING:
    from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = [
    "SimilarityFunction",
    "community_detection",
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "normalize_embeddings",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
    "paraphrase_mining",
    "paraphrase_mining_embeddings",
    "quantize_embeddings",
    "semantic_search",
    "truncate_embeddings",
]

ScoreFn = Callable[[ArrayLike, ArrayLike], Tensor]
_A = TypeVar("_A", np.ndarray, Tensor)


def normalize_embeddings(embeddings: Tensor) -> Tensor:
    """Scale each row to unit L2 norm (zero rows stay zero)."""
    return torch.nn.functional.normalize(_to_float_tensor(embeddings), p=2, dim=-1)


def truncate_embeddings(embeddings: _A, truncate_dim: int | None) -> _A:
    """Keep the first ``truncate_dim`` dimensions (Matryoshka truncation); ``None`` keeps all."""
    if truncate_dim is not None and truncate_dim <= 0:
        raise InvalidInputError(f"truncate_dim must be a positive integer or None, got {truncate_dim!r}")
    return embeddings[..., :truncate_dim]


def semantic_search(
    query_embeddings: ArrayLike,
    corpus_embeddings: ArrayLike,
    query_chunk_size: int = 100,
    corpus_chunk_size: int = 500000,
    top_k: int = 10,
    score_function: ScoreFn = cos_sim,
) -> list[list[dict[str, Any]]]:
    """Top-k search of each query over a corpus, chunked so memory stays bounded.

    Args:
        query_embeddings: ``(q, d)`` or ``(d,)`` queries.
        corpus_embeddings: ``(n, d)`` corpus.
        query_chunk_size: queries scored at once.
        corpus_chunk_size: corpus rows scored at once.
        top_k: hits per query (fewer only if the corpus is smaller).
        score_function: a matrix similarity function, higher is better.

    Returns:
        For each query, a list of ``{"corpus_id": int, "score": float}`` sorted by score descending.
    """
    if top_k <= 0:
        raise InvalidInputError(f"top_k must be positive, got {top_k}")
    if query_chunk_size <= 0 or corpus_chunk_size <= 0:
        raise InvalidInputError("chunk sizes must be positive")
    queries = _to_float_tensor(query_embeddings)
    corpus = _to_float_tensor(corpus_embeddings)
    if queries.dim() == 1:
        queries = queries.unsqueeze(0)
    if corpus.device != queries.device:
        queries = queries.to(corpus.device)
    n = len(corpus)
    k = min(top_k, n)
    results: list[list[dict[str, Any]]] = []
    for q0 in range(0, len(queries), query_chunk_size):
        qchunk = queries[q0 : q0 + query_chunk_size]
        best_vals: Tensor | None = None
        best_idx: Tensor | None = None
        for c0 in range(0, n, corpus_chunk_size):
            scores = score_function(qchunk, corpus[c0 : c0 + corpus_chunk_size])
            vals, idx = torch.topk(scores, min(k, scores.shape[1]), dim=1, largest=True, sorted=False)
            idx = idx + c0
            if best_vals is None or best_idx is None:
                best_vals, best_idx = vals, idx
            else:
                # Merge with the running best so the answer never depends on the chunk size.
                vals = torch.cat([best_vals, vals], dim=1)
                idx = torch.cat([best_idx, idx], dim=1)
                best_vals, pos = torch.topk(vals, min(k, vals.shape[1]), dim=1, largest=True, sorted=False)
                best_idx = torch.gather(idx, 1, pos)
        if best_vals is None or best_idx is None:
            results.extend([] for _ in range(len(qchunk)))
            continue
        order = torch.argsort(best_vals, dim=1, descending=True, stable=True)
        best_vals = torch.gather(best_vals, 1, order).cpu()
        best_idx = torch.gather(best_idx, 1, order).cpu()
        for vals_row, idx_row in zip(best_vals.tolist(), best_idx.tolist()):
            results.append([{"corpus_id": int(i), "score": float(s)} for s, i in zip(vals_row, idx_row)])
    return results


def paraphrase_mining(
    model: SentenceTransformer,
    sentences: list[str],
    show_progress_bar: bool = False,
    batch_size: int = 32,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: ScoreFn = cos_sim,
    truncate_dim: int | None = None,
    prompt_name: str | None = None,
    prompt: str | None = None,
) -> list[list[Any]]:
    """Encode ``sentences`` and return their most similar pairs as ``[score, i, j]`` (``i < j``).

    See :func:`paraphrase_mining_embeddings` for the mining itself.
    """
    embeddings = model.encode(
        sentences,
        show_progress_bar=show_progress_bar,
        batch_size=batch_size,
        convert_to_tensor=True,
        truncate_dim=truncate_dim,
        prompt_name=prompt_name,
        prompt=prompt,
    )
    return paraphrase_mining_embeddings(
        embeddings,
        query_chunk_size=query_chunk_size,
        corpus_chunk_size=corpus_chunk_size,
        max_pairs=max_pairs,
        top_k=top_k,
        score_function=score_function,
    )


def paraphrase_mining_embeddings(
    embeddings: ArrayLike,
    query_chunk_size: int = 5000,
    corpus_chunk_size: int = 100000,
    max_pairs: int = 500000,
    top_k: int = 100,
    score_function: ScoreFn = cos_sim,
) -> list[list[Any]]:
    """Most similar pairs among ``embeddings``.

    Each row keeps its ``top_k`` nearest other rows; the union of those pairs, each unordered pair
    once, is cut to the ``max_pairs`` best. ``score_function`` is assumed symmetric.

    Returns:
        ``[score, i, j]`` triples with ``i < j``, sorted by score descending.
    """
    emb = _to_float_tensor(embeddings)
    n = len(emb)
    if n < 2:
        return []
    kk = min(top_k + 1, n)
    best: dict[tuple[int, int], float] = {}
    for q0 in range(0, n, query_chunk_size):
        qchunk = emb[q0 : q0 + query_chunk_size]
        top_vals: Tensor | None = None
        top_idx: Tensor | None = None
        for c0 in range(0, n, corpus_chunk_size):
            scores = score_function(qchunk, emb[c0 : c0 + corpus_chunk_size]).detach()
            vals, idx = torch.topk(scores, min(kk, scores.shape[1]), dim=1, largest=True)
            idx = idx + c0
            if top_vals is None or top_idx is None:
                top_vals, top_idx = vals, idx
            else:
                vals = torch.cat([top_vals, vals], dim=1)
                idx = torch.cat([top_idx, idx], dim=1)
                top_vals, pos = torch.topk(vals, min(kk, vals.shape[1]), dim=1, largest=True)
                top_idx = torch.gather(idx, 1, pos)
        assert top_vals is not None and top_idx is not None  # n >= 2 guarantees one chunk
        for row, (vals_row, idx_row) in enumerate(zip(top_vals.cpu().tolist(), top_idx.cpu().tolist())):
            i = q0 + row
            kept = [(j, s) for j, s in zip(idx_row, vals_row) if j != i][:top_k]
            for j, s in kept:
                pair = (i, j) if i < j else (j, i)
                if pair not in best:
                    best[pair] = s
    top = heapq.nlargest(max_pairs, best.items(), key=lambda item: item[1])
    return [[s, i, j] for (i, j), s in top]


def community_detection(
    embeddings: ArrayLike,
    threshold: float = 0.75,
    min_community_size: int = 10,
    batch_size: int = 1024,
    show_progress_bar: bool = False,
) -> list[list[int]]:
    """Fast community detection by cosine similarity to a central point.

    Every row with at least ``min_community_size`` rows (itself included) at cosine ≥ ``threshold``
    is a candidate centre whose community is all those rows. Candidates are taken largest first;
    a community keeps only rows not already claimed by a larger one and is dropped if that leaves
    fewer than ``min_community_size``.

    Returns:
        Communities, largest first; each lists its centre first, then members by descending similarity.
    """
    emb = _to_float_tensor(embeddings)
    if len(emb) == 0:
        return []
    if emb.dim() == 1:
        emb = emb.unsqueeze(0)
    n = len(emb)
    if n < min_community_size:
        return []
    if min_community_size < 1:
        raise InvalidInputError(f"min_community_size must be at least 1, got {min_community_size}")
    emb = torch.nn.functional.normalize(emb.float(), p=2, dim=-1)
    thr = torch.tensor(threshold, device=emb.device)
    candidates: list[tuple[int, np.ndarray]] = []
    for start in tqdm(range(0, n, batch_size), desc="Finding clusters", disable=not show_progress_bar):
        scores = emb[start : start + batch_size] @ emb.T
        kth = scores.topk(k=min_community_size, largest=True).values[:, -1]
        for row in torch.nonzero(kth >= thr).flatten().tolist():
            members = torch.nonzero(scores[row] >= thr).flatten()
            vals = scores[row][members]
            order = torch.argsort(vals, descending=True, stable=True)
            candidates.append((start + row, members[order].cpu().numpy().astype(np.int64)))
    return claim_communities(candidates, min_community_size)
