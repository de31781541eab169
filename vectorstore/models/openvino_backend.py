"""The OpenVINO backend: the transformer body converted from its ONNX export and run by OpenVINO,
and int8 static quantization of it with NNCF.

As with ONNX Runtime (:mod:`vectorstore.models.onnx_backend`), only the body runs in OpenVINO;
tokenization, pooling, Dense, Normalize and the cross-encoder activation are the torch path's code.
Files use sentence-transformers' names inside the model folder — ``openvino/openvino_model.xml``
(+ ``.bin``) and ``openvino/openvino_model_qint8_quantized.xml`` — so a folder prepared by either
library loads in both. They are written to a temporary folder and renamed into place (weights
first, the ``.xml`` that names them last), so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from vectorstore.errors import InvalidInputError, ModelLoadError
from vectorstore.models.onnx_backend import _LOCK, _model_parts, _source_onnx, refuse_hub_upload, runtime_feed
from vectorstore.models.onnx_files import onnx_folder, openvino_runtime

__all__ = [
    "OpenVinoBody",
    "convert_to_openvino",
    "export_static_quantized_openvino_model",
    "openvino_folder",
    "resolve_openvino_file",
]

logger = logging.getLogger(__name__)

_MODEL_XML = "openvino_model.xml"
_DEFAULT_SAMPLES = 300  # calibration samples, as Optimum's OVQuantizationConfig


def openvino_folder(model_folder: Path) -> Path:
    """``<folder>/openvino`` when writable (or already holding a model), else a cache folder."""
    return onnx_folder(model_folder, "openvino", "*.xml")


def _save(ov_model: Any, target: Path) -> Path:
    """Write ``target`` (.xml) and its ``.bin`` atomically: staged, weights renamed first."""
    ov = openvino_runtime()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, tempfile.TemporaryDirectory(dir=target.parent, prefix=".staged-") as tmp:
        staged = Path(tmp) / target.name
        try:
            ov.save_model(ov_model, str(staged), compress_to_fp16=False)
        except Exception as exc:
            raise ModelLoadError(f"cannot write {target}: {type(exc).__name__}: {exc}") from exc
        os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(staged, target)
    logger.info("wrote %s", target)
    return target


def convert_to_openvino(onnx_path: Path, target: Path) -> Path:
    """Convert an ONNX file to OpenVINO IR at ``target`` (fp32 weights kept as they are)."""
    ov = openvino_runtime()
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ModelLoadError(f"cannot convert {onnx_path} to OpenVINO: {type(exc).__name__}: {exc}") from exc
    return _save(model, target)


def resolve_openvino_file(
    model_folder: Path, model_kwargs: Mapping[str, Any] | None, *, onnx_source: Callable[[], Path]
) -> Path:
    """The ``.xml`` to load: ``model_kwargs["file_name"]`` (relative to the folder, or under
    ``openvino/``), else ``openvino/openvino_model.xml``, converted from the fp32 ONNX export
    (``onnx_source()``, which exports it when missing) the first time.

    Raises:
        ModelLoadError: a named file that does not exist.
    """
    name = dict(model_kwargs or {}).get("file_name")
    bases = (model_folder, model_folder / "openvino", openvino_folder(model_folder))
    if name is not None:
        for base in bases:
            candidate = base / str(name)
            if candidate.is_file():
                return candidate
        raise ModelLoadError(
            f"no OpenVINO file {name!r} in {model_folder} (or its openvino/ folder); export it first, "
            "e.g. with vectorstore.export_static_quantized_openvino_model"
        )
    for base in bases[1:]:
        if (base / _MODEL_XML).is_file():
            return base / _MODEL_XML
    return convert_to_openvino(onnx_source(), openvino_folder(model_folder) / _MODEL_XML)


def compile_properties(ov_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The properties a model is compiled with: ``ov_config`` over full float32 precision.

    OpenVINO's CPU plugin computes in bfloat16 by default where the processor supports it, so the
    same fp32 model gave embeddings 1e-3 away from PyTorch's on one machine and 1e-6 on another;
    a user asks for lower precision explicitly.
    """
    properties: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    properties.update(ov_config or {})
    return properties


