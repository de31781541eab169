"""Disk after churn: upsert ``--rounds`` x the collection size in random batches (new vectors and
metadata for random ids), compact, and compare the store's bytes with a fresh store holding the same
final content (same index kind and parameters).

    python benchmarks/churn.py --n 20000 --rounds 10

Goal (issue 16): churned / fresh <= 1.3.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import _common
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--index", default="faiss-hnsw")
    args = parser.parse_args()
    import vectorstore as vs

    vectors, _, _, _ = _common.sts_derived(args.n * (args.rounds + 1), 10)
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="vs-churn-"))
    try:
        churned, fresh = work / "churned", work / "fresh"
        t = time.perf_counter()
        with vs.Store(churned) as store:
            col = store.create_collection("c", model=None, embedding_dim=vectors.shape[1], index=args.index)
            col.add(
                ids=[str(i) for i in range(args.n)],
                embeddings=vectors[: args.n],
                metadatas=[{"v": 0}] * args.n,
            )
            used = args.n
            for _ in range(args.rounds):
                done = 0
                while done < args.n:
                    size = min(int(rng.integers(100, 2000)), args.n - done)
                    ids = [str(i) for i in rng.choice(args.n, size=size, replace=False)]
                    col.upsert(
                        ids=ids,
                        embeddings=vectors[used : used + size],
                        metadatas=[{"v": int(x)} for x in rng.integers(0, 1000, size)],
                    )
                    used += size
                    done += size
            col.wait_until_indexed()
            before = _common.dir_mb(churned)
            removed = store.compact()
            final = col.get(include=["embeddings", "metadatas"])
        churn_s = time.perf_counter() - t
        after = _common.dir_mb(churned)
        with vs.Store(fresh) as store:
            col = store.create_collection("c", model=None, embedding_dim=vectors.shape[1], index=args.index)
            col.add(ids=final.ids, embeddings=final.embeddings, metadatas=final.metadatas)
            col.wait_until_indexed()  # the same end state: every record in the saved ANN index
            col.persist()
        size_fresh = _common.dir_mb(fresh)
        print(f"{args.n} records x {vectors.shape[1]}-d, {args.rounds * args.n} upserts, index {args.index}")
        print(f"churn + compact: {churn_s:.1f} s; change-log rows trimmed: {sum(removed.values())}")
        print(
            f"disk before compact {before:.1f} MiB, after {after:.1f} MiB, fresh store {size_fresh:.1f} MiB"
        )
        for sub in ("store.sqlite3", "indexes"):
            a, b = churned / sub, fresh / sub
            sa = a.stat().st_size / 2**20 if a.is_file() else _common.dir_mb(a)
            sb = b.stat().st_size / 2**20 if b.is_file() else _common.dir_mb(b)
            print(f"  {sub:<14} churned {sa:8.1f} MiB   fresh {sb:8.1f} MiB")
        print(f"churned / fresh: {after / size_fresh:.3f} (goal <= 1.3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
