"""An in-memory BM25 index over int64 keys: exact scores, incremental adds and deletes.

Scoring is Lucene's BM25 (as Lucene 8+, Elasticsearch and ``bm25s``' ``method="lucene"``)::

    score(q, d) = sum over distinct terms t of q in d of
                  idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

with ``N``, ``df`` and ``avgdl`` over the live documents, so deletes and updates keep every score exact.

Layout: each document has a slot; postings are a CSR matrix (term -> slots, term frequencies) built in
bulk, plus a small append buffer for documents added since, merged in when it grows. A deleted
document's slot is marked dead and skipped; dead slots are dropped when the postings are rebuilt.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

__all__ = ["BM25Index"]


class BM25Index:
    """BM25 over documents given as term lists.

    Args:
        k1: term-frequency saturation.
        b: document-length normalisation.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = float(k1)
        self.b = float(b)
        self._lock = threading.RLock()
        self._vocab: dict[str, int] = {}
        self._slot_of: dict[int, int] = {}
        self._keys = np.empty(0, np.int64)  # slot -> key
        self._length = np.empty(0, np.float64)  # slot -> document length in terms
        self._alive = np.empty(0, bool)
        self._n_slots = 0
        self._total_length = 0.0
        self._n_alive = 0
        # CSR postings: rows are term ids
        self._indptr = np.zeros(1, np.int64)
        self._slots = np.empty(0, np.int32)
        self._tf = np.empty(0, np.float32)
        self._buffer: dict[int, list[tuple[int, int]]] = {}  # term id -> [(slot, tf)] since the build
        self._buffered = 0

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        return self._n_alive

    def __contains__(self, key: object) -> bool:
        return isinstance(key, (int, np.integer)) and int(key) in self._slot_of

    @property
    def avg_length(self) -> float:
        """Mean length (in terms) of the live documents."""
        return self._total_length / self._n_alive if self._n_alive else 0.0

    # ------------------------------------------------------------------ writes
    def add(self, keys: Sequence[int] | np.ndarray, terms: Sequence[Sequence[str]]) -> None:
        """Index documents (a key already present is replaced)."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        if len(keys) != len(terms):
            raise ValueError(f"{len(keys)} keys for {len(terms)} term lists")
        with self._lock:
            self.remove(keys)
            start = self._n_slots
            n = len(keys)
            self._grow(start + n)
            lengths = np.fromiter(map(len, terms), dtype=np.int64, count=n)
            vocab = self._vocab
            tids = np.fromiter(
                (vocab.setdefault(t, len(vocab)) for doc in terms for t in doc),
                dtype=np.int64,
                count=int(lengths.sum()),
            )
            slots = np.repeat(np.arange(start, start + n, dtype=np.int64), lengths)
            # (term, slot) pairs with their counts: the term frequencies
            width = start + n
            pairs, tf = np.unique(tids * width + slots, return_counts=True)
            rows, cols = pairs // width, pairs % width
            self._slot_of.update(zip(keys.tolist(), range(start, start + n)))
            self._keys[start : start + n] = keys
            self._length[start : start + n] = lengths
            self._alive[start : start + n] = True
            self._total_length += float(lengths.sum())
            self._n_slots = start + n
            self._n_alive += n
            if start == 0 and not self._buffer and len(self._slots) == 0:
                self._build(rows, cols.astype(np.int32), tf.astype(np.float32))
                return
            for tid, slot, count in zip(rows.tolist(), cols.tolist(), tf.tolist()):
                self._buffer.setdefault(tid, []).append((slot, count))
            self._buffered += len(rows)
            if self._buffered > max(50_000, len(self._slots) // 4):
                self._merge()

    def remove(self, keys: Sequence[int] | np.ndarray) -> int:
        """Drop documents by key (absent keys are ignored); returns how many were dropped."""
        with self._lock:
            n = 0
            for key in np.asarray(keys, dtype=np.int64).reshape(-1).tolist():
                slot = self._slot_of.pop(key, None)
                if slot is None:
                    continue
                self._alive[slot] = False
                self._total_length -= self._length[slot]
                self._n_alive -= 1
                n += 1
            dead = self._n_slots - self._n_alive
            if n and dead > max(10_000, self._n_alive):
                self._merge()
            return n

    def _grow(self, n: int) -> None:
        if n <= len(self._keys):
            return
        size = max(n, 2 * len(self._keys), 1024)
        for name, fill in (("_keys", -1), ("_length", 0.0), ("_alive", False)):
            old = getattr(self, name)
            new = np.full(size, fill, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _build(self, rows: np.ndarray, cols: np.ndarray, tfs: np.ndarray) -> None:
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=len(self._vocab))
        self._indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._slots = cols[order].astype(np.int32)
        self._tf = tfs[order].astype(np.float32)
        self._buffer = {}
        self._buffered = 0

    def _merge(self) -> None:
        """Rebuild the CSR postings from the live documents: buffer merged, dead slots dropped."""
        counts = np.diff(self._indptr)
        rows = [np.repeat(np.arange(len(counts), dtype=np.int64), counts)]
        cols = [self._slots.astype(np.int64)]
        tfs = [self._tf]
        if self._buffer:
            b_rows = np.fromiter(
                (t for t, items in self._buffer.items() for _ in items), dtype=np.int64, count=self._buffered
            )
            flat = np.array([p for items in self._buffer.values() for p in items], dtype=np.int64)
            rows.append(b_rows)
            cols.append(flat[:, 0])
            tfs.append(flat[:, 1].astype(np.float32))
        r, c, f = np.concatenate(rows), np.concatenate(cols), np.concatenate(tfs)
        live = self._alive[c]
        r, c, f = r[live], c[live], f[live]
        # renumber live slots densely, in slot order
        old_live = np.flatnonzero(self._alive[: self._n_slots])
        new_of_old = np.full(self._n_slots, -1, dtype=np.int64)
        new_of_old[old_live] = np.arange(len(old_live))
        self._keys = self._keys[old_live].copy()
        self._length = self._length[old_live].copy()
        self._alive = np.ones(len(old_live), dtype=bool)
        self._n_slots = len(old_live)
        self._slot_of = {int(k): i for i, k in enumerate(self._keys.tolist())}
        self._build(r, new_of_old[c], f)

    # ------------------------------------------------------------------ reads
    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        lo = hi = 0
        if tid + 1 < len(self._indptr):
            lo, hi = int(self._indptr[tid]), int(self._indptr[tid + 1])
        slots, tf = self._slots[lo:hi], self._tf[lo:hi]
        extra = self._buffer.get(tid)
        if extra:
            more = np.array(extra, dtype=np.int64)
            slots = np.concatenate([slots, more[:, 0].astype(np.int32)])
            tf = np.concatenate([tf, more[:, 1].astype(np.float32)])
        live = self._alive[slots]
        return slots[live], tf[live]

    def scores(self, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(slots, scores) of every live document matching at least one of ``terms`` (repeats ignored)."""
        with self._lock:
            n = self._n_alive
            if n == 0:
                return np.empty(0, np.int64), np.empty(0, np.float64)
            avgdl = self._total_length / n
            parts_s: list[np.ndarray] = []
            parts_w: list[np.ndarray] = []
            for term in dict.fromkeys(terms):
                tid = self._vocab.get(term)
                if tid is None:
                    continue
                slots, tf = self._postings(tid)
                if not len(slots):
                    continue
                df = len(slots)
                idf = np.log1p((n - df + 0.5) / (df + 0.5))
                norm = self.k1 * (1.0 - self.b + self.b * self._length[slots] / avgdl)
                parts_s.append(slots)
                parts_w.append(idf * tf / (tf + norm))
            if not parts_s:
                return np.empty(0, np.int64), np.empty(0, np.float64)
            if len(parts_s) == 1:
                return parts_s[0].astype(np.int64), parts_w[0]
            all_s = np.concatenate(parts_s)
            summed = np.bincount(all_s, weights=np.concatenate(parts_w), minlength=self._n_slots)
            hit = np.flatnonzero(np.bincount(all_s, minlength=self._n_slots))
            return hit, summed[hit]

    def search(
        self, terms: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` (keys, scores), best first, ties to the smaller key; only ``allowed`` keys
        when given. Fewer than ``k`` when fewer documents match."""
        keys, scores, _ = self.search_scoring(terms, k, allowed, np.empty(0, np.int64))
        return keys, scores

    def search_scoring(
        self, terms: Sequence[str], k: int, allowed: np.ndarray | None, also: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`search`, plus the scores of the keys ``also`` from the same pass (NaN where a key's
        document matches no term): what a hybrid query needs for the vector leg's hits."""
        with self._lock:
            slots, scores = self.scores(terms)
            keys = self._keys[slots]
        also = np.asarray(also, dtype=np.int64)
        extra = np.full(len(also), np.nan)
        if len(also) and len(keys):
            order = np.argsort(keys)
            sorted_keys = keys[order]
            pos = np.minimum(np.searchsorted(sorted_keys, also), len(keys) - 1)
            found = sorted_keys[pos] == also
            extra[found] = scores[order][pos[found]]
        if allowed is not None and len(keys):
            keep = np.isin(keys, allowed)
            keys, scores = keys[keep], scores[keep]
        if len(keys) > k:
            part = np.argpartition(-scores, k - 1)[:k]
            # ties at the cut: take every key scoring the k-th score, so the smaller keys win
            cut = scores[part].min()
            part = np.flatnonzero(scores >= cut)
            keys, scores = keys[part], scores[part]
        order = np.lexsort((keys, -scores))[:k]
        return keys[order], scores[order], extra
