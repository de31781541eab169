"""Similarity functions: cosine, dot, euclidean and manhattan, as matrices and pairwise.

Higher is always better: euclidean and manhattan are returned as *negated* distances, so every
function can be ranked with ``topk(largest=True)``. The torch versions take lists, numpy arrays or
tensors and return tensors (the sentence-transformers convention); :func:`numpy_scores` is the
float32 numpy form the store uses for exact rescoring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from vectorstore.errors import InvalidInputError

__all__ = [
    "ArrayLike",
    "SimilarityFunction",
    "SimilarityName",
    "cos_sim",
    "dot_score",
    "euclidean_sim",
    "manhattan_sim",
    "numpy_scores",
    "pairwise_cos_sim",
    "pairwise_dot_score",
    "pairwise_euclidean_sim",
    "pairwise_manhattan_sim",
]

ArrayLike = Tensor | np.ndarray | Sequence[Any]
SimilarityName = Literal["cosine", "dot", "euclidean", "manhattan"]


class SimilarityFunction(str, Enum):
    """The similarity functions a model or collection can use.

    Values are the names written to ``config_sentence_transformers.json`` (``"cosine"``, ``"dot"``,
    ``"euclidean"``, ``"manhattan"``); ``"dot_product"`` is accepted as an alias of ``"dot"``.
    """

    COSINE = "cosine"
    DOT_PRODUCT = "dot"
    EUCLIDEAN = "euclidean"
    MANHATTAN = "manhattan"

    # Alias with the same value: Enum makes DOT the same member as DOT_PRODUCT.
    DOT = "dot"

    @classmethod
    def parse(cls, value: str | SimilarityFunction) -> SimilarityFunction:
        """Turn a name or member into a member.

        Raises:
            InvalidInputError: if the name is not one of the supported functions.
        """
        if isinstance(value, SimilarityFunction):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            if key == "dot_product":
                key = "dot"
            for member in cls:
                if member.value == key:
                    return member
        raise InvalidInputError(
            f"Unknown similarity function {value!r}; expected one of {cls.possible_values()}"
        )

    @staticmethod
    def possible_values() -> list[str]:
        """The accepted names, in a stable order."""
        return ["cosine", "dot", "euclidean", "manhattan"]

    @staticmethod
    def to_similarity_fn(value: str | SimilarityFunction) -> Callable[[ArrayLike, ArrayLike], Tensor]:
        """The matrix function (``a[i]`` against ``b[j]``) for a name or member."""
        return _MATRIX[SimilarityFunction.parse(value)]

    @staticmethod
    def to_similarity_pairwise_fn(
        value: str | SimilarityFunction,
    ) -> Callable[[ArrayLike, ArrayLike], Tensor]:
        """The pairwise function (``a[i]`` against ``b[i]``) for a name or member."""
        return _PAIRWISE[SimilarityFunction.parse(value)]


def _to_float_tensor(x: ArrayLike) -> Tensor:
    if isinstance(x, Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(x)
    elif isinstance(x, (list, tuple)) and x and isinstance(x[0], Tensor):
        t = torch.stack(list(x))
    else:
        t = torch.as_tensor(np.asarray(x))
    if not t.is_floating_point() or (t.dtype in (torch.float16, torch.bfloat16) and t.device.type == "cpu"):
        t = t.float()
    return t


def _to_batch(x: ArrayLike) -> Tensor:
    t = _to_float_tensor(x)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise InvalidInputError(
            f"expected a vector or a 2-D matrix of embeddings, got shape {tuple(t.shape)}"
        )
    return t


def _check_dims(a: Tensor, b: Tensor) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise InvalidInputError(
            f"embedding dimensions differ: {a.shape[-1]} and {b.shape[-1]} (shapes {tuple(a.shape)}, {tuple(b.shape)})"
        )


def _normalize(t: Tensor) -> Tensor:
    return torch.nn.functional.normalize(t, p=2, dim=-1)


def cos_sim(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Cosine similarity matrix: ``res[i][j] = cos(a[i], b[j])``."""
    ta, tb = _to_batch(a), _to_batch(b)
    _check_dims(ta, tb)
    return torch.mm(_normalize(ta), _normalize(tb).transpose(0, 1))


