"""Retrieval quality and latency per query mode on a BEIR dataset, against bm25s, sentence-transformers
and LanceDB in the same run; then keyword search at 200k documents.

Part 1 (``--data``, default ``../shared/data/scifact``, the test split): the corpus (``title + " " +
text``) is ingested with all-MiniLM-L6-v2 into an ``exact`` collection (timed until searchable) and,
with the same stored vectors, into a ``faiss-hnsw`` one. Every judged query runs one at a time, text
in -> ids out, each contender's turn rotating per query so no one owns a quiet stretch of the
machine: all retrieve 100 hits (Recall@100), nDCG@10 and MRR@10 come from the same lists.

- ours: vector (exact, faiss-hnsw), keyword (BM25), hybrid (weighted fusion, the default; and RRF).
- bm25s (method "lucene", k1=1.2, b=0.75, its English stop words, PyStemmer Porter): BM25 reference.
- sentence-transformers ``util.semantic_search`` over the same corpus embeddings (encoder parity
  is tested elsewhere; embedding the corpus twice would double the run).
- LanceDB (when installed): the same vectors; vector search (brute force, cosine), native FTS
  (stemming, stop words, ASCII folding), hybrid with its ``RRFReranker``.

Latency is the search given the query text and its vector (one vector per query, encoded once by our
encoder and handed to every contender), so the rows compare retrieval, not the encoder; query
encoding is timed on its own (ours and sentence-transformers') and printed below the table.

Part 2 (``--n``, default 200,000): the STS-derived corpus of ``benchmarks/store.py`` (each vector's
source sentence as its document) in a bring-your-own-vector ``faiss-hnsw`` collection (the default
index), ingested until every record is ANN-searchable; keyword p50 over
``--queries`` held-out STS sentences (query vectors given, so the time is the keyword stage plus the
exact scores of its hits), and the one-off keyword-index build (it is built on the first keyword
query, not during ingest) against the ingest time.

    python benchmarks/retrieval.py [--data DIR] [--n 200000] [--queries 1000] [--store DIR] [--no-lancedb]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import pct

import vectorstore as vs
from vectorstore.beir import BeirData, ingest_corpus, load_beir, mrr_at_k, ndcg_at_k, recall_at_k

K = 100
ROOT = Path(__file__).resolve().parents[1]


def _ingest(store: vs.Store, data: BeirData) -> tuple[Any, Any, float, np.ndarray]:
    ids = list(data.corpus)
    docs = [data.document(d) for d in ids]
    exact = store.get_or_create_collection("beir-exact", index="exact")
    ingest_s = ingest_corpus(exact, data) if exact.count() != len(ids) else float("nan")
    vecs = np.asarray(exact.get(ids=ids, include=["embeddings"]).embeddings, dtype=np.float32)
    hnsw = store.get_or_create_collection("beir-hnsw", index="faiss-hnsw")
    if hnsw.count() != len(ids):
        hnsw.upsert(ids=ids, documents=docs, embeddings=vecs)
        hnsw.wait_until_indexed()
    return exact, hnsw, ingest_s, vecs


def _lancedb(work: Path, data: BeirData, vecs: np.ndarray) -> dict[str, Callable[[str, np.ndarray], list[str]]]:
    try:
        import lancedb
        import pyarrow as pa
        from lancedb.rerankers import RRFReranker
    except ImportError:
        print("LanceDB not installed: its rows are skipped")
        return {}
    ids = list(data.corpus)
    db = lancedb.connect(str(work / "lance"))
    table = pa.table(
        {
            "id": ids,
            "text": [data.document(d) for d in ids],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1]),
        }
    )
    tbl = db.create_table("beir", data=table)
    tbl.create_fts_index("text", stem=True, remove_stop_words=True, ascii_folding=True)
    rrf = RRFReranker()

    def vector(text: str, qv: np.ndarray) -> list[str]:
        return [r["id"] for r in tbl.search(qv).metric("cosine").limit(K).to_list()]

    def fts(text: str, qv: np.ndarray) -> list[str]:
        return [r["id"] for r in tbl.search(text, query_type="fts").limit(K).to_list()]

    def hybrid(text: str, qv: np.ndarray) -> list[str]:
        q = tbl.search(query_type="hybrid").vector(qv).text(text).metric("cosine").rerank(rrf).limit(K)
        return [r["id"] for r in q.to_list()]

    return {"lancedb vector": vector, "lancedb fts": fts, "lancedb hybrid rrf": hybrid}


def _bm25s(data: BeirData) -> Callable[[str, np.ndarray], list[str]] | None:
    try:
        import bm25s
        import Stemmer
    except ImportError:
        print("bm25s / PyStemmer not installed: the bm25s row is skipped")
        return None
    ids = list(data.corpus)
    stemmer = Stemmer.Stemmer("porter")
    retriever = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    retriever.index(
        bm25s.tokenize([data.document(d) for d in ids], stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )

    def search(text: str, qv: np.ndarray) -> list[str]:
        tok = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, show_progress=False)
        if not tok.vocab:
            return []
        docs, _ = retriever.retrieve(tok, k=K, show_progress=False, n_threads=1)
        return [ids[i] for i in docs[0]]

    return search


def _sentence_transformers(vecs: np.ndarray, data: BeirData) -> Callable[[str, np.ndarray], list[str]] | None:
    try:
        import sentence_transformers as st
        import torch
    except ImportError:
        print("sentence-transformers not installed: its row is skipped")
        return None
    from tests.helpers import bundled_model_dir

    model = st.SentenceTransformer(str(bundled_model_dir()), device="cpu")
    corpus = torch.from_numpy(vecs)
    ids = list(data.corpus)

    def search(text: str, qv: np.ndarray) -> list[str]:
        q = torch.from_numpy(qv[None, :])
        return [ids[h["corpus_id"]] for h in st.util.semantic_search(q, corpus, top_k=K)[0]]

    def encode(text: str) -> np.ndarray:
        return np.asarray(model.encode([text], show_progress_bar=False))

    search.encode = encode  # type: ignore[attr-defined]
    return search


def part1(args: argparse.Namespace, work: Path) -> None:
    data = load_beir(args.data, "test")
    print(f"{args.data}: {len(data.corpus)} documents, {len(data.queries)} judged test queries, k={K}\n")
    store = vs.Store(args.store or work / "store")
    exact, hnsw, ingest_s, vecs = _ingest(store, data)
    t = time.perf_counter()
    exact.query("warm up the keyword index", mode="keyword")
    build_s = time.perf_counter() - t
    if ingest_s == ingest_s:
        print(
            f"ingest (embed + store + index, until searchable): {ingest_s:.1f} s; keyword index build on "
            f"first keyword query: {build_s:.2f} s = {100 * build_s / ingest_s:.2f} % of the ingest\n"
        )
    else:
        print(f"(store reused from {args.store}: ingest not timed) keyword index build: {build_s:.2f} s\n")
    model = exact.model

    def ours(col: Any, mode: str, **kw: Any) -> Callable[[str, np.ndarray], list[str]]:
        def search(text: str, qv: np.ndarray) -> list[str]:
            extra = {"query_text": text} if mode != "vector" else {}
            hits = col.query(query_embeddings=qv, k=K, mode=mode, include=(), **extra, **kw)
            return [h.id for h in hits]

        return search

    contenders: dict[str, Callable[[str, np.ndarray], list[str]]] = {
        "ours vector exact": ours(exact, "vector"),
        "ours vector faiss-hnsw": ours(hnsw, "vector"),
        "ours keyword": ours(exact, "keyword"),
        "ours hybrid weighted": ours(exact, "hybrid"),
        "ours hybrid rrf": ours(exact, "hybrid", fusion="rrf"),
    }
    ref = _bm25s(data)
    if ref is not None:
        contenders["bm25s"] = ref
    sem = _sentence_transformers(vecs, data)
    if sem is not None:
        contenders["st semantic_search"] = sem
    lance = {} if args.no_lancedb else _lancedb(work, data, vecs)
    contenders.update(lance)
    names = list(contenders)
    runs: dict[str, dict[str, list[str]]] = {n: {} for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    encode_t: dict[str, list[float]] = {"ours": [], "sentence-transformers": []}
    ref_encode = getattr(sem, "encode", None)
    for i, (qid, text) in enumerate(data.queries.items()):
        # query encoding, timed on its own (the two encoders' order alternating): every contender
        # below gets our vector
        for who in ("ours", "sentence-transformers")[:: 1 if i % 2 else -1]:
            t = time.perf_counter()
            if who == "ours":
                qv = np.asarray(model.encode_query([text], show_progress_bar=False), dtype=np.float32)[0]
            elif ref_encode is not None:
                ref_encode(text)
            else:
                continue
            encode_t[who].append(time.perf_counter() - t)
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t = time.perf_counter()
            runs[name][qid] = contenders[name](text, qv)
            times[name].append(time.perf_counter() - t)
    print("search latency per query: query text and its vector in, 100 ids out (encoding not included)")
    print(f"{'contender':<24}{'nDCG@10':>9}{'R@100':>8}{'MRR@10':>8}{'p50 ms':>8}{'p99 ms':>8}")
    for name in names:
        print(
            f"{name:<24}{ndcg_at_k(runs[name], data.qrels, 10):9.4f}{recall_at_k(runs[name], data.qrels, 100):8.4f}"
            f"{mrr_at_k(runs[name], data.qrels, 10):8.4f}{1000 * pct(times[name], 0.5):8.2f}{1000 * pct(times[name], 0.99):8.2f}"
        )
    for who, ts in encode_t.items():
        if ts:
            print(f"query encoding p50, {who}: {1000 * pct(ts, 0.5):.2f} ms (add it to every vector/hybrid row)")
    p = {n: 1000 * pct(times[n], 0.5) for n in names}
    print(
        f"\nhybrid p50 / (vector p50 + keyword p50): {p['ours hybrid weighted']:.2f} / "
        f"({p['ours vector exact']:.2f} + {p['ours keyword']:.2f}) ms"
    )
    if "lancedb hybrid rrf" in p:
        print(f"our hybrid p50 / LanceDB hybrid p50: {p['ours hybrid weighted'] / p['lancedb hybrid rrf']:.2f}x")
    store.close()


def part2(args: argparse.Namespace, work: Path) -> None:
    from _common import sts_derived

    from vectorstore.datasets import find_sts_dir, load_sts, sts_sentences

    vectors, queries, docs, _ = sts_derived(args.n, args.queries)
    sts = find_sts_dir()
    assert sts is not None
    texts = sts_sentences(load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv"))[-args.queries :]
    print(f"\n{len(vectors)} STS-derived documents, {len(texts)} held-out sentence queries, k=10")
    with vs.Store(work / "store200k") as store:
        col = store.create_collection("kw", model=None, embedding_dim=vectors.shape[1], index="faiss-hnsw")
        t = time.perf_counter()
        step = 10_000
        for s in range(0, len(vectors), step):
            col.add(
                ids=[str(i) for i in range(s, min(s + step, len(vectors)))],
                documents=docs[s : s + step],
                embeddings=vectors[s : s + step],
            )
        col.wait_until_indexed()
        ingest_s = time.perf_counter() - t
        t = time.perf_counter()
        col.query(query_embeddings=queries[0], query_text=texts[0], mode="keyword")
        build_s = time.perf_counter() - t
        lat: list[float] = []
        vec_lat: list[float] = []
        for qv, text in zip(queries, texts):
            t = time.perf_counter()
            col.query(query_embeddings=qv, query_text=text, mode="keyword", k=10)
            lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            col.query(query_embeddings=qv, k=10)
            vec_lat.append(time.perf_counter() - t)
    print(
        f"ingest (faiss-hnsw, BYO vectors, until ANN-searchable) {ingest_s:.1f} s = {len(vectors) / ingest_s:.0f} docs/s; keyword "
        f"index build on the first keyword query {build_s:.2f} s ({100 * build_s / ingest_s:.1f} % of the ingest)"
    )
    print(
        f"keyword p50 {1000 * pct(lat, 0.5):.2f} ms, p99 {1000 * pct(lat, 0.99):.2f} ms "
        f"(faiss-hnsw vector query in the same loop: p50 {1000 * pct(vec_lat, 0.5):.2f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--n", type=int, default=200_000, help="part 2 corpus size (0 skips part 2)")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--store", help="reuse this store for part 1 (its ingest is then not timed)")
    parser.add_argument("--no-lancedb", action="store_true")
    parser.add_argument("--skip-part1", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vs-retrieval-"))
    try:
        if not args.skip_part1:
            part1(args, work)
        if args.n:
            part2(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    main()
