"""One contract, every backend: each test runs against every configuration in conftest.BACKENDS."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import indexers
from indexers.scoring import exact_scores
from tests.indexers.conftest import Backend, clustered
from vectorstore.errors import (
    DimensionMismatchError,
    DuplicateIDError,
    IncompatibleIndexError,
    IndexCorruptedError,
    InvalidIDError,
    InvalidInputError,
    InvalidVectorError,
    UnsupportedMetricError,
)

DIM = 16
N = 600


def _make(b: Backend, metric: str = "cosine") -> indexers.BaseIndex:
    return indexers.make_index(b.kind, DIM, metric, **b.options)


def _metrics(b: Backend) -> list[str]:
    if b.options.get("dtype") == "i8":
        return ["cosine"]
    return list(indexers.index_class(b.kind).metrics)


def _exact(metric: str, keys: np.ndarray, vectors: np.ndarray) -> indexers.BaseIndex:
    ex = indexers.make_index("exact", DIM, metric)
    ex.add(keys, vectors)
    return ex


def _check_against_exact(b, index, exact, queries, k, allowed=None):
    got_k, got_s = index.search(queries, k, allowed=allowed)
    want_k, _ = exact.search(queries, k, allowed=allowed)
    assert got_k.shape == got_s.shape == (len(queries), k)
    assert got_k.dtype == np.int64 and got_s.dtype == np.float32
    # every returned score is the exact score of that key (within the storage precision)
    for row_k, row_s, qv in zip(got_k, got_s, queries):
        valid = row_k >= 0
        if valid.any():
            truth = exact_scores(exact.metric, qv[None, :], exact._vectors_for(row_k[valid]))[0]
            if exact.metric == "cosine":
                truth = exact_scores("cosine", qv[None, :], exact._vectors_for(row_k[valid]))[0]
            np.testing.assert_allclose(row_s[valid], truth, atol=b.score_tol * max(1.0, np.abs(truth).max()))
        assert np.all(np.diff(row_s[valid]) <= 1e-6), "scores must be sorted descending"
        assert np.all(row_s[~valid] == -np.inf)
    if b.exact_keys:
        for g, w in zip(got_k, want_k):
            assert set(g.tolist()) == set(w.tolist())
    else:
        recall = np.mean(
            [len(set(g[g >= 0]) & set(w[w >= 0])) / max(1, (w >= 0).sum()) for g, w in zip(got_k, want_k)]
        )
        assert recall >= b.min_recall
    return got_k, got_s


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean", "manhattan"])
def test_search_matches_exact(backend, rng, metric):
    if metric not in _metrics(backend):
        with pytest.raises(UnsupportedMetricError, match=metric):
            _make(backend, metric)
        return
    x = clustered(rng, N, DIM)
    keys = np.arange(N, dtype=np.int64) * 7 + 3
    index = _make(backend, metric)
    index.add(keys, x)
    assert len(index) == N and index.dim == DIM and index.metric == metric
    q = clustered(rng, 25, DIM)
    _check_against_exact(backend, index, _exact(metric, keys, x), q, 10)


def test_keys_preserved_and_self_is_nearest(backend, rng):
    x = clustered(rng, 300, DIM)
    keys = np.int64(10**12) + rng.permutation(10**6)[:300].astype(np.int64)
    index = _make(backend)
    index.add(keys, x)
    got, _ = index.search(x[:20], 1)
    assert set(got[:, 0].tolist()) <= set(keys.tolist())
    if backend.exact_keys:
        assert got[:, 0].tolist() == keys[:20].tolist()
    assert set(index.keys().tolist()) == set(keys.tolist())
    assert int(keys[5]) in index and 1 not in index


def test_padding_when_fewer_than_k(backend, rng):
    index = _make(backend)
    x = clustered(rng, 5, DIM)
    index.add(np.arange(5), x)
    k, s = index.search(x[:3], 10)
    assert k.shape == (3, 10)
    assert (k[:, :5] >= 0).all() and (k[:, 5:] == -1).all()
    assert np.isfinite(s[:, :5]).all() and (s[:, 5:] == -np.inf).all()


def test_empty_index_search(backend, rng):
    index = _make(backend)
    k, s = index.search(clustered(rng, 2, DIM), 4)
    assert (k == -1).all() and (s == -np.inf).all() and k.shape == (2, 4)
    k, s = index.search(np.empty((0, DIM), np.float32), 4)
    assert k.shape == (0, 4)


def test_remove_and_readd(backend, rng):
    x = clustered(rng, N, DIM)
    keys = np.arange(N, dtype=np.int64)
    index = _make(backend)
    index.add(keys, x)
    gone = keys[::2]
    assert index.remove(np.concatenate([gone, [10**9]])) == len(gone)
    assert len(index) == N - len(gone)
    assert index.remove(gone) == 0
    live = keys[1::2]
    q = clustered(rng, 20, DIM)
    got, _ = _check_against_exact(backend, index, _exact("cosine", live, x[1::2]), q, 10)
    assert not np.isin(got, gone).any()
    # re-add removed keys with new vectors: they come back with the new ones
    new = clustered(rng, len(gone), DIM)
    index.add(gone, new)
    assert len(index) == N
    all_keys = np.concatenate([live, gone])
    all_vecs = np.concatenate([x[1::2], new])
    _check_against_exact(backend, index, _exact("cosine", all_keys, all_vecs), q, 10)


@pytest.mark.parametrize("selectivity", [0.01, 0.1, 0.6])
def test_allowed_equals_exact_over_subset(backend, rng, selectivity):
    x = clustered(rng, 2000, DIM)
    keys = np.arange(2000, dtype=np.int64)
    index = _make(backend)
    index.add(keys, x)
    allowed = rng.choice(keys, size=int(2000 * selectivity), replace=False)
    q = clustered(rng, 15, DIM)
    exact = _exact("cosine", keys, x)
    got, _ = _check_against_exact(backend, index, exact, q, 10, allowed=allowed)
    assert np.isin(got[got >= 0], allowed).all()
    assert ((got >= 0).sum(axis=1) == 10).all()
    # a set and a list are accepted too; unknown keys in allowed are ignored
    got_set, _ = index.search(q, 10, allowed=set(allowed.tolist()) | {10**9})
    np.testing.assert_array_equal(got_set, got)
    none, _ = index.search(q, 3, allowed=[])
    assert (none == -1).all()


def _recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(
        np.mean([len(set(g[g >= 0]) & set(w[w >= 0])) / max(1, (w >= 0).sum()) for g, w in zip(got, want)])
    )


@pytest.mark.slow
def test_broad_allowed_sets_take_the_filtered_search_path(backend, rng, monkeypatch):
    """Allowed sets above the exact threshold go through the backend's filtered search (ID selectors
    or over-fetching). Against brute force over the allowed vectors: only allowed keys, exact scores,
    full rows, and recall no worse than the same index's unfiltered recall on the same data."""
    from indexers.base import searched_exactly

    n = 10_000
    x = clustered(rng, n, DIM)
    keys = np.arange(n, dtype=np.int64) * 3  # not positions: the key mapping is exercised too
    index = _make(backend)
    index.add(keys, x)
    allowed = np.sort(rng.choice(keys, size=6_000, replace=False))
    assert not searched_exactly(len(allowed), n)
    calls = []
    real = type(index)._search_filtered
    monkeypatch.setattr(type(index), "_search_filtered", lambda self, *a: calls.append(1) or real(self, *a))
    q = clustered(rng, 30, DIM)
    exact = _exact("cosine", keys, x)
    got, scores = index.search(q, 10, allowed=allowed)
    assert calls, "the broad set was answered by the exact path"
    assert np.isin(got[got >= 0], allowed).all() and ((got >= 0).sum(axis=1) == 10).all()
    truth = exact_scores(
        "cosine", q, exact._vectors_for(got.ravel()).reshape(len(q), 10, DIM)[0]
    )  # shape check
    assert truth.shape[1] == 10
    for row_k, row_s, qv in zip(got, scores, q):
        want_s = exact_scores("cosine", qv[None, :], exact._vectors_for(row_k))[0]
        np.testing.assert_allclose(row_s, want_s, atol=backend.score_tol * max(1.0, np.abs(want_s).max()))
    filtered = _recall(got, exact.search(q, 10, allowed=allowed)[0])
    unfiltered = _recall(index.search(q, 10)[0], exact.search(q, 10)[0])
    assert filtered >= unfiltered - 0.05, (filtered, unfiltered)


