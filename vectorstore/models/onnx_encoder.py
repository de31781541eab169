"""``OnnxEncoder``: a bi-encoder for an already exported ONNX file that imports neither torch nor
transformers.

Embedding a query needs only a tokenizer, the ONNX graph, pooling and a normalisation. Importing
torch and transformers to do that costs seconds (about 2 s and 3 s on a 2-core machine), which a
command-line query or a short-lived serving process pays on every start. This encoder tokenizes
with the ``tokenizers`` library from the folder's ``tokenizer.json`` (configured as transformers
configures its fast tokenizer from the same files), runs the ONNX file in ONNX Runtime and pools in
numpy. It gives the same vectors as ``SentenceTransformer(folder, backend="onnx")`` (to float32
rounding, tested) and is used only where it can: :meth:`OnnxEncoder.load` returns ``None`` for a
model it does not cover (no ``tokenizer.json``, no exported ONNX file yet, Dense modules, pooling
modes other than mean / cls / max / mean_sqrt_len_tokens, prompts excluded from pooling), and the
caller then loads the full :class:`~vectorstore.SentenceTransformer`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vectorstore.errors import InvalidInputError, ModelLoadError
from vectorstore.models.folder_config import TransformerConfig
from vectorstore.models.onnx_files import inference_session, resolve_onnx_file
from vectorstore.models.pooling import POOLING_MODES, PoolingConfig

__all__ = ["OnnxEncoder"]

logger = logging.getLogger(__name__)

# the modes computed here, in pooling.POOLING_MODES' concatenation order
_POOLING_ORDER = tuple(m for m in POOLING_MODES if m in ("cls", "max", "mean", "mean_sqrt_len_tokens"))
_MAX_SANE_LENGTH = 1_000_000


class _NotCovered(Exception):
    """The folder needs the full encoder; the message says why (logged at debug level)."""


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _NotCovered(f"cannot read {path}: {exc}") from exc


def _json(path: Path) -> dict[str, Any]:
    data = _read(path)
    if not isinstance(data, dict):
        raise _NotCovered(f"{path} is not a JSON object")
    return data


def _kind(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class _Layout:
    """What modules.json and the module configs say, for the subset this encoder runs."""

    transformer_dir: Path
    modes: tuple[str, ...]
    normalize: bool
    max_seq_length: int | None
    do_lower_case: bool


def _read_layout(folder: Path) -> _Layout:
    if not (folder / "modules.json").is_file():
        raise _NotCovered("no modules.json")
    modules = _read(folder / "modules.json")
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        raise _NotCovered("modules.json is not a list of modules")
    kinds = [(_kind(str(m.get("type", ""))), folder / str(m.get("path", ""))) for m in modules]
    if kinds[0][0] != "Transformer" or kinds[0][1].resolve() != folder.resolve():
        raise _NotCovered("the Transformer module is not the folder itself")
    modes: tuple[str, ...] | None = None
    normalize = False
    for kind, path in kinds[1:]:
        if kind == "Pooling":
            modes = _pooling_modes(path, folder)
        elif kind == "Normalize":
            normalize = True
        else:
            raise _NotCovered(f"module {kind} is not covered")
    if modes is None:
        raise _NotCovered("no Pooling module")
    try:
        config = TransformerConfig.load(folder)
    except ModelLoadError as exc:  # the full encoder reports it
        raise _NotCovered(str(exc)) from exc
    return _Layout(folder, modes, normalize, config.max_seq_length, config.do_lower_case)


def _pooling_modes(path: Path, folder: Path) -> tuple[str, ...]:
    if path == folder or not (path / "config.json").is_file():
        return ("mean",)
    try:
        config = PoolingConfig.load(path)
    except ModelLoadError as exc:  # the full encoder reports it
        raise _NotCovered(str(exc)) from exc
    if not config.include_prompt:
        raise _NotCovered("prompts excluded from pooling")
    if any(m not in _POOLING_ORDER for m in config.modes):
        raise _NotCovered(f"pooling modes {config.modes}")
    return tuple(m for m in _POOLING_ORDER if m in config.modes)


def _load_tokenizer(folder: Path) -> tuple[Any, int | None]:
    """The ``tokenizers`` tokenizer of ``tokenizer.json``, set up as transformers sets up its fast
    tokenizer from the same folder (no padding or truncation of its own; a BERT normaliser takes
    ``do_lower_case`` / ``strip_accents`` / ``tokenize_chinese_chars`` from ``tokenizer_config.json``),
    and the tokenizer's ``model_max_length``."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - tokenizers comes with transformers
        raise _NotCovered("the tokenizers package is missing") from exc
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise _NotCovered("no tokenizer.json")
    spec = _json(path)
    config = _json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    if config.get("padding_side", "right") != "right" or config.get("auto_map"):
        raise _NotCovered("left padding or custom tokenizer code")
    normalizer = spec.get("normalizer")
    if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
        for ours, theirs in (
            ("lowercase", "do_lower_case"),
            ("strip_accents", "strip_accents"),
            ("handle_chinese_chars", "tokenize_chinese_chars"),
        ):
            if theirs in config:
                normalizer[ours] = config[theirs]
    spec["padding"] = None
    spec["truncation"] = None
    try:
        tokenizer = Tokenizer.from_str(json.dumps(spec))
    except Exception as exc:
        raise _NotCovered(f"tokenizer.json does not load: {exc}") from exc
    limit = config.get("model_max_length")
    return tokenizer, int(limit) if isinstance(limit, int) else None


