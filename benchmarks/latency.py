"""Query latency while the collection ingests: idle, with a writer thread in this process, and with
a second process writing.

    python benchmarks/latency.py --n 200000 --seconds 20

Queries run on a fixed-rate schedule (one every ``--interval-ms``, default 5 ms); a query's latency
is its completion time minus its *scheduled* start, so a stalled query also charges every query
queued behind it (a closed loop that issues the next query when the last returns would hide
stalls). The writer adds 5,000-vector batches back to back (bring-your-own vectors, with metadata);
after each phase every acknowledged record is looked up by its own vector (k=1) through the query
path, and the fraction found is printed. The base collection of ``--n`` STS-derived vectors is fully
indexed before the phases start.

``VECTORSTORE_BENCH_REPO=/path/to/checkout`` measures that checkout's library with this script.

Goal (issue 16): p99 under ingest <= 3x the idle p99 and <= 10 ms at 200k, every acknowledged record
found.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _common
import numpy as np

if os.environ.get("VECTORSTORE_BENCH_REPO"):  # measure another checkout's library with this script
    sys.path.insert(0, os.environ["VECTORSTORE_BENCH_REPO"])

BATCH = 5_000
_INTERVAL = [0.005]  # the schedule's interval, seconds (set from --interval-ms)


def _schedule(col, queries: np.ndarray, seconds: float, interval: float, stop: threading.Event | None = None):
    """Latencies (ms) of queries issued on a fixed-rate schedule for ``seconds``."""
    lat: list[float] = []
    start = time.perf_counter()
    i = 0
    while True:
        due = start + i * interval
        if due - start > seconds or (stop is not None and stop.is_set()):
            break
        now = time.perf_counter()
        if now < due:
            time.sleep(due - now)
        col.query(query_embeddings=queries[i % len(queries)], k=10)
        lat.append((time.perf_counter() - due) * 1000)
        i += 1
    return lat


def _summary(lat: list[float]) -> dict[str, float]:
    worst = max(range(len(lat)), key=lat.__getitem__)
    return {
        "worst_at_s": worst * _INTERVAL[0],
        "queries": len(lat),
        "p50_ms": statistics.median(lat),
        "p99_ms": _common.pct(lat, 0.99),
        "max_ms": max(lat),
    }


def _found(col, ids: list[str], vectors: np.ndarray, sample: int = 1000) -> float:
    rng = np.random.default_rng(0)
    pick = rng.choice(len(ids), size=min(sample, len(ids)), replace=False)
    hits = sum(col.query(query_embeddings=vectors[i], k=1)[0].id == ids[i] for i in pick)
    return hits / len(pick)


def _writer_process(store: str, data: str, start: int, seconds: float) -> None:
    import vectorstore as vs

    extra = np.load(Path(data) / "extra.npy")
    with vs.Store(store) as s:
        col = s.get_collection("bench")
        t, done = time.perf_counter(), 0
        while time.perf_counter() - t < seconds and done + BATCH <= len(extra):
            ids = [str(start + done + j) for j in range(BATCH)]
            col.add(ids=ids, embeddings=extra[done : done + BATCH], metadatas=[{"bucket": 1}] * BATCH)
            done += BATCH
        print(json.dumps({"added": done, "seconds": time.perf_counter() - t}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--interval-ms", type=float, default=5.0)
    parser.add_argument("--index", default=None, help="index kind (default: the store's default)")
    parser.add_argument("--extra", type=int, default=200_000, help="vectors available to the writers")
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="sys.setswitchinterval for this process (default: CPython's 5 ms)",
    )
    parser.add_argument("--phases", default="idle,thread,process", help="which phases to run")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    if args.child:
        _writer_process(args.child[0], args.child[1], int(args.child[2]), float(args.child[3]))
        return
    import vectorstore as vs

    vectors, queries, _, _ = _common.sts_derived(args.n + 2 * args.extra, 200)
    base, extra_a, extra_b = (
        vectors[: args.n],
        vectors[args.n : args.n + args.extra],
        vectors[args.n + args.extra :],
    )
    interval = args.interval_ms / 1000
    _INTERVAL[0] = interval
    phases = set(args.phases.split(","))
    work = Path(tempfile.mkdtemp(prefix="vs-latency-"))
    try:
        store = vs.Store(work / "s")
        col = store.create_collection("bench", model=None, embedding_dim=base.shape[1], index=args.index)
        kind = col.index_kind
        t = time.perf_counter()
        for s in range(0, len(base), 10_000):
            col.add(
                ids=[str(i) for i in range(s, min(s + 10_000, len(base)))],
                embeddings=base[s : s + 10_000],
                metadatas=[{"bucket": i % 100} for i in range(s, min(s + 10_000, len(base)))],
            )
        col.wait_until_indexed()
        print(f"{args.n} vectors, index {kind}, indexed in {time.perf_counter() - t:.1f} s")
        print(f"queries every {args.interval_ms} ms, {args.seconds:.0f} s per phase, k=10\n")

        idle = _summary(_schedule(col, queries, args.seconds, interval))

        rows = {"idle": idle}
        # phase 2: a writer thread in this process
        if "thread" in phases:
            stop = threading.Event()
            acked: list[int] = []

            def write() -> None:
                done = 0
                while not stop.is_set() and done + BATCH <= len(extra_a):
                    ids = [str(args.n + done + j) for j in range(BATCH)]
                    col.add(
                        ids=ids, embeddings=extra_a[done : done + BATCH], metadatas=[{"bucket": 1}] * BATCH
                    )
                    done += BATCH
                    acked.append(done)

            t = time.perf_counter()
            writer = threading.Thread(target=write)
            writer.start()
            in_thread = _summary(_schedule(col, queries, args.seconds, interval))
            stop.set()
            writer.join()
            added = acked[-1] if acked else 0
            in_thread["writes_per_s"] = added / (time.perf_counter() - t)
            in_thread["found"] = _found(col, [str(args.n + i) for i in range(added)], extra_a[:added])
            rows["writer thread"] = in_thread

        # phase 3: a second process writes; this one catches up from the change log
        if "process" in phases:
            np.save(work / "extra.npy", extra_b)
            start_key = args.n + args.extra
            proc = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    str(work / "s"),
                    str(work),
                    str(start_key),
                    str(args.seconds),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.0)  # its import and open
            other = _summary(_schedule(col, queries, args.seconds, interval))
            out, _ = proc.communicate()
            report = json.loads(out.strip().splitlines()[-1])
            other["writes_per_s"] = report["added"] / report["seconds"]
            other["found"] = _found(
                col, [str(start_key + i) for i in range(report["added"])], extra_b[: report["added"]]
            )
            rows["writer process"] = other
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    cols = ["queries", "p50_ms", "p99_ms", "max_ms", "worst_at_s", "writes_per_s", "found"]
    print(f"{'phase':<16}" + "".join(f"{c:>14}" for c in cols))
    for name, row in rows.items():
        cells = "".join(
            f"{row[c]:>14.3f}" if isinstance(row.get(c), float) else f"{row.get(c, '-')!s:>14}" for c in cols
        )
        print(f"{name:<16}{cells}")
    for name in [r for r in rows if r != "idle"]:
        ratio = rows[name]["p99_ms"] / idle["p99_ms"]
        print(
            f"{name}: p99 / idle p99 = {ratio:.2f} (goal <= 3), p99 {rows[name]['p99_ms']:.2f} ms (goal <= 10)"
        )


if __name__ == "__main__":
    main()