def test_save_load_equality(backend, rng, tmp_path):
    x = clustered(rng, 800, DIM)
    keys = np.arange(800, dtype=np.int64) + 5
    index = _make(backend)
    index.add(keys, x)
    index.remove(keys[:50])
    q = clustered(rng, 10, DIM)
    before = index.search(q, 10)
    index.save(tmp_path / "idx", sequence=42)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["backend"] == backend.kind and manifest["dim"] == DIM and manifest["metric"] == "cosine"
    assert manifest["sequence"] == 42 and manifest["count"] == 750 and manifest["format_version"] == 1
    loaded = indexers.load_index(tmp_path / "idx")
    assert type(loaded) is type(index) and loaded.spec == index.spec and loaded.sequence == 42
    assert len(loaded) == 750
    after = loaded.search(q, 10)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1], atol=1e-6)
    # the loaded index keeps working, and saving again replaces the old files
    loaded.add(keys[:50], x[:50])
    loaded.save(tmp_path / "idx", sequence=43)
    again = indexers.load_index(tmp_path / "idx")
    assert len(again) == 800 and again.sequence == 43
    names = [p.name for p in (tmp_path / "idx").iterdir()]
    assert len([n for n in names if n.startswith("index-")]) == len(
        json.loads((tmp_path / "idx" / "manifest.json").read_text())["files"]
    )


