"""How the keyword and hybrid defaults were chosen: analyzer variants and fusion settings, scored on a
BEIR dataset's *train* judgements (the test split is for reporting only).

1. Analyzer variants (BM25 k1=1.2, b=0.75, our BM25Index): stemmer x stop words x minimum token length,
   nDCG@10 on train and test.
2. Fusion grid on train: RRF (k, weights) and weighted (alpha), over a store holding the corpus
   embedded with all-MiniLM-L6-v2 (``--store``, as ``benchmarks/retrieval.py`` leaves it, collection
   ``beir-exact``; ingested here when missing). Every query retrieves 100 hits.

    python benchmarks/tune_hybrid.py [--data ../shared/data/scifact] [--store DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def analyzers(data_dir: str) -> None:
    from vectorstore.beir import load_beir, ndcg_at_k
    from vectorstore.keyword import Analyzer, BM25Index
    from vectorstore.keyword.analyzer import LUCENE_STOPWORDS

    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    except ImportError:
        ENGLISH_STOP_WORDS = frozenset()
    splits = {s: load_beir(data_dir, s) for s in ("train", "test")}
    ids = list(splits["train"].corpus)
    docs = [splits["train"].document(d) for d in ids]
    stops = {"lucene": LUCENE_STOPWORDS, "sklearn": frozenset(ENGLISH_STOP_WORDS), "none": frozenset()}
    print("analyzer (stemmer, stop words, min length): nDCG@10 train / test")
    for stem in ("porter", "english", None):
        for name, words in stops.items():
            if name == "sklearn" and not words:
                continue
            for min_length in (1, 2):
                a = Analyzer(stemmer=stem, stopwords=words, min_length=min_length)
                index = BM25Index()
                index.add(np.arange(len(docs)), a.many(docs))
                scores = []
                for data in splits.values():
                    run = {
                        q: [ids[k] for k in index.search(a.terms(t), 100)[0]] for q, t in data.queries.items()
                    }
                    scores.append(ndcg_at_k(run, data.qrels, 10))
                print(f"  {stem!s:8} {name:8} {min_length}: {scores[0]:.4f} / {scores[1]:.4f}")


def fusion(data_dir: str, store_dir: str) -> None:
    import vectorstore as vs
    from vectorstore.beir import ingest_corpus, load_beir, ndcg_at_k, recall_at_k

    data = load_beir(data_dir, "train")
    with vs.Store(store_dir) as store:
        col = store.get_or_create_collection("beir-exact", index="exact")
        if col.count() != len(data.corpus):
            ingest_corpus(col, data)
        qids, texts = list(data.queries), list(data.queries.values())
        vecs = col.model.encode_query(texts, show_progress_bar=False)

        def score(**kw: object) -> str:
            run = {
                q: [
                    h.id
                    for h in col.query(query_embeddings=vecs[i], query_text=texts[i], k=100, include=(), **kw)
                ]  # type: ignore[arg-type]
                for i, q in enumerate(qids)
            }
            return (
                f"nDCG@10 {ndcg_at_k(run, data.qrels, 10):.4f}  R@100 {recall_at_k(run, data.qrels, 100):.4f}"
            )

        print(f"\nfusion on the train split ({len(qids)} queries)")
        print(f"  vector alone       {score(mode='vector')}")
        print(f"  keyword alone      {score(mode='keyword')}")
        for k in (10, 30, 60, 100):
            for w in ((1, 1), (1, 1.5), (1.5, 1)):
                print(f"  rrf k={k:<3} w={w!s:9}{score(mode='hybrid', fusion='rrf', rrf_k=k, weights=w)}")
        for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
            print(f"  weighted alpha={alpha} {score(mode='hybrid', fusion='weighted', alpha=alpha)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--store", help="store with the embedded corpus (default: a temporary one)")
    args = parser.parse_args()
    analyzers(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        fusion(args.data, args.store or tmp)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
