"""Pooling modes against hand computations, and save/load round trips with the reference library."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import build_tiny_bert, write_st_folder
from vectorstore import SentenceTransformer
from vectorstore.models.pooling import POOLING_MODES, PoolingConfig, pool

SENTENCES = [
    "a short one",
    "a somewhat longer sentence with more tokens in it",
    "x",
    "the quick brown fox jumps",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", seed=3)


def _hand_pool(tokens: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Plain loops over one sequence at a time: the oracle."""
    out = []
    for t, m in zip(tokens, mask):
        real = np.nonzero(m)[0]
        rows = t[real]
        if mode == "cls":
            out.append(rows[0])
        elif mode == "max":
            out.append(rows.max(axis=0))
        elif mode == "mean":
            out.append(rows.sum(axis=0) / len(real))
        elif mode == "mean_sqrt_len_tokens":
            out.append(rows.sum(axis=0) / np.sqrt(len(real)))
        elif mode == "weightedmean":
            w = np.arange(1, len(real) + 1, dtype=np.float64)[:, None]
            out.append((rows * w).sum(axis=0) / w.sum())
        elif mode == "lasttoken":
            out.append(rows[-1])
    return np.stack(out)


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pooling_mode_against_hand_computation(tiny_dir, tmp_path, mode):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_dir, folder)
    write_st_folder(folder, pooling_modes=(mode,))
    model = SentenceTransformer(str(folder), device="cpu")
    got = model.encode(SENTENCES)
    enc = model.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        tokens = model.auto_model(**enc).last_hidden_state.numpy().astype(np.float64)
    want = _hand_pool(tokens, enc["attention_mask"].numpy(), mode)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_combined_modes_concatenate_in_canonical_order():
    tokens = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    both = pool(tokens, mask, PoolingConfig(4, ("mean", "cls")))
    cls = pool(tokens, mask, PoolingConfig(4, ("cls",)))
    mean = pool(tokens, mask, PoolingConfig(4, ("mean",)))
    torch.testing.assert_close(both, torch.cat([cls, mean], dim=1))


def test_prompt_excluded_from_pooling():
    tokens = torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(1, 6, dtype=torch.long)
    got = pool(tokens, mask, PoolingConfig(3, ("mean",), include_prompt=False), prompt_length=2)
    torch.testing.assert_close(got, tokens[:, 2:].mean(dim=1))


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pooling_mode_matches_reference(tiny_dir, tmp_path, mode):
    st = pytest.importorskip("sentence_transformers")
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_dir, folder)
    write_st_folder(folder, pooling_modes=(mode,), normalize=True)
    ours = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_our_save_loads_in_reference(tmp_path, model, dev_sentences):
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers.models import Dense, Normalize

    # The bundled model plus a Dense layer, a prompt and a non-default similarity.
    ref = st.SentenceTransformer(str(model.model_path), device="cpu")
    torch.manual_seed(0)
    ref_dense = st.SentenceTransformer(
        modules=[ref[0], ref[1], Dense(384, 96), Normalize()],
        device="cpu",
        prompts={"query": "query: "},
        similarity_fn_name="dot",
    )
    ref_dense.save(str(tmp_path / "ref_saved"))

    ours = SentenceTransformer(str(tmp_path / "ref_saved"), device="cpu")
    assert ours.get_sentence_embedding_dimension() == 96
    assert ours.similarity_fn_name == "dot"
    assert ours.prompts["query"] == "query: "
    sents = dev_sentences[:40]
    np.testing.assert_allclose(ours.encode(sents), ref_dense.encode(sents), atol=1e-5)
    np.testing.assert_allclose(
        ours.encode(sents, prompt_name="query"), ref_dense.encode(sents, prompt_name="query"), atol=1e-5
    )

    ours.save(str(tmp_path / "ours_saved"))
    modules = json.loads((tmp_path / "ours_saved" / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Dense", "Normalize"]
    back = st.SentenceTransformer(str(tmp_path / "ours_saved"), device="cpu")
    assert back.similarity_fn_name == "dot"
    assert back.max_seq_length == ours.max_seq_length == 256
    np.testing.assert_allclose(back.encode(sents), ours.encode(sents), atol=1e-5)
    again = SentenceTransformer(str(tmp_path / "ours_saved"), device="cpu")
    np.testing.assert_allclose(again.encode(sents), ours.encode(sents), atol=1e-6)


def test_bundled_model_save_round_trip(tmp_path, model, ref_model, dev_sentences):
    model.save(str(tmp_path / "saved"))
    st = pytest.importorskip("sentence_transformers")
    back = st.SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    sents = dev_sentences[:30]
    np.testing.assert_allclose(back.encode(sents), ref_model.encode(sents), atol=1e-5)