def test_input_errors(backend, rng):
    index = _make(backend)
    with pytest.raises(DimensionMismatchError, match="17"):
        index.add([1], np.zeros((1, DIM + 1), np.float32))
    with pytest.raises(InvalidVectorError, match="NaN"):
        index.add([1, 2], np.array([[0.0] * DIM, [np.nan] * DIM], np.float32))
    with pytest.raises(InvalidVectorError):
        index.add([1], [["a"] * DIM])
    with pytest.raises(InvalidIDError, match="non-negative"):
        index.add([-5], np.ones((1, DIM), np.float32))
    with pytest.raises(InvalidIDError):
        index.add(["x"], np.ones((1, DIM), np.float32))
    with pytest.raises(InvalidInputError, match="2 keys for 1"):
        index.add([1, 2], np.ones((1, DIM), np.float32))
    with pytest.raises(DimensionMismatchError):
        index.search(np.ones((1, 3), np.float32), 1)
    with pytest.raises(InvalidInputError, match="k must be"):
        index.search(np.ones((1, DIM), np.float32), 0)
    assert len(index) == 0


def test_duplicate_keys_rejected_atomically(backend, rng):
    index = _make(backend)
    x = clustered(rng, 10, DIM)
    index.add(np.arange(5), x[:5])
    with pytest.raises(DuplicateIDError, match=r"\[7\]"):
        index.add([6, 7, 7], x[5:8])
    with pytest.raises(DuplicateIDError, match=r"\[3\]"):
        index.add([8, 3], x[8:10])
    assert len(index) == 5 and 8 not in index and 6 not in index
    index.remove([3])
    index.add([3], x[9:10])  # replace = remove then add
    assert len(index) == 5


def test_corrupt_files_raise_clear_errors(backend, rng, tmp_path):
    index = _make(backend)
    index.add(np.arange(400), clustered(rng, 400, DIM))
    d = tmp_path / "idx"
    index.save(d)
    manifest = json.loads((d / "manifest.json").read_text())
    native = d / next(iter(manifest["files"].values()))["name"]
    data = native.read_bytes()

    native.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(IndexCorruptedError, match="bytes"):
        indexers.load_index(d)
    garbled = bytearray(data)
    garbled[len(garbled) // 2] ^= 0xFF
    native.write_bytes(bytes(garbled))  # same size, one byte flipped
    with pytest.raises(IndexCorruptedError, match="checksum"):
        indexers.load_index(d)
    native.write_bytes(data)
    assert len(indexers.load_index(d)) == 400

    (d / "manifest.json").write_text("{not json")
    with pytest.raises(IndexCorruptedError, match="unreadable"):
        indexers.load_index(d)
    manifest["format_version"] = 99
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleIndexError, match="99"):
        indexers.load_index(d)
    (d / "manifest.json").unlink()
    with pytest.raises(IndexCorruptedError, match="no index manifest"):
        indexers.load_index(d)


def test_spec_round_trips(backend):
    index = _make(backend)
    spec = index.spec
    assert indexers.IndexSpec.from_json(spec.to_json()) == spec
    clone = indexers.make_index(spec)
    assert type(clone) is type(index) and clone.spec == spec
    assert isinstance(index, indexers.VectorIndex)


def test_unknown_kind_metric_and_option():
    with pytest.raises(InvalidInputError, match="unknown index kind"):
        indexers.make_index("annoy", 8)
    with pytest.raises(UnsupportedMetricError, match="hamming"):
        indexers.make_index("exact", 8, "hamming")
    with pytest.raises(InvalidInputError, match="efSearchh"):
        indexers.make_index("faiss-hnsw", 8, efSearchh=3)
    with pytest.raises(InvalidInputError, match="dim"):
        indexers.make_index("exact", 0)


def test_load_with_expected_spec(tmp_path, rng):
    index = indexers.make_index("faiss-flat", DIM, "dot")
    index.add(np.arange(3), clustered(rng, 3, DIM))
    index.save(tmp_path)
    with pytest.raises(IncompatibleIndexError, match="expected"):
        indexers.load_index(tmp_path, expect=indexers.IndexSpec("faiss-flat", DIM, "cosine"))
    assert len(indexers.load_index(tmp_path, expect=indexers.IndexSpec("faiss-flat", DIM, "dot"))) == 3


