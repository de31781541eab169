"""The torch-free half of the ONNX backend: which backends exist, where a model's ONNX files are,
and an ONNX Runtime session on the chosen provider.

Nothing here imports torch or transformers, so a query that runs an existing ONNX file (the
light encoder of :mod:`vectorstore.models.onnx_encoder`) starts in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vectorstore.errors import InvalidInputError, ModelLoadError

__all__ = [
    "BACKENDS",
    "check_backend",
    "exported_onnx",
    "inference_session",
    "onnx_folder",
    "onnx_runtime",
    "openvino_runtime",
    "resolve_onnx_file",
]

BACKENDS = ("torch", "onnx", "openvino")


def check_backend(backend: str) -> str:
    """Validate a ``backend=`` argument; raises a clear error naming the extra to install.

    Raises:
        InvalidInputError: an unknown backend.
        ModelLoadError: the backend's runtime is not installed.
    """
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "onnx":
        onnx_runtime()
    elif backend == "openvino":
        openvino_runtime()
    return backend


def openvino_runtime() -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise ModelLoadError(
            "backend='openvino' needs OpenVINO: pip install 'vectorstore[openvino]' (openvino, plus "
            "nncf for export_static_quantized_openvino_model)"
        ) from exc
    return openvino


def onnx_runtime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelLoadError(
            "backend='onnx' needs ONNX Runtime: pip install 'vectorstore[onnx]' (onnxruntime and onnx)"
        ) from exc
    return onnxruntime


def _cache_root() -> Path:
    env = os.environ.get("VECTORSTORE_CACHE")
    return Path(env) / "onnx" if env else Path.home() / ".cache" / "vectorstore" / "onnx"


def onnx_folder(model_folder: Path, sub: str = "onnx", pattern: str = "*.onnx") -> Path:
    """Where this model's ONNX files (``sub="openvino"``: OpenVINO files) live: ``<folder>/<sub>``
    when writable (or already holding a model), else a cache folder named by the model folder's path."""
    inside = model_folder / sub
    if any(inside.glob(pattern)) or os.access(model_folder, os.W_OK):
        return inside
    digest = hashlib.sha256(str(model_folder.resolve()).encode()).hexdigest()[:16]
    return _cache_root() / f"{model_folder.name}-{digest}" / sub


def inference_session(
    path: Path, provider: str | None = None, session_options: Any = None
) -> tuple[Any, str]:
    """An ONNX Runtime session for ``path`` and the provider it runs on (default: CUDA when
    onnxruntime sees a GPU, else CPU).

    Without ``session_options``, the session gets every graph optimisation and, on the CPU, worker
    threads that sleep between runs instead of spinning: the Python work between two batches
    (tokenizing the next one, pooling the last) then has the cores to itself. Measured on the
    bundled MiniLM-L6 on 2 cores (``benchmarks/encode.py``): 364 sentences/s with spinning threads,
    864 without.

    Args:
        path: the ``.onnx`` file.
        provider: an execution provider name.
        session_options: an ``onnxruntime.SessionOptions`` to use as given (``model_kwargs``'
            ``"session_options"``, as with sentence-transformers / Optimum).

    Raises:
        ModelLoadError: the provider is not available, the options are not SessionOptions, or the
            file does not load.
    """
    ort = onnx_runtime()
    available = ort.get_available_providers()
    if provider is None:
        provider = "CUDAExecutionProvider" if "CUDAExecutionProvider" in available else "CPUExecutionProvider"
    if provider not in available:
        raise ModelLoadError(
            f"ONNX Runtime provider {provider!r} is not available here; available: {available}"
        )
    if session_options is None:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if provider == "CPUExecutionProvider":
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    elif isinstance(session_options, ort.SessionOptions):
        opts = session_options
    else:
        raise ModelLoadError(
            "model_kwargs['session_options'] must be an onnxruntime.SessionOptions, got "
            f"{type(session_options).__name__}"
        )
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=[provider])
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path} in ONNX Runtime: {type(exc).__name__}: {exc}") from exc
    return session, provider


def resolve_onnx_file(
    model_folder: Path,
    model_kwargs: Mapping[str, Any] | None,
    *,
    export: Any,
) -> Path:
    """The ``.onnx`` file to load: ``model_kwargs["file_name"]`` (relative to the folder, or under
    ``onnx/``), else ``onnx/model.onnx``, exported first with ``export(path)`` when missing.

    Raises:
        ModelLoadError: a named file that does not exist.
    """
    kwargs = dict(model_kwargs or {})
    name = kwargs.get("file_name")
    if name is not None:
        for base in (model_folder, model_folder / "onnx", onnx_folder(model_folder)):
            candidate = base / str(name)
            if candidate.is_file():
                return candidate
        raise ModelLoadError(
            f"no ONNX file {name!r} in {model_folder} (or its onnx/ folder); export it first, e.g. with "
            "vectorstore.export_optimized_onnx_model / export_dynamic_quantized_onnx_model"
        )
    found = exported_onnx(model_folder)
    return found if found is not None else export(onnx_folder(model_folder) / "model.onnx")


def exported_onnx(model_folder: Path) -> Path | None:
    """The model's fp32 ``onnx/model.onnx`` (in the folder or the export cache), or None."""
    for candidate in (model_folder / "onnx" / "model.onnx", onnx_folder(model_folder) / "model.onnx"):
        if candidate.is_file():
            return candidate
    return None
