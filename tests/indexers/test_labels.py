"""Saved graph labels: the run-length form (``label_runs``) read back equal to the labels it encodes,
chosen only where it is smaller, and a graph saved in it reloads with every key where it was."""

from __future__ import annotations

import json

import numpy as np
import pytest

import indexers
from indexers.faiss.labels import label_arrays, read_labels


def _round_trip(labels: np.ndarray, tmp_path) -> tuple[str, np.ndarray]:
    ((role, array),) = label_arrays(labels).items()
    path = tmp_path / f"{role}.npy"
    np.save(path, array)
    return role, read_labels({role: path})


@pytest.mark.parametrize(
    "labels, role",
    [
        (np.arange(1, 10_001, dtype=np.int64), "label_runs"),  # a bulk load: one run
        (
            np.concatenate([np.arange(5, 900), np.arange(2_000, 5_000), [-1] * 3, np.arange(7, 40)]),
            "label_runs",
        ),
        (np.random.default_rng(0).permutation(5_000).astype(np.int64), "labels"),  # no runs: plain
        (np.array([3], dtype=np.int64), "labels"),
        (np.empty(0, dtype=np.int64), "labels"),
    ],
)
def test_labels_read_back_equal_in_the_smaller_form(labels, role, tmp_path):
    labels = labels.astype(np.int64)
    got_role, back = _round_trip(labels, tmp_path)
    assert got_role == role
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, labels)


def test_removed_slots_and_random_runs_survive(tmp_path):
    rng = np.random.default_rng(3)
    for _ in range(20):
        parts = [np.arange(s, s + n) for s, n in zip(rng.integers(0, 10**9, 30), rng.integers(1, 400, 30))]
        labels = np.concatenate(parts).astype(np.int64)
        labels[rng.random(len(labels)) < 0.01] = -1
        np.testing.assert_array_equal(_round_trip(labels, tmp_path)[1], labels)


def test_malformed_runs_are_refused(tmp_path):
    path = tmp_path / "runs.npy"
    np.save(path, np.array([[5, 0]], dtype=np.int64))
    with pytest.raises(ValueError, match="malformed label runs"):
        read_labels({"label_runs": path})


@pytest.mark.parametrize("kind", ["faiss-hnsw", "faiss-hnsw-sq"])
def test_a_graph_saved_with_label_runs_reloads_every_key(kind, tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((3_000, 16)).astype(np.float32)
    keys = np.arange(100, 3_100, dtype=np.int64)
    index = indexers.make_index(kind, 16, "cosine")
    index.add(keys, vecs)
    index.remove(keys[10:20])
    index.save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert "label_runs" in manifest["files"] and "labels" not in manifest["files"]
    back = indexers.load_index(tmp_path / "ix")
    live = np.setdiff1d(keys, keys[10:20])
    np.testing.assert_array_equal(np.sort(back.keys()), live)
    found, _ = back.search(vecs[keys.searchsorted(live[::50])], 1)
    np.testing.assert_array_equal(found[:, 0], live[::50])