def test_ivf_trains_when_enough_vectors(rng):
    index = indexers.make_index("faiss-ivf", DIM, nlist=4, train_size=200)
    x = clustered(rng, 300, DIM)
    index.add(np.arange(150), x[:150])
    assert not index.is_trained
    index.add(np.arange(150, 300), x[150:])
    assert index.is_trained and len(index) == 300


def test_usearch_binary_dtype_ranks_by_hamming(rng):
    index = indexers.make_index("usearch-hnsw", 64, dtype="b1")
    x = rng.standard_normal((200, 64)).astype(np.float32)
    index.add(np.arange(200), x)
    keys, scores = index.search(x[:5], 3)
    assert keys[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert (scores[:, 0] == 0).all() and (scores[:, 1:] < 0).all()


def test_ivf_reconstruct_then_remove(rng):
    """Reconstruction builds a hashtable direct map on demand; removal must keep working after it."""
    index = indexers.make_index("faiss-ivf", DIM, "dot", nlist=4, train_size=100)
    x = clustered(rng, 300, DIM)
    index.add(np.arange(300), x)
    np.testing.assert_allclose(index._vectors_for(np.array([5, 7])), x[[5, 7]], atol=1e-6)
    assert index.remove(np.arange(0, 300, 3)) == 100
    keys, _ = index.search(x[:10], 5)
    assert not np.isin(keys, np.arange(0, 300, 3)).any()


def test_loaded_index_accepts_removal_and_addition(backend, rng, tmp_path):
    """Loaded storage may be memory-mapped read-only; the first write must take a private copy."""
    x = clustered(rng, 500, DIM)
    index = _make(backend)
    index.add(np.arange(500), x)
    index.save(tmp_path / "i")
    loaded = indexers.load_index(tmp_path / "i")
    assert loaded.remove(np.arange(0, 500, 5)) == 100
    loaded.add(np.arange(1000, 1010), x[:10])
    keys, _ = loaded.search(x[:10], 3)
    assert not np.isin(keys, np.arange(0, 500, 5)).any()
    assert len(loaded) == 410
    # the saved files are untouched by writes to the loaded copy
    assert len(indexers.load_index(tmp_path / "i")) == 500


@pytest.mark.parametrize(
    "kind, options",
    [
        ("faiss-hnsw", {}),
        (
            "faiss-ivfpq",
            {"nlist": 4, "nprobe": 4, "m": 4, "nbits": 6, "train_size": 200, "refine_factor": 50},
        ),
    ],
)
def test_compaction_after_mass_removal(kind, options, rng, tmp_path, monkeypatch):
    """Removing most positions rebuilds the position-labelled structures; answers stay exact-equal."""
    from indexers.faiss import labels

    monkeypatch.setattr(labels, "_COMPACT_MIN_DEAD", 10)
    x = clustered(rng, 400, DIM)
    keys = np.arange(400, dtype=np.int64) * 5
    index = indexers.make_index(kind, DIM, "euclidean", **options)
    index.add(keys, x)
    index.remove(keys[:300])
    assert index._dead == 0 and len(index._labels) == 100  # compacted: only the live rows remain
    index.add(keys[:20], x[:20])  # re-add some removed keys after the rebuild
    live = np.concatenate([keys[300:], keys[:20]])
    live_x = np.concatenate([x[300:], x[:20]])
    exact = indexers.make_index("exact", DIM, "euclidean")
    exact.add(live, live_x)
    q = clustered(rng, 10, DIM)
    got_k, got_s = index.search(q, 10)
    want_k, want_s = exact.search(q, 10)
    if kind == "faiss-ivfpq":  # every list probed and refine_factor * k covers all 120 rows: exact
        np.testing.assert_array_equal(got_k, want_k)
    else:
        assert np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got_k.tolist(), want_k.tolist())]) >= 0.95
    np.testing.assert_allclose(got_s[:, 0], want_s[:, 0], atol=1e-4)
    index.save(tmp_path)
    loaded = indexers.load_index(tmp_path)
    np.testing.assert_array_equal(loaded.search(q, 10)[0], got_k)
    assert set(loaded.keys().tolist()) == set(live.tolist())


