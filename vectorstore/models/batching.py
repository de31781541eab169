"""Token batching shared by the encoders: tokenize once, sort by length, pad each batch to its own longest row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["length_order", "pad_batch"]


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
