"""Duplicate detection: a k-NN self-join through an index, rescored exactly, in batches.

The collection's ANN index proposes each record's nearest neighbours; every proposed pair is scored
from the full-precision vectors, and a row whose neighbours are all above the threshold is searched
again with a wider ``k`` until one falls below it, so dense groups of duplicates are not cut off at
``k``. Memory stays at ``batch_size x k`` candidates instead of an all-pairs similarity matrix.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from indexers.scoring import candidate_scores

__all__ = [
    "claim_communities",
    "first_occurrences",
    "self_join",
]

SearchFn = Callable[[np.ndarray, int], np.ndarray]
VectorsFn = Callable[[np.ndarray], np.ndarray]

_PROGRESS_MIN_ROWS = 10_000


def self_join(
    keys: np.ndarray,
    vectors_for: VectorsFn,
    search: SearchFn,
    metric: str,
    threshold: float,
    *,
    k: int = 10,
    batch_size: int = 1024,
    total: int | None = None,
    show_progress_bar: bool | None = None,
    desc: str = "Finding duplicates",
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every pair of ``keys`` at exact similarity ``>= threshold``, batch by batch.

    Args:
        keys: the records to join (each is a query, and the index is the other side).
        vectors_for: keys -> their full-precision vectors.
        search: (queries, n) -> candidate keys ``[q, >=n]`` (``-1`` for none) from an index.
        metric: how to score (``cosine``, ``dot``, ``euclidean``, ``manhattan``; higher is more similar).
        threshold: the minimum exact score of a reported pair.
        k: neighbours asked for per record at first; widened where all of them pass the threshold.
        batch_size: records per search call.
        total: how many records the index holds (caps the widening); defaults to ``len(keys)``.
        show_progress_bar: ``None`` shows one for large joins when stderr is a terminal.

    Yields:
        ``(a, b, scores)`` arrays per batch: query keys, neighbour keys, exact scores. Each pair is
        yielded once in total, as ``a < b``, whichever side found it.
    """
    limit = max(int(total if total is not None else len(keys)), 1)
    if show_progress_bar is None:
        show_progress_bar = len(keys) >= _PROGRESS_MIN_ROWS and sys.stderr.isatty()
    seen: set[tuple[int, int]] = set()
    with tqdm(total=len(keys), desc=desc, unit="rec", disable=not show_progress_bar) as bar:
        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            a_parts: list[np.ndarray] = []
            b_parts: list[np.ndarray] = []
            rows = np.arange(len(batch))
            want = min(k + 1, limit)  # +1: a record usually finds itself first
            queries = vectors_for(batch)
            while len(rows):
                cand = search(queries[rows], want)
                valid = (cand >= 0) & (cand != batch[rows][:, None])
                vecs = vectors_for(np.where(cand >= 0, cand, batch[rows][:, None]).ravel())
                scores = candidate_scores(metric, queries[rows], vecs.reshape(*cand.shape, -1))
                hit = valid & (scores >= threshold)
                # A row whose every returned neighbour passes may have more beyond what was asked.
                full = (cand >= 0).sum(axis=1) >= want
                saturated = full & (hit.sum(axis=1) >= want - 1) & (want < limit)
                done = ~saturated
                r, c = np.nonzero(hit & done[:, None])
                a_parts.append(batch[rows][r])
                b_parts.append(cand[r, c])
                rows = rows[saturated]
                want = min(want * 4, limit)
            a = np.concatenate(a_parts) if a_parts else np.empty(0, np.int64)
            b = np.concatenate(b_parts) if b_parts else np.empty(0, np.int64)
            lo, hi = np.minimum(a, b), np.maximum(a, b)
            keep = np.zeros(len(lo), dtype=bool)
            for i, pair in enumerate(zip(lo.tolist(), hi.tolist())):
                if pair not in seen:
                    seen.add(pair)
                    keep[i] = True
            bar.update(len(batch))
            if keep.any():
                lo, hi = lo[keep], hi[keep]
                # Score every pair from the same side, so a pair's score does not depend on which
                # record's search found it (the two directions can differ in the last bit).
                s = candidate_scores(metric, vectors_for(lo), vectors_for(hi)[:, None, :])[:, 0]
                ok = s >= threshold
                if ok.any():
                    yield lo[ok], hi[ok], s[ok].astype(np.float32, copy=False)


def first_occurrences(a: np.ndarray, b: np.ndarray, scores: np.ndarray) -> dict[int, tuple[int, float]]:
    """Greedy in position order: item ``i`` is a duplicate when an earlier *kept* item matches it.

    ``a < b`` are positions of matching pairs. Returns ``{duplicate: (kept item, score)}``, naming
    the kept item with the highest score.
    """
    earlier: dict[int, list[tuple[int, float]]] = {}
    for x, y, s in zip(a.tolist(), b.tolist(), scores.tolist()):
        earlier.setdefault(y, []).append((x, s))
    dropped: dict[int, tuple[int, float]] = {}
    for i in sorted(earlier):
        kept = [(j, s) for j, s in earlier[i] if j not in dropped]
        if kept:
            dropped[i] = max(kept, key=lambda js: (js[1], -js[0]))
    return dropped


def claim_communities(candidates: list[tuple[int, np.ndarray]], min_size: int) -> list[list[int]]:
    """Communities from candidate centres, as ``util.community_detection`` forms them.

    ``candidates`` are ``(centre, members)`` with members ordered by descending similarity to the
    centre (the centre among them). Largest first; a community keeps only members not claimed by a
    larger one and is dropped when that leaves fewer than ``min_size``.
    """
    ordered = sorted(candidates, key=lambda c: len(c[1]), reverse=True)
    used: set[int] = set()
    communities: list[list[int]] = []
    for centre, claimed in ordered:
        if centre in used:
            continue
        free = [int(m) for m in claimed.tolist() if m not in used]
        if len(free) >= min_size:
            community = [centre] + [m for m in free if m != centre]
            communities.append(community)
            used.update(community)
    communities.sort(key=len, reverse=True)
    return communities