class OnnxEncoder:
    """Embeds texts with a model's ONNX file, without torch or transformers (see the module docs).

    Use :meth:`load`; the constructor takes already checked parts.

    Attributes:
        path: the ``.onnx`` file that runs.
        provider: the ONNX Runtime execution provider.
        prompts: named prompts, as :class:`~vectorstore.SentenceTransformer` reads them.
        default_prompt_name: the prompt used when ``encode`` gets neither ``prompt`` nor ``prompt_name``.
        max_seq_length: inputs are truncated to this many tokens.
    """

    def __init__(
        self,
        layout: _Layout,
        tokenizer: Any,
        session: Any,
        path: Path,
        provider: str,
        prompts: dict[str, str],
        default_prompt_name: str | None,
        max_seq_length: int | None,
    ) -> None:
        self._layout = layout
        self._tokenizer = tokenizer
        self._session = session
        self.path = path
        self.provider = provider
        self.prompts = prompts
        self.default_prompt_name = default_prompt_name
        self.max_seq_length = max_seq_length
        self._inputs = [i.name for i in session.get_inputs()]
        self._output = session.get_outputs()[0].name
        if max_seq_length is not None:
            tokenizer.enable_truncation(max_seq_length, strategy="longest_first")

    @classmethod
    def load(cls, folder: str | Path, model_kwargs: Mapping[str, Any] | None = None) -> OnnxEncoder | None:
        """The encoder for a model folder whose ONNX file already exists, or None where this encoder
        does not cover the model (then load the full SentenceTransformer, which may export it).

        Raises:
            ModelLoadError: ONNX Runtime is missing, the provider is unavailable, or the file is bad.
        """
        folder = Path(folder)
        kwargs = dict(model_kwargs or {})
        try:
            layout = _read_layout(folder)
            tokenizer, tokenizer_limit = _load_tokenizer(folder)

            def no_export(target: Path) -> Path:
                raise _NotCovered(f"{target} is not exported yet")

            path = resolve_onnx_file(folder, kwargs, export=no_export)
        except _NotCovered as why:
            logger.debug("light ONNX encoder not used for %s: %s", folder, why)
            return None
        session, provider = inference_session(path, kwargs.get("provider"), kwargs.get("session_options"))
        max_len = layout.max_seq_length
        if max_len is None:
            position_limit = (
                _json(folder / "config.json").get("max_position_embeddings")
                if (folder / "config.json").is_file()
                else None
            )
            limits = [x for x in (tokenizer_limit, position_limit) if isinstance(x, int)]
            usable = [x for x in limits if 0 < x < _MAX_SANE_LENGTH]
            max_len = min(usable) if usable else None
        st_config = (
            _json(folder / "config_sentence_transformers.json")
            if (folder / "config_sentence_transformers.json").is_file()
            else {}
        )
        saved = st_config.get("prompts") or {}
        prompts = {"query": "", "document": "", **{k: v for k, v in saved.items() if v is not None}}
        default = st_config.get("default_prompt_name")
        return cls(layout, tokenizer, session, path, provider, prompts, default, max_len)

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the vectors :meth:`encode` returns."""
        width = next(o for o in self._session.get_outputs()).shape[-1]
        return int(width) * len(self._layout.modes)

    def _prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return None
        if name not in self.prompts:
            raise InvalidInputError(f"prompt_name {name!r} is not one of {sorted(self.prompts)}")
        return self.prompts[name]

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
    ) -> np.ndarray:
        """Embed texts as ``SentenceTransformer.encode`` does (float32 numpy; a 1-D row for a string).

        ``show_progress_bar`` is accepted for signature compatibility; this encoder serves short
        query batches and draws no bar.
        """
        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidInputError(f"encode() takes strings; item {i} is {type(t).__name__}: {t!r:.80}")
        chosen = self._prompt(prompt_name, prompt)
        if chosen:
            texts = [chosen + t for t in texts]
        if self._layout.do_lower_case:
            texts = [t.lower() for t in texts]
        width = self.get_sentence_embedding_dimension()
        out = np.zeros((len(texts), width), dtype=np.float32)
        if texts:
            encodings = self._tokenizer.encode_batch(texts)
            order = np.argsort(-np.array([len(e.ids) for e in encodings]), kind="stable")
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                out[idx] = self._forward([encodings[i] for i in idx])
        if normalize_embeddings:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out

    def _forward(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros_like(ids)
        for r, e in enumerate(encodings):
            n = len(e.ids)
            ids[r, :n] = e.ids
            types[r, :n] = e.type_ids
            mask[r, :n] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (hidden,) = self._session.run([self._output], {n: feed[n] for n in self._inputs if n in feed})
        hidden = np.asarray(hidden, dtype=np.float32)
        m = mask[:, :, None].astype(np.float32)
        parts = []
        for mode in self._layout.modes:
            if mode == "cls":
                parts.append(hidden[:, 0])
            elif mode == "max":
                parts.append(np.where(m > 0, hidden, -np.inf).max(axis=1))
            else:
                summed = (hidden * m).sum(axis=1)
                count = np.maximum(m.sum(axis=1), 1e-9)
                parts.append(summed / (count if mode == "mean" else np.sqrt(count)))
        emb = np.concatenate(parts, axis=1)
        if self._layout.normalize:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb

    def encode_query(self, sentences: str | Sequence[str], **kwargs: Any) -> np.ndarray:
        """``encode`` with the ``"query"`` prompt, as ``SentenceTransformer.encode_query``."""
        if "prompt" not in kwargs and "prompt_name" not in kwargs and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def __repr__(self) -> str:
        return f"OnnxEncoder(path={str(self.path)!r}, provider={self.provider!r}, modes={list(self._layout.modes)})"
