"""Duplicate detection over a collection: the self-join behind ``find_duplicates`` /
``duplicate_clusters``, and the check ``add(on_duplicate=...)`` runs before writing.

The join algorithms themselves (batched k-NN self-join, first occurrences, community claiming) are
in :mod:`vectorstore.duplicates`; this module feeds them a collection's index state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

import indexers
from vectorstore import pipeline
from vectorstore.duplicates import claim_communities, first_occurrences, self_join
from vectorstore.results import DuplicatePair, SkippedDocument
from vectorstore.validation import check_count, check_threshold

if TYPE_CHECKING:
    from vectorstore.index_state import IndexState
    from vectorstore.pipeline import MatchingFn

__all__ = ["Batches", "duplicate_groups", "duplicate_pairs", "ingest_duplicates", "join"]

Batches = Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (a, b, exact scores) per batch

_BATCH_EXACT_MAX = 20_000  # a batch checked for duplicates within itself exactly up to this size


def ingest_duplicates(
    state: IndexState, metric: str, dim: int, id_list: list[str], vectors: np.ndarray, threshold: float
) -> dict[int, SkippedDocument]:
    """Positions of ``vectors`` that duplicate a stored record or an earlier kept position."""
    found: dict[int, SkippedDocument] = {}
    state.catch_up()
    with state.lock.read():
        if len(state):
            cand = state.search(vectors, 8, None)
            keys, scores = pipeline.rescore(metric, state, vectors, cand, 1)
            hit = np.nonzero((keys[:, 0] >= 0) & (scores[:, 0] >= threshold))[0]
            if len(hit):
                records = state.hydrate(np.unique(keys[hit, 0]).tolist())
                for i in hit.tolist():
                    rec = records.get(int(keys[i, 0]))
                    if rec is not None:
                        found[i] = SkippedDocument(id_list[i], rec.id, float(scores[i, 0]), False)
    rest = np.array([i for i in range(len(id_list)) if i not in found], dtype=np.int64)
    if len(rest) < 2:
        return found
    kind = "exact" if len(rest) <= _BATCH_EXACT_MAX else "faiss-hnsw"
    batch_index = indexers.make_index(kind, dim, metric)
    batch_vectors = vectors[rest]
    positions = np.arange(len(rest), dtype=np.int64)
    batch_index.add(positions, batch_vectors)
    parts = list(
        self_join(
            positions,
            lambda k: batch_vectors[k],
            lambda q, m: batch_index.search(q, m)[0],
            metric,
            threshold,
            desc="Checking the batch for duplicates",
        )
    )
    if parts:
        a, b, s = (np.concatenate(x) for x in zip(*parts))
        for pos, (j, score) in first_occurrences(a, b, s).items():
            i = int(rest[pos])
            found[i] = SkippedDocument(id_list[i], id_list[int(rest[j])], score, True)
    return found


def join(
    state: IndexState,
    metric: str,
    matching: MatchingFn,
    threshold: float,
    *,
    k: int,
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
    batch_size: int,
    show_progress_bar: bool | None,
    name: str,
) -> tuple[np.ndarray, Batches]:
    """The keys taking part in a self-join (all, or those matching the filters) and its batches."""
    threshold = check_threshold(threshold, metric)
    k = int(check_count("k", k) or 1)
    batch_size = int(check_count("batch_size", batch_size) or 1)
    state.catch_up()
    # Index what the background indexer has not reached yet: searching it exactly from every
    # record of the join would make the join quadratic in the pending count.
    state.drain()
    allowed: np.ndarray | None = None
    with state.lock.read():
        if where or where_document:
            keys = matching(where, where_document)
            keys = allowed = np.sort(keys[state.contains(keys)])
        else:
            keys = state.all_keys()
    dim = state.spec.dim

    def vectors_for(ks: np.ndarray) -> np.ndarray:
        with state.lock.read():
            present = state.contains(ks)
            if present.all():
                return state.get_vectors(ks)
            # deleted since the join started: NaN scores never pass a threshold
            out = np.full((len(ks), dim), np.nan, dtype=np.float32)
            out[present] = state.get_vectors(ks[present])
            return out

    def search(queries: np.ndarray, n: int) -> np.ndarray:
        with state.lock.read():
            return state.search(np.nan_to_num(queries), n, allowed)

    batches = self_join(
        keys,
        vectors_for,
        search,
        metric,
        float(threshold),
        k=k,
        batch_size=batch_size,
        total=len(keys),
        show_progress_bar=show_progress_bar,
        desc=f"Finding duplicates in {name}",
    )
    return keys, batches


def _ids_of(state: IndexState, keys: np.ndarray) -> dict[int, str]:
    with state.lock.read():
        records = state.hydrate(np.unique(keys).tolist())
    return {key: rec.id for key, rec in records.items()}


def duplicate_pairs(state: IndexState, batches: Batches) -> Iterator[DuplicatePair]:
    """The join's pairs with ids, batch by batch (records deleted meanwhile are left out)."""
    for a, b, s in batches:
        ids = _ids_of(state, np.concatenate([a, b]))
        for x, y, score in zip(a.tolist(), b.tolist(), s.tolist()):
            if x in ids and y in ids:
                yield DuplicatePair(ids[x], ids[y], float(score))


def duplicate_groups(state: IndexState, keys: np.ndarray, batches: Batches, min_size: int) -> list[list[str]]:
    """``util.community_detection``'s groups over the join's pairs, as ids, largest first."""
    neighbours: dict[int, list[tuple[float, int]]] = {}
    for a, b, s in batches:
        for x, y, score in zip(a.tolist(), b.tolist(), s.tolist()):
            neighbours.setdefault(x, []).append((-score, y))
            neighbours.setdefault(y, []).append((-score, x))
    candidates = [
        (key, np.array([key] + [m for _, m in sorted(nbrs)], dtype=np.int64))
        for key, nbrs in sorted(neighbours.items())
        if len(nbrs) + 1 >= min_size
    ]
    if min_size == 1:  # every record is its own candidate group
        candidates += [(int(key), np.array([key])) for key in keys.tolist() if key not in neighbours]
        candidates.sort(key=lambda c: c[0])
    groups = claim_communities(candidates, min_size)
    ids = _ids_of(state, np.array([m for g in groups for m in g], dtype=np.int64))
    return [[ids[m] for m in g if m in ids] for g in groups]
