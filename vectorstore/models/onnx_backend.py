"""The ONNX Runtime backend: export a transformers body to ONNX, optimise or quantise it, run it.

Only the transformer body runs in ONNX Runtime; tokenization, pooling, Dense, Normalize and the
cross-encoder activation stay the same code as with ``backend="torch"``, so every ``encode`` /
``predict`` option behaves identically. Files use sentence-transformers' names inside the model
folder (``onnx/model.onnx``, ``onnx/model_O3.onnx``, ``onnx/model_qint8_avx512_vnni.onnx``), so a folder
prepared by either library loads in both. A folder that cannot be written to gets its exports in a
cache folder (``$VECTORSTORE_CACHE`` or ``~/.cache/vectorstore/onnx``) instead. Exports are written to
a temporary name and renamed into place, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from vectorstore.errors import InvalidInputError, ModelLoadError
from vectorstore.models.onnx_files import (
    BACKENDS,
    check_backend,
    exported_onnx,
    inference_session,
    onnx_folder,
    onnx_runtime,
)

__all__ = [
    "BACKENDS",
    "OPTIMIZATION_LEVELS",
    "QUANTIZATION_CONFIGS",
    "OnnxBody",
    "check_backend",
    "export_dynamic_quantized_onnx_model",
    "export_onnx",
    "export_optimized_onnx_model",
    "onnx_folder",
]

logger = logging.getLogger(__name__)

OPTIMIZATION_LEVELS = ("O1", "O2", "O3", "O4")
QUANTIZATION_CONFIGS = ("arm64", "avx2", "avx512", "avx512_vnni")
Kind = Literal["base", "sequence-classification"]
_LOCK = threading.Lock()


@contextlib.contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``; renamed onto it when the block succeeds (one writer at a
    time in this process), so a crash or an error never leaves a half-written model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK, tempfile.TemporaryDirectory(dir=target.parent, prefix=".staged-") as tmp:
        staged = Path(tmp) / target.name
        yield staged
        os.replace(staged, target)


def _dummy_inputs(tokenizer: Any, input_names: list[str]) -> dict[str, torch.Tensor]:
    enc = tokenizer(
        ["a short example", "another, slightly longer example input"], padding=True, return_tensors="pt"
    )
    return {k: enc[k] for k in input_names if k in enc}


def export_onnx(hf_model: Any, tokenizer: Any, target: Path, *, kind: Kind) -> Path:
    """Export the transformers model to ``target`` (ONNX, opset 17, dynamic batch and sequence axes).

    The output is ``last_hidden_state`` for a base encoder and ``logits`` for a sequence classifier,
    as Optimum's exports name them.
    """
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    inputs = _dummy_inputs(tokenizer, names)
    output = "last_hidden_state" if kind == "base" else "logits"
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    axes[output] = {0: "batch_size", 1: "sequence_length"} if kind == "base" else {0: "batch_size"}

    class _Wrapped(nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            out = self.model(**dict(zip(names, args)), return_dict=True)
            return out.last_hidden_state if kind == "base" else out.logits

    with _staged(target) as staged:
        was_training = hf_model.training
        hf_model.train(False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes about constant shapes; the axes are dynamic
                torch.onnx.export(
                    _Wrapped(hf_model).float(),
                    tuple(inputs[n] for n in names),
                    str(staged),
                    input_names=names,
                    output_names=[output],
                    dynamic_axes=axes,
                    opset_version=17,
                    do_constant_folding=True,
                    dynamo=False,
                )
        except Exception as exc:
            raise ModelLoadError(f"cannot export the model to ONNX: {type(exc).__name__}: {exc}") from exc
        finally:
            hf_model.train(was_training)
    logger.info("exported %s", target)
    return target


def runtime_feed(input_names: Any, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The int64 arrays a runtime graph takes, from tokenizer output (tensors or arrays); a graph that
    takes ``token_type_ids`` gets zeros when the tokenizer gave none."""
    names = list(input_names)
    feed = {
        n: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)).astype(
            np.int64, copy=False
        )
        for n, v in features.items()
        if n in names
    }
    if "token_type_ids" in names and "token_type_ids" not in feed:
        feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
    return feed