def test_hnsw_sq_compaction_keeps_the_trained_codes(rng, monkeypatch):
    """Rebuilding the code graph after mass removal re-encodes each live vector with the same trained
    quantizer: the decoded vectors are bit-identical before and after (no error accumulates)."""
    from indexers.faiss import labels

    monkeypatch.setattr(labels, "_COMPACT_MIN_DEAD", 10)
    x = clustered(rng, 400, DIM)
    index = indexers.make_index("faiss-hnsw-sq", DIM, "euclidean", train_size=100)
    index.add(np.arange(400), x)
    live = np.arange(300, 400)
    before = index.get_vectors(live)
    assert np.abs(before - x[300:]).max() > 0  # lossy codes
    index.remove(np.arange(300))
    assert index._dead == 0 and len(index._labels) == 100  # rebuilt from the live codes
    np.testing.assert_array_equal(index.get_vectors(live), before)


def test_hnsw_sq_counts_clipped_values_and_asks_to_be_retrained(rng, tmp_path):
    """Values outside the range learned at training (min / max of the training batch, widened by a
    tenth of its width on both sides) are counted; once a share of them above the threshold has been
    added, after at least as many vectors as the index was trained with, the index asks to be trained
    afresh. A loaded index counts from zero again."""
    x = clustered(rng, 200, DIM)
    index = indexers.make_index("faiss-hnsw-sq", DIM, "euclidean", train_size=100)
    index.add(np.arange(200), x)  # the training batch
    assert index.clipped_share == 0.0 and not index.needs_retraining
    index.add(np.arange(200, 400), x)  # the same values again: inside the range
    assert index.clipped_share == 0.0 and not index.needs_retraining
    low, high = x.min(axis=0), x.max(axis=0)
    low, high = low - 0.1 * (high - low), high + 0.1 * (high - low)
    drifted = x * 3.0
    outside = int(np.count_nonzero((drifted < low) | (drifted > high)))
    assert outside > 0.05 * drifted.size
    index.add(np.arange(400, 600), drifted)
    assert index.clipped_share == pytest.approx(outside / (400 * DIM), abs=1e-3)
    assert index.needs_retraining
    index.save(tmp_path)
    loaded = indexers.load_index(tmp_path)
    assert loaded.clipped_share == 0.0 and not loaded.needs_retraining


def _age_saved_files(directory, persistence):
    """Make a save look older than its manifest (saves of tiny files often share one clock tick)."""
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for info in manifest["files"].values():
        f = directory / info["name"]
        old = f.stat().st_mtime_ns - 10**9
        os.utime(f, ns=(old, old))
        info["stat"] = persistence._stat_signature(f.stat())
    manifest_path.write_text(json.dumps(manifest))
    return manifest


def test_unchanged_vector_files_are_verified_block_by_block_on_first_use(rng, tmp_path, monkeypatch):
    """The large vectors file of an unchanged save is not re-read whole on load, but every block is
    checked before it is used, so bit rot that keeps size, mtime and inode is still caught."""
    from indexers import persistence

    x = clustered(rng, 500, DIM)
    index = indexers.make_index("exact", DIM)
    index.add(np.arange(500), x)
    index.save(tmp_path)
    manifest = _age_saved_files(tmp_path, persistence)
    calls = []
    real_crc = persistence._crc32
    monkeypatch.setattr(persistence, "_crc32", lambda p: calls.append(p.name) or real_crc(p))
    loaded = indexers.load_index(tmp_path)
    vectors_name = manifest["files"]["vectors"]["name"]
    assert len(loaded) == 500 and vectors_name not in calls and calls  # keys and block sums are checked
    np.testing.assert_array_equal(loaded.search(x[:3], 3)[0], index.search(x[:3], 3)[0])

    native = tmp_path / vectors_name
    st = native.stat()
    data = bytearray(native.read_bytes())
    data[-3] ^= 0xFF
    native.write_bytes(bytes(data))  # an in-place edit moves the mtime: checksummed on load, caught
    with pytest.raises(IndexCorruptedError, match="checksum"):
        indexers.load_index(tmp_path)
    # an edit that also puts the old mtime back passes the load, and is caught on first use
    os.utime(native, ns=(st.st_atime_ns, st.st_mtime_ns))
    loaded = indexers.load_index(tmp_path)
    with pytest.raises(IndexCorruptedError, match="checksum"):
        loaded.search(x[:3], 3)
    loaded = indexers.load_index(tmp_path)
    loaded._vectors_for(np.array([0, 1]))  # rows far from the edit: their blocks are intact
    with pytest.raises(IndexCorruptedError, match="checksum"):
        loaded._vectors_for(np.array([499]))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        indexers.load_index(tmp_path, verify="full")
    with pytest.raises(InvalidInputError, match="verify"):
        indexers.load_index(tmp_path, verify="sometimes")


