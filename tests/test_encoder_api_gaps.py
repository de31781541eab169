"""The parts of sentence-transformers' inference API that were missing, against the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

SENTENCES = ["A man is eating food.", "A man eats bread with butter and jam.", "Hi"]


def test_token_embeddings_and_all_outputs_match_the_reference(model, ref_model):
    ours = model.encode(SENTENCES, output_value="token_embeddings")
    ref = ref_model.encode(SENTENCES, output_value="token_embeddings")
    assert [t.shape for t in ours] == [t.shape for t in ref]  # padding removed, per input
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a.numpy(), b.cpu().numpy(), atol=1e-4)
    single = model.encode(SENTENCES[0], output_value="token_embeddings")
    assert isinstance(single, torch.Tensor) and single.shape == ours[0].shape
    everything = model.encode(SENTENCES, output_value=None)
    ref_all = ref_model.encode(SENTENCES, output_value=None)
    for mine, theirs in zip(everything, ref_all):
        assert {"input_ids", "attention_mask", "token_embeddings", "sentence_embedding"} <= set(mine)
        # the reference keeps its batch's padding here; ours is cut to the input's own tokens
        n = int(theirs["attention_mask"].sum())
        np.testing.assert_array_equal(mine["input_ids"].numpy(), theirs["input_ids"][:n].cpu().numpy())
        np.testing.assert_allclose(
            mine["token_embeddings"].numpy(), theirs["token_embeddings"][:n].cpu().numpy(), atol=1e-4
        )
        np.testing.assert_allclose(
            mine["sentence_embedding"].numpy(), theirs["sentence_embedding"].cpu().numpy(), atol=1e-5
        )
    np.testing.assert_allclose(
        np.stack([o["sentence_embedding"].numpy() for o in everything]), model.encode(SENTENCES), atol=1e-5
    )
    from vectorstore import InvalidInputError

    with pytest.raises(InvalidInputError, match="output_value"):
        model.encode(SENTENCES, output_value="logits")


def test_prompts_are_read_as_the_reference_reads_them():
    # fresh models: the session-wide ones may have had prompts changed by other tests
    import sentence_transformers

    from tests.helpers import bundled_model_dir
    from vectorstore import SentenceTransformer

    model = SentenceTransformer("all-MiniLM-L6-v2", device="cpu")
    ref_model = sentence_transformers.SentenceTransformer(str(bundled_model_dir()), device="cpu")
    assert model.prompts == ref_model.prompts == {"query": "", "document": ""}
    for name in ("query", "document"):
        ours = model.encode(["x y z"], prompt_name=name)
        assert ours.shape == (1, 384)
        np.testing.assert_allclose(ours, ref_model.encode(["x y z"], prompt_name=name), atol=1e-5)
    np.testing.assert_allclose(model.encode_query(["x"]), ref_model.encode_query(["x"]), atol=1e-5)
    np.testing.assert_allclose(model.encode_document(["x"]), ref_model.encode_document(["x"]), atol=1e-5)


def test_max_seq_length_and_truncation_context(model, ref_model):
    assert model.get_max_seq_length() == ref_model.get_max_seq_length() == 256
    full = model.encode(SENTENCES)
    with model.truncate_sentence_embeddings(64):
        cut = model.encode(SENTENCES)
    assert cut.shape == (3, 64)
    np.testing.assert_allclose(cut, full[:, :64], atol=1e-6)
    assert model.encode(SENTENCES).shape == (3, 384)  # restored on exit
    with ref_model.truncate_sentence_embeddings(64):
        np.testing.assert_allclose(cut, ref_model.encode(SENTENCES), atol=1e-5)