class OnnxBody(nn.Module):
    """An ONNX Runtime session that stands in for the transformers body: called with the tokenizer's
    tensors, it returns an object with ``last_hidden_state`` (base) or ``logits`` (classifier), as
    the transformers model does.

    Args:
        path: the ``.onnx`` file.
        config: the transformers config of the model (read for ``num_labels``, limits, ...).
        provider: an ONNX Runtime execution provider (default: CUDA when available, else CPU).
        session_options: an ``onnxruntime.SessionOptions`` used as given (default: see
            :func:`~vectorstore.models.onnx_files.inference_session`).
    """

    runs_outside_torch = True  # see is_runtime_body

    def __init__(
        self, path: Path, config: Any, *, provider: str | None = None, session_options: Any = None
    ) -> None:
        super().__init__()
        self.session, provider = inference_session(path, provider, session_options)
        self.path = path
        self.provider = provider
        self.config = config
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        # nn.Module bookkeeping: where "the weights" are, for the callers that ask
        self._where = nn.Parameter(torch.zeros(0), requires_grad=False)

    def forward(self, return_dict: bool = True, **features: torch.Tensor) -> SimpleNamespace:
        """Run the session on the features the graph takes (others are ignored)."""
        (out,) = self.session.run([self.output_name], runtime_feed(self.input_names, features))
        tensor = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        return SimpleNamespace(last_hidden_state=tensor, logits=tensor)


def refuse_hub_upload(push_to_hub: bool) -> None:
    """The export functions take sentence-transformers' ``push_to_hub`` / ``create_pr`` arguments, but
    write locally only."""
    if push_to_hub:
        raise InvalidInputError(
            "push_to_hub=True is not supported: the export is written to the model folder; upload it "
            "with huggingface_hub if you need to"
        )


def is_runtime_body(body: Any) -> bool:
    """Whether ``body`` is a runtime stand-in (ONNX Runtime, OpenVINO) rather than torch weights."""
    return bool(getattr(body, "runs_outside_torch", False))


def _model_parts(model: Any) -> tuple[Any, Path, Kind]:
    """(model, folder, kind) of one of our SentenceTransformer / CrossEncoder objects (recognised by
    their methods: the model modules import this one, so it does not import them)."""
    if callable(getattr(model, "export_onnx", None)) and hasattr(model, "model_path"):
        if hasattr(model, "auto_model") and callable(getattr(model, "encode", None)):
            return model, Path(model.model_path), "base"
        if callable(getattr(model, "predict", None)) and hasattr(model, "num_labels"):
            return model, Path(model.model_path), "sequence-classification"
    raise InvalidInputError(
        f"expected a vectorstore SentenceTransformer or CrossEncoder, got {type(model).__name__}"
    )


def _source_onnx(model: Any, folder: Path) -> Path:
    """The fp32 ONNX file a variant starts from: the loaded one, the existing export, or a new one."""
    body = getattr(model, "onnx_body", None)
    if body is not None and body.path.name == "model.onnx":
        return Path(body.path)
    return exported_onnx(folder) or model.export_onnx()


def _variant(
    model: Any, model_name_or_path: str | os.PathLike[str] | None, file_name: str
) -> tuple[Any, Kind, Path, Path]:
    """(model, kind, the fp32 ONNX file to start from, the variant file to write) for an export."""
    obj, folder, kind = _model_parts(model)
    out_dir = Path(model_name_or_path) / "onnx" if model_name_or_path is not None else onnx_folder(folder)
    return obj, kind, _source_onnx(obj, folder), out_dir / file_name


