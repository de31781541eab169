"""Reopen + first query in a fresh process, this checkout against another one, in one sitting.

    python benchmarks/reopen.py --n 200000 --repeats 9 --baseline-repo /tmp/vs-dad95aa

Each checkout builds its own store (its own file format) from the same STS-derived vectors
(metadata, no documents, the default index), waits until every record is in the ANN index, persists
and closes it. Then the two stores are reopened alternately, ``--repeats`` times each, each time in a
fresh interpreter that has imported the library and opened a scratch store before the clock starts:
the figure is what reopening this data costs (open the database, load and verify the derived files,
catch up, answer one k=10 query), not the import. Medians are printed with the ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # puts the repository root on the import path
import numpy as np

_ROOT = Path(__file__).resolve().parent.parent


def _child(role: str, repo: str, store: str, data: str) -> None:
    """Runs in a subprocess with ``repo`` first on the import path."""
    sys.path.insert(0, repo)
    import vectorstore as vs

    vectors = np.load(Path(data) / "vectors.npy")
    query = np.load(Path(data) / "queries.npy")[0]
    if role == "build":
        s = vs.Store(store)
        col = s.create_collection("bench", model=None, embedding_dim=vectors.shape[1])
        ids = [str(i) for i in range(len(vectors))]
        t = time.perf_counter()
        for start in range(0, len(vectors), 10_000):
            end = start + 10_000
            col.add(
                ids=ids[start:end],
                embeddings=vectors[start:end],
                metadatas=[{"bucket": i % 100} for i in range(start, min(end, len(vectors)))],
            )
        if hasattr(col, "wait_until_indexed"):
            col.wait_until_indexed()
        col.persist()
        s.close()
        print(json.dumps({"build_s": time.perf_counter() - t}))
        return
    with tempfile.TemporaryDirectory() as scratch:  # warm the code paths, not this data
        with vs.Store(scratch) as warm:
            c = warm.create_collection("warm", model=None, embedding_dim=len(query))
            c.add(ids=["a", "b"], embeddings=np.stack([query, -query]))
            c.query(query_embeddings=query, k=1)
        with vs.Store(scratch) as warm:
            warm.get_collection("warm").query(query_embeddings=query, k=1)
    t = time.perf_counter()
    s = vs.Store(store)
    hits = s.get_collection("bench").query(query_embeddings=query, k=10)
    seconds = time.perf_counter() - t
    s.close()
    print(json.dumps({"reopen_s": seconds, "top1": hits[0].id}))


def _run(role: str, repo: Path, store: Path, data: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", role, str(repo), str(store), str(data)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{role} in {repo} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--baseline-repo", type=Path, help="a checkout of the reference commit (required)")
    parser.add_argument(
        "--work",
        type=Path,
        help="keep the built stores in this folder and reuse them on the next run (default: a temporary one)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    if args.baseline_repo is None:
        parser.error("--baseline-repo is required")

    vectors, queries, _, _ = _common.sts_derived(args.n, 100)
    work = args.work or Path(tempfile.mkdtemp(prefix="vs-reopen-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        np.save(work / "vectors.npy", vectors)
        np.save(work / "queries.npy", queries)
        sides = {"this checkout": _ROOT, "baseline": args.baseline_repo.resolve()}
        for name, repo in sides.items():
            if (work / name.replace(" ", "_")).exists():
                print(f"{name:<14} reusing the store built in {work}")
                continue
            built = _run("build", repo, work / name.replace(" ", "_"), work)
            print(f"{name:<14} built {args.n} vectors in {built['build_s']:.1f} s ({repo})")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, repo in sides.items():
                times[name].append(_run("reopen", repo, work / name.replace(" ", "_"), work)["reopen_s"])
        for name, values in times.items():
            print(
                f"{name:<14} reopen + first query: median {statistics.median(values):.4f} s, "
                f"min {min(values):.4f}, max {max(values):.4f} over {len(values)} fresh processes"
            )
        ratio = statistics.median(times["this checkout"]) / statistics.median(times["baseline"])
        print(f"ratio this/baseline: {ratio:.3f} (goal <= 1.10)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