class OpenVinoBody(nn.Module):
    """An OpenVINO compiled model that stands in for the transformers body (as
    :class:`~vectorstore.models.onnx_backend.OnnxBody` does for ONNX Runtime).

    Args:
        path: the ``.xml`` file.
        config: the transformers config of the model.
        device: an OpenVINO device (``"CPU"`` by default; ``"GPU"`` for an Intel GPU).
        ov_config: OpenVINO properties for compilation, e.g. ``{"PERFORMANCE_HINT": "LATENCY"}``.
            Inference runs at full float32 precision unless ``INFERENCE_PRECISION_HINT`` says otherwise:
            OpenVINO would otherwise pick bfloat16 on CPUs that have it (AVX512-BF16, AMX), which moves
            embeddings by about 1e-3; pass ``{"INFERENCE_PRECISION_HINT": "bf16"}`` to trade that for speed.
    """

    runs_outside_torch = True  # see onnx_backend.is_runtime_body

    def __init__(
        self,
        path: Path,
        config: Any,
        *,
        device: str | None = None,
        ov_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        ov = openvino_runtime()
        core = ov.Core()
        self.device = str(device or "CPU").upper()
        if (
            self.device not in core.available_devices
            and self.device.split(".")[0] not in core.available_devices
        ):
            raise ModelLoadError(
                f"OpenVINO device {self.device!r} is not available here; available: {core.available_devices}"
            )
        try:
            self.compiled = core.compile_model(str(path), self.device, compile_properties(ov_config))
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path} in OpenVINO: {type(exc).__name__}: {exc}") from exc
        self.path = path
        self.config = config
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output = self.compiled.outputs[0]
        self._where = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, return_dict: bool = True, **features: torch.Tensor) -> SimpleNamespace:
        """Run the compiled model on the features it takes (others are ignored)."""
        # one infer request per call: requests are not shared between threads
        out = self.compiled.create_infer_request().infer(runtime_feed(self.input_names, features))[
            self.output
        ]
        tensor = torch.from_numpy(np.array(out, dtype=np.float32))
        return SimpleNamespace(last_hidden_state=tensor, logits=tensor)


def _calibration_texts(
    texts: Sequence[str | tuple[str, str]] | None, dataset_name: str | None, options: Mapping[str, Any]
) -> list[Any]:
    if texts is not None:
        out = list(texts)
    elif dataset_name is not None:
        try:
            import datasets
        except ImportError as exc:
            raise InvalidInputError(
                "dataset_name needs the `datasets` package; or pass calibration_texts=[...]"
            ) from exc
        data = datasets.load_dataset(
            dataset_name, options.get("dataset_config_name"), split=options.get("dataset_split") or "train"
        )
        out = list(data[options.get("column_name") or data.column_names[0]])
    else:  # offline default: the bundled sample corpus (varied short English sentences)
        corpus = Path(__file__).resolve().parent.parent / "data" / "sample_corpus.jsonl"
        out = [json.loads(line)["text"] for line in corpus.read_text().splitlines() if line.strip()]
    if not out:
        raise InvalidInputError("calibration needs at least one text")
    return out


