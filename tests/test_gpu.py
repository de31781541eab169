"""GPU checks (``pytest -m gpu``): skipped on machines without CUDA, run by ``benchmarks/gpu_check.sh``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_encode_matches_fp32(dev_sentences, dtype):
    import vectorstore as vs

    fp32 = vs.SentenceTransformer("all-MiniLM-L6-v2", device="cuda")
    half = vs.SentenceTransformer("all-MiniLM-L6-v2", device="cuda", dtype=dtype)
    a = fp32.encode(dev_sentences, batch_size=128)
    b = half.encode(dev_sentences, batch_size=128)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 1 - 1e-2
    queries = a[:50]
    top_a = np.argsort(-(queries @ a.T), axis=1)[:, :10]
    top_b = np.argsort(-(b[:50] @ b.T), axis=1)[:, :10]
    same = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b)])
    assert same >= 0.98  # ties between near-identical sentences may swap at the 10th place


def test_exact_index_on_cuda_equals_cpu():
    import indexers

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20_000, 64)).astype(np.float32)
    q = rng.standard_normal((16, 64)).astype(np.float32)
    keys = np.arange(len(x))
    cpu = indexers.make_index("exact", 64, "cosine", device="cpu")
    gpu = indexers.make_index("exact", 64, "cosine", device="cuda")
    cpu.add(keys, x)
    gpu.add(keys, x)
    ck, cs = cpu.search(q, 10)
    gk, gs = gpu.search(q, 10)
    np.testing.assert_array_equal(ck, gk)
    np.testing.assert_allclose(cs, gs, atol=1e-5)


def test_onnx_cuda_provider_matches_torch(dev_sentences, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is not installed")
    import shutil

    import vectorstore as vs
    from tests.helpers import bundled_model_dir

    folder = tmp_path / "m"
    shutil.copytree(bundled_model_dir(), folder, ignore=shutil.ignore_patterns("onnx"))
    onnx = vs.SentenceTransformer(str(folder), backend="onnx")
    assert onnx.onnx_body.provider == "CUDAExecutionProvider"
    ref = vs.SentenceTransformer(str(folder), device="cpu")
    assert np.abs(onnx.encode(dev_sentences[:200]) - ref.encode(dev_sentences[:200])).max() < 1e-3
