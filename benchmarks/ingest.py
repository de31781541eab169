"""Ingest throughput: ``Collection.add(documents=...)`` vs encoding alone, same sentences, same process.

Goal: ingest >= 0.9 x encode-only throughput (encoding overlaps with writing to SQLite and the index).

    python benchmarks/ingest.py [--limit N] [--index faiss-hnsw] [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository root first on the import path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--index", default="faiss-hnsw")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import vectorstore as vs
    from vectorstore.datasets import find_sts_dir, load_sts, sts_sentences

    sts = find_sts_dir()
    if sts is None:
        raise SystemExit("STS data not found")
    sentences = sts_sentences(load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv"))[: args.limit]
    model = vs.SentenceTransformer("all-MiniLM-L6-v2")
    model.encode(sentences[:256])
    enc, ing = [], []
    for r in range(args.rounds):
        t = time.perf_counter()
        model.encode(sentences, batch_size=32)
        enc.append(len(sentences) / (time.perf_counter() - t))
        work = Path(tempfile.mkdtemp())
        try:
            with vs.Store(work / "s") as store:
                store.models.encoders["all-MiniLM-L6-v2"] = model  # same weights object, no second load
                col = store.create_collection("sts", index=args.index)
                t = time.perf_counter()
                col.add(
                    ids=[str(i) for i in range(len(sentences))],
                    documents=sentences,
                    metadatas=[{"i": i} for i in range(len(sentences))],
                )
                ing.append(len(sentences) / (time.perf_counter() - t))
                assert col.count() == len(sentences)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"round {r + 1}: encode-only {enc[-1]:.0f} docs/s   add(documents=...) {ing[-1]:.0f} docs/s")
    e, i = statistics.median(enc), statistics.median(ing)
    print(
        f"{len(sentences)} documents, index {args.index}: encode-only {e:.0f}/s, ingest {i:.0f}/s, ratio {i / e:.3f} (goal >= 0.9)"
    )


if __name__ == "__main__":
    main()