def export_optimized_onnx_model(
    model: Any,
    optimization_config: str = "O2",
    model_name_or_path: str | os.PathLike[str] | None = None,
    push_to_hub: bool = False,
    create_pr: bool = False,
    *,
    file_suffix: str | None = None,
) -> Path:
    """Write ``onnx/model_<level>.onnx``: ONNX Runtime's graph optimisations at Optimum's levels.

    O1: basic graph optimisations; O2: + transformer fusions (attention, layer norm, GELU); O3: + GELU
    approximation; O4: + float16 weights (for GPUs). Load the result with
    ``model_kwargs={"file_name": "onnx/model_O2.onnx"}``.

    Args:
        model: a SentenceTransformer or CrossEncoder (any backend).
        optimization_config: ``"O1"`` .. ``"O4"``.
        model_name_or_path: the model folder to write into (default: the model's own folder).
        push_to_hub, create_pr: sentence-transformers' arguments; uploading is not supported
            (``push_to_hub=True`` raises :class:`~vectorstore.InvalidInputError`).
        file_suffix: the file is ``model_<suffix>.onnx`` (default: the level).

    Returns:
        the written file.
    """
    refuse_hub_upload(push_to_hub)
    if optimization_config not in OPTIMIZATION_LEVELS:
        raise InvalidInputError(
            f"optimization_config must be one of {OPTIMIZATION_LEVELS}, got {optimization_config!r}"
        )
    ort = onnx_runtime()
    obj, kind, source, out = _variant(
        model, model_name_or_path, f"model_{file_suffix or optimization_config}.onnx"
    )
    with _staged(out) as staged:
        if optimization_config == "O1":
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            opts.optimized_model_filepath = str(staged)
            ort.InferenceSession(str(source), sess_options=opts, providers=["CPUExecutionProvider"])
        else:
            from onnxruntime.transformers.fusion_options import FusionOptions
            from onnxruntime.transformers.optimizer import optimize_model

            config = obj.auto_model.config if kind == "base" else obj.model.config
            fusion = FusionOptions("bert")
            fusion.enable_gelu_approximation = optimization_config in ("O3", "O4")
            optimized = optimize_model(
                str(source),
                model_type="bert",
                num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                hidden_size=int(getattr(config, "hidden_size", 0) or 0),
                optimization_options=fusion,
                opt_level=1,
                use_gpu=False,
            )
            if optimization_config == "O4":
                optimized.convert_float_to_float16(keep_io_types=True)
            optimized.save_model_to_file(str(staged))
    return out


def export_dynamic_quantized_onnx_model(
    model: Any,
    quantization_config: str = "avx512_vnni",
    model_name_or_path: str | os.PathLike[str] | None = None,
    push_to_hub: bool = False,
    create_pr: bool = False,
    *,
    file_suffix: str | None = None,
) -> Path:
    """Write ``onnx/model_qint8_<config>.onnx``: int8 weights, activations quantised at run time.

    The preset names are sentence-transformers' / Optimum's (``arm64``, ``avx2``, ``avx512``,
    ``avx512_vnni``) and name the file; every preset writes signed int8 weights with per-channel
    scales, which ONNX Runtime runs on each of those instruction sets. (Optimum's ``avx2`` preset also
    reduces weights to 7 bits; measured on an AVX2 CPU that dropped the worst cosine to fp32 on STS
    sentences to 0.76, against 0.987 per-channel, so it is not used.) Load with
    ``model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"}``.

    Returns:
        the written file.
    """
    refuse_hub_upload(push_to_hub)
    if quantization_config not in QUANTIZATION_CONFIGS:
        raise InvalidInputError(
            f"quantization_config must be one of {QUANTIZATION_CONFIGS}, got {quantization_config!r}"
        )
    onnx_runtime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _, _, source, out = _variant(
        model, model_name_or_path, f"model_qint8_{file_suffix or quantization_config}.onnx"
    )
    with _staged(out) as staged:
        quantize_dynamic(
            str(source),
            str(staged),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=False,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    return out
