"""LanceDB side of benchmarks/store.py, run in an interpreter where lancedb is installed.

python _lance_peer.py DATA_DIR WORK_DIR IVF_PQ|IVF_HNSW_SQ  -> prints one JSON line of measurements
python _lance_peer.py --reopen LANCE_DIR QUERIES.npy KIND   -> prints the seconds of reopen + first query

Index parameters are LanceDB's defaults for the kind (partitions ~ sqrt(n), 16 dimensions per PQ
sub-vector; HNSW m / ef_construction as LanceDB sets them); queries probe 20 partitions, and IVF_PQ
results are refined with the full vectors (``refine_factor=10``), as LanceDB recommends for recall.
Ingest is timed to the same end state as ours: every row added *and* in the ANN index.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import peak_rss_mb  # numpy and the standard library only: any peer interpreter has them

_NPROBES = 20
_REFINE = 10


def _search(tbl: Any, q: np.ndarray, kind: str, where: str | None = None) -> Any:
    s = tbl.search(q).metric("cosine").nprobes(_NPROBES).limit(10).select(["id", "doc", "bucket"])
    if kind == "IVF_PQ":
        s = s.refine_factor(_REFINE)
    if where is not None:
        s = s.where(where, prefilter=True)
    return s.to_list()


def main() -> None:
    import lancedb
    import pyarrow as pa

    data, work, kind = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    vecs = np.load(data / "vectors.npy")
    queries = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")
    docs = json.loads((data / "documents.json").read_text())
    buckets = np.load(data / "buckets.npy")
    db = lancedb.connect(str(work / "lance"))
    dim = vecs.shape[1]

    def batch(s: int, e: int) -> pa.Table:
        return pa.table(
            {
                "id": pa.array(np.arange(s, e, dtype=np.int64)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs[s:e].reshape(-1)), dim),
                "doc": pa.array(docs[s:e]),
                "bucket": pa.array(buckets[s:e].astype(np.int64)),
            }
        )

    t = time.perf_counter()
    step = 5000
    tbl = db.create_table("bench", data=batch(0, min(step, len(vecs))))
    for s in range(step, len(vecs), step):
        tbl.add(batch(s, min(s + step, len(vecs))))
    ack = time.perf_counter() - t
    tbl.create_index(metric="cosine", vector_column_name="vector", index_type=kind)
    indexed = time.perf_counter() - t
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        rows = _search(tbl, q, kind)
        lat.append((time.perf_counter() - t) * 1000)
        found.append([int(r["id"]) for r in rows])
    recall = float(np.mean([len(set(f) & set(tr.tolist())) / 10 for f, tr in zip(found, truth)]))
    flat = []
    for q in queries[:200]:
        t = time.perf_counter()
        _search(tbl, q, kind, where="bucket = 7")
        flat.append((time.perf_counter() - t) * 1000)
    size = sum(p.stat().st_size for p in (work / "lance").rglob("*") if p.is_file()) / 2**20
    lat.sort()
    print(
        json.dumps(
            {
                "ingest_vps": len(vecs) / ack,
                "indexed_vps": len(vecs) / indexed,
                "p50_ms": statistics.median(lat),
                "p99_ms": lat[int(0.99 * (len(lat) - 1))],
                "recall": recall,
                "filtered_p50_ms": statistics.median(flat),
                "disk_mb": size,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def reopen(path: str, query: np.ndarray, kind: str) -> float:
    """Reopen in this fresh interpreter, after importing lancedb and querying a scratch table."""
    import lancedb

    with tempfile.TemporaryDirectory() as scratch:
        warm = lancedb.connect(scratch).create_table(
            "warm", data=[{"id": 0, "vector": query.tolist(), "doc": "", "bucket": 0}]
        )
        warm.search(query).metric("cosine").limit(1).to_list()
        t = time.perf_counter()
        tbl = lancedb.connect(path).open_table("bench")
        _search(tbl, query, kind)
        return time.perf_counter() - t


if __name__ == "__main__":
    if sys.argv[1] == "--reopen":
        print(reopen(sys.argv[2], np.load(sys.argv[3])[0], sys.argv[4]))
    else:
        main()
