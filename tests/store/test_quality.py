"""On real STS sentences: every index kind agrees with exact search, and scores are exact whatever the quantization."""

from __future__ import annotations

import numpy as np
import pytest

import vectorstore as vs
from vectorstore.datasets import load_sts, sts_sentences

KINDS = [
    ("exact", {}),
    ("faiss-flat", {}),
    ("faiss-hnsw", {}),
    ("faiss-hnsw-sq", {}),  # 8-bit codes: candidates rescored from SQLite
    ("faiss-ivf", {"nlist": 32}),
    (
        "faiss-ivfpq",
        {"nlist": 32, "refine_factor": 0},
    ),  # raw PQ candidates: the store's rescoring must fix the scores
    ("usearch-hnsw", {}),
    ("usearch-hnsw", {"dtype": "i8"}),
]


@pytest.fixture(scope="module")
def sts_vectors(sts_dir, model):
    sentences = sts_sentences(load_sts(sts_dir / "sts-train.csv"))[:3000]
    vecs = model.encode(sentences, batch_size=64)
    queries = model.encode(sts_sentences(load_sts(sts_dir / "sts-dev.csv"))[:100], batch_size=64)
    return sentences, vecs, queries


@pytest.mark.parametrize(("kind", "options"), KINDS, ids=[f"{k}{o}" for k, o in KINDS])
def test_recall_and_exact_scores(tmp_path, sts_vectors, kind, options):
    sentences, vecs, queries = sts_vectors
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("sts", model=None, embedding_dim=384, index=kind, index_options=options)
        col.add(ids=[str(i) for i in range(len(vecs))], embeddings=vecs, documents=sentences)
        hits = col.query(query_embeddings=queries, k=10)
    truth = queries @ vecs.T  # unit vectors: cosine = dot
    recall = []
    for qi, row in enumerate(hits):
        want = set(np.argsort(-truth[qi])[:10].tolist())
        got = [int(h.id) for h in row]
        recall.append(len(want & set(got)) / 10)
        # invariant 5: every score is the exact similarity with the stored float32 vector
        np.testing.assert_allclose([h.score for h in row], truth[qi][got], atol=1e-5)
        assert [h.document for h in row] == [sentences[i] for i in got]
    assert np.mean(recall) >= 0.95, f"{kind}: recall@10 {np.mean(recall):.3f}"
