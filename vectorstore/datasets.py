"""Readers for the data the project uses: the STS benchmark format and the bundled sample corpus."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vectorstore.errors import InvalidInputError

__all__ = [
    "STSPair",
    "derive_vectors",
    "find_sts_dir",
    "load_sample_corpus",
    "load_sts",
    "sample_corpus_path",
    "sts_sentences",
]


@dataclass(frozen=True)
class STSPair:
    """One STS benchmark line: two sentences and their gold similarity in [0, 5]."""

    sentence1: str
    sentence2: str
    score: float
    genre: str = ""


def load_sts(path: str | os.PathLike[str]) -> list[STSPair]:
    """Read an STS file: tab-separated genre, file, year, id, score, sentence1, sentence2 (extra columns ignored).

    Quotes are literal; lines are split on tabs only.

    Raises:
        InvalidInputError: naming the file and line of the first malformed line.
    """
    pairs: list[STSPair] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 7:
                raise InvalidInputError(
                    f"{path}:{lineno}: expected 7 tab-separated fields, got {len(fields)}"
                )
            try:
                score = float(fields[4])
            except ValueError as exc:
                raise InvalidInputError(f"{path}:{lineno}: score {fields[4]!r} is not a number") from exc
            pairs.append(STSPair(fields[5], fields[6], score, fields[0]))
    return pairs


def sts_sentences(pairs: list[STSPair]) -> list[str]:
    """The distinct sentences of ``pairs``, in first-seen order."""
    seen: dict[str, None] = {}
    for p in pairs:
        seen.setdefault(p.sentence1, None)
        seen.setdefault(p.sentence2, None)
    return list(seen)


def find_sts_dir(start: str | os.PathLike[str] | None = None) -> Path | None:
    """``../shared/data/stsbenchmark`` beside the repository (or ``$VECTORSTORE_STS_DIR``), if present."""
    env = os.environ.get("VECTORSTORE_STS_DIR")
    if env and Path(env, "sts-dev.csv").is_file():
        return Path(env)
    here = Path(start) if start is not None else Path(__file__).resolve().parent.parent
    for base in (here, *here.parents):
        candidate = base.parent / "shared" / "data" / "stsbenchmark"
        if (candidate / "sts-dev.csv").is_file():
            return candidate
    return None


def derive_vectors(
    base: np.ndarray, n: int, *, noise: float = 0.03, seed: int = 0, return_sources: bool = False
) -> Any:
    """``n`` unit vectors made from real embeddings: each is a random base row plus Gaussian noise
    (per-dimension standard deviation ``noise``), renormalised. The first ``len(base)`` rows are the
    base rows themselves, so real vectors are always part of the set.

    With ``return_sources`` also returns, for each row, the index of the base row it came from.
    """
    rng = np.random.default_rng(seed)
    base = np.asarray(base, dtype=np.float32)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    m = min(n, len(base))
    out[:m] = base[:m]
    sources = np.arange(n, dtype=np.int64)
    if n > m:
        picks = rng.integers(0, len(base), size=n - m)
        sources[m:] = picks
        out[m:] = base[picks] + rng.standard_normal((n - m, base.shape[1])).astype(np.float32) * noise
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    vectors = (out / np.maximum(norms, 1e-12)).astype(np.float32)
    return (vectors, sources) if return_sources else vectors


def sample_corpus_path() -> Path:
    """The bundled sample corpus: 248 short documents on 12 topics, JSON lines with
    ``id``, ``text``, ``topic`` and ``year`` (a few are deliberate near-duplicates)."""
    return Path(__file__).resolve().parent / "data" / "sample_corpus.jsonl"


def load_sample_corpus() -> list[dict[str, Any]]:
    """The sample corpus as a list of dicts (see :func:`sample_corpus_path`)."""
    import json

    with open(sample_corpus_path(), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
