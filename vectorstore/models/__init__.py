"""Encoders: the bi-encoder (:class:`SentenceTransformer`), pooling and model resolution."""

from vectorstore.models.pooling import POOLING_MODES, PoolingConfig, pool
from vectorstore.models.resolve import resolve_model_path
from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = ["POOLING_MODES", "PoolingConfig", "SentenceTransformer", "pool", "resolve_model_path"]
