"""The ``vectorstore`` command, run as a real subprocess through its installed entry point."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vectorstore as vs


def _entry_point() -> list[str]:
    script = Path(sys.executable).parent / "vectorstore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vectorstore.cli"]


def run(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [*_entry_point(), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    if check is not None:
        assert proc.returncode == check, (
            f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("demo") / "store"
    proc = run("demo", "--dir", str(d))
    assert "ingested 248 sample documents" in proc.stdout
    assert "1. 0.8" in proc.stdout and "Berlin has about 3.7 million inhabitants." in proc.stdout
    assert "near-duplicate pairs (cosine >= 0.85): 8" in proc.stdout
    return d


def test_demo_without_arguments_uses_a_temporary_store():
    proc = run("demo")
    assert "ingested 248 sample documents" in proc.stdout
    assert 'where={"topic": "health"}' in proc.stdout
    assert "Traceback" not in proc.stderr


def test_query_with_filter_and_json(demo_store):
    where = {"year": {"$gte": 2020}}
    proc = run(
        "query",
        str(demo_store),
        "sample",
        "planets and stars",
        "-k",
        "5",
        "--where",
        json.dumps(where),
        "--json",
    )
    hits = json.loads(proc.stdout)
    assert len(hits) == 5
    assert all(h["metadata"]["year"] >= 2020 for h in hits)
    assert [h["rank"] for h in hits] == [0, 1, 2, 3, 4]  # Hit.rank's convention
    with vs.Store(demo_store) as store:
        want = store.get_collection("sample").query("planets and stars", k=5, where=where)
    assert [h["id"] for h in hits] == [h.id for h in want]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in want], abs=1e-6)
    text = run("query", str(demo_store), "sample", "planets and stars", "-k", "2").stdout
    assert text.splitlines()[0].startswith("  1. ") and want[0].id in text


def test_info(demo_store):
    proc = run("info", str(demo_store))
    assert "sample: 248 records, model all-MiniLM-L6-v2, 384-d cosine, index faiss-hnsw" in proc.stdout
    info = json.loads(run("info", str(demo_store), "sample", "--json").stdout)
    assert info["collections"][0]["count"] == 248 and info["total_mb"] > 0


def test_dedupe_pairs_and_clusters(demo_store, tmp_path):
    proc = run("dedupe", str(demo_store), "sample", "--threshold", "0.85")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    with vs.Store(demo_store) as store:
        want = store.get_collection("sample").find_duplicates(0.85)
    assert [(r["id_a"], r["id_b"]) for r in rows] == [(p.id_a, p.id_b) for p in want]
    assert len(rows) == 8 and "8 pair(s)" in proc.stderr
    out = tmp_path / "clusters.jsonl"
    run(
        "dedupe",
        str(demo_store),
        "sample",
        "--threshold",
        "0.85",
        "--clusters",
        "--format",
        "jsonl",
        "-o",
        str(out),
    )
    clusters = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(clusters) == 8 and all(c["size"] == 2 for c in clusters)
    assert {frozenset(c["ids"]) for c in clusters} == {frozenset((p.id_a, p.id_b)) for p in want}


def _write_sources(root: Path) -> list[str]:
    (root / "docs.jsonl").write_text(
        json.dumps({"id": "j1", "text": "Cats sleep most of the day.", "topic": "animals", "year": 2020})
        + "\n"
        + json.dumps({"id": "j2", "text": "Rust is a systems programming language.", "topic": "tech"})
        + "\n"
        + "{not json at all\n"
        + json.dumps({"id": "j4", "body": "no text field"})
        + "\n"
    )
    with open(root / "docs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "year"])
        w.writerow(["c1", "The Danube flows through Vienna.", "2018"])
        w.writerow(["c2", "Tea contains caffeine.", "2021"])
    (root / "notes.txt").write_text("First note about gardening.\n\nSecond note about baking bread.\n")
    folder = root / "pages"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# Sailing\nHow to tie a bowline knot.")
    (folder / "sub" / "b.txt").write_text("Notes on learning the violin.")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    return [str(root / "docs.jsonl"), str(root / "docs.csv"), str(root / "notes.txt"), str(folder)]


def test_ingest_every_file_type_idempotent_with_malformed_lines(tmp_path):
    sources = _write_sources(tmp_path)
    store = tmp_path / "store"
    proc = run("ingest", str(store), "mixed", *sources, "--quiet")
    assert f"{sources[0]}:3: invalid JSON" in proc.stderr
    assert f"{sources[0]}:4: no 'text' field" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        "ingested 8 document(s)" in proc.stdout
        and "8 new, 0 updated, 0 unchanged, 2 malformed skipped" in proc.stdout
    )
    with vs.Store(store) as s:
        col = s.get_collection("mixed")
        got = col.get()
        by_id = dict(zip(got.ids, zip(got.documents, got.metadatas)))
    assert set(by_id) == {
        "j1", "j2", "c1", "c2",
        f"{sources[2]}:1", f"{sources[2]}:3",
        f"{sources[3]}/a.md", f"{sources[3]}/sub/b.txt",
    }  # fmt: skip
    assert by_id["j1"][1] == {"topic": "animals", "year": 2020}
    assert by_id["c1"] == ("The Danube flows through Vienna.", {"year": 2018})  # numbers from CSV are numbers
    assert by_id[f"{sources[2]}:3"][0] == "Second note about baking bread."
    assert by_id[f"{sources[3]}/a.md"][0] == "# Sailing\nHow to tie a bowline knot."

    again = run("ingest", str(store), "mixed", *sources, "--quiet")
    assert "0 new, 0 updated, 8 unchanged" in again.stdout and "the collection holds 8" in again.stdout


def test_ingest_abort_writes_nothing(tmp_path):
    sources = _write_sources(tmp_path)
    proc = run("ingest", str(tmp_path / "store"), "strict", *sources, "--on-error", "abort", check=1)
    assert "nothing was written" in proc.stderr and "Traceback" not in proc.stderr
    assert (
        not (tmp_path / "store").exists() or "strict" not in vs.Store(tmp_path / "store").list_collections()
    )


def test_eval_sts(sts_dir, tmp_path, model):
    from scipy.stats import spearmanr

    from vectorstore.datasets import load_sts

    lines = (sts_dir / "sts-dev.csv").read_text(encoding="utf-8").splitlines()[:300]
    path = tmp_path / "small-sts.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = json.loads(run("eval", "sts", str(path), "--json").stdout)
    pairs = load_sts(path)
    a = model.encode([p.sentence1 for p in pairs])
    b = model.encode([p.sentence2 for p in pairs])
    want = spearmanr([p.score for p in pairs], model.similarity_pairwise(a, b).numpy()).statistic
    assert out["n_pairs"] == 300
    assert out["spearman"] == pytest.approx(want, abs=1e-4)
    assert 0.7 < out["spearman"] < 0.95


def test_user_errors_are_one_line_without_traceback(tmp_path, demo_store):
    cases = [
        (("query", str(tmp_path / "nowhere"), "c", "text"), "is not a vectorstore store"),
        (("query", str(demo_store), "missing", "text"), "no collection named 'missing'"),
        (("query", str(demo_store), "sample", "text", "--where", "{bad"), "--where is not valid JSON"),
        (("query", str(demo_store), "sample", "text", "--where", '{"year": {"$near": 1}}'), "$near"),
        (("query", str(demo_store), "sample", "text", "--rerank"), "no reranker"),
        (("ingest", str(tmp_path / "s"), "c", str(tmp_path / "missing.jsonl")), "no such file"),
        (("eval", "sts", str(tmp_path / "missing.csv")), "no such file"),
    ]
    for args, message in cases:
        proc = run(*args, check=1)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    usage = run("query", check=2)
    assert "usage:" in usage.stderr


def test_python_dash_m_works(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vectorstore.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "ingest" in proc.stdout and "dedupe" in proc.stdout
    assert shutil.which("vectorstore") is not None or Path(_entry_point()[0]).exists()


def test_vacuum_command(tmp_path):
    import numpy as np

    import vectorstore as vs

    with vs.Store(tmp_path / "s") as store:
        col = store.create_collection("v", model=None, embedding_dim=32, index="exact")
        col.add(
            ids=[str(i) for i in range(3000)], embeddings=np.random.default_rng(0).standard_normal((3000, 32))
        )
        col.delete(ids=[str(i) for i in range(2900)])
    out = run("vacuum", str(tmp_path / "s")).stdout
    assert out.startswith(f"vacuumed {tmp_path / 's'}: ") and "MB given back" in out
    assert float(out.split(": ")[1].split()[0]) > 0.1  # 2,900 vectors of 128 bytes and their rows
    with vs.Store(tmp_path / "s") as store:
        assert store.get_collection("v").count() == 100
    import sqlite3

    db = sqlite3.connect(tmp_path / "s" / vs.store.DB_FILE)
    assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0  # the deleted rows' pages are gone
    db.close()
