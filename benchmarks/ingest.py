"""Ingest throughput: ``Collection.add(documents=...)`` vs encoding alone, same sentences, same process.

Goal: ingest >= 0.9 x encode-only throughput (encoding overlaps with writing to SQLite and the index),
measured to the end state "every record searchable through the ANN index" (``wait_until_indexed``);
the time to ``add()`` returning is printed too. The encoder is the collection's own (``--backend``).

    python benchmarks/ingest.py [--limit N] [--index faiss-hnsw] [--rounds 2] [--backend onnx]
        [--file-name onnx/model_qint8_avx512_vnni.onnx]
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
    parser.add_argument("--index", default=None, help="index kind (default: the store's default)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", default="torch", help="model_backend: torch, onnx or openvino")
    parser.add_argument(
        "--file-name", help='model_kwargs={"file_name": ...}, e.g. onnx/model_qint8_avx2.onnx'
    )
    args = parser.parse_args()

    import vectorstore as vs
    from vectorstore.datasets import find_sts_dir, load_sts, sts_sentences

    sts = find_sts_dir()
    if sts is None:
        raise SystemExit("STS data not found")
    sentences = sts_sentences(load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv"))[: args.limit]
    kwargs = {"file_name": args.file_name} if args.file_name else {}
    enc, ack, ing = [], [], []
    for r in range(args.rounds):
        work = Path(tempfile.mkdtemp())
        try:
            with vs.Store(work / "s") as store:
                col = store.create_collection(
                    "sts", index=args.index, model_backend=args.backend, model_kwargs=kwargs or None
                )
                # the collection's own encoder (loaded once per store), timed alone first
                model = store.models.encoder("all-MiniLM-L6-v2", args.backend, kwargs)
                model.encode(sentences[:256])
                t = time.perf_counter()
                model.encode(sentences, batch_size=32)
                enc.append(len(sentences) / (time.perf_counter() - t))
                t = time.perf_counter()
                col.add(
                    ids=[str(i) for i in range(len(sentences))],
                    documents=sentences,
                    metadatas=[{"i": i} for i in range(len(sentences))],
                )
                ack.append(len(sentences) / (time.perf_counter() - t))
                col.wait_until_indexed()  # the end state: every record searchable through the ANN index
                ing.append(len(sentences) / (time.perf_counter() - t))
                assert col.count() == len(sentences)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(
            f"round {r + 1}: encode-only {enc[-1]:.0f} docs/s   add() returned {ack[-1]:.0f} docs/s   "
            f"all indexed {ing[-1]:.0f} docs/s"
        )
    e, a, i = statistics.median(enc), statistics.median(ack), statistics.median(ing)
    print(
        f"{len(sentences)} documents, index {args.index or '(store default)'}, backend {args.backend} {kwargs or ''}: "
        f"encode-only {e:.0f}/s, ingest to indexed {i:.0f}/s, ratio {i / e:.3f} (goal >= 0.9); "
        f"to add() returning {a:.0f}/s ({a / e:.3f})"
    )


if __name__ == "__main__":
    main()
