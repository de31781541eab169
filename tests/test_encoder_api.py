"""Encoder behaviour: shapes, ordering, options and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vectorstore import InvalidInputError, ModelLoadError, SentenceTransformer
from vectorstore.models.resolve import resolve_model_path


def test_single_string_gives_vector(model):
    v = model.encode("hello world")
    assert v.shape == (384,) and v.dtype == np.float32
    assert model.get_sentence_embedding_dimension() == 384
    assert model.max_seq_length == 256


def test_empty_list_gives_zero_rows(model):
    assert model.encode([]).shape == (0, 384)
    assert tuple(model.encode([], convert_to_tensor=True).shape) == (0, 384)


def test_order_preserved_and_batching_invariant(model, dev_sentences):
    sents = dev_sentences[:37]
    whole = model.encode(sents, batch_size=64)
    small = model.encode(sents, batch_size=5)
    one_by_one = np.stack([model.encode(s) for s in sents])
    np.testing.assert_allclose(whole, small, atol=1e-5)
    np.testing.assert_allclose(whole, one_by_one, atol=1e-5)


def test_output_kinds(model):
    t = model.encode(["a b", "c"], convert_to_tensor=True)
    assert isinstance(t, torch.Tensor) and t.shape == (2, 384)
    rows = model.encode(["a b", "c"], convert_to_numpy=False)
    assert isinstance(rows, list) and len(rows) == 2 and rows[0].shape == (384,)


def test_truncate_and_normalize(model):
    full = model.encode(["the cat sat on the mat"])
    cut = model.encode(["the cat sat on the mat"], truncate_dim=64)
    np.testing.assert_allclose(cut, full[:, :64], atol=1e-6)
    cut_norm = model.encode(["the cat sat on the mat"], truncate_dim=64, normalize_embeddings=True)
    np.testing.assert_allclose(np.linalg.norm(cut_norm, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cut_norm, full[:, :64] / np.linalg.norm(full[:, :64]), atol=1e-5)


def test_prompts(model):
    plain = model.encode("query: where is Berlin?")
    model.prompts["query"] = "query: "
    try:
        np.testing.assert_allclose(model.encode("where is Berlin?", prompt_name="query"), plain, atol=1e-5)
        np.testing.assert_allclose(model.encode("where is Berlin?", prompt="query: "), plain, atol=1e-5)
        with pytest.raises(InvalidInputError, match="nope"):
            model.encode("x", prompt_name="nope")
    finally:
        del model.prompts["query"]


@pytest.mark.parametrize("bad", [["ok", 3], [None], b"ok", 5, [["nested"]]])
def test_non_string_items_rejected(model, bad):
    with pytest.raises(InvalidInputError):
        model.encode(bad)


def test_bad_precision_and_batch_size(model):
    with pytest.raises(InvalidInputError, match="float64"):
        model.encode(["a"], precision="float64")
    with pytest.raises(InvalidInputError, match="batch_size"):
        model.encode(["a"], batch_size=0)


def test_unknown_similarity_name(model):
    with pytest.raises(InvalidInputError, match="cosinus"):
        model.similarity_fn_name = "cosinus"
    assert model.similarity_fn_name == "cosine"


def test_missing_model_path(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    with pytest.raises(ModelLoadError, match="looked at"):
        SentenceTransformer(str(missing))


def test_hub_name_offline_reports_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as info:
        resolve_model_path("someone/not-a-real-model-xyz", cache_folder=str(tmp_path / "cache"))
    msg = str(info.value)
    assert "local folder" in msg and "bundled" in msg and "someone/not-a-real-model-xyz" in msg


def test_bundled_names_resolve():
    a = resolve_model_path("all-MiniLM-L6-v2")
    b = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    assert a.source == b.source == "bundled" and a.path == b.path
    assert (a.path / "modules.json").is_file()


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    with pytest.raises(ModelLoadError):
        SentenceTransformer(str(tmp_path))
    (tmp_path / "modules.json").write_text('[{"path": "", "type": "sentence_transformers.models.Evil"}]')
    with pytest.raises(ModelLoadError, match="Evil"):
        SentenceTransformer(str(tmp_path))