def test_lazy_loading_defers_large_native_files_to_verify_pending(rng, tmp_path, monkeypatch):
    from indexers import persistence

    monkeypatch.setattr(persistence, "_SMALL_FILE", 10_000)  # labels below, the graph above
    x = clustered(rng, 300, DIM)
    index = indexers.make_index("faiss-hnsw", DIM)
    index.add(np.arange(300), x)
    index.save(tmp_path)
    manifest = _age_saved_files(tmp_path, persistence)
    native = tmp_path / manifest["files"]["index"]["name"]
    assert indexers.load_index(tmp_path).pending_verification == {}  # True: checked on load
    lazy = indexers.load_index(tmp_path, verify="lazy")
    assert set(lazy.pending_verification) == {"index"}
    lazy.verify_pending()
    assert lazy.pending_verification == {}
    # files unlinked after the load (another process cleaned up this generation) are still checked,
    # through the handles opened when they were loaded: a sound index is not taken for a damaged one
    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(tmp_path, copy, copy_function=shutil.copy2)
    _age_saved_files(copy, persistence)
    gone = indexers.load_index(copy, verify="lazy")
    assert set(gone.pending_verification) == {"index"}
    shutil.rmtree(copy)
    gone.verify_pending()
    assert gone.pending_verification == {}
    st = native.stat()
    data = bytearray(native.read_bytes())
    data[-10] ^= 0xFF
    native.write_bytes(bytes(data))
    os.utime(native, ns=(st.st_atime_ns, st.st_mtime_ns))
    lazy = indexers.load_index(tmp_path, verify="lazy")
    with pytest.raises(IndexCorruptedError, match="checksum"):
        lazy.verify_pending()
    with pytest.raises(IndexCorruptedError, match="checksum"):
        indexers.load_index(tmp_path)


def test_a_lazily_loaded_graph_checks_each_storage_block_it_reads(rng, tmp_path, monkeypatch):
    """faiss-hnsw saves a CRC per 8 rows of its float32 storage: while the graph file's own checksum is
    deferred, a read of a garbled row raises, reads of intact blocks succeed, and once the whole file
    has been verified the per-block checks stop."""
    from indexers import persistence

    monkeypatch.setattr(persistence, "_SMALL_FILE", 10_000)
    x = clustered(rng, 300, DIM)
    index = indexers.make_index("faiss-hnsw", DIM, metric="dot")
    index.add(np.arange(300), x)
    index.save(tmp_path)
    manifest = _age_saved_files(tmp_path, persistence)
    assert "blocks" in manifest["files"]
    intact = indexers.load_index(tmp_path, verify="lazy")
    assert intact.pending_verification and intact.verifies_reads
    np.testing.assert_array_equal(intact.get_vectors(np.arange(300)), x)
    intact.verify_pending()
    assert intact.verifies_reads and intact._row_blocks is None

    native = tmp_path / manifest["files"]["index"]["name"]
    data = bytearray(native.read_bytes())
    offset = bytes(data).find(x[123].tobytes())
    assert offset > 0  # row 123 as FAISS stores it
    st = native.stat()
    data[offset + 5] ^= 0xFF
    native.write_bytes(bytes(data))
    os.utime(native, ns=(st.st_atime_ns, st.st_mtime_ns))
    lazy = indexers.load_index(tmp_path, verify="lazy")
    np.testing.assert_array_equal(lazy.get_vectors(np.array([0, 1, 200])), x[[0, 1, 200]])
    with pytest.raises(IndexCorruptedError, match=r"rows 120\.\.127 fail their checksum"):
        lazy.get_vectors(np.array([5, 123]))
    with pytest.raises(IndexCorruptedError, match="checksum"):
        lazy.verify_pending()
    eager = indexers.load_index(tmp_path, verify=False)  # nothing deferred: no per-block checks
    assert eager._row_blocks is None and eager.verifies_reads


@pytest.mark.parametrize(
    "kind, options",
    [
        ("faiss-flat", {}),
        ("faiss-hnsw", {}),
        ("faiss-hnsw-sq", {"train_size": 200}),
        (
            "faiss-ivfpq",
            {"nlist": 4, "nprobe": 4, "m": 4, "nbits": 6, "train_size": 200, "refine_factor": 50},
        ),
    ],
)
def test_mapped_faiss_load_outlives_its_files(kind, options, rng, tmp_path):
    """Loading maps the flat storage; a later save that replaces the files leaves the mapping valid,
    and the first write takes a private copy that then answers like an index that was never saved."""
    x = clustered(rng, 400, DIM)
    q = clustered(rng, 8, DIM)
    index = indexers.make_index(kind, DIM, "cosine", **options)
    index.add(np.arange(300), x[:300])
    index.save(tmp_path)
    first_files = {p.name for p in tmp_path.iterdir()}
    loaded = indexers.load_index(tmp_path)
    assert loaded._mapped
    want_k, want_s = index.search(q, 10)
    index.add(np.arange(300, 350), x[300:350])
    index.save(tmp_path)  # replaces (unlinks) the files that ``loaded`` maps
    assert not first_files & {p.name for p in tmp_path.iterdir() if p.name != "manifest.json"}
    got_k, got_s = loaded.search(q, 10)
    np.testing.assert_array_equal(got_k, want_k)
    np.testing.assert_allclose(got_s, want_s, atol=1e-6)
    loaded.add(np.arange(300, 350), x[300:350])
    assert not loaded._mapped
    loaded.remove(np.arange(0, 300, 3))
    index.remove(np.arange(0, 300, 3))
    np.testing.assert_array_equal(loaded.search(q, 10)[0], index.search(q, 10)[0])


