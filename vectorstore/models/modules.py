"""The module kinds of a sentence-transformers folder that we can load: Transformer, Pooling, Dense, Normalize.

Each loader reads only JSON and safetensors (or a weights-only ``torch.load``); activation functions
come from a fixed allow-list, never from an import path found in a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vectorstore.errors import ModelLoadError
from vectorstore.models.folder_config import TransformerConfig

__all__ = ["ACTIVATIONS", "DenseLayer", "TransformerConfig", "load_weights", "module_kind"]

# Full names sentence-transformers writes -> constructors. Short class names are accepted too.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "torch.nn.modules.activation.Tanh": nn.Tanh,
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
    "torch.nn.modules.activation.GELU": nn.GELU,
    "torch.nn.modules.activation.Sigmoid": nn.Sigmoid,
    "torch.nn.modules.activation.SiLU": nn.SiLU,
    "torch.nn.modules.activation.LeakyReLU": nn.LeakyReLU,
    "torch.nn.modules.activation.Softmax": nn.Softmax,
}
_ACTIVATION_NAMES = {cls: name for name, cls in ACTIVATIONS.items()}

_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")


def module_kind(type_name: str) -> str:
    """``sentence_transformers.models.Pooling`` (or any newer path ending in ``.Pooling``) -> ``Pooling``."""
    short = type_name.rsplit(".", 1)[-1]
    if short not in _KINDS:
        raise ModelLoadError(
            f"unsupported module type {type_name!r} in modules.json; supported kinds: {list(_KINDS)}"
        )
    return short


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` (preferred) or ``pytorch_model.bin`` with ``weights_only=True``."""
    st = folder / "model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except Exception as exc:
            raise ModelLoadError(f"cannot read {st}: {exc}") from exc
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        try:
            state = torch.load(str(binary), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelLoadError(f"cannot read {binary} as a weights-only checkpoint: {exc}") from exc
        if not isinstance(state, dict):
            raise ModelLoadError(f"{binary} does not hold a state dict")
        return state
    raise ModelLoadError(f"no model.safetensors or pytorch_model.bin in {folder}")


class DenseLayer(nn.Module):
    """A ``Dense`` module: ``activation(linear(x))``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "torch.nn.modules.activation.Tanh",
    ) -> None:
        super().__init__()
        act = ACTIVATIONS.get(activation) or next(
            (cls for name, cls in ACTIVATIONS.items() if name.rsplit(".", 1)[-1] == activation), None
        )
        if act is None:
            raise ModelLoadError(
                f"unsupported Dense activation {activation!r}; supported: {sorted(ACTIVATIONS)}"
            )
        self.in_features = in_features
        self.out_features = out_features
        self.bias = bias
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the layer."""
        return self.activation(self.linear(x))

    @classmethod
    def load(cls, folder: Path) -> DenseLayer:
        """Read ``config.json`` and the weights (``linear.weight`` / ``linear.bias``)."""
        try:
            cfg = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read Dense config in {folder}: {exc}") from exc
        try:
            layer = cls(
                int(cfg["in_features"]),
                int(cfg["out_features"]),
                bool(cfg.get("bias", True)),
                str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh")),
            )
        except KeyError as exc:
            raise ModelLoadError(f"Dense config in {folder} lacks {exc}") from exc
        try:
            layer.load_state_dict(load_weights(folder))
        except RuntimeError as exc:
            raise ModelLoadError(f"Dense weights in {folder} do not fit its config: {exc}") from exc
        return layer

    def config_dict(self) -> dict[str, Any]:
        """The config written next to the weights."""
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "activation_function": _ACTIVATION_NAMES[type(self.activation)],
        }
