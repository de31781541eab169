"""Duplicate detection against sentence-transformers' paraphrase_mining / community_detection."""

from __future__ import annotations

import numpy as np
import pytest

import vectorstore as vs

st_util = pytest.importorskip("sentence_transformers.util")

THRESHOLD = 0.9
KINDS = ["exact", "faiss-flat", "faiss-hnsw", "faiss-hnsw-sq", "faiss-ivf", "faiss-ivfpq", "usearch-hnsw"]


@pytest.fixture(scope="module")
def reference_pairs(sts_all) -> dict[tuple[int, int], float]:
    """Every pair at cosine >= THRESHOLD by exact all-pairs mining (top_k large enough to be complete)."""
    import torch

    _, emb = sts_all
    mined = st_util.paraphrase_mining_embeddings(torch.from_numpy(emb), top_k=200, max_pairs=10**7)
    pairs = {(min(i, j), max(i, j)): float(s) for s, i, j in mined if s >= THRESHOLD}
    assert len(pairs) > 1000  # real duplicates exist in STS, so the comparison means something
    return pairs


def sts_collection(store: vs.Store, sts_all, kind: str) -> vs.Collection:
    _, emb = sts_all
    col = store.create_collection(f"sts-{kind}", model=None, embedding_dim=emb.shape[1], index=kind)
    col.add(ids=[str(i) for i in range(len(emb))], embeddings=emb)
    return col


@pytest.mark.parametrize("kind", KINDS)
def test_find_duplicates_matches_paraphrase_mining(store, sts_all, reference_pairs, kind):
    col = sts_collection(store, sts_all, kind)
    pairs = col.find_duplicates(THRESHOLD)
    got = {(int(p.id_a), int(p.id_b)): p.score for p in pairs}
    assert len(got) == len(pairs)  # each unordered pair once
    assert all(int(p.id_a) < int(p.id_b) for p in pairs)  # id_a is the earlier added
    scores = [p.score for p in pairs]
    assert scores == sorted(scores, reverse=True)
    assert min(scores) >= THRESHOLD  # no pair below the threshold
    found = set(got) & set(reference_pairs)
    recall = len(found) / len(reference_pairs)
    print(f"{kind}: {len(got)} pairs, recall {recall:.4f}")
    assert recall >= 0.99
    # The same scores: both are float32 dot products of the same normalised vectors; only the
    # order of the 384-term sums differs.
    diffs = [abs(got[p] - reference_pairs[p]) for p in found]
    assert max(diffs) < 1e-6
    # Anything we report that the reference does not lies on the threshold within that rounding.
    assert all(abs(got[p] - THRESHOLD) < 1e-6 for p in set(got) - set(reference_pairs))
    if kind == "exact":
        assert recall == 1.0


def test_iter_duplicates_streams_the_same_pairs(store, sts_all):
    col = sts_collection(store, sts_all, "faiss-hnsw")
    streamed = list(col.iter_duplicates(THRESHOLD, batch_size=500))
    assert sorted(streamed, key=lambda p: (-p.score, p.id_a, p.id_b)) == col.find_duplicates(THRESHOLD)


@pytest.mark.parametrize("min_size", [2, 3, 5])
def test_duplicate_clusters_equal_community_detection(store, sts_all, min_size):
    import torch

    _, emb = sts_all
    col = sts_collection(store, sts_all, "exact")
    got = col.duplicate_clusters(THRESHOLD, min_size=min_size)
    want = st_util.community_detection(
        torch.from_numpy(emb), threshold=THRESHOLD, min_community_size=min_size
    )
    assert len(want) > 10
    assert len(got) == len(want)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for g, w in zip(got, want):
        g, w = [int(i) for i in g], [int(i) for i in w]
        assert g[0] == w[0] and set(g) == set(w)  # same centre, same members
        # Same order up to ties: the reference orders equal scores (identical vectors) as torch.topk
        # happens to return them, so compare the score sequences instead of the ids.
        np.testing.assert_allclose(unit[g[0]] @ unit[g].T, unit[w[0]] @ unit[w].T, atol=1e-6)


