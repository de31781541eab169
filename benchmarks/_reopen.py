"""Reopen + first query in a fresh interpreter, for benchmarks/store.py (Chroma's side is in _chroma_peer.py).

python _reopen.py ours STORE_DIR QUERIES.npy    -> prints the seconds
python _reopen.py faiss INDEX_FILE QUERIES.npy  -> prints the seconds

The library is imported and a scratch database opened before the clock starts, so the figure is
the cost of reopening this data, not of importing the library.
"""

from __future__ import annotations

import sys
import tempfile
import time

import _common  # noqa: F401  - puts the repository root on the import path
import numpy as np


def ours(path: str, query: np.ndarray) -> float:
    import vectorstore as vs

    with tempfile.TemporaryDirectory() as scratch:
        with vs.Store(scratch) as store:
            col = store.create_collection("warm", model=None, embedding_dim=len(query))
            col.add(ids=["a", "b"], embeddings=np.stack([query, -query]))
            col.query(query_embeddings=query, k=1)
        with vs.Store(scratch) as store:  # and its reopening code paths
            store.get_collection("warm").query(query_embeddings=query, k=1)
    t = time.perf_counter()
    store = vs.Store(path)
    store.get_collection("bench").query(query_embeddings=query, k=10)
    seconds = time.perf_counter() - t
    store.close()
    return seconds


def raw_faiss(path: str, query: np.ndarray) -> float:
    import faiss

    warm = faiss.IndexHNSWFlat(len(query), 32, faiss.METRIC_INNER_PRODUCT)
    warm.add(np.stack([query, -query]))
    warm.search(query[None, :], 1)
    t = time.perf_counter()
    index = faiss.read_index(path)
    index.search(query[None, :], 10)
    return time.perf_counter() - t


if __name__ == "__main__":
    mode, target, queries = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
    print((ours if mode == "ours" else raw_faiss)(target, queries[0]))
