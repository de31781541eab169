"""``ModelCache``: the store's loaded encoders and cross-encoders, one of each per reference.

Models load on first use (torch and transformers are imported then, not before), on the store's
device, and are shared by every collection of the store that names the same reference.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vectorstore.errors import CollectionConfigError, InvalidInputError

if TYPE_CHECKING:
    from vectorstore.models.cross_encoder import CrossEncoder
    from vectorstore.models.onnx_encoder import OnnxEncoder
    from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = ["ModelCache"]


class ModelCache:
    """Loaded models by reference (a hub name or a folder).

    Args:
        device: where models run (``None``: CUDA, then MPS, then CPU).

    Attributes:
        encoders: reference -> loaded :class:`~vectorstore.SentenceTransformer`; a caller may put an
            already loaded model here to share it.
        cross_encoders: reference -> loaded :class:`~vectorstore.CrossEncoder`.
    """

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self.encoders: dict[str, SentenceTransformer] = {}
        self._variants: dict[tuple[str, str, str], SentenceTransformer] = {}
        self.cross_encoders: dict[str, CrossEncoder] = {}
        self._light: dict[tuple[str, str, str], OnnxEncoder | None] = {}
        self._lock = threading.RLock()

    def encoder(
        self, name: str, backend: str = "torch", model_kwargs: Mapping[str, Any] | None = None
    ) -> SentenceTransformer:
        """The bi-encoder for ``name`` (on ``backend``, with ``model_kwargs``), loaded on first use."""
        from vectorstore.models.sentence_transformer import SentenceTransformer

        with self._lock:
            if backend == "torch" and not model_kwargs:
                if name not in self.encoders:
                    self.encoders[name] = SentenceTransformer(name, device=self.device)
                return self.encoders[name]
            key = (name, backend, _kwargs_key(model_kwargs))
            if key not in self._variants:
                self._variants[key] = SentenceTransformer(
                    name, device=self.device, backend=backend, model_kwargs=dict(model_kwargs or {})
                )
            return self._variants[key]

    def query_encoder(
        self, name: str, backend: str = "torch", model_kwargs: Mapping[str, Any] | None = None
    ) -> SentenceTransformer | OnnxEncoder:
        """What embeds query texts for ``name``: the loaded full encoder when there is one; with
        ``backend="onnx"`` and an exported ONNX file, otherwise the light :class:`OnnxEncoder` (no
        torch or transformers import, same vectors); else the full encoder, loaded now."""
        with self._lock:
            key = (name, backend, _kwargs_key(model_kwargs))
            full = (
                self.encoders.get(name)
                if backend == "torch" and not model_kwargs
                else self._variants.get(key)
            )
            if full is not None:
                return full
            if backend == "onnx":
                if key not in self._light:
                    from vectorstore.models.onnx_encoder import OnnxEncoder
                    from vectorstore.models.resolve import resolve_model_path

                    self._light[key] = OnnxEncoder.load(resolve_model_path(name).path, model_kwargs)
                light = self._light[key]
                if light is not None:
                    return light
            return self.encoder(name, backend, model_kwargs)

    def cross_encoder(self, name: str) -> CrossEncoder:
        """The cross-encoder for ``name``, loaded on first use."""
        with self._lock:
            if name not in self.cross_encoders:
                from vectorstore.models.cross_encoder import CrossEncoder

                self.cross_encoders[name] = CrossEncoder(name, device=self.device)
            return self.cross_encoders[name]

    def reranker_reference(self, reranker: Any) -> str | None:
        """Validate a reranker given to ``create_collection`` (loading it once) and return the
        reference its config stores.

        Raises:
            InvalidInputError: not a name, a folder or a CrossEncoder.
            CollectionConfigError: the cross-encoder has more than one output label.
        """
        if reranker is None:
            return None
        from vectorstore.models.cross_encoder import CrossEncoder

        if isinstance(reranker, CrossEncoder):
            name = reranker.model_name
            with self._lock:
                self.cross_encoders.setdefault(name, reranker)
            model = reranker
        elif isinstance(reranker, (str, os.PathLike)):
            name = os.fspath(reranker)
            model = self.cross_encoder(name)
        else:
            raise InvalidInputError(
                f"reranker must be a model name, a folder or a CrossEncoder, got {reranker!r:.60}"
            )
        if model.num_labels != 1:
            raise CollectionConfigError(
                f"reranker {name!r} has {model.num_labels} output labels; reranking needs a one-label cross-encoder"
            )
        return name


def _kwargs_key(model_kwargs: Mapping[str, Any] | None) -> str:
    """A cache key for ``model_kwargs``: their JSON, where a value JSON cannot hold (a runtime object
    such as ``onnxruntime.SessionOptions``) stands for itself (by identity)."""
    return json.dumps(
        dict(model_kwargs or {}), sort_keys=True, default=lambda o: f"<{type(o).__qualname__} at {id(o):#x}>"
    )