def dot_score(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Dot-product matrix: ``res[i][j] = a[i] · b[j]``."""
    ta, tb = _to_batch(a), _to_batch(b)
    _check_dims(ta, tb)
    return torch.mm(ta, tb.transpose(0, 1))


def euclidean_sim(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Negated euclidean distance matrix: ``res[i][j] = -||a[i] - b[j]||₂``."""
    ta, tb = _to_batch(a), _to_batch(b)
    _check_dims(ta, tb)
    return -torch.cdist(ta, tb, p=2.0)


def manhattan_sim(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Negated manhattan distance matrix: ``res[i][j] = -||a[i] - b[j]||₁``."""
    ta, tb = _to_batch(a), _to_batch(b)
    _check_dims(ta, tb)
    return -torch.cdist(ta, tb, p=1.0)


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[Tensor, Tensor]:
    ta, tb = _to_float_tensor(a), _to_float_tensor(b)
    if ta.shape != tb.shape:
        raise InvalidInputError(
            f"pairwise similarity needs equal shapes, got {tuple(ta.shape)} and {tuple(tb.shape)}"
        )
    return ta, tb


def pairwise_cos_sim(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Cosine similarity of each row pair: ``res[i] = cos(a[i], b[i])``."""
    ta, tb = _pair(a, b)
    return (_normalize(ta) * _normalize(tb)).sum(dim=-1)


def pairwise_dot_score(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Dot product of each row pair: ``res[i] = a[i] · b[i]``."""
    ta, tb = _pair(a, b)
    return (ta * tb).sum(dim=-1)


def pairwise_euclidean_sim(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Negated euclidean distance of each row pair."""
    ta, tb = _pair(a, b)
    return -torch.linalg.vector_norm(ta - tb, dim=-1)


def pairwise_manhattan_sim(a: ArrayLike, b: ArrayLike) -> Tensor:
    """Negated manhattan distance of each row pair."""
    ta, tb = _pair(a, b)
    return -torch.sum(torch.abs(ta - tb), dim=-1)


_MATRIX: dict[SimilarityFunction, Callable[[ArrayLike, ArrayLike], Tensor]] = {
    SimilarityFunction.COSINE: cos_sim,
    SimilarityFunction.DOT_PRODUCT: dot_score,
    SimilarityFunction.EUCLIDEAN: euclidean_sim,
    SimilarityFunction.MANHATTAN: manhattan_sim,
}
_PAIRWISE: dict[SimilarityFunction, Callable[[ArrayLike, ArrayLike], Tensor]] = {
    SimilarityFunction.COSINE: pairwise_cos_sim,
    SimilarityFunction.DOT_PRODUCT: pairwise_dot_score,
    SimilarityFunction.EUCLIDEAN: pairwise_euclidean_sim,
    SimilarityFunction.MANHATTAN: pairwise_manhattan_sim,
}


def numpy_scores(metric: str | SimilarityFunction, queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Exact float32 similarity of every query against every vector, in numpy (the torch-free twin of
    the ``*_sim`` functions, by :class:`SimilarityFunction`; the store itself scores through
    :mod:`indexers.scoring`, which this calls).

    Args:
        metric: a :class:`SimilarityFunction` or its name.
        queries: ``float32[q, d]``.
        vectors: ``float32[n, d]``.

    Returns:
        ``float32[q, n]`` scores, higher is better.
    """
    from indexers.scoring import exact_scores

    q = np.asarray(queries, dtype=np.float32)
    x = np.asarray(vectors, dtype=np.float32)
    if q.shape[-1] != x.shape[-1]:
        raise InvalidInputError(f"embedding dimensions differ: {q.shape[-1]} and {x.shape[-1]}")
    return exact_scores(SimilarityFunction.parse(metric).value, q, x)
