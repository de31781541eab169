"""``SentenceTransformer``: a bi-encoder that reads the sentence-transformers folder format.

It runs on ``transformers`` + ``torch`` alone: a Transformer module, Pooling, optional Dense layers
and Normalize, configured from ``modules.json``, ``sentence_bert_config.json``,
``1_Pooling/config.json`` and ``config_sentence_transformers.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vectorstore.errors import InvalidInputError, ModelLoadError
from vectorstore.models.batching import check_length, model_token_limit, run_sorted_batches
from vectorstore.models.device import resolve_device, resolve_dtype
from vectorstore.models.hf import load_hf_config, load_hf_model, load_tokenizer, save_hf_folder
from vectorstore.models.modules import DenseLayer, TransformerConfig, module_kind
from vectorstore.models.pooling import PoolingConfig, pool
from vectorstore.models.resolve import resolve_model_path
from vectorstore.quantization import PRECISIONS, quantize_embeddings
from vectorstore.similarity import ArrayLike, SimilarityFunction

__all__ = ["SentenceTransformer"]

logger = logging.getLogger(__name__)


def _check_texts(sentences: object) -> tuple[list[str], bool]:
    """Validate the input once, at the boundary; returns (texts, was_single_string)."""
    if isinstance(sentences, str):
        return [sentences], True
    if isinstance(sentences, Sequence) and not isinstance(sentences, (bytes, bytearray)):
        texts = list(sentences)
        for i, item in enumerate(texts):
            if not isinstance(item, str):
                raise InvalidInputError(
                    f"encode() takes strings; item {i} is {type(item).__name__}: {item!r:.80}"
                )
        return texts, False
    raise InvalidInputError(f"encode() takes a string or a list of strings, got {type(sentences).__name__}")


class SentenceTransformer(nn.Module):
    """A sentence embedding model, API-compatible with ``sentence_transformers.SentenceTransformer``.

    Args:
        model_name_or_path: a local folder, a bundled model name (``"all-MiniLM-L6-v2"``) or a hub id.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...; ``None`` picks CUDA, then MPS, then CPU.
        dtype: weights dtype, ``"float32"`` (default), ``"float16"`` or ``"bfloat16"`` (for accelerators).
        prompts: named prompts, merged over the ones the model folder declares.
        default_prompt_name: the prompt used when ``encode`` gets neither ``prompt`` nor ``prompt_name``.
        similarity_fn_name: overrides the folder's similarity function.
        truncate_dim: default Matryoshka truncation for ``encode``.
        trust_remote_code: allow model code shipped with a hub model (off by default).
        revision, cache_folder, token, local_files_only: passed to the hub download.
        backend: ``"torch"`` (default), ``"onnx"`` (ONNX Runtime; ``pip install 'vectorstore[onnx]'``):
            the folder's ``onnx/model.onnx`` is used, or exported from the torch weights once; or
            ``"openvino"`` (``pip install 'vectorstore[openvino]'``): ``openvino/openvino_model.xml``,
            converted from the ONNX export once.
        model_kwargs: with ``backend="onnx"``: ``file_name`` (a variant such as
            ``"onnx/model_qint8_avx512_vnni.onnx"`` or ``"onnx/model_O3.onnx"``) and ``provider`` (an
            ONNX Runtime execution provider; default CUDA when available, else CPU) and
            ``session_options`` (an ``onnxruntime.SessionOptions``, used as given; by default every
            graph optimisation, and CPU worker threads that do not spin between batches). With
            ``backend="openvino"``: ``file_name`` (e.g. ``"openvino/openvino_model_qint8_quantized.xml"``),
            ``device`` (an OpenVINO device, default ``"CPU"``) and ``ov_config`` (compile properties).

    Example:
        >>> model = SentenceTransformer("all-MiniLM-L6-v2")
        >>> emb = model.encode(["A man is eating food.", "A man eats."])
        >>> model.similarity(emb, emb).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] = "all-MiniLM-L6-v2",
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str | SimilarityFunction | None = None,
        truncate_dim: int | None = None,
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
        resolved = resolve_model_path(
            model_name_or_path,
            revision=revision,
            cache_folder=cache_folder,
            token=token,
            local_files_only=local_files_only,
        )
        self.model_path = resolved.path
        self.model_source = resolved.source
        self.model_name = str(model_name_or_path)
        self.trust_remote_code = trust_remote_code
        target = resolve_device(device)
        weights_dtype = resolve_dtype(dtype, target)

        self._load_modules(resolved.path, weights_dtype)
        st_config = self._read_st_config(resolved.path)
        # as sentence-transformers: "query" and "document" always exist (empty unless configured), then
        # the folder's saved prompts, then the caller's
        self.prompts: dict[str, str] = {
            "query": "",
            "document": "",
            **{k: v for k, v in (st_config.get("prompts") or {}).items() if v is not None},
            **(prompts or {}),
        }
        self.default_prompt_name: str | None = default_prompt_name or st_config.get("default_prompt_name")
        if self.default_prompt_name is not None and self.default_prompt_name not in self.prompts:
            raise InvalidInputError(
                f"default_prompt_name {self.default_prompt_name!r} is not one of the prompts {sorted(self.prompts)}"
            )
        self._similarity_fn_name: str | None = None
        name = similarity_fn_name or st_config.get("similarity_fn_name")
        if name is not None:
            self.similarity_fn_name = name
        if truncate_dim is not None and truncate_dim <= 0:
            raise InvalidInputError(f"truncate_dim must be positive, got {truncate_dim}")
        self.truncate_dim = truncate_dim
        self.to(target)
        self.train(False)  # inference mode: dropout off

    # ------------------------------------------------------------------ loading
    def _load_modules(self, folder: Path, dtype: torch.dtype) -> None:
        modules_file = folder / "modules.json"
        if modules_file.is_file():
            try:
                entries = json.loads(modules_file.read_text())
            except json.JSONDecodeError as exc:
                raise ModelLoadError(f"cannot parse {modules_file}: {exc}") from exc
        else:
            # A plain Hugging Face model: transformer + mean pooling, as the reference library does.
            logger.warning("%s has no modules.json; using the transformer with mean pooling", folder)
            entries = [{"path": "", "type": "Transformer"}, {"path": "", "type": "Pooling"}]
        kinds = [(module_kind(str(e.get("type", ""))), folder / str(e.get("path", ""))) for e in entries]
        if not kinds or kinds[0][0] != "Transformer":
            raise ModelLoadError(
                f"{folder}: the first module must be a Transformer, got {[k for k, _ in kinds]}"
            )
        transformer_dir = kinds[0][1]
        self.transformer_config = TransformerConfig.load(transformer_dir)
        self.tokenizer = load_tokenizer(transformer_dir, trust_remote_code=self.trust_remote_code)
        self._transformer_dir = transformer_dir
        self._weights_dtype = dtype
        self.auto_model: Any  # the transformers model, or a runtime body standing in for it
        if self.backend == "onnx":
            from vectorstore.models.onnx_backend import OnnxBody
            from vectorstore.models.onnx_files import resolve_onnx_file

            path = resolve_onnx_file(folder, self.model_kwargs, export=self._export_to)
            config = load_hf_config(transformer_dir, trust_remote_code=self.trust_remote_code)
            self.auto_model = OnnxBody(
                path,
                config,
                provider=self.model_kwargs.get("provider"),
                session_options=self.model_kwargs.get("session_options"),
            )
        elif self.backend == "openvino":
            from vectorstore.models.openvino_backend import OpenVinoBody, resolve_openvino_file

            path = resolve_openvino_file(folder, self.model_kwargs, onnx_source=self._fp32_onnx)
            config = load_hf_config(transformer_dir, trust_remote_code=self.trust_remote_code)
            self.auto_model = OpenVinoBody(
                path,
                config,
                device=self.model_kwargs.get("device"),
                ov_config=self.model_kwargs.get("ov_config"),
            )
        else:
            self.auto_model = load_hf_model(
                transformer_dir, kind="base", trust_remote_code=self.trust_remote_code, dtype=dtype
            )
        self._model_input_names = set(self.tokenizer.model_input_names)
        self._max_seq_length = self._initial_max_seq_length()

        hidden = int(getattr(self.auto_model.config, "hidden_size", 0) or 0)
        self.pooling: PoolingConfig | None = None
        dense: list[DenseLayer] = []
        self.normalize = False
        for kind, path in kinds[1:]:
            if kind == "Pooling":
                if (path / "config.json").is_file() and path != folder:
                    self.pooling = PoolingConfig.load(path)
                else:
                    self.pooling = PoolingConfig(hidden, ("mean",))
            elif kind == "Dense":
                dense.append(DenseLayer.load(path))
            elif kind == "Normalize":
                self.normalize = True
            else:
                raise ModelLoadError(f"{folder}: a second Transformer module is not supported")
        if self.pooling is None:
            raise ModelLoadError(f"{folder}: modules.json has no Pooling module")
        self.dense = nn.ModuleList(dense).to(dtype)

    def _export_to(self, target: Path) -> Path:
        from vectorstore.models.onnx_backend import export_onnx, is_runtime_body

        body = self.__dict__.get("_modules", {}).get("auto_model")
        if body is None or is_runtime_body(body):
            body = load_hf_model(self._transformer_dir, kind="base", trust_remote_code=self.trust_remote_code)
        return export_onnx(body, self.tokenizer, target, kind="base")

    def _fp32_onnx(self) -> Path:
        from vectorstore.models.onnx_files import exported_onnx

        return exported_onnx(Path(self.model_path)) or self.export_onnx()

    def export_onnx(self) -> Path:
        """Export the transformer body to ``onnx/model.onnx`` (in the model folder, or the cache when
        the folder is read-only) from the torch weights; returns the file."""
        from vectorstore.models.onnx_files import onnx_folder

        return self._export_to(onnx_folder(Path(self.model_path)) / "model.onnx")

    @property
    def onnx_body(self) -> Any:
        """The ONNX Runtime body with ``backend="onnx"`` (its ``path`` is the loaded file), else None."""
        from vectorstore.models.onnx_backend import OnnxBody

        return self.auto_model if isinstance(self.auto_model, OnnxBody) else None

    def _initial_max_seq_length(self) -> int | None:
        if self.transformer_config.max_seq_length is not None:
            return self.transformer_config.max_seq_length
        return model_token_limit(self.tokenizer, self.auto_model.config)

    @staticmethod
    def _read_st_config(folder: Path) -> dict[str, Any]:
        path = folder / "config_sentence_transformers.json"
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"cannot parse {path}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ properties
    @property
    def max_seq_length(self) -> int | None:
        """Inputs longer than this many tokens are truncated."""
        return self._max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int | None) -> None:
        self._max_seq_length = check_length(value, "max_seq_length")

    @property
    def similarity_fn_name(self) -> str:
        """``"cosine"`` (default), ``"dot"``, ``"euclidean"`` or ``"manhattan"``."""
        if self._similarity_fn_name is None:
            self._similarity_fn_name = SimilarityFunction.COSINE.value
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: str | SimilarityFunction) -> None:
        self._similarity_fn_name = SimilarityFunction.parse(value).value

    @property
    def device(self) -> torch.device:
        """Where the weights live."""
        return next(self.auto_model.parameters()).device

    @property
    def dense_layers(self) -> list[DenseLayer]:
        """The Dense modules after pooling, in order."""
        return [m for m in self.dense if isinstance(m, DenseLayer)]

    def get_max_seq_length(self) -> int | None:
        """The longest input in tokens; longer inputs are truncated (sentence-transformers' name)."""
        return self.max_seq_length

    @contextlib.contextmanager
    def truncate_sentence_embeddings(self, truncate_dim: int | None) -> Iterator[None]:
        """Within the block, ``encode`` keeps the first ``truncate_dim`` dimensions (Matryoshka models)."""
        if truncate_dim is not None and (not isinstance(truncate_dim, int) or truncate_dim <= 0):
            raise InvalidInputError(f"truncate_dim must be a positive int or None, got {truncate_dim!r}")
        old = self.truncate_dim
        self.truncate_dim = truncate_dim
        try:
            yield
        finally:
            self.truncate_dim = old

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the vectors ``encode`` returns (after ``truncate_dim``)."""
        assert self.pooling is not None
        layers = self.dense_layers
        dim = layers[-1].out_features if layers else self.pooling.output_dimension
        return min(dim, self.truncate_dim) if self.truncate_dim else dim

    # ------------------------------------------------------------------ encoding
    def _resolve_prompt(self, prompt_name: str | None, prompt: str | None) -> str | None:
        if prompt is not None:
            return prompt
        if prompt_name is not None:
            if prompt_name not in self.prompts:
                raise InvalidInputError(f"prompt_name {prompt_name!r} is not one of {sorted(self.prompts)}")
            return self.prompts[prompt_name]
        if self.default_prompt_name is not None:
            return self.prompts.get(self.default_prompt_name)
        return None

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Tokenize a batch the way the model was trained: truncation at ``max_seq_length``, padding to the longest."""
        if self.transformer_config.do_lower_case:
            texts = [t.lower() for t in texts]
        enc = self.tokenizer(
            texts,
            padding=True,
            truncation="longest_first",
            max_length=self.max_seq_length,
            return_tensors="pt",
        )
        return {k: v for k, v in enc.items() if k in self._model_input_names}

    def _tokenize_unpadded(self, texts: list[str]) -> dict[str, list[list[int]]]:
        if self.transformer_config.do_lower_case:
            texts = [t.lower() for t in texts]
        enc = self.tokenizer(texts, padding=False, truncation="longest_first", max_length=self.max_seq_length)
        return {k: v for k, v in enc.items() if k in self._model_input_names}

    def _prompt_length(self, prompt: str) -> int:
        ids = self.tokenize([prompt])["input_ids"]
        return int(ids.shape[-1]) - 1  # the trailing separator is not part of the prompt

    @torch.inference_mode()
    def forward_batch(self, features: dict[str, Tensor], prompt_length: int | None = None) -> Tensor:
        """Token ids -> sentence embeddings (pooling, Dense and Normalize applied)."""
        assert self.pooling is not None
        out = self.auto_model(**features, return_dict=True)
        emb = pool(
            out.last_hidden_state, features["attention_mask"], self.pooling, prompt_length=prompt_length
        )
        for layer in self.dense:
            emb = layer(emb)
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        normalize_embeddings: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        precision: str = "float32",
        truncate_dim: int | None = None,
        device: str | torch.device | None = None,
        output_value: str | None = "sentence_embedding",
    ) -> Any:
        """Embed one sentence or a list of sentences.

        Args:
            sentences: a string (gives a 1-D result) or a list of strings (gives 2-D).
            batch_size: sentences per forward pass; batches are formed from length-sorted input.
            show_progress_bar: ``None`` shows one for long inputs when stderr is a terminal.
            convert_to_numpy: return a numpy array (the default).
            convert_to_tensor: return one stacked tensor (takes precedence over numpy).
            normalize_embeddings: scale every vector to unit length.
            prompt_name: a key of :attr:`prompts` to prepend.
            prompt: a literal prompt to prepend (wins over ``prompt_name``).
            precision: ``"float32"``, ``"int8"``, ``"uint8"``, ``"binary"`` or ``"ubinary"``.
            truncate_dim: keep the first dimensions only (defaults to the model's ``truncate_dim``).
            device: run this call on another device than the model's.
            output_value: ``"sentence_embedding"`` (default); ``"token_embeddings"`` gives each input's
                contextual token vectors (a ``[tokens, hidden]`` tensor per input, padding removed);
                ``None`` gives one dict per input with ``input_ids``, ``attention_mask``,
                ``token_embeddings`` and ``sentence_embedding`` — as sentence-transformers does.

        Returns:
            Embeddings in input order.

        Raises:
            InvalidInputError: non-string items, an unknown prompt name or precision, a bad batch size.
        """
        texts, single = _check_texts(sentences)
        if precision not in PRECISIONS:
            raise InvalidInputError(f"Unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise InvalidInputError(f"batch_size must be a positive int, got {batch_size!r}")
        truncate_dim = truncate_dim if truncate_dim is not None else self.truncate_dim
        if truncate_dim is not None and truncate_dim <= 0:
            raise InvalidInputError(f"truncate_dim must be positive, got {truncate_dim}")
        if device is not None and resolve_device(device) != self.device:
            self.to(resolve_device(device))

        if output_value not in ("sentence_embedding", "token_embeddings", None):
            raise InvalidInputError(
                f"output_value must be 'sentence_embedding', 'token_embeddings' or None, got {output_value!r}"
            )
        chosen_prompt = self._resolve_prompt(prompt_name, prompt)
        prompt_length = None
        if chosen_prompt:
            texts = [chosen_prompt + t for t in texts]
            assert self.pooling is not None
            if not self.pooling.include_prompt:
                prompt_length = self._prompt_length(chosen_prompt)
        if output_value != "sentence_embedding":
            outputs = self._token_outputs(
                texts, batch_size, prompt_length, normalize_embeddings, truncate_dim
            )
            if output_value == "token_embeddings":
                tokens = [o["token_embeddings"] for o in outputs]
                return tokens[0] if single else tokens
            return outputs[0] if single else outputs

        if not texts:
            width = self.get_sentence_embedding_dimension()
            width = min(width, truncate_dim) if truncate_dim is not None else width
            empty = torch.zeros((0, width), dtype=torch.float32)
            if convert_to_tensor:
                return empty
            return np.zeros((0, width), dtype=np.float32) if convert_to_numpy else []

        # Tokenize everything at once (the Rust tokenizer parallelises a big batch), then sort by
        # token count so each batch pads to nearly its own length: less padding, less compute.
        to_cpu = convert_to_numpy and not convert_to_tensor

        def forward(features: dict[str, Tensor]) -> Tensor:
            emb = self.forward_batch(features, prompt_length)
            emb = emb[:, :truncate_dim] if truncate_dim is not None else emb
            if normalize_embeddings:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            return emb.float().cpu() if to_cpu else emb

        result = run_sorted_batches(
            self._tokenize_unpadded(texts),
            forward,
            batch_size=batch_size,
            tokenizer=self.tokenizer,
            device=self.device,
            show_progress_bar=show_progress_bar,
        )

        if precision != "float32":
            quantized = quantize_embeddings(result, precision)  # type: ignore[arg-type]
            if convert_to_tensor:
                out_t = torch.from_numpy(quantized)
                return out_t[0] if single else out_t
            return quantized[0] if single else quantized
        if convert_to_tensor:
            return result[0] if single else result
        if convert_to_numpy:
            arr = result.float().cpu().numpy()
            return arr[0] if single else arr
        rows = list(result.unbind(0))
        return rows[0] if single else rows

    @torch.inference_mode()
    def _token_outputs(
        self,
        texts: list[str],
        batch_size: int,
        prompt_length: int | None,
        normalize_embeddings: bool,
        truncate_dim: int | None,
    ) -> list[dict[str, Tensor]]:
        """Per input: its token ids and mask, contextual token vectors and sentence embedding (no padding)."""
        assert self.pooling is not None
        out: list[dict[str, Tensor]] = []
        for start in range(0, len(texts), batch_size):
            features = {
                k: v.to(self.device) for k, v in self.tokenize(texts[start : start + batch_size]).items()
            }
            hidden = self.auto_model(**features, return_dict=True).last_hidden_state
            emb = pool(hidden, features["attention_mask"], self.pooling, prompt_length=prompt_length)
            for layer in self.dense:
                emb = layer(emb)
            if self.normalize or normalize_embeddings:
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            emb = emb[:, :truncate_dim] if truncate_dim is not None else emb
            lengths = features["attention_mask"].sum(dim=1).tolist()
            for i, n in enumerate(lengths):
                item = {k: v[i, :n].cpu() for k, v in features.items()}
                item["token_embeddings"] = hidden[i, :n].float().cpu()
                item["sentence_embedding"] = emb[i].float().cpu()
                out.append(item)
        return out

    def encode_query(
        self, sentences: str | Sequence[str], **kwargs: Any
    ) -> np.ndarray | Tensor | list[Tensor]:
        """``encode`` with the ``"query"`` prompt when the model defines one."""
        if "prompt" not in kwargs and "prompt_name" not in kwargs and "query" in self.prompts:
            kwargs["prompt_name"] = "query"
        return self.encode(sentences, **kwargs)

    def encode_document(
        self, sentences: str | Sequence[str], **kwargs: Any
    ) -> np.ndarray | Tensor | list[Tensor]:
        """``encode`` with the ``"document"`` prompt (or a configured ``"passage"`` / ``"corpus"`` one)."""
        if "prompt" not in kwargs and "prompt_name" not in kwargs:
            named = [n for n in ("document", "passage", "corpus") if self.prompts.get(n)]
            kwargs["prompt_name"] = named[0] if named else "document"
        return self.encode(sentences, **kwargs)

    # ------------------------------------------------------------------ similarity
    def similarity(self, embeddings1: ArrayLike, embeddings2: ArrayLike) -> Tensor:
        """Matrix of :attr:`similarity_fn_name` scores, ``res[i][j] = sim(a[i], b[j])``."""
        return SimilarityFunction.to_similarity_fn(self.similarity_fn_name)(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1: ArrayLike, embeddings2: ArrayLike) -> Tensor:
        """Vector of :attr:`similarity_fn_name` scores, ``res[i] = sim(a[i], b[i])``."""
        return SimilarityFunction.to_similarity_pairwise_fn(self.similarity_fn_name)(embeddings1, embeddings2)

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a sentence-transformers folder (any version of that library can load it)."""
        import importlib.metadata as md

        assert self.pooling is not None
        if self.backend != "torch":
            raise InvalidInputError(
                "save() writes torch weights; load the model with backend='torch' to save it "
                f"(the {self.backend} files are already in the model folder)"
            )
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        save_hf_folder(self.auto_model, self.tokenizer, out)
        (out / "sentence_bert_config.json").write_text(
            json.dumps(
                {
                    "max_seq_length": self.max_seq_length,
                    "do_lower_case": self.transformer_config.do_lower_case,
                },
                indent=2,
            )
        )
        modules: list[dict[str, Any]] = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        ]
        pool_dir = out / "1_Pooling"
        pool_dir.mkdir(exist_ok=True)
        (pool_dir / "config.json").write_text(json.dumps(self.pooling.to_dict(), indent=2))
        modules.append(
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
        )
        from safetensors.torch import save_file

        for layer in self.dense_layers:
            i = len(modules)
            d = out / f"{i}_Dense"
            d.mkdir(exist_ok=True)
            (d / "config.json").write_text(json.dumps(layer.config_dict(), indent=2))
            save_file(
                {k: v.contiguous().cpu() for k, v in layer.state_dict().items()}, str(d / "model.safetensors")
            )
            modules.append(
                {"idx": i, "name": str(i), "path": d.name, "type": "sentence_transformers.models.Dense"}
            )
        if self.normalize:
            i = len(modules)
            (out / f"{i}_Normalize").mkdir(exist_ok=True)
            modules.append(
                {
                    "idx": i,
                    "name": str(i),
                    "path": f"{i}_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                }
            )
        (out / "modules.json").write_text(json.dumps(modules, indent=2))

        def _version(pkg: str) -> str:
            try:
                return md.version(pkg)
            except md.PackageNotFoundError:
                return "unknown"

        (out / "config_sentence_transformers.json").write_text(
            json.dumps(
                {
                    "__version__": {
                        "vectorstore": _version("vectorstore"),
                        "transformers": _version("transformers"),
                        "pytorch": torch.__version__,
                    },
                    "prompts": self.prompts,
                    "default_prompt_name": self.default_prompt_name,
                    "similarity_fn_name": self.similarity_fn_name,
                },
                indent=2,
            )
        )

    def __repr__(self) -> str:
        assert self.pooling is not None
        return (
            f"SentenceTransformer(model={self.model_name!r}, dim={self.get_sentence_embedding_dimension()}, "
            f"pooling={list(self.pooling.modes)}, dense={len(self.dense)}, normalize={self.normalize}, "
            f"max_seq_length={self.max_seq_length}, similarity={self.similarity_fn_name!r}, device={self.device})"
        )
