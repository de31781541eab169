"""vectorstore: an embedded vector search database with a sentence-transformers-compatible API.

Heavy modules (torch, transformers, faiss) load on first use, so ``import vectorstore`` and the
CLI's ``--help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vectorstore.errors import (
    ChangeLogTrimmedError,
    CollectionConfigError,
    CollectionExistsError,
    CollectionNotFoundError,
    DatabaseCorruptedError,
    DatabaseMissingError,
    DimensionMismatchError,
    DiskFullError,
    DuplicateDocumentError,
    DuplicateIDError,
    IncompatibleIndexError,
    IndexBackendError,
    IndexCorruptedError,
    IndexSaveError,
    InvalidCollectionNameError,
    InvalidFilterError,
    InvalidIDError,
    InvalidInputError,
    InvalidMetadataError,
    InvalidVectorError,
    ModelLoadError,
    ReadOnlyStoreError,
    StorageError,
    StoreClosedError,
    UnsupportedMetricError,
    VectorStoreError,
)

if TYPE_CHECKING:
    from vectorstore import util
    from vectorstore.collection import Collection
    from vectorstore.models.cross_encoder import CrossEncoder
    from vectorstore.models.onnx_backend import (
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )
    from vectorstore.models.openvino_backend import export_static_quantized_openvino_model
    from vectorstore.models.sentence_transformer import SentenceTransformer
    from vectorstore.quantization import quantize_embeddings
    from vectorstore.results import AddResult, DuplicatePair, GetResult, Hit, SkippedDocument
    from vectorstore.similarity import SimilarityFunction
    from vectorstore.store import Store

__version__ = "0.1.0"

_LAZY: dict[str, tuple[str, str | None]] = {
    "Collection": ("vectorstore.collection", "Collection"),
    "CrossEncoder": ("vectorstore.models.cross_encoder", "CrossEncoder"),
    "DuplicatePair": ("vectorstore.results", "DuplicatePair"),
    "GetResult": ("vectorstore.results", "GetResult"),
    "AddResult": ("vectorstore.results", "AddResult"),
    "SkippedDocument": ("vectorstore.results", "SkippedDocument"),
    "Hit": ("vectorstore.results", "Hit"),
    "Store": ("vectorstore.store", "Store"),
    "SentenceTransformer": ("vectorstore.models.sentence_transformer", "SentenceTransformer"),
    "SimilarityFunction": ("vectorstore.similarity", "SimilarityFunction"),
    "quantize_embeddings": ("vectorstore.quantization", "quantize_embeddings"),
    "export_optimized_onnx_model": ("vectorstore.models.onnx_backend", "export_optimized_onnx_model"),
    "export_dynamic_quantized_onnx_model": (
        "vectorstore.models.onnx_backend",
        "export_dynamic_quantized_onnx_model",
    ),
    "export_static_quantized_openvino_model": (
        "vectorstore.models.openvino_backend",
        "export_static_quantized_openvino_model",
    ),
    "util": ("vectorstore.util", None),
}

__all__ = [
    "AddResult",
    "ChangeLogTrimmedError",
    "Collection",
    "CollectionConfigError",
    "CollectionExistsError",
    "CollectionNotFoundError",
    "CrossEncoder",
    "DatabaseCorruptedError",
    "DatabaseMissingError",
    "DimensionMismatchError",
    "DiskFullError",
    "DuplicateDocumentError",
    "DuplicateIDError",
    "DuplicatePair",
    "GetResult",
    "Hit",
    "IncompatibleIndexError",
    "IndexBackendError",
    "IndexCorruptedError",
    "IndexSaveError",
    "InvalidCollectionNameError",
    "InvalidFilterError",
    "InvalidIDError",
    "InvalidInputError",
    "InvalidMetadataError",
    "InvalidVectorError",
    "ModelLoadError",
    "ReadOnlyStoreError",
    "SentenceTransformer",
    "SimilarityFunction",
    "SkippedDocument",
    "StorageError",
    "Store",
    "StoreClosedError",
    "UnsupportedMetricError",
    "VectorStoreError",
    "__version__",
    "export_dynamic_quantized_onnx_model",
    "export_optimized_onnx_model",
    "export_static_quantized_openvino_model",
    "quantize_embeddings",
    "util",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vectorstore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
