"""Token batching shared by the encoders: tokenize once, sort by length, pad each batch to its own longest row."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from vectorstore.errors import InvalidInputError

__all__ = ["check_length", "length_order", "model_token_limit", "pad_batch", "run_sorted_batches"]

_PROGRESS_MIN_BATCHES = 8
_MAX_SANE_LENGTH = 1_000_000  # tokenizers without a limit report a huge sentinel


def check_length(value: object, name: str) -> int | None:
    """``value`` as a token limit: a positive int or None."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise InvalidInputError(f"{name} must be a positive int or None, got {value!r}")
    return value


def model_token_limit(tokenizer: Any, config: Any) -> int | None:
    """The longest input a model takes: the tokenizer's limit capped at its position embeddings."""
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    usable = [int(x) for x in limits if isinstance(x, int) and 0 < x < _MAX_SANE_LENGTH]
    return min(usable) if usable else None


def length_order(input_ids: Sequence[Sequence[int]]) -> np.ndarray:
    """Row order, longest first (stable), so each batch pads to nearly its own length."""
    lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=len(input_ids))
    return np.argsort(-lengths, kind="stable")


def pad_batch(
    encoded: dict[str, list[list[int]]], idx: np.ndarray, *, pad_id: int, left: bool = False
) -> dict[str, Tensor]:
    """Pad the selected rows of an unpadded tokenizer output to the longest of them.

    This is what ``tokenizer(..., padding=True)`` would give for just these rows; an
    ``attention_mask`` is made when the tokenizer did not return one.
    """
    ids = [encoded["input_ids"][i] for i in idx]
    width = max(len(x) for x in ids)
    out: dict[str, Tensor] = {}
    for key, rows in encoded.items():
        fill = pad_id if key == "input_ids" else 0
        arr = np.full((len(idx), width), fill, dtype=np.int64)
        for r, i in enumerate(idx):
            row = rows[i]
            if left:
                arr[r, width - len(row) :] = row
            else:
                arr[r, : len(row)] = row
        out[key] = torch.from_numpy(arr)
    if "attention_mask" not in out:
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, x in enumerate(ids):
            if left:
                mask[r, width - len(x) :] = 1
            else:
                mask[r, : len(x)] = 1
        out["attention_mask"] = torch.from_numpy(mask)
    return out


def run_sorted_batches(
    encoded: dict[str, list[list[int]]],
    forward: Callable[[dict[str, Tensor]], Tensor],
    *,
    batch_size: int,
    tokenizer: Any,
    device: torch.device,
    show_progress_bar: bool | None,
) -> Tensor:
    """Run ``forward`` over length-sorted, padded batches; the outputs stacked back in input order.

    ``show_progress_bar=None`` shows a bar for long inputs when stderr is a terminal.
    """
    order = length_order(encoded["input_ids"])
    n_batches = (len(order) + batch_size - 1) // batch_size
    if show_progress_bar is None:
        show_progress_bar = n_batches >= _PROGRESS_MIN_BATCHES and sys.stderr.isatty()
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id or 0
    chunks: list[Tensor] = []
    for b in tqdm(range(n_batches), desc="Batches", disable=not show_progress_bar):
        idx = order[b * batch_size : (b + 1) * batch_size]
        features = pad_batch(encoded, idx, pad_id=pad_id, left=left)
        chunks.append(forward({k: v.to(device) for k, v in features.items()}))
    stacked = torch.cat(chunks, dim=0)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.from_numpy(order)] = torch.arange(len(order))
    return stacked[inverse.to(stacked.device)]