def test_bulk_adds_defer_the_position_map(backend, rng):
    """Adds build no key -> position map (plain search never needs it); the first removal builds it
    from the labels, and later adds and removals keep it current."""
    x = clustered(rng, 400, DIM)
    index, exact = _make(backend), _make(Backend("exact"))
    for batch in (np.arange(0, 150), np.arange(150, 300)):
        index.add(batch * 2, x[batch])
        exact.add(batch * 2, x[batch])
    positional = len(getattr(index, "_labels", ())) > 0  # faiss-hnsw, refined faiss-ivfpq
    index.search(x[:3], 5)
    if positional:
        assert index._keymap._dense is None and index._keymap._sorted is None
    for target in (index, exact):
        target.remove(np.arange(0, 200, 4))
        target.add(np.arange(300, 400) * 2, x[300:400])
        target.remove(np.arange(600, 700, 6))
    assert len(index) == len(exact) == 333
    q = x[::37]
    _check_against_exact(backend, index, exact, q, 8)
    _check_against_exact(backend, index, exact, q, 8, allowed=np.arange(0, 800, 10))
    if positional:
        probe = np.array([2, 602, 798, 6])
        assert index._keymap._dense is not None  # built by the removal, kept current since
        np.testing.assert_allclose(
            index._vectors_for(probe), exact._vectors_for(probe), atol=backend.vector_tol
        )
        np.testing.assert_array_equal(
            index.contains_many(np.array([2, 4, 602, 606, 5, -1])),
            exact.contains_many(np.array([2, 4, 602, 606, 5, -1])),
        )
        with pytest.raises(InvalidIDError):
            index.get_vectors(np.array([2, 4]))


def test_loading_defers_per_key_work(backend, rng, tmp_path):
    """A load builds no per-key Python structures: searching a loaded index leaves them unbuilt, and
    length, keys, membership and the duplicate check still answer from the saved keys."""
    x = clustered(rng, 300, DIM)
    keys = np.arange(300, dtype=np.int64) * 3
    index = _make(backend)
    index.add(keys, x)
    index.save(tmp_path)
    loaded = indexers.load_index(tmp_path)
    loaded.search(x[:3], 5)
    assert loaded._key_set is None
    if len(getattr(loaded, "_labels", ())):  # position-labelled (faiss-hnsw, refined faiss-ivfpq)
        assert loaded._keymap._dense is None and loaded._keymap._sorted is None
    assert len(loaded) == 300
    assert sorted(loaded.keys().tolist()) == keys.tolist()
    assert 3 in loaded and 4 not in loaded
    with pytest.raises(DuplicateIDError):
        loaded.add([6], x[:1])
    assert loaded._key_set is not None and len(loaded) == 300


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean", "manhattan"])
def test_exact_score_claim_holds(backend, rng, metric):
    """An index that claims ``scores_are_exact`` (the store then skips rescoring) returns the float64
    oracle's similarity for every hit, to float32 rounding; lossy storage never claims it."""
    if metric not in _metrics(backend):
        pytest.skip(f"{backend.kind} does not serve {metric}")
    index = _make(backend, metric)
    lossy = (
        backend.options.get("dtype", "f16" if backend.kind == "usearch-hnsw" else "f32") != "f32"
        or (backend.kind == "faiss-ivfpq" and backend.options.get("refine_factor") == 0)
        or backend.kind == "faiss-hnsw-sq"
    )
    # the numpy oracle is exact for every metric; FAISS may take L2 through a cancelling expansion
    assert index.scores_are_exact == (backend.kind == "exact" or (metric in ("cosine", "dot") and not lossy))
    if not index.scores_are_exact:
        return
    x = clustered(rng, N, DIM) * rng.uniform(0.5, 3.0, (N, 1)).astype(np.float32)  # not unit length
    index.add(np.arange(N), x)
    q = clustered(rng, 20, DIM)
    keys, scores = index.search(q, 10)
    for row_k, row_s, qv in zip(keys, scores, q.astype(np.float64)):
        xv = x[row_k].astype(np.float64)
        if metric == "euclidean":
            truth = -np.linalg.norm(xv - qv, axis=1)
        elif metric == "manhattan":
            truth = -np.abs(xv - qv).sum(axis=1)
        else:
            truth = xv @ qv
            if metric == "cosine":
                truth /= np.linalg.norm(xv, axis=1) * np.linalg.norm(qv)
        np.testing.assert_allclose(row_s, truth, rtol=2e-6, atol=2e-6 * max(1.0, np.abs(truth).max()))


