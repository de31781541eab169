"""The seam with ``transformers``: load tokenizers and models, translate their errors, save folders."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import torch

from vectorstore.errors import ModelLoadError

__all__ = ["load_hf_config", "load_hf_model", "load_tokenizer", "save_hf_folder"]

logger = logging.getLogger(__name__)


def load_tokenizer(folder: Path, *, trust_remote_code: bool = False) -> Any:
    """A fast tokenizer for ``folder`` (``AutoTokenizer``)."""
    from transformers import AutoTokenizer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {folder}: {type(exc).__name__}: {exc}") from exc


def load_hf_config(folder: Path, *, trust_remote_code: bool = False) -> Any:
    """The ``transformers`` config of ``folder``."""
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json, so it is not a transformers model folder")
    try:
        return AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot read the model config in {folder}: {type(exc).__name__}: {exc}"
        ) from exc


def load_hf_model(
    folder: Path,
    *,
    kind: Literal["base", "sequence-classification"],
    trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Load the weights in ``folder`` as a base encoder or a sequence classifier, in inference mode."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    config = load_hf_config(folder, trust_remote_code=trust_remote_code)
    from transformers.utils import logging as hf_logging

    cls = AutoModel if kind == "base" else AutoModelForSequenceClassification
    bar_was_on = hf_logging.is_progress_bar_enabled()
    try:
        # transformers draws a "Loading weights" bar per model; loading a local folder is not long work.
        hf_logging.disable_progress_bar()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls.from_pretrained(str(folder), config=config, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model weights from {folder}: {type(exc).__name__}: {exc}") from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    model = model.to(dtype)
    model.train(False)  # inference mode: dropout off
    return model


def save_hf_folder(model: Any, tokenizer: Any, folder: Path) -> None:
    """Write weights (safetensors), config and tokenizer files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
