"""``CrossEncoder``: scores (query, document) pairs with a sequence-classification transformer.

Reads the folders sentence-transformers writes for cross-encoders (the current format with
``modules.json`` and ``config_sentence_transformers.json``, the older ``config.json``-only format
with its activation setting) and plain Hugging Face sequence-classification models.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vectorstore.errors import InvalidInputError, ModelLoadError
from vectorstore.models.batching import check_length, model_token_limit, run_sorted_batches
from vectorstore.models.device import resolve_device, resolve_dtype
from vectorstore.models.hf import load_hf_config, load_hf_model, load_tokenizer, save_hf_folder
from vectorstore.models.resolve import resolve_model_path

__all__ = ["CrossEncoder"]

logger = logging.getLogger(__name__)


# The activations a saved folder may name; anything else is ignored with a warning (no code is
# imported from a model folder's configuration).
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "Sigmoid": nn.Sigmoid,
    "Identity": nn.Identity,
    "Tanh": nn.Tanh,
    "ReLU": nn.ReLU,
    "LogSigmoid": nn.LogSigmoid,
}
_ACTIVATION_PATHS: dict[type[nn.Module], str] = {
    nn.Sigmoid: "torch.nn.modules.activation.Sigmoid",
    nn.Identity: "torch.nn.modules.linear.Identity",
    nn.Tanh: "torch.nn.modules.activation.Tanh",
    nn.ReLU: "torch.nn.modules.activation.ReLU",
    nn.LogSigmoid: "torch.nn.modules.activation.LogSigmoid",
}

Pair = tuple[str, str]


def _activation_from_path(path: object, folder: Path) -> nn.Module | None:
    """An activation module from a saved dotted path such as ``torch.nn.modules.activation.Sigmoid``."""
    if not isinstance(path, str) or not path:
        return None
    name = path.rsplit(".", 1)[-1]
    if path.startswith("torch.") and name in _ACTIVATIONS:
        return _ACTIVATIONS[name]()
    logger.warning("%s names the activation %r, which is not supported; using the default", folder, path)
    return None


def _check_pair(item: object, i: int) -> Pair:
    if (
        isinstance(item, (list, tuple))
        and len(item) == 2
        and isinstance(item[0], str)
        and isinstance(item[1], str)
    ):
        return item[0], item[1]
    raise InvalidInputError(f"predict() takes pairs of two strings; item {i} is {item!r:.80}")


def _check_pairs(pairs: object) -> tuple[list[Pair], bool]:
    """Validate at the boundary; returns (pairs, was_a_single_pair)."""
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, (Sequence, np.ndarray)):
        raise InvalidInputError(
            f"predict() takes a (text, text) pair or a list of pairs, got {type(pairs).__name__}"
        )
    items = pairs.tolist() if isinstance(pairs, np.ndarray) else list(pairs)
    if len(items) == 2 and all(isinstance(x, str) for x in items):
        return [(items[0], items[1])], True
    return [_check_pair(item, i) for i, item in enumerate(items)], False


class CrossEncoder(nn.Module):
    """A cross-encoder, API-compatible with ``sentence_transformers.CrossEncoder`` for inference.

    It reads both texts of a pair together and outputs one score per label: a relevance score for
    reranking (one label) or class scores such as NLI (several labels).

    Args:
        model_name_or_path: a local folder or a hub id (``cross-encoder/ms-marco-MiniLM-L6-v2``).
        max_length: pairs longer than this many tokens are truncated (longest text first). Default:
            the tokenizer's ``model_max_length``, capped at the model's position embeddings.
        device: ``"cpu"``, ``"cuda"``...; ``None`` picks CUDA, then MPS, then CPU.
        dtype: weights dtype, ``"float32"`` (default), ``"float16"`` or ``"bfloat16"``.
        activation_fn: applied to the logits by :meth:`predict`. Default: what the folder saved,
            else sigmoid for one label and identity for several (as the reference library does).
        trust_remote_code: allow model code shipped with a hub model (off by default).
        backend: ``"torch"`` (default), ``"onnx"`` (ONNX Runtime) or ``"openvino"``, as for
            ``SentenceTransformer``.
        model_kwargs: with ``backend="onnx"``: ``file_name`` (an ONNX variant), ``provider`` and
            ``session_options``; with
            ``backend="openvino"``: ``file_name``, ``device`` and ``ov_config``.
        revision, cache_folder, token, local_files_only: passed to the hub download.

    Example:
        >>> ce = CrossEncoder("cross-encoder/ms-marco-MiniLM-L6-v2")
        >>> ce.predict([("How many people live in Berlin?", "Berlin has 3.7 million inhabitants.")])
        array([0.99...], dtype=float32)
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        activation_fn: Callable[[Tensor], Tensor] | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache_folder: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool | None = None,
        backend: str = "torch",
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from vectorstore.models.onnx_files import check_backend

        self.backend = check_backend(backend)
        self.model_kwargs = dict(model_kwargs or {})
        check_length(max_length, "max_length")
        resolved = resolve_model_path(
            model_name_or_path,
            revision=revision,
            cache_folder=cache_folder,
            token=token,
            local_files_only=local_files_only,
        )
        folder = resolved.path
        self.model_path = folder
        self.model_source = resolved.source
        self.model_name = str(model_name_or_path)
        self.trust_remote_code = trust_remote_code
        saved_activation = self._check_folder(folder)
        target = resolve_device(device)
        self.tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
        self.model: Any  # the transformers model, or a runtime body standing in for it
        if self.backend == "onnx":
            from vectorstore.models.onnx_backend import OnnxBody
            from vectorstore.models.onnx_files import resolve_onnx_file

            path = resolve_onnx_file(folder, self.model_kwargs, export=self._export_to)
            config = load_hf_config(folder, trust_remote_code=trust_remote_code)
            self.model = OnnxBody(
                path,
                config,
                provider=self.model_kwargs.get("provider"),
                session_options=self.model_kwargs.get("session_options"),
            )
        elif self.backend == "openvino":
            from vectorstore.models.openvino_backend import OpenVinoBody, resolve_openvino_file

            path = resolve_openvino_file(folder, self.model_kwargs, onnx_source=self._fp32_onnx)
            config = load_hf_config(folder, trust_remote_code=trust_remote_code)
            self.model = OpenVinoBody(
                path,
                config,
                device=self.model_kwargs.get("device"),
                ov_config=self.model_kwargs.get("ov_config"),
            )
        else:
            self.model = load_hf_model(
                folder,
                kind="sequence-classification",
                trust_remote_code=trust_remote_code,
                dtype=resolve_dtype(dtype, target),
            )
        self._model_input_names = set(self.tokenizer.model_input_names)
        self._max_length = (
            max_length if max_length is not None else model_token_limit(self.tokenizer, self.model.config)
        )
        default_activation = saved_activation or (nn.Sigmoid() if self.num_labels == 1 else nn.Identity())
        self.activation_fn: Callable[[Tensor], Tensor] = activation_fn or default_activation
        self.to(target)
        self.train(False)  # inference mode: dropout off

    # ------------------------------------------------------------------ loading
    def _export_to(self, target: Path) -> Path:
        from vectorstore.models.onnx_backend import export_onnx, is_runtime_body

        body = self.__dict__.get("_modules", {}).get("model")
        if body is None or is_runtime_body(body):
            body = load_hf_model(
                Path(self.model_path),
                kind="sequence-classification",
                trust_remote_code=self.trust_remote_code,
            )
        return export_onnx(body, self.tokenizer, target, kind="sequence-classification")

    def _fp32_onnx(self) -> Path:
        from vectorstore.models.onnx_files import exported_onnx

        return exported_onnx(Path(self.model_path)) or self.export_onnx()

    def export_onnx(self) -> Path:
        """Export the model to ``onnx/model.onnx`` (in its folder, or the cache when the folder is
        read-only) from the torch weights; returns the file."""
        from vectorstore.models.onnx_files import onnx_folder

        return self._export_to(onnx_folder(Path(self.model_path)) / "model.onnx")

    @property
    def onnx_body(self) -> Any:
        """The ONNX Runtime body with ``backend="onnx"``, else None."""
        from vectorstore.models.onnx_backend import OnnxBody

        return self.model if isinstance(self.model, OnnxBody) else None

    def _check_folder(self, folder: Path) -> nn.Module | None:
        """Refuse folders that are not cross-encoders; return the activation the folder saved, if any."""
        modules_file = folder / "modules.json"
        st_config: dict[str, Any] = {}
        st_file = folder / "config_sentence_transformers.json"
        if st_file.is_file():
            try:
                st_config = json.loads(st_file.read_text())
            except json.JSONDecodeError as exc:
                raise ModelLoadError(f"cannot parse {st_file}: {exc}") from exc
        if modules_file.is_file():
            try:
                entries = json.loads(modules_file.read_text())
            except json.JSONDecodeError as exc:
                raise ModelLoadError(f"cannot parse {modules_file}: {exc}") from exc
            types = [str(e.get("type", "")) for e in entries] if isinstance(entries, list) else []
            if any(t.rsplit(".", 1)[-1] in ("Pooling", "Normalize") for t in types):
                raise ModelLoadError(
                    f"{folder} is a sentence-embedding (bi-encoder) model, not a cross-encoder; "
                    "load it with SentenceTransformer"
                )
            if len(types) != 1 or not types[0].endswith("Transformer"):
                raise ModelLoadError(
                    f"{folder}: only single-Transformer cross-encoders are supported, modules.json lists {types}"
                )
        config = load_hf_config(folder, trust_remote_code=self.trust_remote_code)
        architectures = list(getattr(config, "architectures", None) or [])
        if not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise ModelLoadError(
                f"{folder} is not a cross-encoder: its architectures are {architectures or 'not stated'}, "
                "expected a *ForSequenceClassification model"
            )
        # Where each sentence-transformers version saved the activation, newest first.
        legacy = getattr(config, "sentence_transformers", None)
        for path in (
            st_config.get("activation_fn"),
            legacy.get("activation_fn") if isinstance(legacy, dict) else None,
            getattr(config, "sbert_ce_default_activation_function", None),
        ):
            if path is not None:
                return _activation_from_path(path, folder)
        return None

    # ------------------------------------------------------------------ properties
    @property
    def num_labels(self) -> int:
        """Scores per pair: 1 for a reranker, several for a classifier (e.g. NLI)."""
        return int(self.model.config.num_labels)

    @property
    def config(self) -> Any:
        """The ``transformers`` config of the model."""
        return self.model.config

    @property
    def max_length(self) -> int | None:
        """Pairs longer than this many tokens are truncated."""
        return self._max_length

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        self._max_length = check_length(value, "max_length")

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ scoring
    def _tokenize(self, pairs: list[Pair]) -> dict[str, list[list[int]]]:
        enc = self.tokenizer(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            padding=False,
            truncation="longest_first",
            max_length=self._max_length,
        )
        return {k: v for k, v in enc.items() if k in self._model_input_names}

    @torch.inference_mode()
    def _logits(self, pairs: list[Pair], batch_size: int, show_progress_bar: bool | None) -> Tensor:
        """Raw logits ``(n, num_labels)`` in input order, float32."""
        return run_sorted_batches(
            self._tokenize(pairs),
            lambda features: self.model(**features, return_dict=True).logits.float(),
            batch_size=batch_size,
            tokenizer=self.tokenizer,
            device=self.device,
            show_progress_bar=show_progress_bar,
        )

    def predict(
        self,
        sentences: Pair | Sequence[Pair] | Sequence[Sequence[str]],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[[Tensor], Tensor] | None = None,
        apply_softmax: bool = False,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | Tensor | list[Tensor] | float:
        """Score text pairs.

        Args:
            sentences: one ``(text_a, text_b)`` pair (gives a scalar, or a row for several labels) or
                a list of pairs (gives an array).
            batch_size: pairs per forward pass; batches are formed from length-sorted input.
            show_progress_bar: ``None`` shows one for long inputs when stderr is a terminal.
            activation_fn: applied to the logits instead of :attr:`activation_fn`.
            apply_softmax: with several labels, turn each row into probabilities (after the activation).
            convert_to_numpy: return a numpy array (the default).
            convert_to_tensor: return a tensor (takes precedence over numpy).

        Returns:
            Scores in input order; an empty list gives an empty result.

        Raises:
            InvalidInputError: an item that is not a pair of strings, or a bad batch size.
        """
        pairs, single = _check_pairs(sentences)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        if not pairs:
            empty = torch.empty(0, dtype=torch.float32)
            return empty if convert_to_tensor else (np.zeros(0, np.float32) if convert_to_numpy else [])
        scores = self._logits(pairs, batch_size, show_progress_bar)
        activation = activation_fn if activation_fn is not None else self.activation_fn
        scores = activation(scores)
        if self.num_labels == 1:
            scores = scores.squeeze(-1)
        elif apply_softmax:
            scores = torch.nn.functional.softmax(scores, dim=1)
        if convert_to_tensor:
            return scores[0] if single else scores
        if convert_to_numpy:
            arr = scores.cpu().numpy()
            return arr[0] if single else arr
        rows = list(scores.unbind(0))
        return rows[0] if single else rows

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        top_k: int | None = None,
        return_documents: bool = False,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        activation_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> list[dict[str, Any]]:
        """Score every document against ``query`` and sort them, best first.

        Returns:
            ``[{"corpus_id": i, "score": s[, "text": documents[i]]}, ...]``; equal scores keep input order.

        Raises:
            InvalidInputError: the model has several labels, or the inputs are not strings.
        """
        if self.num_labels != 1:
            raise InvalidInputError(f"rank() needs a one-label cross-encoder; this one has {self.num_labels}")
        if not isinstance(query, str):
            raise InvalidInputError(f"rank() takes a string query, got {type(query).__name__}")
        if isinstance(documents, str) or not isinstance(documents, Sequence):
            raise InvalidInputError("rank() takes a list of document strings")
        docs = list(documents)
        for i, d in enumerate(docs):
            if not isinstance(d, str):
                raise InvalidInputError(f"rank() takes document strings; item {i} is {type(d).__name__}")
        if top_k is not None and (not isinstance(top_k, int) or top_k <= 0):
            raise InvalidInputError(f"top_k must be a positive int or None, got {top_k!r}")
        if not docs:
            return []
        scores = np.asarray(
            self.predict(
                [(query, d) for d in docs],
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
                activation_fn=activation_fn,
            )
        )
        order = np.argsort(-scores, kind="stable")[:top_k]
        out: list[dict[str, Any]] = []
        for i in order.tolist():
            row: dict[str, Any] = {"corpus_id": i, "score": float(scores[i])}
            if return_documents:
                row["text"] = docs[i]
            out.append(row)
        return out

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a folder that sentence-transformers (any version since 2) and ``transformers`` load.

        It is a Hugging Face sequence-classification folder; ``config.json`` records the activation
        under ``sentence_transformers`` and the tokenizer config records ``max_length``.
        """
        if self.backend != "torch":
            raise InvalidInputError(
                f"save() writes torch weights; load the model with backend='torch' to save it "
                f"(the {self.backend} files are already in the model folder)"
            )
        activation = self.activation_fn
        activation_path = (
            _ACTIVATION_PATHS.get(type(activation)) if isinstance(activation, nn.Module) else None
        )
        if activation_path is None:
            logger.warning(
                "the activation %r cannot be saved by name; the folder keeps the default", self.activation_fn
            )
        config = self.model.config
        previous_meta = getattr(config, "sentence_transformers", None)
        previous_len = self.tokenizer.model_max_length
        config.sentence_transformers = {"activation_fn": activation_path} if activation_path else {}
        if self._max_length is not None:
            self.tokenizer.model_max_length = self._max_length
        try:
            save_hf_folder(self.model, self.tokenizer, Path(path))
        finally:
            if previous_meta is None:
                del config.sentence_transformers
            else:
                config.sentence_transformers = previous_meta
            self.tokenizer.model_max_length = previous_len

    def __repr__(self) -> str:
        return (
            f"CrossEncoder(model={self.model_name!r}, num_labels={self.num_labels}, "
            f"max_length={self.max_length}, activation={type(self.activation_fn).__name__}, device={self.device})"
        )
