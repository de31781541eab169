"""CrossEncoder against sentence-transformers' CrossEncoder on tiny random sequence classifiers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import build_tiny_bert, bundled_model_dir
from vectorstore import CrossEncoder, InvalidInputError, ModelLoadError

st = pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def ce1_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("ce1"), num_labels=1, initializer_range=0.3)


@pytest.fixture(scope="module")
def ce3_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("ce3"), num_labels=3, initializer_range=0.3, seed=3)


@pytest.fixture(scope="module")
def pairs(dev_pairs) -> list[tuple[str, str]]:
    out = [(p.sentence1, p.sentence2) for p in dev_pairs[:150]]
    # long pairs that every max_length below truncates, one side much longer than the other
    out.append((" ".join(dev_pairs[0].sentence1 for _ in range(12)), "short"))
    out.append(("tiny", " ".join(p.sentence2 for p in dev_pairs[:10])))
    out.append(("", ""))
    return out


@pytest.mark.parametrize("max_length", [None, 16])
@pytest.mark.parametrize("labels", [1, 3])
def test_predict_equals_reference(ce1_dir, ce3_dir, pairs, labels, max_length):
    folder = ce1_dir if labels == 1 else ce3_dir
    ours = CrossEncoder(folder, max_length=max_length, device="cpu")
    ref = st.CrossEncoder(str(folder), max_length=max_length, device="cpu")
    assert ours.max_length == ref.max_seq_length == (max_length or 128)
    got = ours.predict(pairs, batch_size=16)
    want = ref.predict(pairs, batch_size=16)
    expected_shape = (len(pairs),) if labels == 1 else (len(pairs), labels)
    assert got.shape == want.shape == expected_shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.ptp(got) > 1e-2  # the scores are spread, so the comparison means something
    if labels == 3:
        soft = ours.predict(pairs, apply_softmax=True)
        np.testing.assert_allclose(soft, ref.predict(pairs, apply_softmax=True), atol=1e-5, rtol=0)
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    else:
        raw = ours.predict(pairs, activation_fn=torch.nn.Identity())
        np.testing.assert_allclose(raw, ref.predict(pairs, activation_fn=torch.nn.Identity()), atol=1e-5)
        np.testing.assert_allclose(got, 1 / (1 + np.exp(-raw)), atol=1e-6)  # sigmoid by default


def test_truncation_changes_long_pairs_only(ce1_dir, pairs):
    full = CrossEncoder(ce1_dir, device="cpu").predict(pairs)
    short = CrossEncoder(ce1_dir, max_length=16, device="cpu").predict(pairs)
    assert abs(full[-3] - short[-3]) > 1e-4  # the 12x repeated sentence is cut
    short_pair = pairs.index(("", ""))
    assert full[short_pair] == pytest.approx(short[short_pair], abs=1e-6)


def test_single_pair_and_output_types(ce1_dir, ce3_dir, pairs):
    ce = CrossEncoder(ce1_dir, device="cpu")
    batch = ce.predict(pairs[:4])
    one = ce.predict(pairs[2])
    assert np.ndim(one) == 0 and float(one) == pytest.approx(float(batch[2]), abs=1e-6)
    assert float(ce.predict(list(pairs[2]))) == pytest.approx(float(batch[2]), abs=1e-6)
    t = ce.predict(pairs[:4], convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (4,)
    rows = ce.predict(pairs[:4], convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 4
    three = CrossEncoder(ce3_dir, device="cpu").predict(pairs[2])
    assert three.shape == (3,)


def test_rank_equals_reference(ce1_dir, pairs):
    ours = CrossEncoder(ce1_dir, device="cpu")
    ref = st.CrossEncoder(str(ce1_dir), device="cpu")
    query = pairs[0][0]
    docs = [b for _, b in pairs[:40]]
    for top_k in (None, 5):
        got = ours.rank(query, docs, top_k=top_k, return_documents=True)
        want = ref.rank(query, docs, top_k=top_k, return_documents=True)
        assert [r["corpus_id"] for r in got] == [r["corpus_id"] for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-5)
        assert [r["text"] for r in got] == [docs[r["corpus_id"]] for r in got]
        scores = [r["score"] for r in got]
        assert scores == sorted(scores, reverse=True)
    assert len(ours.rank(query, docs, top_k=5)) == 5
    assert "text" not in ours.rank(query, docs)[0]
    assert ours.rank(query, []) == []


def test_save_load_both_directions(ce1_dir, pairs, tmp_path):
    ours = CrossEncoder(ce1_dir, max_length=20, device="cpu")
    ours.save(tmp_path / "ours")
    ref_loaded = st.CrossEncoder(str(tmp_path / "ours"), device="cpu")
    assert ref_loaded.max_seq_length == 20
    assert isinstance(ref_loaded.activation_fn, torch.nn.Sigmoid)
    np.testing.assert_allclose(ref_loaded.predict(pairs), ours.predict(pairs), atol=1e-5)

    ref = st.CrossEncoder(str(ce1_dir), max_length=24, device="cpu", activation_fn=torch.nn.Identity())
    ref.save(str(tmp_path / "ref"))
    ours_loaded = CrossEncoder(tmp_path / "ref", device="cpu")
    assert ours_loaded.max_length == 24
    assert isinstance(ours_loaded.activation_fn, torch.nn.Identity)  # read from the saved config
    np.testing.assert_allclose(ours_loaded.predict(pairs), ref.predict(pairs), atol=1e-5)

    again = CrossEncoder(tmp_path / "ours", device="cpu")
    np.testing.assert_allclose(again.predict(pairs), ours.predict(pairs), atol=1e-6)


def test_old_config_only_format_with_activation(ce1_dir, pairs, tmp_path):
    """Before sentence-transformers 4 the activation lived in config.json."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(ce1_dir, old)
    cfg = json.loads((old / "config.json").read_text())
    cfg["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
    (old / "config.json").write_text(json.dumps(cfg))
    ours = CrossEncoder(old, device="cpu")
    ref = st.CrossEncoder(str(old), device="cpu")
    assert isinstance(ours.activation_fn, torch.nn.Identity)
    np.testing.assert_allclose(ours.predict(pairs), ref.predict(pairs), atol=1e-5)
    assert ours.predict(pairs).min() < 0  # logits, not sigmoid


def test_bad_input(ce1_dir, ce3_dir):
    ce = CrossEncoder(ce1_dir, device="cpu")
    empty = ce.predict([])
    assert isinstance(empty, np.ndarray) and empty.shape == (0,)
    for bad in ([("a", 1)], [("a",)], ["abc"], "a string", [("a", "b", "c")], 5, [None]):
        with pytest.raises(InvalidInputError):
            ce.predict(bad)
    with pytest.raises(InvalidInputError):
        ce.predict([("a", "b")], batch_size=0)
    with pytest.raises(InvalidInputError):
        ce.rank("q", ["a", 3])
    with pytest.raises(InvalidInputError):
        ce.rank("q", ["a"], top_k=0)
    with pytest.raises(InvalidInputError, match="one-label"):
        CrossEncoder(ce3_dir, device="cpu").rank("q", ["a", "b"])
    with pytest.raises(InvalidInputError):
        CrossEncoder(ce1_dir, max_length=0)


def test_folders_that_are_not_cross_encoders(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="bi-encoder"):
        CrossEncoder(bundled_model_dir())
    base = build_tiny_bert(tmp_path / "base")  # a BertModel: no classification head
    with pytest.raises(ModelLoadError, match="ForSequenceClassification"):
        CrossEncoder(base)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        CrossEncoder(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="looked at"):
        CrossEncoder("cross-encoder/no-such-model-here")
