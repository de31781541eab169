"""Vector index backends behind one small protocol.

>>> from indexers import make_index, load_index
>>> index = make_index("faiss-hnsw", dim=384, metric="cosine", M=32)
>>> index.add(keys, vectors); keys, scores = index.search(queries, k=10)
>>> index.save("dir"); same = load_index("dir")

Kinds: ``exact``, ``faiss-flat``, ``faiss-hnsw``, ``faiss-ivf``, ``faiss-ivfpq``, ``usearch-hnsw``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from indexers.base import BaseIndex, IndexSpec, VectorIndex, read_manifest
from indexers.exact import ExactIndex
from vectorstore.errors import IncompatibleIndexError, InvalidInputError

__all__ = ["KINDS", "BaseIndex", "IndexSpec", "VectorIndex", "index_class", "load_index", "make_index"]

KINDS: tuple[str, ...] = ("exact", "faiss-flat", "faiss-hnsw", "faiss-ivf", "faiss-ivfpq", "usearch-hnsw")


def index_class(kind: str) -> type[BaseIndex]:
    """The backend class registered for ``kind`` (FAISS and USearch are imported on first use)."""
    if kind == "exact":
        return ExactIndex
    if kind.startswith("faiss-"):
        from indexers import faiss_index

        table: dict[str, type[BaseIndex]] = {
            "faiss-flat": faiss_index.FaissFlatIndex,
            "faiss-hnsw": faiss_index.FaissHNSWIndex,
            "faiss-ivf": faiss_index.FaissIVFIndex,
            "faiss-ivfpq": faiss_index.FaissIVFPQIndex,
        }
        if kind in table:
            return table[kind]
    if kind == "usearch-hnsw":
        from indexers.usearch_index import USearchIndex

        return USearchIndex
    raise InvalidInputError(f"unknown index kind {kind!r}; expected one of {list(KINDS)}")


def make_index(
    kind: str | IndexSpec, dim: int | None = None, metric: str = "cosine", **options: Any
) -> BaseIndex:
    """Create an empty index from a kind name (plus dim, metric, options) or an :class:`IndexSpec`."""
    if isinstance(kind, IndexSpec):
        return index_class(kind.kind)(kind.dim, kind.metric, **dict(kind.options))
    if dim is None:
        raise InvalidInputError("make_index needs dim")
    return index_class(kind)(dim, metric, **options)


def load_index(
    directory: str | os.PathLike[str], *, verify: bool | str = True, expect: IndexSpec | None = None
) -> BaseIndex:
    """Load a saved index; the manifest names the backend.

    Args:
        directory: what :meth:`BaseIndex.save` wrote.
        verify: ``True`` checks each file's CRC unless its stat (size, mtime, inode, device) is still the
            one recorded right after it was written and checksummed; ``"full"`` always recomputes the
            CRC; ``False`` checks sizes only.
        expect: if given, the saved kind, dim and metric must equal it.

    Raises:
        IndexCorruptedError: missing, truncated or garbled files.
        IncompatibleIndexError: another format version, or not what ``expect`` says.
    """
    d = Path(directory)
    manifest = read_manifest(d)
    try:
        cls = index_class(str(manifest["backend"]))
    except InvalidInputError as exc:
        raise IncompatibleIndexError(
            f"index in {d} was written by unknown backend {manifest['backend']!r}"
        ) from exc
    if expect is not None and (
        expect.kind != manifest["backend"]
        or expect.dim != manifest["dim"]
        or expect.metric != manifest["metric"]
    ):
        raise IncompatibleIndexError(
            f"index in {d} is {manifest['backend']}/{manifest['dim']}/{manifest['metric']}, "
            f"expected {expect.kind}/{expect.dim}/{expect.metric}"
        )
    return cls._restore(d, manifest, verify)
