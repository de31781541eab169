"""Chroma side of benchmarks/store.py, run in an interpreter where chromadb is installed.

python _chroma_peer.py DATA_DIR WORK_DIR [defaults|ours]  -> prints one JSON line of measurements
    (``ours``: M=32 / efConstruction=200 / efSearch=64, the second parameters store.py runs vectorstore at)
python _chroma_peer.py --reopen CHROMA_DIR QUERIES.npy  -> prints the seconds of reopen + first query
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mb  # numpy and the standard library only: any peer interpreter has them


def main() -> None:
    import chromadb

    data, work = Path(sys.argv[1]), Path(sys.argv[2])
    vecs = np.load(data / "vectors.npy")
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")
    docs = json.loads((data / "documents.json").read_text())
    buckets = np.load(data / "buckets.npy")
    ids = [str(i) for i in range(len(vecs))]
    client = chromadb.PersistentClient(path=str(work / "chroma"))
    metadata: dict[str, object] = {"hnsw:space": "cosine"}
    if len(sys.argv) > 3 and sys.argv[3] == "ours":
        metadata.update({"hnsw:M": 32, "hnsw:construction_ef": 200, "hnsw:search_ef": 64})
    col = client.create_collection("bench", metadata=metadata)
    t = time.perf_counter()
    step = 5000
    for s in range(0, len(vecs), step):
        col.add(
            ids=ids[s : s + step],
            embeddings=vecs[s : s + step],
            documents=docs[s : s + step],
            metadatas=[{"bucket": int(b)} for b in buckets[s : s + step]],
        )
    ingest = len(vecs) / (time.perf_counter() - t)
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        r = col.query(query_embeddings=[q], n_results=10, include=["documents", "metadatas", "distances"])
        lat.append((time.perf_counter() - t) * 1000)
        found.append([int(x) for x in r["ids"][0]])
    recall = float(np.mean([len(set(f) & set(tr.tolist())) / 10 for f, tr in zip(found, truth)]))
    flat = []
    for q in queries[:200]:
        t = time.perf_counter()
        col.query(
            query_embeddings=[q],
            n_results=10,
            where={"bucket": 7},
            include=["documents", "metadatas", "distances"],
        )
        flat.append((time.perf_counter() - t) * 1000)
    size = sum(p.stat().st_size for p in (work / "chroma").rglob("*") if p.is_file()) / 2**20
    lat.sort()
    print(
        json.dumps(
            {
                "ingest_vps": ingest,
                "p50_ms": statistics.median(lat),
                "p99_ms": lat[int(0.99 * (len(lat) - 1))],
                "recall": recall,
                "filtered_p50_ms": statistics.median(flat),
                "disk_mb": size,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def reopen(path: str, query: np.ndarray) -> float:
    """Reopen in this fresh interpreter, after importing chromadb and opening a scratch client."""
    import chromadb
    from chromadb.api.client import SharedSystemClient

    with tempfile.TemporaryDirectory() as scratch:
        warm = chromadb.PersistentClient(path=scratch).create_collection(
            "warm", metadata={"hnsw:space": "cosine"}
        )
        warm.add(ids=["a", "b"], embeddings=[query.tolist(), (-query).tolist()])
        warm.query(query_embeddings=[query], n_results=1)
        del warm
        SharedSystemClient.clear_system_cache()  # so that the scratch reopen runs the loading code paths
        chromadb.PersistentClient(path=scratch).get_collection("warm").query(
            query_embeddings=[query], n_results=1
        )
        t = time.perf_counter()
        client = chromadb.PersistentClient(path=path)
        client.get_collection("bench").query(
            query_embeddings=[query], n_results=10, include=["documents", "metadatas", "distances"]
        )
        return time.perf_counter() - t


if __name__ == "__main__":
    if sys.argv[1] == "--reopen":
        print(reopen(sys.argv[2], np.load(sys.argv[3])[0]))
    else:
        main()
