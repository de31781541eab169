"""``TransformerConfig``: the Transformer module's ``sentence_bert_config.json`` (torch-free, so the light
ONNX encoder reads it the same way as the full encoder)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vectorstore.errors import ModelLoadError

__all__ = ["TransformerConfig"]


@dataclass(frozen=True)
class TransformerConfig:
    """``sentence_bert_config.json`` of the Transformer module."""

    max_seq_length: int | None = None
    do_lower_case: bool = False

    @classmethod
    def load(cls, folder: Path) -> TransformerConfig:
        """Read the first config file that exists; absent files mean defaults."""
        for name in (
            "sentence_bert_config.json",
            "sentence_roberta_config.json",
            "sentence_xlnet_config.json",
        ):
            path = folder / name
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except json.JSONDecodeError as exc:
                    raise ModelLoadError(f"cannot parse {path}: {exc}") from exc
                msl = data.get("max_seq_length")
                return cls(int(msl) if msl is not None else None, bool(data.get("do_lower_case", False)))
        return cls()
