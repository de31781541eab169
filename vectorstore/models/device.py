"""Device and dtype selection shared by the encoder and the cross-encoder."""

from __future__ import annotations

from typing import Literal

import torch

from vectorstore.errors import InvalidInputError

__all__ = ["DTypeName", "default_device", "resolve_device", "resolve_dtype"]

DTypeName = Literal["float32", "float16", "bfloat16"]
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def default_device() -> str:
    """CUDA when present, then Apple MPS, then CPU."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> :func:`default_device`; otherwise validate the name."""
    if device is None:
        return torch.device(default_device())
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"unknown device {device!r}: {exc}") from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {device!r} asked for, but this torch build sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})"
        )
    if target.type == "cuda" and target.index is not None and target.index >= torch.cuda.device_count():
        raise InvalidInputError(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    mps = getattr(torch.backends, "mps", None)
    if target.type == "mps" and (mps is None or not mps.is_available()):
        raise InvalidInputError(f"device {device!r} asked for, but Apple MPS is not available here")
    return target


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The weights' dtype. Half precision is an opt-in for accelerators; CPU stays float32 unless asked."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise InvalidInputError(f"unsupported dtype {dtype}; expected float32, float16 or bfloat16")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise InvalidInputError(f"unsupported dtype {dtype!r}; expected one of float32, float16, bfloat16")
    return _DTYPES[key]
