"""Shared by the benchmark scripts: import path, real-derived data, and the small measurement helpers.

Import it first: ``benchmarks/indexers.py`` is named like the ``indexers`` package, and Python puts the
script's folder first on the import path; this module puts the repository root there instead.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]


def dir_mb(path: Path) -> float:
    """Size of every file under ``path``, MiB."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set size: ``VmHWM`` of its own memory map. (``ru_maxrss`` would
    not do: Linux keeps it across ``execve``, so a child started from a large parent reports the
    parent's peak.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank below)."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def recall_at_k(found: list[list[int]] | np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each true top-k row that was found."""
    k = truth.shape[1]
    return float(
        np.mean([len(set(np.asarray(f).tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)])
    )


def _embed_cached(base_s: list[str], query_s: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Embed with the bundled model, reusing ``benchmarks/.cache`` when the same sentences were embedded before.

    The cache key covers the sentences and the model folder's weights, so a changed model or data set
    is embedded afresh; ``VECTORSTORE_BENCH_NO_CACHE=1`` skips the cache.
    """
    import hashlib
    import os

    from vectorstore import SentenceTransformer

    model = SentenceTransformer("all-MiniLM-L6-v2")
    digest = hashlib.sha256("\n".join([*base_s, "\0", *query_s]).encode())
    for f in sorted(Path(model.model_path).rglob("*")):
        if f.is_file():
            digest.update(f"{f.name}:{f.stat().st_size}".encode())
    path = _HERE / ".cache" / f"sts-{digest.hexdigest()[:16]}.npz"
    if path.is_file() and not os.environ.get("VECTORSTORE_BENCH_NO_CACHE"):
        with np.load(path, allow_pickle=False) as data:
            print(f"embeddings of {len(base_s) + len(query_s)} sentences read from {path}")
            return data["base"], data["queries"]
    t = time.perf_counter()
    base = model.encode(base_s, batch_size=64)
    queries = model.encode(query_s, batch_size=64)
    print(f"embedded {len(base_s) + len(query_s)} sentences in {time.perf_counter() - t:.0f}s")
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, base=base, queries=queries)
    os.replace(tmp, path)
    return base, queries


def sts_derived(n: int, n_queries: int) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """STS train+dev sentences embedded with the bundled model: the last ``n_queries`` are queries,
    every other one is a real base vector, expanded to ``n`` vectors by noisy renormalised copies.

    Returns (vectors, queries, the source sentence of each vector, exact top-10 of each query).
    """
    import indexers
    from vectorstore.datasets import derive_vectors, find_sts_dir, load_sts, sts_sentences

    sts = find_sts_dir()
    if sts is None:
        raise SystemExit("STS data not found (../shared/data/stsbenchmark or VECTORSTORE_STS_DIR)")
    sentences = sts_sentences(load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv"))
    base_s, query_s = sentences[:-n_queries], sentences[-n_queries:]
    base, queries = _embed_cached(base_s, query_s)
    vectors, sources = derive_vectors(base, n, noise=0.03, seed=1, return_sources=True)
    exact = indexers.make_index("exact", vectors.shape[1], "cosine")
    exact.add(np.arange(len(vectors)), vectors)
    truth, _ = exact.search(queries, 10)
    return vectors, queries, [base_s[i] for i in sources], truth


def fresh_process_seconds(python: str, args: list[str], runs: int = 3) -> float:
    """Median over ``runs`` fresh interpreters of the seconds each prints as its last stdout line.

    Reopening is what a restarted process pays, so it is timed in a new interpreter; each script
    imports its library and opens a scratch database before starting its clock, so one-time import
    and initialisation costs are left out equally for every system.
    """
    times = []
    for _ in range(runs):
        proc = subprocess.run([python, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"reopen run failed: {proc.stderr[-2000:]}")
        times.append(float(proc.stdout.strip().splitlines()[-1]))
    return statistics.median(times)
