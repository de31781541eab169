"""Pooling: token embeddings + attention mask -> one sentence embedding.

Modes (several may be combined; their outputs are concatenated in the order of :data:`POOLING_MODES`):

- ``cls``: the first non-masked token.
- ``max``: element-wise maximum over non-masked tokens.
- ``mean``: average of non-masked tokens.
- ``mean_sqrt_len_tokens``: sum of non-masked tokens divided by sqrt(token count).
- ``weightedmean``: tokens weighted by position (1, 2, ...), counted from the first non-padding token.
- ``lasttoken``: the last non-masked token (for decoder models with right padding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vectorstore.errors import ModelLoadError

if TYPE_CHECKING:  # torch is imported where pooling runs, so the config stays torch-free
    from torch import Tensor

__all__ = ["POOLING_MODES", "PoolingConfig", "PoolingMode", "pool"]

PoolingMode = Literal["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]
POOLING_MODES: tuple[str, ...] = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")

# The keys older sentence-transformers versions write (and every version reads), in POOLING_MODES order.
_LEGACY_KEYS: dict[str, str] = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


@dataclass(frozen=True)
class PoolingConfig:
    """A pooling module's configuration.

    Attributes:
        embedding_dimension: width of the token embeddings.
        modes: the pooling modes, in concatenation order.
        include_prompt: when False, prompt tokens are masked out before pooling.
    """

    embedding_dimension: int
    modes: tuple[str, ...] = ("mean",)
    include_prompt: bool = True

    def __post_init__(self) -> None:
        bad = [m for m in self.modes if m not in POOLING_MODES]
        if bad or not self.modes:
            raise ModelLoadError(
                f"invalid pooling mode(s) {bad or list(self.modes)}; valid modes are {POOLING_MODES}"
            )

    @property
    def output_dimension(self) -> int:
        """Width of the pooled sentence embedding."""
        return self.embedding_dimension * len(self.modes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolingConfig:
        """Read both the current (``pooling_mode``) and the legacy (``pooling_mode_*_tokens``) formats."""
        dim = data.get("embedding_dimension", data.get("word_embedding_dimension"))
        if not isinstance(dim, int):
            raise ModelLoadError(f"pooling config has no integer embedding dimension: {data}")
        raw = data.get("pooling_mode")
        modes: tuple[str, ...]
        if isinstance(raw, str):
            modes = (raw,)
        elif isinstance(raw, (list, tuple)):
            modes = tuple(str(m) for m in raw)
        else:
            modes = tuple(mode for mode, key in _LEGACY_KEYS.items() if data.get(key, False)) or ("mean",)
        return cls(dim, modes, bool(data.get("include_prompt", True)))

    @classmethod
    def load(cls, folder: Path) -> PoolingConfig:
        """Read ``folder/config.json``."""
        try:
            data = json.loads((folder / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read pooling config in {folder}: {exc}") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The legacy format, which every sentence-transformers version can read."""
        out: dict[str, Any] = {"word_embedding_dimension": self.embedding_dimension}
        for mode, key in _LEGACY_KEYS.items():
            out[key] = mode in self.modes
        out["include_prompt"] = self.include_prompt
        return out


def _mask_prompt(mask: Tensor, prompt_length: int) -> Tensor:
    import torch

    mask = mask.clone()
    first = mask.to(torch.int32).argmax(dim=1)  # first real token (non-zero with left padding)
    positions = torch.arange(mask.size(1), device=mask.device).unsqueeze(0)
    mask[positions < (first + prompt_length).unsqueeze(1)] = 0
    return mask


def pool(
    token_embeddings: Tensor,
    attention_mask: Tensor,
    config: PoolingConfig,
    *,
    prompt_length: int | None = None,
) -> Tensor:
    """Pool ``token_embeddings[b, t, h]`` into ``[b, h * len(modes)]`` under ``attention_mask[b, t]``."""
    import torch

    original_mask = attention_mask
    if prompt_length and not config.include_prompt:
        attention_mask = _mask_prompt(attention_mask, prompt_length)
    dtype = token_embeddings.dtype
    acc = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    outputs: list[Tensor] = []
    for mode in POOLING_MODES:
        if mode not in config.modes:
            continue
        if mode == "cls":
            first = attention_mask.to(torch.int32).argmax(dim=1)
            idx = first.view(-1, 1, 1).expand(-1, 1, token_embeddings.size(-1))
            outputs.append(torch.gather(token_embeddings, 1, idx).squeeze(1))
        elif mode == "max":
            masked = token_embeddings.masked_fill(attention_mask.unsqueeze(-1) == 0, float("-inf"))
            outputs.append(masked.max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            m = attention_mask.unsqueeze(-1).to(dtype)
            summed = (token_embeddings * m).sum(dim=1, dtype=acc)
            count = torch.clamp(m.sum(dim=1, dtype=acc), min=1e-9)
            denom = count if mode == "mean" else torch.sqrt(count)
            outputs.append((summed / denom).to(dtype))
        elif mode == "weightedmean":
            m = attention_mask.unsqueeze(-1).to(acc)
            weights = torch.arange(1, token_embeddings.size(1) + 1, device=token_embeddings.device, dtype=acc)
            weights = weights.view(1, -1, 1) - original_mask.to(torch.int32).argmax(dim=1).view(-1, 1, 1)
            wm = m * weights
            summed = (token_embeddings * wm).sum(dim=1)
            outputs.append((summed / torch.clamp(wm.sum(dim=1), min=1e-9)).to(dtype))
        else:  # lasttoken
            seq_len = attention_mask.size(1)
            values, rev = attention_mask.flip(1).max(1)
            rev = torch.where(values == 0, seq_len - 1, rev)
            idx = (seq_len - rev - 1).view(-1, 1, 1).expand(-1, 1, token_embeddings.size(-1))
            masked = token_embeddings * attention_mask.unsqueeze(-1).to(dtype)
            outputs.append(torch.gather(masked, 1, idx).squeeze(1))
    return torch.cat(outputs, dim=-1)