def test_small_k_still_finds_large_groups(tmp_path):
    """A group of 30 near-identical vectors is found whole even with k=3 (rows are re-searched wider)."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal(16).astype(np.float32)
    group = base + 0.01 * rng.standard_normal((30, 16)).astype(np.float32)
    others = rng.standard_normal((200, 16)).astype(np.float32)
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("g", model=None, embedding_dim=16, index="faiss-hnsw")
        col.add(
            ids=[f"g{i}" for i in range(30)] + [f"o{i}" for i in range(200)],
            embeddings=np.vstack([group, others]),
        )
        pairs = col.find_duplicates(0.99, k=3)
        assert {(p.id_a, p.id_b) for p in pairs} == {
            (f"g{i}", f"g{j}") for i in range(30) for j in range(i + 1, 30)
        }
        clusters = col.duplicate_clusters(0.99, k=3)
        assert len(clusters) == 1 and sorted(clusters[0]) == sorted(f"g{i}" for i in range(30))


def test_filters_restrict_both_sides(tmp_path):
    v = np.array([[1, 0, 0], [1, 0.01, 0], [1, 0.02, 0], [0, 1, 0]], dtype=np.float32)
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("f", model=None, embedding_dim=3, index="exact")
        col.add(
            ids=["a", "b", "c", "d"],
            embeddings=v,
            metadatas=[{"lang": "en"}, {"lang": "de"}, {"lang": "en"}, {"lang": "en"}],
            documents=["x one", "x two", "y three", "x four"],
        )
        assert {(p.id_a, p.id_b) for p in col.find_duplicates(0.99)} == {("a", "b"), ("a", "c"), ("b", "c")}
        assert [(p.id_a, p.id_b) for p in col.find_duplicates(0.99, where={"lang": "en"})] == [("a", "c")]
        assert [(p.id_a, p.id_b) for p in col.find_duplicates(0.99, where_document={"$contains": "x "})] == [
            ("a", "b")
        ]
        col.delete(ids=["a"])
        assert [(p.id_a, p.id_b) for p in col.find_duplicates(0.99)] == [("b", "c")]
        with pytest.raises(vs.InvalidInputError):
            col.find_duplicates("high")
        with pytest.raises(vs.InvalidInputError):
            col.find_duplicates(0.9, k=0)
        with pytest.raises(vs.InvalidInputError):
            col.duplicate_clusters(0.9, min_size=0)


# ---------------------------------------------------------------- ingest-time detection
DOCS = [
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "The stock market fell sharply on Monday.",
]


@pytest.fixture
def text_col(store):
    col = store.create_collection("docs", index="faiss-hnsw")
    col.add(ids=["s0", "s1", "s2"], documents=DOCS)
    return col


def test_skip_reports_stored_and_in_batch_duplicates(text_col):
    result = text_col.add(
        ids=["n0", "n1", "n2", "n3"],
        documents=[
            DOCS[0],
            "Two dogs run through a field.",
            "Two dogs run through a field.",
            "A cat sleeps.",
        ],
        metadatas=[{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}],
        on_duplicate="skip",
    )
    assert result.ids == ["n1", "n3"]
    assert result.skipped_ids == ["n0", "n2"]
    by_id = {s.id: s for s in result.skipped}
    assert by_id["n0"].duplicate_of == "s0" and not by_id["n0"].in_batch
    assert by_id["n2"].duplicate_of == "n1" and by_id["n2"].in_batch
    assert by_id["n0"].score == pytest.approx(1.0, abs=1e-5)
    assert "already stored" in by_id["n0"].reason and "same batch" in by_id["n2"].reason
    assert text_col.count() == 5
    assert text_col.get(ids=["n0", "n2"]).ids == []  # nothing written for the skipped ones
    assert text_col.get(ids=["n1"]).metadatas == [{"i": 1}]


def test_error_writes_nothing(text_col):
    with pytest.raises(vs.DuplicateDocumentError) as info:
        text_col.add(ids=["n0", "n1"], documents=["A cat sleeps.", DOCS[2]], on_duplicate="error")
    assert [d.id for d in info.value.duplicates] == ["n1"]
    assert info.value.duplicates[0].duplicate_of == "s2"
    assert text_col.count() == 3
    with pytest.raises(vs.DuplicateDocumentError):
        text_col.add(ids=["x", "y"], documents=["Same text here.", "Same text here."], on_duplicate="error")
    assert text_col.count() == 3


def test_allow_is_the_default_and_threshold_is_respected(store):
    col = store.create_collection("v", model=None, embedding_dim=2, index="exact")
    col.add(ids=["a"], embeddings=[[1.0, 0.0]])
    near = [np.cos(0.3), np.sin(0.3)]  # cosine 0.955 to "a"
    assert col.add(ids=["b"], embeddings=[near]).ids == ["b"]  # allow: no check
    other_side = [np.cos(-0.3), np.sin(-0.3)]  # cosine 0.955 to "a", 0.825 to "b"
    r = col.add(ids=["c"], embeddings=[other_side], on_duplicate="skip", duplicate_threshold=0.96)
    assert r.ids == ["c"] and r.skipped == []  # 0.955 < 0.96
    r = col.add(
        ids=["d"], embeddings=[[np.cos(0.2), np.sin(0.2)]], on_duplicate="skip", duplicate_threshold=0.97
    )
    assert r.ids == [] and r.skipped[0].duplicate_of == "b"  # cos(0.1) to b beats cos(0.2) to a
    assert r.skipped[0].score == pytest.approx(np.cos(0.1), abs=1e-6)
    assert col.count() == 3
    with pytest.raises(vs.InvalidInputError, match="on_duplicate"):
        col.add(ids=["e"], embeddings=[[0.0, 1.0]], on_duplicate="ignore")
    with pytest.raises(vs.InvalidInputError):
        col.add(ids=["e"], embeddings=[[0.0, 1.0]], on_duplicate="skip", duplicate_threshold="x")
