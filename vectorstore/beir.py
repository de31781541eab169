"""Retrieval evaluation on BEIR-format data: the loader, the metrics, and a run over a collection.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score`` with a header line).
Metrics follow pytrec_eval / BEIR / MTEB: nDCG@k with linear gains (``rel / log2(rank + 1)``, the ideal
ranking from the judged documents), Recall@k (relevant retrieved / relevant judged, relevance > 0),
MRR@k (1 / rank of the first relevant document, 0 when none is in the top k), each averaged over
the judged queries. A query that retrieves nothing counts 0.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from vectorstore.errors import InvalidInputError

if TYPE_CHECKING:
    from vectorstore.collection import Collection
    from vectorstore.results import Hit
    from vectorstore.store import Store

__all__ = [
    "BeirData",
    "BeirReport",
    "ModeFigures",
    "evaluate_beir",
    "evaluate_run",
    "ingest_corpus",
    "load_beir",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "run_queries",
]

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class BeirData:
    """One BEIR dataset split.

    Attributes:
        corpus: document id -> (title, text).
        queries: query id -> text, for the judged queries of the split only.
        qrels: query id -> document id -> relevance.
    """

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def document(self, doc_id: str) -> str:
        """``title + " " + text`` (the text BEIR embeds and indexes), stripped."""
        title, text = self.corpus[doc_id]
        return f"{title} {text}".strip()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(f"{path}:{n}: not JSON: {exc}") from exc
            if not isinstance(row, dict) or "_id" not in row:
                raise InvalidInputError(f"{path}:{n}: expected an object with an _id")
            out.append(row)
    return out


def load_beir(directory: str | os.PathLike[str], split: str = "test") -> BeirData:
    """Read a BEIR folder; keeps the queries judged in ``qrels/<split>.tsv``.

    Raises:
        InvalidInputError: a missing file, a malformed line, or judgements naming unknown ids.
    """
    root = Path(directory)
    need = [root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv"]
    missing = [str(p) for p in need if not p.is_file()]
    if missing:
        raise InvalidInputError(f"not a BEIR folder (split {split!r}): missing {', '.join(missing)}")
    corpus = {str(r["_id"]): (str(r.get("title") or ""), str(r.get("text") or "")) for r in _jsonl(need[0])}
    all_queries = {str(r["_id"]): str(r.get("text") or "") for r in _jsonl(need[1])}
    qrels: dict[str, dict[str, int]] = {}
    with need[2].open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and not parts[-1].lstrip("-").isdigit():
                continue  # the header
            if len(parts) < 3:
                if line.strip():
                    raise InvalidInputError(f"{need[2]}:{n}: expected query-id, corpus-id, score")
                continue
            try:
                score = int(parts[-1])
            except ValueError as exc:
                raise InvalidInputError(f"{need[2]}:{n}: score {parts[-1]!r} is not an integer") from exc
            qrels.setdefault(parts[0], {})[parts[-2]] = score
    unknown_q = sorted(set(qrels) - set(all_queries))
    if unknown_q:
        raise InvalidInputError(
            f"{need[2]} judges {len(unknown_q)} unknown query id(s), e.g. {unknown_q[0]!r}"
        )
    queries = {q: all_queries[q] for q in qrels}
    return BeirData(corpus=corpus, queries=queries, qrels=qrels)


# ---------------------------------------------------------------------- metrics
def ndcg_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean nDCG@k with linear gains over the judged queries."""
    values = []
    for qid, rel in qrels.items():
        ranked = list(run.get(qid, ()))[:k]
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked))
        ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        values.append(dcg / idcg if idcg > 0 else 0.0)
    return float(np.mean(values)) if values else 0.0


def recall_at_k(run: Run, qrels: Qrels, k: int = 100) -> float:
    """Mean fraction of each query's relevant documents found in its top ``k``."""
    values = []
    for qid, rel in qrels.items():
        relevant = {d for d, g in rel.items() if g > 0}
        if not relevant:
            continue
        values.append(len(relevant & set(list(run.get(qid, ()))[:k])) / len(relevant))
    return float(np.mean(values)) if values else 0.0


def mrr_at_k(run: Run, qrels: Qrels, k: int = 10) -> float:
    """Mean reciprocal rank of the first relevant document within the top ``k``."""
    values = []
    for qid, rel in qrels.items():
        rr = 0.0
        for i, d in enumerate(list(run.get(qid, ()))[:k]):
            if rel.get(d, 0) > 0:
                rr = 1.0 / (i + 1)
                break
        values.append(rr)
    return float(np.mean(values)) if values else 0.0