def test_bulk_add_into_empty_index_keeps_duplicate_checks(backend, rng):
    """The first add into an empty index defers the key set; repeats are still refused, in order or not."""
    x = clustered(rng, 40, DIM)
    index = _make(backend)
    with pytest.raises(DuplicateIDError, match="repeated"):
        index.add([5, 1, 5], x[:3])  # not increasing: the full check
    assert len(index) == 0
    index.add(np.arange(0, 60, 2), x[:30])  # strictly increasing into an empty index
    assert index._key_set is None and len(index) == 30
    with pytest.raises(DuplicateIDError, match="already"):
        index.add([1, 3, 58], x[30:33])  # 58 is stored
    assert len(index) == 30 and 1 not in index and 58 in index
    index.add([1, 3], x[30:32])
    assert len(index) == 32 and sorted(index.keys().tolist())[:3] == [0, 1, 2]


def test_faiss_without_mapped_loading_reads_files_into_memory(rng, tmp_path, monkeypatch):
    """FAISS builds without IO_FLAG_MMAP_IFC load the same index, unmapped."""
    from indexers.faiss import common

    monkeypatch.setattr(common, "_MMAP_FLAG", None)
    x = clustered(rng, 200, DIM)
    index = indexers.make_index("faiss-hnsw", DIM, "cosine")
    index.add(np.arange(200), x)
    index.save(tmp_path)
    loaded = indexers.load_index(tmp_path)
    assert not loaded._mapped
    np.testing.assert_array_equal(loaded.search(x[:5], 5)[0], index.search(x[:5], 5)[0])
    loaded.add([500], x[:1])
    assert len(loaded) == 201


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_nan_or_inf_in_a_later_add_changes_nothing(backend, rng, metric):
    """Whichever pass checks finiteness (add's own or the cosine normalisation), a bad batch is refused
    whole; finite vectors whose squares overflow float32 are still accepted."""
    if metric not in _metrics(backend):
        pytest.skip(f"{backend.kind} does not serve {metric}")
    x = clustered(rng, 100, DIM)
    index = _make(backend, metric)
    index.add(np.arange(50), x[:50])
    before = index.search(x[:5], 5)
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = x[50:60].copy()
        bad[7, 3] = bad_value
        with pytest.raises(InvalidVectorError, match="row 7, column 3"):
            index.add(np.arange(50, 60), bad)
        assert len(index) == 50 and 55 not in index
    np.testing.assert_array_equal(index.search(x[:5], 5)[0], before[0])
    if metric == "cosine" and backend.options.get("dtype", "f32") in ("f32", "f16"):
        huge = np.full((1, DIM), 1e30, dtype=np.float32)  # finite; its squared norm overflows
        with np.errstate(over="ignore"):
            index.add([99], huge)
        assert 99 in index and len(index) == 51


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_nan_or_inf_queries_are_refused_on_every_path(backend, rng, metric):
    """Whichever pass checks a query's finiteness (search's own or the cosine normalisation), a NaN or
    inf query is refused naming its row and column: filtered or not, one query or a batch, stored
    vectors or none; a finite query whose squared norm overflows still gets answers."""
    if metric not in _metrics(backend):
        pytest.skip(f"{backend.kind} does not serve {metric}")
    x = clustered(rng, 300, DIM)
    empty = _make(backend, metric)
    index = _make(backend, metric)
    index.add(np.arange(300), x)
    for bad_value in (np.nan, np.inf, -np.inf):
        for rows in (1, 4):
            bad = x[:rows].copy()
            bad[rows - 1, 5] = bad_value
            for target, allowed in ((index, None), (index, [1, 2, 3]), (index, range(250)), (empty, None)):
                with pytest.raises(
                    InvalidVectorError, match=f"queries contain NaN or inf .*row {rows - 1}, column 5"
                ):
                    target.search(bad, 3, allowed=allowed)
    if metric == "cosine" and backend.options.get("dtype", "f32") in ("f32", "f16"):
        huge = x[:1] * np.float32(1e30)  # finite; its squared norm overflows float32
        with np.errstate(over="ignore"):
            got_k, _ = index.search(huge, 5)
        np.testing.assert_array_equal(got_k, index.search(x[:1], 5)[0])
