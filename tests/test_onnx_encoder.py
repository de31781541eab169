"""The light ONNX encoder (no torch, no transformers) against SentenceTransformer(backend="onnx"),
and the query paths that use it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vectorstore as vs
from tests.helpers import bundled_model_dir
from vectorstore.models.onnx_encoder import OnnxEncoder

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

REPO = Path(__file__).resolve().parents[1]
HARD_TEXTS = [
    "",
    "Ünïcödé ÀÉÎ café naïve façade",
    "日本語のテキスト 中文句子 한국어",
    "emoji 🤖🚀 and symbols ∑∫ ©®",
    "UPPER lower MiXeD CaSe",
    "[CLS] [SEP] [MASK] [PAD] literal special tokens",
    "word " * 400,  # past max_seq_length: truncated
    "tab\tand\nnewline\r\n  spaces",
]


@pytest.fixture(scope="module")
def minilm_onnx(tmp_path_factory):
    """A writable copy of the bundled model with its fp32 ONNX export, and the full ONNX encoder."""
    dst = tmp_path_factory.mktemp("minilm-light") / "all-MiniLM-L6-v2"
    shutil.copytree(bundled_model_dir(), dst, ignore=shutil.ignore_patterns("onnx", "openvino"))
    full = vs.SentenceTransformer(str(dst), device="cpu", backend="onnx")  # exports onnx/model.onnx
    return dst, full


def _variant(src: Path, dst: Path, edits: dict[str, object]) -> Path:
    """``src`` with some JSON files replaced (everything else linked, the ONNX file included)."""
    dst.mkdir()
    touched = {Path(rel).parts[0] for rel in edits}
    for item in src.iterdir():
        if item.name in touched and item.is_dir():
            shutil.copytree(item, dst / item.name)  # edited inside: a copy, never through a link
        elif item.name not in touched:
            os.symlink(item, dst / item.name)
    for rel, content in edits.items():
        path = dst / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
    return dst


def test_light_encoder_equals_the_full_onnx_encoder(minilm_onnx, dev_sentences):
    folder, full = minilm_onnx
    light = OnnxEncoder.load(folder)
    assert light is not None and light.path == folder / "onnx" / "model.onnx"
    assert light.max_seq_length == full.max_seq_length == 256
    assert light.get_sentence_embedding_dimension() == 384
    texts = dev_sentences[:300] + HARD_TEXTS
    a = light.encode(texts, batch_size=32)
    b = full.encode(texts, batch_size=32)
    assert a.shape == b.shape == (len(texts), 384)
    assert np.abs(a - b).max() < 1e-5
    # single string -> 1-D; normalisation and literal prompts as the full encoder
    np.testing.assert_allclose(light.encode("a cat"), full.encode("a cat"), atol=1e-5)
    np.testing.assert_allclose(
        light.encode(texts[:20], normalize_embeddings=True, prompt="query: "),
        full.encode(texts[:20], normalize_embeddings=True, prompt="query: "),
        atol=1e-5,
    )
    np.testing.assert_allclose(light.encode_query(texts[:5]), full.encode_query(texts[:5]), atol=1e-5)
    assert light.encode([]).shape == (0, 384)


def test_light_encoder_reads_prompts_and_tokenizer_settings_as_transformers(minilm_onnx, tmp_path):
    folder, _ = minilm_onnx
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    edited = _variant(
        folder,
        tmp_path / "cased-prompted",
        {
            "tokenizer_config.json": {**tok_config, "do_lower_case": False},
            "config_sentence_transformers.json": {"prompts": {"query": "query: ", "document": "passage: "}},
        },
    )
    light = OnnxEncoder.load(edited)
    full = vs.SentenceTransformer(str(edited), device="cpu", backend="onnx")
    assert light is not None and light.prompts == full.prompts
    texts = ["Berlin Is The Capital", "MiXeD CaSe words", "lowercase words"]
    q_light, q_full = light.encode_query(texts), full.encode_query(texts)
    np.testing.assert_allclose(q_light, q_full, atol=1e-5)
    # the prompt and the cased tokenizer both changed the vectors (so equality above means something)
    plain = OnnxEncoder.load(folder)
    assert plain is not None
    assert np.abs(q_light - plain.encode_query(texts)).max() > 1e-2
    assert np.abs(light.encode(texts[:1]) - plain.encode(texts[:1])).max() > 1e-2
    np.testing.assert_allclose(light.encode(texts[2:]), plain.encode(texts[2:]), atol=1e-6)


def test_light_encoder_declines_what_it_does_not_cover(minilm_onnx, tmp_path):
    folder, _ = minilm_onnx
    modules = json.loads((folder / "modules.json").read_text())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    dense = _variant(
        folder,
        tmp_path / "dense",
        {"modules.json": [*modules, {"idx": 9, "name": "9", "path": "2_Dense", "type": "x.Dense"}]},
    )
    assert OnnxEncoder.load(dense) is None
    weighted = _variant(
        folder,
        tmp_path / "weighted",
        {
            "1_Pooling/config.json": {
                **pooling,
                "pooling_mode_mean_tokens": False,
                "pooling_mode_weightedmean_tokens": True,
            }
        },
    )
    assert OnnxEncoder.load(weighted) is None
    no_prompt = _variant(
        folder, tmp_path / "noprompt", {"1_Pooling/config.json": {**pooling, "include_prompt": False}}
    )
    assert OnnxEncoder.load(no_prompt) is None
    # not exported yet: declined, and nothing is exported on the way
    fresh = tmp_path / "fresh"
    shutil.copytree(folder, fresh, ignore=shutil.ignore_patterns("onnx"), symlinks=True)
    assert OnnxEncoder.load(fresh) is None
    assert not (fresh / "onnx").exists()
    # a folder it covers loads: the declines above are about the edits
    assert OnnxEncoder.load(_variant(folder, tmp_path / "same", {})) is not None


def _cli_in_fresh_process(args: list[str]) -> tuple[list[dict], dict[str, bool]]:
    code = (
        "import json, sys\n"
        "from vectorstore.cli import main\n"
        f"rc = main({args!r})\n"
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules, "
        "'transformers': 'transformers' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    *hits, status = out.strip().splitlines()
    return json.loads("\n".join(hits)), json.loads(status)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_cli_query_runs_without_torch_and_answers_as_the_full_model(minilm_onnx, tmp_path, backend):
    folder, _ = minilm_onnx
    docs = ["a man plays a guitar", "stocks fell sharply today", "a cat sleeps on the sofa", "rain in Berlin"]
    with vs.Store(tmp_path / "s", device="cpu") as store:
        col = store.create_collection("c", model=str(folder), model_backend=backend, index="exact")
        col.add(ids=[str(i) for i in range(len(docs))], documents=docs)
        expected = col.query("someone is making music", k=4)
    hits, status = _cli_in_fresh_process(
        ["query", str(tmp_path / "s"), "c", "someone is making music", "-k", "4", "--json"]
    )
    assert status == {"rc": 0, "torch": False, "transformers": False}
    assert [h["id"] for h in hits] == [h.id for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-4)
    # an explicit --backend torch still runs torch
    _, status = _cli_in_fresh_process(
        ["query", str(tmp_path / "s"), "c", "music", "-k", "1", "--json", "--backend", "torch"]
    )
    assert status["torch"] is True


def test_collection_queries_use_the_light_encoder_until_the_full_one_is_loaded(minilm_onnx, tmp_path):
    folder, full = minilm_onnx
    with vs.Store(tmp_path / "s", device="cpu") as store:
        col = store.create_collection("c", model=str(folder), model_backend="onnx", index="exact")
        col.add(ids=["a", "b"], embeddings=full.encode(["a man plays a guitar", "stocks fell"]))
    with vs.Store(tmp_path / "s", device="cpu") as store:
        col = store.get_collection("c")
        hit = col.query("someone is making music", k=1)[0]
        encoder = store.models.query_encoder(str(folder), "onnx")
        assert isinstance(encoder, OnnxEncoder)
        assert hit.id == "a"
        np.testing.assert_allclose(
            hit.score,
            float(
                full.similarity(full.encode("someone is making music"), full.encode("a man plays a guitar"))
            ),
            atol=1e-5,
        )
        col.add(ids=["c"], documents=["a cat sleeps"])  # loads the full encoder, which queries reuse
        assert store.models.query_encoder(str(folder), "onnx") is col.model
