"""Recall@10 against exact search at each ANN backend's default parameters, on 50k vectors made
from real embeddings (STS sentences embedded with the bundled model, plus noisy renormalised copies)."""

from __future__ import annotations

import numpy as np
import pytest

import indexers
from vectorstore.datasets import derive_vectors, load_sts, sts_sentences

N = 50_000
N_QUERIES = 200


@pytest.fixture(scope="module")
def corpus(sts_dir, model):
    sentences = sts_sentences(load_sts(sts_dir / "sts-train.csv"))
    base = model.encode(sentences[:2000], batch_size=64)
    queries = model.encode(sentences[2000 : 2000 + N_QUERIES], batch_size=64)
    vectors = derive_vectors(base, N, noise=0.03, seed=7)
    exact = indexers.make_index("exact", vectors.shape[1], "cosine")
    exact.add(np.arange(N), vectors)
    truth, _ = exact.search(queries, 10)
    return vectors, queries, truth


@pytest.mark.parametrize("kind", ["faiss-hnsw", "faiss-ivf", "faiss-ivfpq", "usearch-hnsw"])
def test_recall_at_10_default_parameters(corpus, kind):
    vectors, queries, truth = corpus
    index = indexers.make_index(kind, vectors.shape[1], "cosine")
    index.add(np.arange(N), vectors)
    got, scores = index.search(queries, 10)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)])
    print(f"{kind}: recall@10 = {recall:.4f}")
    assert recall >= 0.95
    assert (got >= 0).all() and np.isfinite(scores).all()
