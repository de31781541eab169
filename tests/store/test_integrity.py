"""Integrity: derived files tied to their database, bit rot caught, a full disk survived, storage
errors that say what happened (and `Store.verify` / `vectorstore verify`)."""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

import vectorstore as vs
from indexers.scoring import exact_scores

DIM = 16


def _vectors(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _fill(path: Path, n: int = 400, kind: str = "faiss-hnsw", **store_kw) -> np.ndarray:
    vecs = _vectors(n)
    with vs.Store(path, **store_kw) if not store_kw else vs.Store(**store_kw) as store:
        col = store.get_or_create_collection("c", model=None, embedding_dim=DIM, index=kind)
        col.add(ids=[str(i) for i in range(n)], embeddings=vecs)
    return vecs


def _generation(path: Path) -> Path:
    collection_dir = next((path / "indexes").iterdir())
    return collection_dir / json.loads((collection_dir / "CURRENT").read_text())["generation"]


def _assert_brute_force(col: vs.Collection, ids: list[str], vecs: np.ndarray, n_queries: int = 20) -> None:
    """Every query's top-1 and its score equal exact search over ``vecs`` (whose ids are ``ids``)."""
    q = vecs[:n_queries] + 0.01
    truth = exact_scores("cosine", q, vecs)
    for qi, row in enumerate(col.query(query_embeddings=q, k=3)):
        best = int(np.argmax(truth[qi]))
        assert row[0].id == ids[best]
        np.testing.assert_allclose(row[0].score, truth[qi, best], atol=1e-5)


def _garble_in_place(path: Path, offset: int) -> None:
    """Flip bytes without changing size, inode or mtime: what bit rot looks like to a stat check."""
    st = path.stat()
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = fh.read(16)
        fh.seek(offset)
        fh.write(bytes(b ^ 0x5A for b in data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_ino == st.st_ino and path.stat().st_mtime_ns == st.st_mtime_ns


# ---------------------------------------------------------------------- 1. a full disk
def _enospc_on_index_save(monkeypatch) -> None:
    """The vector cache saves, then the ANN index's write fails as on a full disk."""
    from indexers.faiss.hnsw import FaissHNSWIndex

    def full(self, directory, tag):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FaissHNSWIndex, "_write_files", full)


def test_a_failed_save_leaves_the_previous_pair_and_the_store_opens(tmp_path, monkeypatch, caplog):
    path = tmp_path / "s"
    vecs = _fill(path, 300)
    before = _generation(path)
    more = _vectors(200, seed=5)
    with monkeypatch.context() as m:
        _enospc_on_index_save(m)
        store = vs.Store(path)
        col = store.get_collection("c")
        col.add(ids=[f"m{i}" for i in range(200)], embeddings=more)
        with pytest.raises(vs.DiskFullError, match=str(path / "indexes")) as info:
            col.persist()
        assert isinstance(info.value.__cause__, OSError)
        # nothing half-written: the old generation is still the current one, alone
        assert _generation(path) == before
        assert [p.name for p in before.parent.iterdir() if p.name.startswith("gen-")] == [before.name]
        with caplog.at_level(logging.WARNING):
            store.close()  # the automatic save fails too: logged, not raised
        assert "no space left" in caplog.text.lower()
        # a store whose files are missing rebuilds in memory and opens although the save fails
        for p in sorted((path / "indexes").rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        with vs.Store(path) as store:
            col = store.get_collection("c")
            _assert_brute_force(
                col, [str(i) for i in range(300)] + [f"m{i}" for i in range(200)], np.vstack([vecs, more])
            )
    with vs.Store(path) as store:  # the disk has room again: saved, and loads cleanly
        _assert_brute_force(
            store.get_collection("c"),
            [str(i) for i in range(300)] + [f"m{i}" for i in range(200)],
            np.vstack([vecs, more]),
        )
    assert _generation(path).exists()


def test_a_stale_but_consistent_pair_is_caught_up_not_rebuilt(tmp_path, monkeypatch, caplog):
    path = tmp_path / "s"
    vecs = _fill(path, 300)
    more = _vectors(100, seed=6)
    with monkeypatch.context() as m:
        _enospc_on_index_save(m)
        with vs.Store(path) as store:
            store.get_collection("c").add(ids=[f"m{i}" for i in range(100)], embeddings=more)
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        state = col._state
        assert state.saved_seq < state.applied_seq  # loaded the old pair, replayed the log
        _assert_brute_force(
            col, [str(i) for i in range(300)] + [f"m{i}" for i in range(100)], np.vstack([vecs, more])
        )
    assert "rebuild" not in caplog.text


def test_full_tmpfs(tmp_path):
    """The real thing where mounting is allowed: a small tmpfs filled up."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a tmpfs needs root and a sandbox that allows it")
    try:
        path = mnt / "s"
        vecs = _fill(path, 2000)
        filler = mnt / "filler"
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        filler.write_bytes(b"\0" * max(free - (320 << 10), 0))  # ~320 KiB left: less than one save
        with vs.Store(path) as store:
            col = store.get_collection("c")
            index_file = next(_generation(path).glob("index/*.faiss"))
            assert index_file.stat().st_size > 320 << 10  # what the next save must write again
            col.delete(ids=["0"])  # a few 16 KiB WAL pages fit; a save of the HNSW file does not
            with pytest.raises(vs.DiskFullError):
                col.persist()
        with vs.Store(path) as store:  # opens although nothing more can be saved
            col = store.get_collection("c")
            _assert_brute_force(col, [str(i) for i in range(1, 2000)], vecs[1:])
        filler.unlink()
        with vs.Store(path) as store:
            store.get_collection("c").persist()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)  # -l: mapped files may linger


# ---------------------------------------------------------------------- 2. bit rot that keeps the stat
@pytest.mark.parametrize("role", ["vectors", "keys"])
def test_bit_rot_in_an_exact_index_is_caught(tmp_path, role, caplog):
    path = tmp_path / "s"
    vecs = _fill(path, 500, kind="exact")
    gen = _generation(path)
    manifest = json.loads((gen / "index" / "manifest.json").read_text())
    target = gen / "index" / manifest["files"][role]["name"]
    _garble_in_place(target, target.stat().st_size // 2)
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        _assert_brute_force(col, [str(i) for i in range(500)], vecs, n_queries=100)
    assert "rebuild" in caplog.text and "checksum" in caplog.text


def test_bit_rot_in_the_vector_cache_is_caught_on_first_use(tmp_path, caplog):
    path = tmp_path / "s"
    vecs = _fill(path, 500, kind="usearch-hnsw")
    gen = _generation(path)
    manifest = json.loads((gen / "vectors" / "manifest.json").read_text())
    target = gen / "vectors" / manifest["files"]["vectors"]["name"]
    _garble_in_place(target, target.stat().st_size - 200 * 4 * DIM)  # inside some stored row
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        _assert_brute_force(col, [str(i) for i in range(500)], vecs, n_queries=500)
    assert "checksum" in caplog.text and "rebuild" in caplog.text


def test_bit_rot_in_a_native_index_file_is_caught_in_the_background(tmp_path, caplog, monkeypatch):
    from indexers import persistence

    monkeypatch.setattr(persistence, "_SMALL_FILE", 4096)  # deferred, as a file over 16 MiB is
    path = tmp_path / "s"
    vecs = _fill(path, 3000, kind="faiss-hnsw")
    gen = _generation(path)
    manifest = json.loads((gen / "index" / "manifest.json").read_text())
    target = gen / "index" / manifest["files"]["index"]["name"]
    assert target.stat().st_size > 16 << 10
    _garble_in_place(target, target.stat().st_size - 1000 * 4 * DIM)  # in the graph's float storage
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        assert col._state.index.pending_verification  # the check is still to come
        ids = [str(i) for i in range(3000)]
        # before the check is done, scores are recomputed from the vector cache: exact either way
        q = vecs[:5] + 0.01
        truth = exact_scores("cosine", q, vecs)
        for qi, row in enumerate(col.query(query_embeddings=q, k=3)):
            for h in row:
                np.testing.assert_allclose(h.score, truth[qi, ids.index(h.id)], atol=1e-5)
        col._state.wait_verified(60)
        assert "checksum" in caplog.text and "rebuild" in caplog.text
        _assert_brute_force(col, ids, vecs, n_queries=50)


@pytest.mark.parametrize("with_blocks", [True, False], ids=["block-checksums", "saved-without-them"])
def test_bit_rot_in_the_index_storage_never_scores_a_result(tmp_path, caplog, monkeypatch, with_blocks):
    """faiss-hnsw is its own vector cache: until its file's checksum is done, the vectors that score
    results are checked against the block checksums saved with the graph — a garbled row is caught by
    the first query that reads it, and the index rebuilt from SQLite before anything is answered — or,
    for files saved without block checksums, read from SQLite instead of the storage."""
    from indexers import persistence
    from indexers.faiss.hnsw import FaissHNSWIndex

    monkeypatch.setattr(persistence, "_SMALL_FILE", 4096)  # this small file is checked as a large one is
    if not with_blocks:  # a save as earlier versions wrote it: no "blocks" file
        real_write = FaissHNSWIndex._write_files

        def without_blocks(self, directory, tag):
            files = real_write(self, directory, tag)
            files.pop("blocks").unlink()
            return files

        monkeypatch.setattr(FaissHNSWIndex, "_write_files", without_blocks)
    path = tmp_path / "s"
    vecs = _vectors(3000)
    with vs.Store(path) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        col.add(ids=[str(i) for i in range(3000)], embeddings=vecs)
    gen = _generation(path)
    assert not (gen / "vectors").exists()
    manifest = json.loads((gen / "index" / "manifest.json").read_text())
    assert ("blocks" in manifest["files"]) == with_blocks
    target = gen / "index" / manifest["files"]["index"]["name"]
    unit = vecs[0] / np.linalg.norm(vecs[0])
    offset = target.read_bytes().find(unit.astype(np.float32).tobytes())
    assert offset > 0  # record 0's stored row, as FAISS keeps it
    st = target.stat()
    with open(target, "r+b") as fh:  # one component becomes 50: a huge score for queries near it
        fh.seek(offset)
        fh.write(np.float32(50.0).tobytes())
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        assert col._state.index.pending_verification  # loaded with the file's check still to come
        assert col._state.index.verifies_reads == with_blocks
        q = vecs[:1] + 0.01
        truth = exact_scores("cosine", q, vecs)[0]
        hits = col.query(query_embeddings=q, k=5)[0]
        for h in hits:
            np.testing.assert_allclose(h.score, truth[int(h.id)], atol=1e-5)
        assert hits[0].id == "0"
        if with_blocks:  # caught by the query that read the row: rebuilt at once
            assert "rows 0..7 fail their checksum" in caplog.text and "rebuild" in caplog.text
            assert not col._state.index.pending_verification
        else:  # the query read SQLite; the background check finds the damage later
            assert col._state.index.pending_verification
            assert "checksum" not in caplog.text
        col._state.wait_verified(60)
        assert "checksum" in caplog.text and "rebuild" in caplog.text
        _assert_brute_force(col, [str(i) for i in range(3000)], vecs, n_queries=50)


def test_an_intact_store_is_verified_without_a_rebuild(tmp_path, caplog):
    path = tmp_path / "s"
    vecs = _fill(path, 3000, kind="faiss-hnsw")
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        col = store.get_collection("c")
        col._state.wait_verified(60)
        assert not col._state._unverified and col._state.index_scores_exact
        _assert_brute_force(col, [str(i) for i in range(3000)], vecs)
    assert caplog.text == ""


# ---------------------------------------------------------------------- 3. files tied to their database
def test_index_files_of_another_database_are_refused(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    idx = tmp_path / "idx"
    _fill(tmp_path, 300, url=url, index_dir=idx)
    for f in tmp_path.glob("meta.db*"):
        f.unlink()
    # a new database, a same-named collection, more changes than the old files reflect, written
    # by a process that saves no index files (or died before saving)
    fresh = _vectors(600, seed=11)
    with vs.Store(url=url) as store:
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        col.add(ids=[f"n{i}" for i in range(600)], embeddings=fresh)
    with caplog.at_level(logging.WARNING), vs.Store(url=url, index_dir=idx) as store:
        col = store.get_collection("c")
        _assert_brute_force(col, [f"n{i}" for i in range(600)], fresh)
    assert "another database" in caplog.text


def test_index_files_of_an_earlier_collection_of_the_same_name_are_refused(tmp_path, caplog):
    path = tmp_path / "s"
    _fill(path, 300)
    old = next((path / "indexes").iterdir())
    saved = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    with vs.Store(path) as store:
        store.delete_collection("c")
        fresh = _vectors(50, seed=12)
        col = store.create_collection("c", model=None, embedding_dim=DIM, index="faiss-hnsw")
        col.add(ids=[f"n{i}" for i in range(50)], embeddings=fresh)
        new_dir = col._state.directory
    for p, data in saved.items():  # the old files come back (a restored backup, a stale process)
        target = new_dir / p.relative_to(old)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if (new_dir / "CURRENT").exists():
        (new_dir / "CURRENT").write_bytes(saved[old / "CURRENT"])
    with caplog.at_level(logging.WARNING), vs.Store(path) as store:
        _assert_brute_force(store.get_collection("c"), [f"n{i}" for i in range(50)], fresh)
    assert "earlier collection" in caplog.text


# ---------------------------------------------------------------------- 4. a flipped bit in a stored vector
def _flip_stored_vector(path: Path, record_id: str) -> None:
    conn = sqlite3.connect(path / "store.sqlite3")
    key, blob = conn.execute(
        "SELECT v.key, v.vector FROM vectors v JOIN records r ON r.key = v.key WHERE r.id = ?", (record_id,)
    ).fetchone()
    data = bytearray(blob)
    data[5] ^= 0x10
    conn.execute("UPDATE vectors SET vector = ? WHERE key = ?", (bytes(data), key))
    conn.commit()
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # SQLite cannot see it
    conn.close()


def test_a_flipped_bit_in_a_stored_vector_is_found_and_repaired(tmp_path, model, caplog):
    path = tmp_path / "s"
    docs = [f"sentence number {i} about topic {i % 7}" for i in range(30)]
    with vs.Store(path) as store:
        store.models.encoders["all-MiniLM-L6-v2"] = model
        store.create_collection("t").add(ids=[str(i) for i in range(30)], documents=docs)
    _flip_stored_vector(path, "7")
    with vs.Store(path) as store:
        store.models.encoders["all-MiniLM-L6-v2"] = model
        col = store.get_collection("t")
        with pytest.raises(vs.DatabaseCorruptedError, match="'7'"):
            col.get(ids=["7"], include=["embeddings"])
        assert len(col.get(ids=["6"], include=["embeddings"]).embeddings) == 1
        report = store.verify()
        assert not report.ok and report.vectors_checked == 30
        assert [p.what.split(":")[0] for p in report.problems] == ["record '7'"]
        report = store.verify(repair=True)
        assert report.ok and report.problems[0].repaired
        got = col.get(ids=["7"], include=["embeddings"]).embeddings[0]
        np.testing.assert_allclose(got, model.encode(docs[7]), atol=1e-5)
        assert store.verify().problems == []
    # a rebuild leaves a damaged record out (with an error log) and serves the rest
    _flip_stored_vector(path, "3")
    for p in sorted((path / "indexes").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    with caplog.at_level(logging.ERROR), vs.Store(path) as store:
        store.models.encoders["all-MiniLM-L6-v2"] = model
        hits = store.get_collection("t").query(docs[3], k=30)
        assert "3" not in {h.id for h in hits} and len(hits) == 29
    assert "fail their checksum" in caplog.text


# faiss-hnsw-sq past its train_size: its decoded 8-bit codes are compared within their precision
@pytest.mark.parametrize(("kind", "n"), [("faiss-hnsw", 100), ("faiss-hnsw-sq", 1200)])
def test_verify_finds_index_files_that_disagree_with_the_truth(tmp_path, kind, n):
    path = tmp_path / "s"
    _fill(path, n, kind=kind)
    conn = sqlite3.connect(path / "store.sqlite3")  # the truth changes behind the derived files' back
    import zlib

    blob = np.ones(DIM, np.float32).tobytes()
    conn.execute(
        "UPDATE vectors SET vector = ?, crc = ? WHERE key = (SELECT min(key) FROM vectors)",
        (blob, zlib.crc32(blob)),
    )
    conn.commit()
    conn.close()
    with vs.Store(path) as store:
        report = store.verify()
        assert not report.ok and "differ" in report.problems[0].what
        assert store.verify(repair=True).ok
        assert store.verify().problems == []


def test_verify_command(tmp_path, capsys):
    from vectorstore.cli import main

    path = tmp_path / "s"
    _fill(path, 50)
    assert main(["verify", str(path)]) == 0
    assert "ok: 1 collection(s), 50 stored vectors checked, 0 problem(s)" in capsys.readouterr().out
    conn = sqlite3.connect(path / "store.sqlite3")
    conn.execute("UPDATE vectors SET crc = crc + 1 WHERE key = (SELECT max(key) FROM vectors)")
    conn.commit()
    conn.close()
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM" in out and "'49'" in out
    assert main(["verify", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    # a collection without a model cannot re-embed: --repair says so and still fails
    assert main(["verify", str(path), "--repair"]) == 1
    assert "not repairable" in capsys.readouterr().out


# ---------------------------------------------------------------------- 5. errors that say what happened
def test_a_malformed_database_is_reported_as_such(tmp_path):
    path = tmp_path / "s"
    path.mkdir()
    (path / "store.sqlite3").write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(vs.DatabaseCorruptedError, match=r"store\.sqlite3") as info:
        vs.Store(path)
    assert "nothing of the batch" not in str(info.value) and info.value.__cause__ is not None


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_lost_database_beside_index_files_is_refused(tmp_path, how):
    path = tmp_path / "s"
    _fill(path, 50)
    for f in path.glob("store.sqlite3*"):
        f.unlink()
    if how == "emptied":
        (path / "store.sqlite3").write_bytes(b"")
    with pytest.raises(vs.DatabaseMissingError, match="index files"):
        vs.Store(path)
    assert not (path / "store.sqlite3").exists() or (path / "store.sqlite3").stat().st_size == 0
