"""BEIR loading, the retrieval metrics against hand computations, ``vectorstore eval beir``, and the
keyword index's quality on the real SciFact test queries."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import vectorstore as vs
from tests.test_cli import run
from vectorstore.beir import (
    evaluate_beir,
    load_beir,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    run_queries,
)
from vectorstore.errors import InvalidInputError

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"


def test_metrics_equal_hand_computations():
    qrels = {"q1": {"a": 1, "b": 1, "z": 0}, "q2": {"c": 2, "d": 1}, "q3": {"e": 1}}
    run_ = {"q1": ["x", "a", "y", "b"], "q2": ["d", "c"], "q3": []}
    # q1: gains at ranks 2 and 4; ideal: two relevant documents at ranks 1 and 2
    q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    # q2: gain 1 at rank 1, gain 2 at rank 2; ideal 2 then 1 (linear gains, as pytrec_eval)
    q2 = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(run_, qrels, 10) == pytest.approx((q1 + q2 + 0) / 3, abs=1e-12)
    assert ndcg_at_k(run_, qrels, 2) == pytest.approx(
        ((1 / math.log2(3)) / (1 + 1 / math.log2(3)) + q2) / 3, abs=1e-12
    )
    assert recall_at_k(run_, qrels, 3) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert mrr_at_k(run_, qrels, 10) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert mrr_at_k(run_, qrels, 1) == pytest.approx((0 + 1 + 0) / 3)
    assert ndcg_at_k({"q1": ["a", "b"]}, {"q1": {"a": 1, "b": 1}}, 10) == pytest.approx(1.0)


def _write_beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    docs = {
        "d1": ("Photosynthesis", "Plants turn light into sugar in their leaves."),
        "d2": ("Volcanoes", "Magma rises through the crust and erupts as lava."),
        "d3": ("Glaciers", "Ice sheets carve valleys as they slowly move downhill."),
        "d4": ("Vaccines", "An immune response is trained by exposure to an antigen."),
        "d5": ("Tides", "The moon's gravity pulls the oceans into bulges."),
        "d6": ("Coffee", "Roasted beans are ground and brewed with hot water."),
    }
    with (root / "corpus.jsonl").open("w") as fh:
        for i, (t, x) in docs.items():
            fh.write(json.dumps({"_id": i, "title": t, "text": x}) + "\n")
    queries = {
        "q1": "how do plants make sugar from light",
        "q2": "lava erupts from magma",
        "q3": "the moon pulls the oceans",
        "q9": "an unjudged query",
    }
    with (root / "queries.jsonl").open("w") as fh:
        for i, x in queries.items():
            fh.write(json.dumps({"_id": i, "text": x, "metadata": {}}) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td5\t1\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq9\td6\t1\n")
    return root


def test_loader_reads_a_beir_folder(tmp_path):
    data = load_beir(_write_beir(tmp_path / "b"))
    assert len(data.corpus) == 6
    assert set(data.queries) == {"q1", "q2", "q3"}  # only the judged queries of the split
    assert data.qrels["q2"] == {"d2": 1}
    assert data.document("d1") == "Photosynthesis Plants turn light into sugar in their leaves."
    assert set(load_beir(tmp_path / "b", "train").queries) == {"q9"}


def test_loader_errors(tmp_path):
    root = _write_beir(tmp_path / "b")
    with pytest.raises(InvalidInputError, match="missing"):
        load_beir(root, "dev")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq404\td1\t1\n")
    with pytest.raises(InvalidInputError, match="unknown query"):
        load_beir(root)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\tyes\n")
    with pytest.raises(InvalidInputError, match="not an integer"):
        load_beir(root)
    (root / "corpus.jsonl").write_text("{not json\n")
    with pytest.raises(InvalidInputError, match="not JSON"):
        load_beir(root)


def test_evaluate_beir_on_a_small_folder(tmp_path):
    root = _write_beir(tmp_path / "b")
    with vs.Store(tmp_path / "s", device="cpu") as store:
        report = evaluate_beir(store, root, modes=["keyword", "vector", "hybrid"], show_progress_bar=False)
    assert report.documents == 6 and report.queries == 3
    by_mode = {f.mode: f for f in report.modes}
    # each judged query names its one relevant document in plain words: every mode ranks it first
    for f in by_mode.values():
        assert f.ndcg_at_10 == pytest.approx(1.0)
        assert f.mrr_at_10 == pytest.approx(1.0)
        assert f.recall_at_100 == pytest.approx(1.0)
        assert f.p50_ms > 0


def test_cli_eval_beir_prints_the_figures(tmp_path):
    root = _write_beir(tmp_path / "b")
    out = json.loads(run("eval", "beir", str(root), "--mode", "keyword,hybrid", "--json").stdout)
    assert [m["mode"] for m in out["modes"]] == ["keyword", "hybrid"]
    assert all(m["ndcg_at_10"] == pytest.approx(1.0) for m in out["modes"])
    text = run("eval", "beir", str(root), "--mode", "keyword").stdout
    assert "nDCG@10" in text and "keyword" in text
    bad = run("eval", "beir", str(root), "--mode", "sparse", check=1)
    assert "vector, keyword" in bad.stderr


@pytest.fixture(scope="module")
def scifact():
    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip(f"SciFact not found at {SCIFACT}")
    return load_beir(SCIFACT, "test")


def test_keyword_search_quality_on_scifact(tmp_path, scifact):
    """BM25 alone, no model: nDCG@10 on the 300 judged SciFact test queries at least LanceDB's 0.684."""
    ids = list(scifact.corpus)
    rng = np.random.default_rng(0)
    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("sf", model=None, embedding_dim=4, index="exact")
        col.add(ids=ids, documents=[scifact.document(d) for d in ids], embeddings=rng.standard_normal((len(ids), 4)))
        figures = run_queries(col, scifact, "keyword", k=100)
    assert figures.queries == 300
    assert figures.ndcg_at_10 >= 0.684
    assert figures.recall_at_100 >= 0.9
