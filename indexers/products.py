"""Matrix products of a few query rows against many vectors, computed on the calling thread.

NumPy's ``q @ x.T`` hands even one 384-d query against 2,000 rows to OpenBLAS's thread pool, whose
workers then spin for a while waiting for the next call. Where the cores are busy (a background
indexer, a writer in this or another process, the user's own threads), each such call waits for a
descheduled worker and the spinning worker takes a core from everyone else: beside a writer process,
a query path that did this measured p99 917 ms, against 86 ms with the thread pool set to one
thread (``OPENBLAS_NUM_THREADS=1``; ``benchmarks/latency.py --phases process``, c355120). A handful of query rows gains nothing from more
threads, so up to :data:`SMALL_BATCH` rows are computed one at a time with FAISS's SIMD kernels,
which run on the calling thread; larger batches (throughput work) keep BLAS.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SMALL_BATCH", "inner_products", "squared_distances"]

# Up to this many query rows are computed row by row on the calling thread.
SMALL_BATCH = 8


def _rows(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a[None, :] if a.ndim == 1 else a


def inner_products(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``float32[q, n]``: ``queries[q, d] @ vectors[n, d].T``."""
    q, x = _rows(queries), _rows(vectors)
    if q.shape[0] > SMALL_BATCH:
        return q @ x.T
    return _row_by_row("fvec_inner_products_ny", q, x)


def squared_distances(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray | None:
    """``float32[q, n]`` squared euclidean distances summed from the differences (no cancellation),
    or ``None`` for a batch larger than :data:`SMALL_BATCH` (the caller's BLAS path)."""
    q, x = _rows(queries), _rows(vectors)
    if q.shape[0] > SMALL_BATCH:
        return None
    return _row_by_row("fvec_L2sqr_ny", q, x)


def _row_by_row(kernel: str, q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``out[i, j] = kernel(q[i], x[j])`` with FAISS's ``kernel(out, x, y, d, ny)``, one query row per
    call, on this thread (empty shapes: zeros, which is what both kernels give for ``d == 0``)."""
    out = np.zeros((q.shape[0], x.shape[0]), dtype=np.float32)
    if out.size == 0 or q.shape[1] == 0:
        return out
    import faiss

    fn = getattr(faiss, kernel)
    for i in range(q.shape[0]):
        fn(faiss.swig_ptr(out[i]), faiss.swig_ptr(q[i]), faiss.swig_ptr(x), q.shape[1], x.shape[0])
    return out