@dataclass(frozen=True)
class ModeFigures:
    """Retrieval quality and latency of one query mode.

    Attributes:
        mode: ``"vector"``, ``"keyword"`` or ``"hybrid"`` (or a reference's name).
        ndcg_at_10: mean nDCG@10.
        recall_at_100: mean Recall@100.
        mrr_at_10: mean MRR@10.
        p50_ms: median wall time of one query (text in, hits out), milliseconds.
        p99_ms: 99th percentile of the same.
        queries: how many judged queries ran.
    """

    mode: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    p50_ms: float
    p99_ms: float
    queries: int


def evaluate_run(name: str, run: Run, qrels: Qrels, times_s: Sequence[float]) -> ModeFigures:
    """The figures of one run (query id -> ranked document ids) and its per-query wall times."""
    t = np.asarray(times_s, dtype=np.float64) * 1000 if len(times_s) else np.zeros(1)
    return ModeFigures(
        mode=name,
        ndcg_at_10=ndcg_at_k(run, qrels, 10),
        recall_at_100=recall_at_k(run, qrels, 100),
        mrr_at_10=mrr_at_k(run, qrels, 10),
        p50_ms=float(np.percentile(t, 50)),
        p99_ms=float(np.percentile(t, 99)),
        queries=len(qrels),
    )


# ---------------------------------------------------------------------- running it
def ingest_corpus(collection: Collection, data: BeirData, *, show_progress_bar: bool | None = None) -> float:
    """Upsert every corpus document (id = the BEIR ``_id``); returns the wall time in seconds, until
    every record is searchable through the ANN index (``wait_until_indexed``)."""
    ids = list(data.corpus)
    started = time.perf_counter()
    collection.upsert(
        ids=ids,
        documents=[data.document(d) for d in ids],
        show_progress_bar=show_progress_bar,
    )
    collection.wait_until_indexed()
    return time.perf_counter() - started


def run_queries(
    collection: Collection, data: BeirData, mode: str, *, k: int = 100, **query_kwargs: Any
) -> ModeFigures:
    """Run every judged query one at a time (``k`` hits each) in ``mode`` and score the run."""
    run: dict[str, list[str]] = {}
    times: list[float] = []
    for qid, text in data.queries.items():
        started = time.perf_counter()
        hits = cast("list[Hit]", collection.query(text, k=k, mode=mode, include=(), **query_kwargs))  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
        run[qid] = [h.id for h in hits]
    return evaluate_run(mode, run, data.qrels, times)


@dataclass(frozen=True)
class BeirReport:
    """What :func:`evaluate_beir` measured.

    Attributes:
        documents: corpus size.
        queries: judged queries run.
        ingest_s: wall time of the ingest until every record was searchable through the index.
        modes: the figures of each mode, in the order asked.
    """

    documents: int
    queries: int
    ingest_s: float
    modes: list[ModeFigures]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "documents": self.documents,
            "queries": self.queries,
            "ingest_s": self.ingest_s,
            "modes": [f.__dict__ for f in self.modes],
        }


def evaluate_beir(
    store: Store,
    directory: str | os.PathLike[str],
    *,
    model: str = "all-MiniLM-L6-v2",
    index: str = "exact",
    modes: Sequence[str] = ("vector", "keyword", "hybrid"),
    split: str = "test",
    k: int = 100,
    collection: str = "beir",
    show_progress_bar: bool | None = None,
    **query_kwargs: Any,
) -> BeirReport:
    """Ingest a BEIR folder into ``store`` (collection ``collection``, created or reused) and score
    each mode on the judged queries of ``split``.

    Raises:
        InvalidInputError: not a BEIR folder, or an unknown mode.
    """
    unknown = [m for m in modes if m not in ("vector", "keyword", "hybrid")]
    if unknown:
        raise InvalidInputError(f"unknown mode(s) {unknown}; use vector, keyword, hybrid")
    data = load_beir(directory, split)
    col = store.get_or_create_collection(collection, model=model, index=index)
    ingest_s = ingest_corpus(col, data, show_progress_bar=show_progress_bar)
    figures = [run_queries(col, data, m, k=k, **query_kwargs) for m in modes]
    return BeirReport(documents=len(data.corpus), queries=len(data.queries), ingest_s=ingest_s, modes=figures)
