"""``vectorstore demo``: the bundled model and sample corpus, end to end, offline, in seconds."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from vectorstore.pipeline import Hit

__all__ = ["add_parser", "run_demo"]

QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("How many people live in Berlin?", {}),
    ("tips for sleeping well", {"where": {"topic": "health"}}),
    ("looking at distant galaxies", {"where": {"year": {"$gte": 2020}}}),
    ("what to eat on a trip", {"where": {"topic": {"$in": ["travel", "cooking"]}}}),
    ("storing data safely", {"where_document": {"$contains": "database"}}),
]


def _describe(opts: dict[str, Any]) -> str:
    import json

    return "  ".join(f"{k}={json.dumps(v)}" for k, v in opts.items()) or "no filter"


def run_demo(directory: Path, model: str, *, kept: bool = True) -> None:
    """Build (or refresh) a store in ``directory`` from the sample corpus and query it."""
    import vectorstore as vs
    from vectorstore.datasets import load_sample_corpus

    started = time.perf_counter()
    corpus = load_sample_corpus()
    with vs.Store(directory) as store:
        col = store.get_or_create_collection("sample", model=model)
        enc = col.model
        print(
            f"model {enc.model_name} ({enc.model_source}), {col.dim}-d, {col.metric} similarity, device {enc.device}"
        )
        t = time.perf_counter()
        col.upsert(
            ids=[r["id"] for r in corpus],
            documents=[r["text"] for r in corpus],
            metadatas=[{"topic": r["topic"], "year": r["year"]} for r in corpus],
        )
        print(
            f"ingested {len(corpus)} sample documents into {directory} "
            f"(collection 'sample', index {col.index_kind}) in {time.perf_counter() - t:.1f}s"
        )
        for text, opts in QUERIES:
            print(f'\nquery: "{text}"   [{_describe(opts)}]')
            for hit in cast("list[Hit]", col.query(text, k=3, **opts)):
                meta = hit.metadata or {}
                print(
                    f"  {hit.rank + 1}. {hit.score:.3f}  {hit.document}  "
                    f"(id {hit.id}, {meta.get('topic')}, {meta.get('year')})"
                )
        pairs = col.find_duplicates(0.85)
        print(f"\nnear-duplicate pairs (cosine >= 0.85): {len(pairs)}")
        found = col.get(ids=sorted({p.id_a for p in pairs} | {p.id_b for p in pairs}))
        docs = dict(zip(found.ids, found.documents or []))
        for p in pairs:
            print(f"  {p.score:.3f}  {docs[p.id_a]!r}  <->  {docs[p.id_b]!r}")
    print(f"\ndone in {time.perf_counter() - started:.1f}s.")
    where = directory if kept else Path("demo-store")
    if not kept:
        print(
            "The store was in a temporary folder. Keep one with `vectorstore demo --dir demo-store`, then try:"
        )
    else:
        print("Try:")
    print(f'  vectorstore query {where} sample "famous composers" -k 5')
    print(f"  vectorstore info {where}")
    print(f"  vectorstore dedupe {where} sample --threshold 0.85")


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.dir is not None:
        run_demo(Path(args.dir), args.model)
        return 0
    with tempfile.TemporaryDirectory(prefix="vectorstore-demo-") as tmp:
        run_demo(Path(tmp), args.model, kept=False)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``demo``."""
    p = sub.add_parser(
        "demo",
        help="build a store from the bundled sample corpus and run example queries (offline)",
        description="Embeds the bundled sample corpus with the bundled model, stores it, and shows "
        "queries with and without filters and the near-duplicates it finds.",
    )
    p.add_argument("--dir", help="keep the demo store in this folder (default: a temporary folder)")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="embedding model name or folder")
    p.set_defaults(func=_cmd_demo)
