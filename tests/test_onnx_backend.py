"""The ONNX Runtime backend against our torch encoder and against sentence-transformers' ONNX backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import vectorstore as vs
from tests.helpers import build_tiny_bert, bundled_model_dir, varied_pairs
from vectorstore.errors import InvalidInputError, ModelLoadError
from vectorstore.evaluation import spearman

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory):
    """A writable copy of the bundled model, so exports land in its onnx/ folder."""
    dst = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2"
    shutil.copytree(bundled_model_dir(), dst, ignore=shutil.ignore_patterns("onnx", "openvino"))
    return dst


@pytest.fixture(scope="module")
def torch_model(minilm_copy):
    return vs.SentenceTransformer(str(minilm_copy), device="cpu")


@pytest.fixture(scope="module")
def onnx_model(minilm_copy, torch_model):
    return vs.SentenceTransformer(str(minilm_copy), device="cpu", backend="onnx")


def test_onnx_fp32_equals_torch_within_1e_4(dev_sentences, torch_model, onnx_model, minilm_copy):
    assert (minilm_copy / "onnx" / "model.onnx").is_file()  # exported once, under sentence-transformers' name
    assert (
        onnx_model.onnx_body is not None and onnx_model.onnx_body.path == minilm_copy / "onnx" / "model.onnx"
    )
    assert torch_model.onnx_body is None
    sents = dev_sentences[:200]
    a = torch_model.encode(sents, batch_size=32)
    b = onnx_model.encode(sents, batch_size=32)
    assert np.abs(a - b).max() < 1e-4
    # the whole encode signature behaves the same
    for kw in (
        {"normalize_embeddings": True},
        {"prompt": "query: "},
        {"truncate_dim": 64},
        {"precision": "int8"},
    ):
        x, y = torch_model.encode(sents[:20], **kw), onnx_model.encode(sents[:20], **kw)
        if kw.get("precision"):
            assert (np.abs(x.astype(int) - y.astype(int)) <= 1).all()
        else:
            assert np.abs(x - y).max() < 1e-4
    tokens_a = torch_model.encode(sents[:3], output_value="token_embeddings")
    tokens_b = onnx_model.encode(sents[:3], output_value="token_embeddings")
    for ta, tb in zip(tokens_a, tokens_b):
        assert ta.shape == tb.shape and float((ta - tb).abs().max()) < 1e-4


@pytest.mark.parametrize("level", ["O1", "O2", "O3"])
def test_graph_optimisations_keep_parity(dev_sentences, torch_model, onnx_model, minilm_copy, level):
    path = vs.export_optimized_onnx_model(onnx_model, level, str(minilm_copy))
    assert path == minilm_copy / "onnx" / f"model_{level}.onnx"
    opt = vs.SentenceTransformer(
        str(minilm_copy), backend="onnx", model_kwargs={"file_name": f"onnx/model_{level}.onnx"}
    )
    sents = dev_sentences[:100]
    diff = np.abs(torch_model.encode(sents) - opt.encode(sents)).max()
    # O3 approximates GELU: close but not bit-faithful; O1 / O2 are exact rewrites
    assert diff < (2e-3 if level == "O3" else 1e-4)


def test_dynamic_int8_keeps_sts_quality(dev_pairs, torch_model, onnx_model, minilm_copy):
    path = vs.export_dynamic_quantized_onnx_model(onnx_model, "avx512_vnni", str(minilm_copy))
    assert path.name == "model_qint8_avx512_vnni.onnx"
    q8 = vs.SentenceTransformer(
        str(minilm_copy), backend="onnx", model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"}
    )
    pairs = dev_pairs[:500]
    s1, s2 = [p.sentence1 for p in pairs], [p.sentence2 for p in pairs]
    gold = np.array([p.score for p in pairs])

    def rho(model) -> float:
        a, b = model.encode(s1), model.encode(s2)
        return spearman(gold, model.similarity_pairwise(a, b).numpy())

    fp32, int8 = rho(torch_model), rho(q8)
    assert abs(fp32 - int8) < 0.01
    e32, e8 = torch_model.encode(s1[:200]), q8.encode(s1[:200])
    cos = (e32 * e8).sum(1) / (np.linalg.norm(e32, axis=1) * np.linalg.norm(e8, axis=1))
    assert cos.min() >= 0.98


def test_our_export_loads_in_sentence_transformers_and_agrees(dev_sentences, minilm_copy, onnx_model):
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("optimum.onnxruntime", reason="sentence-transformers' ONNX backend needs optimum")
    ref = st.SentenceTransformer(str(minilm_copy), backend="onnx", device="cpu")
    sents = dev_sentences[:50]
    assert np.abs(ref.encode(sents) - onnx_model.encode(sents)).max() < 1e-4


def test_their_export_loads_here_and_agrees(tmp_path, dev_sentences, torch_model):
    st = pytest.importorskip("sentence_transformers")
    pytest.importorskip("optimum.onnxruntime", reason="sentence-transformers' ONNX backend needs optimum")
    folder = tmp_path / "theirs"
    shutil.copytree(bundled_model_dir(), folder, ignore=shutil.ignore_patterns("onnx", "openvino"))
    ref = st.SentenceTransformer(str(folder), backend="onnx", device="cpu")  # exports with optimum
    ref.save_pretrained(str(folder))
    assert (folder / "onnx" / "model.onnx").is_file()
    ours = vs.SentenceTransformer(str(folder), backend="onnx")
    assert ours.onnx_body.path == folder / "onnx" / "model.onnx"
    sents = dev_sentences[:50]
    assert np.abs(ours.encode(sents) - torch_model.encode(sents)).max() < 1e-4


def test_cross_encoder_onnx_fp32_and_int8(tmp_path):
    folder = build_tiny_bert(tmp_path / "ce", num_labels=1, hidden=64, initializer_range=0.1)
    pairs = varied_pairs(100)  # (two distinct pairs, as before, made any correlation +-1)
    torch_ce = vs.CrossEncoder(str(folder), device="cpu")
    onnx_ce = vs.CrossEncoder(str(folder), device="cpu", backend="onnx")
    assert np.abs(torch_ce.predict(pairs) - onnx_ce.predict(pairs)).max() < 1e-4
    vs.export_dynamic_quantized_onnx_model(onnx_ce, "avx2", str(folder))
    q8 = vs.CrossEncoder(
        str(folder), backend="onnx", model_kwargs={"file_name": "onnx/model_qint8_avx2.onnx"}
    )
    a, b = torch_ce.predict(pairs), q8.predict(pairs)
    # 0.977 on this random model (scores spread by ~0.01); the real-model bound is tested above
    assert np.corrcoef(a, b)[0, 1] > 0.95


def test_read_only_model_folders_export_into_the_cache(tmp_path, monkeypatch, minilm_copy):
    import vectorstore.models.onnx_backend as backend

    ro = tmp_path / "ro-model"
    shutil.copytree(minilm_copy, ro, ignore=shutil.ignore_patterns("onnx"))
    monkeypatch.setenv("VECTORSTORE_CACHE", str(tmp_path / "cache"))
    real_access = backend.os.access
    # chmod cannot stop root (CI runs as root), so the folder is made to look read-only instead
    monkeypatch.setattr(
        backend.os, "access", lambda p, mode: False if Path(p) == ro else real_access(p, mode)
    )
    m = vs.SentenceTransformer(str(ro), backend="onnx")
    assert str(m.onnx_body.path).startswith(str(tmp_path / "cache"))
    assert not (ro / "onnx").exists()
    again = vs.SentenceTransformer(str(ro), backend="onnx")  # found in the cache, not exported twice
    assert again.onnx_body.path == m.onnx_body.path


def test_bad_backend_arguments_raise_clear_errors(minilm_copy):
    with pytest.raises(InvalidInputError, match="backend"):
        vs.SentenceTransformer(str(minilm_copy), backend="tensorrt")
    with pytest.raises(ModelLoadError, match="no ONNX file"):
        vs.SentenceTransformer(str(minilm_copy), backend="onnx", model_kwargs={"file_name": "onnx/nope.onnx"})
    with pytest.raises(ModelLoadError, match="provider"):
        vs.SentenceTransformer(str(minilm_copy), backend="onnx", model_kwargs={"provider": "NoSuchProvider"})
    with pytest.raises(InvalidInputError, match="optimization_config"):
        vs.export_optimized_onnx_model(vs.SentenceTransformer(str(minilm_copy)), "O9")
    with pytest.raises(InvalidInputError, match="push_to_hub"):
        vs.export_dynamic_quantized_onnx_model(vs.SentenceTransformer(str(minilm_copy)), "avx2", None, True)


def test_a_collection_stores_its_backend(tmp_path, minilm_copy, torch_model):
    with vs.Store(tmp_path / "s", device="cpu") as store:
        col = store.create_collection("c", model=str(minilm_copy), model_backend="onnx", index="exact")
        col.add(ids=["a", "b"], documents=["a man plays guitar", "stocks fell"])
        assert col.model.onnx_body is not None
    with vs.Store(tmp_path / "s", device="cpu") as store:
        col = store.get_collection("c")
        assert col.config.model_backend == "onnx"
        hit = col.query("someone is making music", k=1)[0]
        assert hit.id == "a"
        stored = col.get(ids=["a"], include=["embeddings"]).embeddings[0]
        np.testing.assert_allclose(stored, torch_model.encode("a man plays guitar"), atol=1e-4)


def test_cpu_sessions_do_not_spin_and_given_session_options_are_used(minilm_copy, onnx_model, dev_sentences):
    session = onnx_model.onnx_body.session
    assert onnx_model.onnx_body.provider == "CPUExecutionProvider"
    opts = session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    mine = ort.SessionOptions()
    mine.intra_op_num_threads = 1
    mine.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    own = vs.SentenceTransformer(
        str(minilm_copy), device="cpu", backend="onnx", model_kwargs={"session_options": mine}
    )
    got = own.onnx_body.session.get_session_options()
    assert got.intra_op_num_threads == 1
    assert got.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    with pytest.raises(RuntimeError, match="allow_spinning"):  # used as given: no entry of ours added
        got.get_session_config_entry("session.intra_op.allow_spinning")
    sents = dev_sentences[:20]
    assert np.abs(own.encode(sents) - onnx_model.encode(sents)).max() < 1e-4
    with pytest.raises(ModelLoadError, match="SessionOptions"):
        vs.SentenceTransformer(
            str(minilm_copy), backend="onnx", model_kwargs={"session_options": {"intra_op_num_threads": 1}}
        )


def test_runtime_only_model_kwargs_are_refused_for_storage_and_taken_per_process(tmp_path, minilm_copy):
    with vs.Store(tmp_path / "s", device="cpu") as store:
        with pytest.raises(InvalidInputError, match="JSON"):
            store.create_collection(
                "c", model=str(minilm_copy), model_backend="onnx",
                model_kwargs={"session_options": ort.SessionOptions()},
            )
        assert store.list_collections() == []  # nothing half-written
        store.create_collection("c", model=str(minilm_copy), model_backend="onnx", index="exact")
    mine = ort.SessionOptions()
    mine.intra_op_num_threads = 1
    with vs.Store(tmp_path / "s", device="cpu") as store:
        col = store.get_collection("c", model_kwargs={"session_options": mine})
        col.add(ids=["a"], documents=["a man plays guitar"])
        assert col.model.onnx_body.session.get_session_options().intra_op_num_threads == 1
