"""Child of ``encode.py --reference-python``: sentence-transformers' own backends, in another environment.

sentence-transformers' ONNX backend needs Optimum (``optimum-onnx``), which pins transformers < 5, while
this project's environment has transformers 5; so ``encode.py`` runs this script with the Python of a
separate virtualenv that has sentence-transformers 5, transformers 4 and optimum-onnx. It loads the
model folder ``encode.py`` prepared (the same ``onnx/model.onnx`` and int8 file our rows use), warms each
backend up, encodes the sentences once per backend and prints one JSON line of sentences/s plus the
embeddings' path.

    python _reference_onnx.py MODEL_FOLDER SENTENCES_JSON INT8_FILE_NAME OUT_NPZ BATCH_SIZE
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> None:
    folder, sentences_path, int8_name, out_path, batch = sys.argv[1:6]
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    with open(sentences_path) as f:
        sentences = json.loads(f.read())
    models = {
        "reference torch (child)": SentenceTransformer(folder, device="cpu"),
        "reference onnx": SentenceTransformer(folder, device="cpu", backend="onnx"),
        "reference onnx-int8": SentenceTransformer(
            folder, device="cpu", backend="onnx", model_kwargs={"file_name": f"onnx/{int8_name}"}
        ),
    }
    for m in models.values():
        m.encode(sentences[:256], batch_size=int(batch))
    rates, embs = {}, {}
    for name, m in models.items():
        t = time.perf_counter()
        embs[name] = np.asarray(m.encode(sentences, batch_size=int(batch)), dtype=np.float32)
        rates[name] = len(sentences) / (time.perf_counter() - t)
    np.savez(out_path, **{k.replace(" ", "_"): v for k, v in embs.items()})
    print(json.dumps({"version": sentence_transformers.__version__, "rates": rates}))


if __name__ == "__main__":
    main()
