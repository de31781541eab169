"""Readers for the evaluation data the project uses (the STS benchmark format)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vectorstore.errors import InvalidInputError

__all__ = ["STSPair", "find_sts_dir", "load_sts", "sts_sentences"]


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