def _quantization_options(config: Any) -> dict[str, Any]:
    """``num_samples`` and other settings from a dict, an object with those attributes (such as
    Optimum's ``OVQuantizationConfig``) or None."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        return dict(config)
    return {k: getattr(config, k) for k in ("num_samples", "preset") if getattr(config, k, None) is not None}


def export_static_quantized_openvino_model(
    model: Any,
    quantization_config: Any = None,
    model_name_or_path: str | os.PathLike[str] | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    dataset_split: str | None = None,
    column_name: str | None = None,
    push_to_hub: bool = False,
    create_pr: bool = False,
    *,
    calibration_texts: Sequence[str | tuple[str, str]] | None = None,
    file_suffix: str = "qint8_quantized",
) -> Path:
    """Write ``openvino/openvino_model_<suffix>.xml``: int8 weights and activations, with activation
    ranges calibrated by NNCF post-training quantization on sample inputs.

    sentence-transformers calibrates on a Hugging Face dataset (``glue``/``sst2`` by default); with no
    hub at hand, pass ``calibration_texts`` (sentences, or ``(query, passage)`` pairs for a
    cross-encoder); without either, the bundled sample corpus is used. Calibrate on text like the
    collection's own, spread over all of it: given more texts than ``num_samples``, a seeded random
    sample of them is used, not the first ones. Load the result with
    ``backend="openvino", model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml"}``.

    Args:
        model: a SentenceTransformer or CrossEncoder (any backend).
        quantization_config: ``{"num_samples": 300, "preset": "mixed" | "performance"}`` (NNCF's
            default for transformers, ``"mixed"``, when no preset is given), an object
            with those attributes (Optimum's ``OVQuantizationConfig``), or None for the defaults.
        model_name_or_path: the model folder to write into (default: the model's own folder).
        dataset_name, dataset_config_name, dataset_split, column_name: a ``datasets`` dataset to
            calibrate on (needs the package and the data locally or a hub).
        push_to_hub, create_pr: sentence-transformers' arguments; uploading is not supported.
        calibration_texts: the calibration inputs (preferred offline).
        file_suffix: the file is ``openvino_model_<suffix>.xml``.

    Returns:
        the written ``.xml`` (its ``.bin`` beside it).
    """
    refuse_hub_upload(push_to_hub)
    ov = openvino_runtime()
    try:
        import nncf
    except ImportError as exc:
        raise ModelLoadError(
            "export_static_quantized_openvino_model needs NNCF: pip install 'vectorstore[openvino]'"
        ) from exc
    options = _quantization_options(quantization_config)
    texts = _calibration_texts(
        calibration_texts,
        dataset_name,
        {
            "dataset_config_name": dataset_config_name,
            "dataset_split": dataset_split,
            "column_name": column_name,
        },
    )
    obj, folder, _ = _model_parts(model)
    out_dir = (
        Path(model_name_or_path) / "openvino" if model_name_or_path is not None else openvino_folder(folder)
    )
    ov_model = ov.convert_model(str(_source_onnx(obj, folder)))
    names = {port.get_any_name() for port in ov_model.inputs}
    limit = getattr(obj, "max_seq_length", None) or getattr(obj, "max_length", None) or 512
    tokenizer = obj.tokenizer

    def sample(text: Any) -> dict[str, np.ndarray]:
        pair = (text[0], text[1]) if isinstance(text, (tuple, list)) else (text,)
        return runtime_feed(
            names, tokenizer(*pair, truncation=True, max_length=int(limit), return_tensors="np")
        )

    samples = int(options.get("num_samples", _DEFAULT_SAMPLES))
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    preset = options.get("preset")
    if preset is not None and str(preset) not in presets:
        raise InvalidInputError(f"preset must be one of {sorted(presets)}, got {preset!r}")
    if len(texts) > samples:
        # a spread sample, not the first texts: a corpus's head is often one kind of text, and ranges
        # calibrated on it clip the others (first 300 STS-train sentences: 22 % of the rest below
        # cosine 0.98 to fp32; 300 drawn at random: 0.06 %)
        pick = np.sort(np.random.default_rng(0).choice(len(texts), samples, replace=False))
        texts = [texts[i] for i in pick.tolist()]
    quantized = nncf.quantize(
        ov_model,
        nncf.Dataset(texts, sample),
        # NNCF's default for transformers: "mixed" (symmetric weights, asymmetric activations)
        preset=None if preset is None else presets[str(preset)],
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=min(samples, len(texts)),
    )
    return _save(quantized, out_dir / f"openvino_model_{file_suffix}.xml")
