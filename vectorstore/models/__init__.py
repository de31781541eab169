"""Encoders: the bi-encoder (:class:`SentenceTransformer`), the :class:`CrossEncoder`, pooling and model resolution.

The names load on first access, so importing a torch-free submodule (``onnx_files``,
``onnx_encoder``, ``resolve``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vectorstore.models.cross_encoder import CrossEncoder
    from vectorstore.models.pooling import POOLING_MODES, PoolingConfig, pool
    from vectorstore.models.resolve import resolve_model_path
    from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = [
    "POOLING_MODES",
    "CrossEncoder",
    "PoolingConfig",
    "SentenceTransformer",
    "pool",
    "resolve_model_path",
]

_HOMES = {
    "CrossEncoder": "cross_encoder",
    "POOLING_MODES": "pooling",
    "PoolingConfig": "pooling",
    "pool": "pooling",
    "resolve_model_path": "resolve",
    "SentenceTransformer": "sentence_transformer",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
