"""``vectorstore ingest | query | info | eval | dedupe``."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from vectorstore.cli import CLIError
from vectorstore.errors import VectorStoreError

if TYPE_CHECKING:
    import vectorstore as vs
    from vectorstore.pipeline import Hit

__all__ = ["add_parsers"]

_MAX_PROBLEMS_SHOWN = 20


# ---------------------------------------------------------------------- helpers
def _json_arg(value: str | None, flag: str) -> Any:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{flag} is not valid JSON ({exc.msg} at column {exc.colno}): {value!r}") from exc
    if not isinstance(parsed, dict):
        raise CLIError(f"{flag} must be a JSON object, got {value!r}")
    return parsed


def _existing_store(path: str, read_only: bool | None = None) -> vs.Store:
    """The store at ``path``; ``read_only=None`` opens it read-only when its files are not writable."""
    import vectorstore as vs
    from vectorstore.store import DB_FILE

    root = Path(path)
    if not (root / DB_FILE).is_file():
        raise CLIError(f"{path} is not a vectorstore store (no {DB_FILE} in it)")
    return vs.Store(root, read_only=read_only)


def _dir_mb(path: Path | None) -> float:
    if path is None or not path.exists():
        return 0.0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _path_or_none(path: str | None) -> Path | None:
    return Path(path) if path is not None else None


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None or path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as fh:
        yield fh


# ---------------------------------------------------------------------- ingest
def _cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    import vectorstore as vs
    from vectorstore.ingest import SourceProblem, SourceRecord, read_sources
    from vectorstore.store import DEFAULT_MODEL

    fields = (
        [f.strip() for f in args.metadata_fields.split(",") if f.strip()] if args.metadata_fields else None
    )
    records: dict[str, SourceRecord] = {}
    problems: list[SourceProblem] = []
    repeated = 0
    for item in read_sources(
        args.files, id_field=args.id_field, text_field=args.text_field, metadata_fields=fields
    ):
        if isinstance(item, SourceProblem):
            problems.append(item)
            continue
        if item.id in records:
            repeated += 1
        records[item.id] = item  # the last occurrence of an id wins, as re-running would make it
    for problem in problems[:_MAX_PROBLEMS_SHOWN]:
        print(f"vectorstore ingest: malformed: {problem}", file=sys.stderr)
    if len(problems) > _MAX_PROBLEMS_SHOWN:
        print(f"vectorstore ingest: ... and {len(problems) - _MAX_PROBLEMS_SHOWN} more", file=sys.stderr)
    if problems and args.on_error == "abort":
        raise CLIError(f"{len(problems)} malformed record(s); nothing was written (--on-error abort)")
    if repeated:
        print(
            f"vectorstore ingest: {repeated} repeated id(s) in the input; the last one of each is kept",
            file=sys.stderr,
        )

    rows = list(records.values())
    started = time.perf_counter()
    with vs.Store(args.store) as store:
        if args.collection in store.list_collections():
            kwargs: dict[str, Any] = {}
            if args.model is not None:
                kwargs["model"] = args.model
            if args.index is not None:
                kwargs["index"] = args.index
            if args.backend is not None:
                kwargs["model_backend"] = args.backend
            col = store.get_collection(args.collection, **kwargs)
        else:
            col = store.create_collection(
                args.collection,
                model=args.model or DEFAULT_MODEL,
                index=args.index,
                model_backend=args.backend or "torch",
            )
        new = updated = unchanged = 0
        with tqdm(
            total=len(rows), desc=f"Ingesting into {col.name}", unit="doc", disable=args.quiet or None
        ) as bar:
            for start in range(0, len(rows), args.batch_size):
                batch = rows[start : start + args.batch_size]
                counts = col.upsert(
                    ids=[r.id for r in batch],
                    documents=[r.text for r in batch],
                    metadatas=[r.metadata or None for r in batch],
                    show_progress_bar=False,
                )
                new, updated, unchanged = (
                    new + counts.added,
                    updated + counts.updated,
                    unchanged + counts.unchanged,
                )
                bar.update(len(batch))
        total = col.count()
    elapsed = time.perf_counter() - started
    rate = len(rows) / elapsed if elapsed > 0 else 0.0
    print(
        f"ingested {len(rows)} document(s) into {args.store}/{args.collection}: {new} new, "
        f"{updated} updated, {unchanged} unchanged, {len(problems)} malformed skipped; "
        f"{elapsed:.1f}s ({rate:.0f} docs/s); "
        f"the collection holds {total}"
    )
    return 0


# ---------------------------------------------------------------------- query
def _onnx_export_ready(col: vs.Collection) -> bool:
    """True for a torch-backed collection whose model already has its fp32 ONNX export and where
    ONNX Runtime is installed: the same weights, so the CLI embeds the query on ONNX Runtime (no
    torch or transformers import, seconds faster; vectors equal to 1e-4)."""
    import importlib.util

    from vectorstore.models.onnx_files import exported_onnx
    from vectorstore.models.resolve import resolve_model_path

    config = col.config
    if col.model_name is None or config.model_backend != "torch" or config.model_kwargs:
        return False
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    try:
        folder = resolve_model_path(col.model_name, local_files_only=True).path
    except VectorStoreError:
        return False
    return exported_onnx(folder) is not None


def _cmd_query(args: argparse.Namespace) -> int:
    import vectorstore as vs

    where = _json_arg(args.where, "--where")
    where_document = _json_arg(args.where_document, "--where-document")
    with _existing_store(args.store, True if args.read_only else None) as store:
        col = store.get_collection(args.collection, model_backend=args.backend)
        if args.backend is None and _onnx_export_ready(col):
            col = store.get_collection(args.collection, model_backend="onnx")
        rerank: bool | vs.CrossEncoder = bool(args.rerank)
        if args.reranker:
            rerank = vs.CrossEncoder(args.reranker, device=store.device)
        hits = cast(
            "list[Hit]",
            col.query(
                args.text,
                k=args.k,
                where=where,
                where_document=where_document,
                rerank=rerank,
                rerank_k=args.rerank_k,
                mode=args.mode,
                fusion=args.fusion,
                alpha=args.alpha,
            ),
        )
    if args.json:
        out = [
            {
                "rank": h.rank,  # 0-based, as Hit.rank
                "id": h.id,
                "score": h.score,
                "keyword_score": h.keyword_score,
                "fusion_score": h.fusion_score,
                "rerank_score": h.rerank_score,
                "document": h.document,
                "metadata": h.metadata,
            }
            for h in hits
        ]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    if not hits:
        print("no results")
    for h in hits:
        rr = f"  rerank {h.rerank_score:.3f}" if h.rerank_score is not None else ""
        if h.fusion_score is not None:
            rr = f"  fused {h.fusion_score:.4f}" + rr
        if args.mode != "vector":
            rr = (f"  bm25 {h.keyword_score:.3f}" if h.keyword_score is not None else "  bm25 -") + rr
        meta = f"  {json.dumps(h.metadata, ensure_ascii=False)}" if h.metadata else ""
        print(f"{h.rank + 1:>3}. {h.score:.4f}{rr}  [{h.id}]  {h.document or ''}{meta}")
    return 0


# ---------------------------------------------------------------------- info
def _collection_info(store: vs.Store, name: str) -> dict[str, Any]:
    col = store.get_collection(name)
    return {
        "name": name,
        "count": col.count(),
        "model": col.model_name,
        "dim": col.dim,
        "metric": col.metric,
        "index": col.config.index.to_dict(),
        "reranker": col.reranker_name,
        "index_files_mb": round(_dir_mb(_path_or_none(col.index_files_dir())), 2),
    }


def _cmd_info(args: argparse.Namespace) -> int:
    from vectorstore.store import DB_FILE

    with _existing_store(args.store, True if args.read_only else None) as store:
        names = [args.collection] if args.collection else store.list_collections()
        assert store.path is not None
        sqlite_mb = sum(p.stat().st_size for p in store.path.glob(DB_FILE + "*") if p.is_file()) / 2**20
        collections = [_collection_info(store, n) for n in names]
        info: dict[str, Any] = {
            "store": str(store.path),
            "sqlite_mb": round(sqlite_mb, 2),
            "total_mb": round(_dir_mb(store.path), 2),
            "collections": collections,
        }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"store {info['store']}: {info['total_mb']:.1f} MB on disk (SQLite {info['sqlite_mb']:.1f} MB)")
    if not collections:
        print("  no collections")
    for c in collections:
        opts = ", ".join(f"{k}={v}" for k, v in c["index"]["options"].items())
        print(
            f"  {c['name']}: {c['count']} records, model {c['model']}, {c['dim']}-d {c['metric']}, "
            f"index {c['index']['kind']} ({opts}), reranker {c['reranker']}, index files {c['index_files_mb']:.1f} MB"
        )
    return 0


# ---------------------------------------------------------------------- vacuum
def _cmd_vacuum(args: argparse.Namespace) -> int:
    with _existing_store(args.store) as store:
        freed = store.vacuum()
    print(f"vacuumed {args.store}: {freed / 2**20:.1f} MB given back")
    return 0


# ---------------------------------------------------------------------- verify
def _cmd_verify(args: argparse.Namespace) -> int:
    with _existing_store(args.store) as store:
        report = store.verify(repair=args.repair)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "collections": report.collections,
                    "vectors_checked": report.vectors_checked,
                    "problems": [
                        {"where": p.where, "what": p.what, "repaired": p.repaired} for p in report.problems
                    ],
                },
                indent=2,
            )
        )
    else:
        for p in report.problems:
            print(f"{'REPAIRED' if p.repaired else 'PROBLEM'}  {p.where}: {p.what}")
        state = "ok" if report.ok else "problems found"
        print(
            f"{state}: {len(report.collections)} collection(s), {report.vectors_checked} stored vectors checked, "
            f"{len(report.problems)} problem(s)"
        )
    return 0 if report.ok else 1


# ---------------------------------------------------------------------- eval
def _cmd_eval(args: argparse.Namespace) -> int:
    if args.task == "beir":
        return _cmd_eval_beir(args)
    from vectorstore import SentenceTransformer
    from vectorstore.datasets import load_sts
    from vectorstore.evaluation import evaluate_sts

    if not Path(args.file).is_file():
        raise CLIError(f"{args.file}: no such file")
    pairs = load_sts(args.file)
    model = SentenceTransformer(args.model)
    result = evaluate_sts(model, pairs, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"file": args.file, "model": args.model, **result.__dict__}))
    else:
        print(
            f"{args.file}: Spearman {result.spearman:.4f}, Pearson {result.pearson:.4f} "
            f"({result.n_pairs} pairs, {result.similarity} similarity, model {args.model})"
        )
    return 0


def _cmd_eval_beir(args: argparse.Namespace) -> int:
    import tempfile

    import vectorstore as vs
    from vectorstore.beir import evaluate_beir

    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    bad = [m for m in modes if m not in ("vector", "keyword", "hybrid")]
    if bad or not modes:
        raise CLIError(f"--mode takes vector, keyword and/or hybrid, got {args.mode!r}")
    if not Path(args.file).is_dir():
        raise CLIError(f"{args.file}: no such folder")
    with tempfile.TemporaryDirectory(prefix="vectorstore-beir-") as tmp, vs.Store(args.store or tmp) as store:
        report = evaluate_beir(
            store,
            args.file,
            model=args.model,
            index=args.index,
            modes=modes,
            split=args.split,
            k=args.k,
            show_progress_bar=None if sys.stderr.isatty() else False,
        )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(
        f"{args.file} ({args.split}): {report.documents} documents, {report.queries} judged queries, "
        f"model {args.model}, index {args.index}; ingest {report.ingest_s:.1f} s"
    )
    print(f"  {'mode':8} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'p50 ms':>7} {'p99 ms':>7}")
    for f in report.modes:
        print(
            f"  {f.mode:8} {f.ndcg_at_10:8.4f} {f.recall_at_100:7.4f} {f.mrr_at_10:7.4f} "
            f"{f.p50_ms:7.2f} {f.p99_ms:7.2f}"
        )
    return 0


# ---------------------------------------------------------------------- dedupe
def _cmd_dedupe(args: argparse.Namespace) -> int:
    where = _json_arg(args.where, "--where")
    with _existing_store(args.store) as store:
        col = store.get_collection(args.collection)
        common: dict[str, Any] = {
            "k": args.k,
            "where": where,
            "show_progress_bar": None if not args.quiet else False,
        }
        with _output(args.output) as out:
            if args.clusters:
                groups = col.duplicate_clusters(args.threshold, min_size=args.min_size, **common)
                if args.format == "csv":
                    w = csv.writer(out)
                    w.writerow(["cluster", "id"])
                    for i, g in enumerate(groups):
                        w.writerows([i, rid] for rid in g)
                else:
                    for i, g in enumerate(groups):
                        out.write(
                            json.dumps({"cluster": i, "size": len(g), "ids": g}, ensure_ascii=False) + "\n"
                        )
                count = f"{len(groups)} cluster(s)"
            else:
                pairs = col.find_duplicates(args.threshold, **common)
                if args.format == "csv":
                    w = csv.writer(out)
                    w.writerow(["id_a", "id_b", "score"])
                    w.writerows([p.id_a, p.id_b, f"{p.score:.6f}"] for p in pairs)
                else:
                    for p in pairs:
                        out.write(
                            json.dumps({"id_a": p.id_a, "id_b": p.id_b, "score": p.score}, ensure_ascii=False)
                            + "\n"
                        )
                count = f"{len(pairs)} pair(s)"
    print(f"vectorstore dedupe: {count} at threshold {args.threshold}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- parsers
def add_parsers(sub: Any) -> None:
    """Register ``ingest``, ``query``, ``info``, ``eval`` and ``dedupe``."""
    p = sub.add_parser(
        "ingest",
        help="add documents from .jsonl/.csv/.txt files or folders (upsert by id)",
        description="Reads every FILE, embeds the documents and upserts them by id, so running the same "
        "ingest again changes nothing. .jsonl and .csv hold one record per line/row; .txt and .md "
        "hold one document per non-empty line; a folder contributes each .txt/.md file below it as "
        "one document. Records without an id field get FILE:LINE (or the file path) as id.",
    )
    p.add_argument("store", help="store folder (created if missing)")
    p.add_argument("collection", help="collection name (created if missing)")
    p.add_argument("files", nargs="+", metavar="FILE", help=".jsonl, .csv, .txt or .md file, or a folder")
    p.add_argument("--id-field", default="id", help="field holding the id (default: id)")
    p.add_argument("--text-field", default="text", help="field holding the document (default: text)")
    p.add_argument(
        "--metadata-fields", help="comma-separated fields to keep as metadata (default: all others)"
    )
    p.add_argument("--model", help="embedding model for a new collection (default all-MiniLM-L6-v2)")
    p.add_argument(
        "--index", help="index kind for a new collection (default faiss-hnsw-sq; faiss-hnsw for manhattan)"
    )
    p.add_argument(
        "--backend",
        choices=["torch", "onnx", "openvino"],
        help="run the model with torch (default), ONNX Runtime or OpenVINO; stored for a new collection",
    )
    p.add_argument("--batch-size", type=int, default=512, help="documents per write (default 512)")
    p.add_argument(
        "--on-error",
        choices=["skip", "abort"],
        default="skip",
        help="a malformed line: report and skip it (default), or write nothing at all",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("query", help="search a collection")
    p.add_argument("store")
    p.add_argument("collection")
    p.add_argument("text", help="the query text")
    p.add_argument("-k", type=int, default=10, help="results (default 10)")
    p.add_argument("--where", help='metadata filter as JSON, e.g. \'{"year": {"$gte": 2020}}\'')
    p.add_argument("--where-document", help='document filter as JSON, e.g. \'{"$contains": "Berlin"}\'')
    p.add_argument("--rerank", action="store_true", help="rerank with the collection's cross-encoder")
    p.add_argument("--reranker", help="rerank with this cross-encoder (name or folder)")
    p.add_argument("--rerank-k", type=int, help="candidates the cross-encoder sees (default max(k, 50))")
    p.add_argument(
        "--mode",
        choices=["vector", "keyword", "hybrid"],
        default="vector",
        help="vector similarity (default), BM25 keyword search, or both fused",
    )
    p.add_argument("--fusion", choices=["weighted", "rrf"], default="weighted", help="hybrid fusion")
    p.add_argument(
        "--backend",
        choices=["torch", "onnx", "openvino"],
        help="run the model this way (default: the collection's, on ONNX Runtime when the model's "
        "fp32 ONNX export exists and onnxruntime is installed)",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the vector leg in weighted fusion")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--read-only", action="store_true", help="open the store read-only (automatic when not writable)"
    )
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("info", help="collections, counts, models, index kinds and sizes on disk")
    p.add_argument("store")
    p.add_argument("collection", nargs="?")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--read-only", action="store_true", help="open the store read-only (automatic when not writable)"
    )
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "verify",
        help="check the database, every stored vector and every index file; --repair rebuilds what is wrong",
    )
    p.add_argument("store")
    p.add_argument(
        "--repair", action="store_true", help="re-embed damaged vectors, rebuild wrong index files"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("vacuum", help="give the space of deleted and replaced records back to the disk")
    p.add_argument("store")
    p.set_defaults(func=_cmd_vacuum)

    p = sub.add_parser(
        "eval",
        help="evaluate: sts FILE (Spearman of a model) or beir DIR (retrieval quality per query mode)",
        description="sts FILE: Spearman and Pearson of the model's similarity against gold STS scores. "
        "beir DIR: ingest a BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) into a store, run "
        "the judged queries one at a time and print nDCG@10, Recall@100 and MRR@10 per mode.",
    )
    p.add_argument("task", choices=["sts", "beir"])
    p.add_argument("file", help="sts: the STS file; beir: the BEIR folder")
    p.add_argument("--model", default="all-MiniLM-L6-v2")
    p.add_argument("--batch-size", type=int, default=64, help="sts: encode batch size")
    p.add_argument("--index", default="exact", help="beir: index kind (default exact)")
    p.add_argument(
        "--mode", default="vector,keyword,hybrid", help="beir: comma-separated modes (default all three)"
    )
    p.add_argument("--split", default="test", help="beir: qrels split (default test)")
    p.add_argument("--k", type=int, default=100, help="beir: hits retrieved per query (default 100)")
    p.add_argument("--store", help="beir: store folder to ingest into and keep (default: a temporary one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("dedupe", help="write near-duplicate pairs (or clusters) of a collection")
    p.add_argument("store")
    p.add_argument("collection")
    p.add_argument("--threshold", type=float, default=0.9, help="minimum similarity (default 0.9)")
    p.add_argument("-k", type=int, default=10, help="neighbours per record before widening (default 10)")
    p.add_argument("--where", help="only records matching this metadata filter (JSON)")
    p.add_argument("--clusters", action="store_true", help="write clusters instead of pairs")
    p.add_argument("--min-size", type=int, default=2, help="smallest cluster (default 2)")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_dedupe)
