"""Index backends vs the raw library calls they wrap, measured in the same process.

Data: STS sentences embedded with the bundled model, expanded to ``--n`` vectors by noisy
renormalised copies; ``--queries`` held-out real sentences as queries. Per backend: build rate,
single-query p50/p99 (k=10), batch throughput (best of 5), recall@10 against exact search, RSS
growth and file size, for our wrapper and for the raw FAISS / USearch calls, with ours/raw ratios.
Both indexes are built first; their searches then take turns query by query, so that neither
gets the quieter moment, and at each turn every contender runs a different query, so that none finds
the graph nodes of its query already cached by another. HNSW builds are multi-threaded, so two graphs
from the same vectors differ; for faiss-hnsw and usearch-hnsw the raw search figures are therefore
taken with raw calls on our own native index object (the ratios' reference), with raw's own graph
shown as ``raw-own``.

    python benchmarks/indexers.py [--n 200000] [--queries 1000] [--kinds faiss-hnsw,usearch-hnsw]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import dir_mb, recall_at_k, sts_derived


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Raw:
    """The raw-library equivalent of one of our kinds: build, search(q, k) -> keys, save(path)."""

    def __init__(self, kind: str, dim: int) -> None:
        import faiss

        self.kind, self.dim, self.faiss = kind, dim, faiss
        self.index: Any = None

    def build(self, x: np.ndarray) -> None:
        faiss = self.faiss
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        if self.kind in ("faiss-flat", "exact"):
            self.index = faiss.IndexFlatIP(self.dim)
            self.index.add(xn)
        elif self.kind == "faiss-hnsw":
            self.index = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = 200
            self.index.hnsw.efSearch = 64
            self.index.add(xn)
        elif self.kind in ("faiss-ivf", "faiss-ivfpq"):
            q = faiss.IndexFlatIP(self.dim)
            if self.kind == "faiss-ivf":
                ivf = faiss.IndexIVFFlat(q, self.dim, 256, faiss.METRIC_INNER_PRODUCT)
            else:
                ivf = faiss.IndexIVFPQ(q, self.dim, 256, self.dim // 4, 8, faiss.METRIC_INNER_PRODUCT)
            ivf.nprobe = 64 if self.kind == "faiss-ivfpq" else 32
            if self.kind == "faiss-ivfpq":
                # PQ candidates re-ranked on a flat float copy, as our refine_factor=10 does
                self.index = faiss.IndexRefineFlat(ivf)
                self.index.k_factor = 10
            else:
                self.index = ivf
            self.index.train(xn[: 39 * 256])
            self.index.add(xn)
        elif self.kind == "usearch-hnsw":
            from usearch.index import Index

            self.index = Index(
                ndim=self.dim,
                metric="cos",
                dtype="f16",
                connectivity=32,
                expansion_add=200,
                expansion_search=64,
            )
            self.index.add(np.arange(len(x), dtype=np.uint64), xn)

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        if self.kind == "usearch-hnsw":
            return np.asarray(self.index.search(qn, k).keys).reshape(len(q), -1).astype(np.int64)
        _, ids = self.index.search(qn, k)
        return ids

    def on(self, ours: Any) -> Raw:
        """Raw calls on our index's own native FAISS / USearch object.

        HNSW builds are multi-threaded and so differ run to run: two graphs built from the same vectors
        answer some queries with different amounts of work, and a copy of a graph (even loaded from one
        file) sits elsewhere in memory, which shifts single-query latency by a few percent as well.
        Timing raw calls on the very object our wrapper searches leaves the wrapper as the only
        difference.
        """
        shared = Raw(self.kind, self.dim)
        shared.index = ours._index
        return shared

    def save(self, path: Path) -> None:
        if self.kind == "usearch-hnsw":
            self.index.save(str(path / "raw.usearch"))
        else:
            self.faiss.write_index(self.index, str(path / "raw.faiss"))


# Kinds whose builds are multi-threaded and so not reproducible: their search figures are also taken
# with raw calls on our own index object (see Raw.on).
GRAPH_KINDS = ("faiss-hnsw", "usearch-hnsw")


_LIBRARIES = ("faiss", "usearch")


class LibraryClock:
    """Times a block, and the part of it spent inside FAISS / USearch: in their Python wrappers and
    compiled calls, from the outermost entry to its return (``sys.setprofile`` sees both kinds of call).

    A build or batch search is almost all library time, which is multi-threaded and varies by several
    percent run to run; what the caller adds (validation, normalisation, key bookkeeping) is
    ``outside``, measured far more steadily. The hook costs ~1 us per Python call, so it is kept off
    the single-query timings.
    """

    def __init__(self) -> None:
        self.total = self.outside = 0.0
        self._start = self._inside = 0.0
        # while inside: (entry frame, the compiled function entered or None for a Python call, start)
        self._entry: tuple[Any, Any, float] | None = None

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        if self._entry is None:
            if (event == "call" and str(frame.f_globals.get("__name__", "")).startswith(_LIBRARIES)) or (
                event == "c_call" and str(getattr(arg, "__module__", "")).startswith(_LIBRARIES)
            ):
                self._entry = (frame, arg if event == "c_call" else None, time.perf_counter())
            return
        entry_frame, entry_func, since = self._entry
        if frame is entry_frame and (
            (entry_func is None and event == "return")
            or (entry_func is arg and event in ("c_return", "c_exception"))
        ):
            self._inside += time.perf_counter() - since
            self._entry = None

    def __enter__(self) -> LibraryClock:
        self._inside, self._entry = 0.0, None
        sys.setprofile(self._hook)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total = time.perf_counter() - self._start
        sys.setprofile(None)
        self.outside = self.total - self._inside


def build_measured(build: Callable[[], None], n: int) -> dict[str, float]:
    """Run ``build`` and report its rate, its seconds outside the library and resident-memory growth."""
    gc.collect()
    before = rss_mb()
    with LibraryClock() as clock:
        build()
    return {"build_vps": n / clock.total, "build_own_s": clock.outside, "mem_mb": rss_mb() - before}


def p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))]


def search_measured(
    searches: dict[str, Callable[[np.ndarray, int], np.ndarray]],
    queries: np.ndarray,
    truth: np.ndarray,
    rounds: int = 12,
    passes: int = 3,
    pass_budget_s: float = 30.0,
) -> dict[str, dict[str, float]]:
    """Single-query latency, batch throughput and recall of each search function, interleaved.

    The contenders take turns query by query and batch by batch (best of ``rounds``, at least one
    round per order; batches also report their median milliseconds outside the library), cycling
    through every order of the contenders, so that CPU frequency and background noise fall on all alike. At each turn contender ``j`` runs query ``i + j * n / m``
    (of ``n`` queries, ``m`` contenders): when two of them search one index object, neither runs a
    query whose graph nodes the other has just pulled into the cache. Single-query latencies pool up
    to ``passes`` passes over the queries (the p99 of 1,000 samples is the 10th-worst query, mostly
    machine noise), starting no new pass after ``pass_budget_s``; recall comes from the first.
    ``p99best`` is the p99 over queries of each query's best pass: the slow queries without the
    machine's passing stalls.
    """
    names = list(searches)
    orders = list(itertools.permutations(names))  # every contender in every position equally often
    n = len(queries)
    offsets = {name: j * n // len(names) for j, name in enumerate(names)}
    lat: dict[str, list[float]] = {m: [] for m in names}
    fastest = {m: [float("inf")] * n for m in names}  # each query's best time over the passes
    found: dict[str, list[Any]] = {m: [None] * n for m in names}
    start = time.perf_counter()
    for p in range(passes):
        if p and time.perf_counter() - start > pass_budget_s:
            break
        for i in range(n):
            for name in orders[(i + p) % len(orders)]:
                qi = (i + offsets[name]) % n
                q = queries[qi : qi + 1]
                t = time.perf_counter()
                keys = searches[name](q, 10)
                ms = (time.perf_counter() - t) * 1000
                lat[name].append(ms)
                fastest[name][qi] = min(fastest[name][qi], ms)
                if p == 0:
                    found[name][qi] = keys[0]
    best: dict[str, float] = {m: 0.0 for m in names}
    own: dict[str, list[float]] = {m: [] for m in names}
    for r in range(max(rounds, len(orders))):
        for name in orders[r % len(orders)]:
            with LibraryClock() as clock:
                searches[name](queries, 10)
            best[name] = max(best[name], n / clock.total)
            own[name].append(clock.outside * 1000)
    return {
        m: {
            "p50_ms": statistics.median(lat[m]),
            "p99_ms": p99(lat[m]),
            "p99best_ms": p99(fastest[m]),
            "batch_qps": best[m],
            "batch_own_ms": statistics.median(own[m]),
            "recall": recall_at_k(found[m], truth),
        }
        for m in names
    }


def file_mb(save: Callable[[Path], None]) -> float:
    with tempfile.TemporaryDirectory() as d:
        save(Path(d))
        return dir_mb(Path(d))


def compare(kind: str, x: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Build our ``kind`` and its raw-library equivalent, then measure both side by side."""
    import indexers

    holder: dict[str, Any] = {}

    def build() -> None:
        holder["index"] = indexers.make_index(kind, x.shape[1], "cosine")
        holder["index"].add(np.arange(len(x)), x)

    raw = Raw(kind, x.shape[1])
    ours_row = build_measured(build, len(x))
    raw_row = build_measured(lambda: raw.build(x), len(x))
    # One build each is too few: quick ones (< 10 s) vary by +-10 % with page-fault costs, and the
    # first build in the process pays for fresh pages; long multi-threaded ones vary by +-10 % too.
    # More rounds alternate who goes first, and each side's rate is its median (memory growth comes
    # from the first builds): 5 rounds for quick builds, 2 for long ones.
    rounds = 5 if len(x) / ours_row["build_vps"] < 10 else 2
    first = {"ours": ours_row, "raw": raw_row}
    rounds_of = {name: {c: [row[c]] for c in ("build_vps", "build_own_s")} for name, row in first.items()}
    builders = {"ours": build, "raw": lambda: raw.build(x)}
    for r in range(rounds - 1):
        for name in ("raw", "ours") if r % 2 == 0 else ("ours", "raw"):
            got = build_measured(builders[name], len(x))
            for c, values in rounds_of[name].items():
                values.append(got[c])
    for name, row in first.items():
        row.update({c: statistics.median(values) for c, values in rounds_of[name].items()})
    ours = holder["index"]
    searches = {"ours": lambda q, k: ours.search(q, k)[0], "raw": raw.search}
    if kind in GRAPH_KINDS:
        # raw calls on our own graph object (the ratio's reference) and on raw's own graph (shown too)
        searches = {**searches, "raw": raw.on(ours).search, "raw-own": raw.search}
    timed = search_measured(searches, queries, truth)
    ours_row.update(timed["ours"], file_mb=file_mb(ours.save))
    raw_row.update(timed["raw"], file_mb=file_mb(raw.save))
    rows = {"ours": ours_row, "raw": raw_row}
    if "raw-own" in timed:
        rows["raw-own"] = {**raw_row, **timed["raw-own"]}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", default="exact,faiss-flat,faiss-hnsw,faiss-ivf,faiss-ivfpq,usearch-hnsw")
    args = parser.parse_args()

    x, queries, _, truth = sts_derived(args.n, args.queries)
    print(f"{len(x)} x {x.shape[1]} vectors, {len(queries)} queries, k=10\n")
    cols = ["build_vps", "p50_ms", "p99_ms", "p99best_ms", "batch_qps", "recall", "mem_mb", "file_mb"]
    print(f"{'kind':<14}{'who':<8}" + "".join(f"{c:>12}" for c in cols))
    for kind in args.kinds.split(","):
        rows = compare(kind, x, queries, truth)
        ours, raw = rows["ours"], rows["raw"]
        for who, row in rows.items():
            print(f"{kind:<14}{who:<8}" + "".join(f"{row[c]:>12.3f}" for c in cols))
        ratio = {c: ours[c] / raw[c] if raw[c] else float("nan") for c in cols}
        print(f"{kind:<14}{'ratio':<8}" + "".join(f"{ratio[c]:>12.3f}" for c in cols))
        # each figure as ours-worse-than-raw ratio; memory growth under 1 MB is too small to compare
        costs = {
            "build": raw["build_vps"] / ours["build_vps"],
            "p50": ours["p50_ms"] / raw["p50_ms"],
            "p99": ours["p99_ms"] / raw["p99_ms"],
            "p99best": ours["p99best_ms"] / raw["p99best_ms"],
            "batch": raw["batch_qps"] / ours["batch_qps"],
            "memory": max(ours["mem_mb"], 1.0) / max(raw["mem_mb"], 1.0),
            "file": ours["file_mb"] / raw["file_mb"],
        }
        worst = max(costs, key=lambda c: costs[c])
        print(
            f"{'':<14}worst wrapper overhead ({', '.join(costs)}): {(costs[worst] - 1) * 100:+.1f}% ({worst})"
        )
        if kind == "exact":  # ours is numpy, not a wrapper; raw faiss-flat is a reference only
            print()
            continue
        # the steadier view of build and batch: time outside the library, which is where a wrapper adds
        build_s = len(x) / raw["build_vps"]
        batch_ms = 1000 * len(queries) / raw["batch_qps"]
        extra_build = ours["build_own_s"] - raw["build_own_s"]
        extra_batch = ours["batch_own_ms"] - raw["batch_own_ms"]
        print(
            f"{'':<14}outside the library: build {ours['build_own_s'] * 1000:.0f} ms ours vs "
            f"{raw['build_own_s'] * 1000:.0f} ms raw "
            f"({extra_build / build_s * 100:+.2f}% of raw's {build_s:.2f} s); batch {ours['batch_own_ms']:.1f} ms "
            f"vs {raw['batch_own_ms']:.1f} ms ({extra_batch / batch_ms * 100:+.2f}% of raw's {batch_ms:.0f} ms)\n",
            flush=True,
        )


if __name__ == "__main__":
    main()
