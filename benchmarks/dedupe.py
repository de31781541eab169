"""Duplicate detection: Collection.find_duplicates vs sentence-transformers' paraphrase_mining.

For the 13,227 distinct STS train+dev sentences (real text, embedded with the bundled model) and for
N vectors derived from them (noisy renormalised copies), each method runs in its own subprocess so
its peak resident memory (ru_maxrss) is its own. Prints pairs found/s, recall of ours against the
exact all-pairs reference at the same threshold, and both peaks (goal: recall >= 0.99 and a lower
peak than the reference at 200k).

    python benchmarks/dedupe.py [--n 200000] [--threshold 0.9] [--index faiss-hnsw]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository root first on the import path)
import numpy as np


def _worker(args: argparse.Namespace) -> None:
    """One measured run: read vectors, find pairs, write them, print time and peak RSS as JSON."""
    vectors = np.load(args.vectors)
    t = time.perf_counter()
    if args.worker == "reference":
        import torch
        from sentence_transformers.util import paraphrase_mining_embeddings

        mined = paraphrase_mining_embeddings(torch.from_numpy(vectors), top_k=100, max_pairs=10**8)
        pairs = np.array([(min(i, j), max(i, j)) for s, i, j in mined if s >= args.threshold], dtype=np.int64)
    else:
        import vectorstore as vs

        with tempfile.TemporaryDirectory() as tmp, vs.Store(tmp) as store:
            col = store.create_collection("c", model=None, embedding_dim=vectors.shape[1], index=args.index)
            col.add(ids=[str(i) for i in range(len(vectors))], embeddings=vectors)
            t_index = time.perf_counter() - t
            t = time.perf_counter()
            found = col.find_duplicates(args.threshold)
            pairs = np.array([(int(p.id_a), int(p.id_b)) for p in found], dtype=np.int64)
    elapsed = time.perf_counter() - t
    np.save(args.out, pairs.reshape(-1, 2))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = {"index_s": t_index} if args.worker == "ours" else {}
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb, "pairs": len(pairs), **extra}))


def _run(worker: str, vectors: Path, out: Path, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", worker, "--vectors", str(vectors), "--out", str(out)]
    cmd += ["--threshold", str(args.threshold), "--index", args.index]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{worker} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _compare(name: str, vectors: np.ndarray, tmp: Path, args: argparse.Namespace) -> None:
    path = tmp / f"{name}.npy"
    np.save(path, vectors)
    res = {w: _run(w, path, tmp / f"{name}-{w}-pairs.npy", args) for w in ("reference", "ours")}
    truth = {tuple(p) for p in np.load(tmp / f"{name}-reference-pairs.npy").tolist()}
    got = {tuple(p) for p in np.load(tmp / f"{name}-ours-pairs.npy").tolist()}
    recall = len(got & truth) / max(len(truth), 1)
    ref, ours = res["reference"], res["ours"]
    print(
        f"{name}: {len(vectors)} vectors, threshold {args.threshold}: reference {len(truth)} pairs in "
        f"{ref['seconds']:.1f}s ({len(truth) / ref['seconds']:.0f} pairs/s), peak {ref['peak_mb']:.0f} MB | "
        f"ours ({args.index}) {len(got)} pairs in {ours['seconds']:.1f}s "
        f"({len(got) / ours['seconds']:.0f} pairs/s; +{ours['index_s']:.1f}s to ingest and index), "
        f"peak {ours['peak_mb']:.0f} MB | recall {recall:.4f}, pairs not in the reference {len(got - truth)}, "
        f"peak ratio ours/reference {ours['peak_mb'] / ref['peak_mb']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--index", default="faiss-hnsw")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--worker", choices=["reference", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--vectors", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    from vectorstore import SentenceTransformer
    from vectorstore.datasets import derive_vectors, find_sts_dir, load_sts, sts_sentences

    sts = find_sts_dir()
    if sts is None:
        raise SystemExit("STS data not found (../shared/data/stsbenchmark or VECTORSTORE_STS_DIR)")
    sentences = sts_sentences(load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv"))
    t = time.perf_counter()
    emb = SentenceTransformer("all-MiniLM-L6-v2").encode(sentences, batch_size=64)
    print(f"embedded {len(sentences)} sentences in {time.perf_counter() - t:.0f}s")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_real:
            _compare("sts-real", emb, Path(tmp), args)
        if args.n:
            _compare("derived", derive_vectors(emb, args.n, noise=0.03, seed=1), Path(tmp), args)


if __name__ == "__main__":
    main()
