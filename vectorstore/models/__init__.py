"""Encoders: the bi-encoder (:class:`SentenceTransformer`), the :class:`CrossEncoder`, pooling and model resolution."""

from vectorstore.models.cross_encoder import CrossEncoder
from vectorstore.models.pooling import POOLING_MODES, PoolingConfig, pool
from vectorstore.models.resolve import resolve_model_path
from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = [
    "POOLING_MODES",
    "CrossEncoder",
    "PoolingConfig",
    "SentenceTransformer",
    "pool",
    "resolve_model_path",
]
