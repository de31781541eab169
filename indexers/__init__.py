"""Vector index backends behind one small protocol.

>>> from indexers import make_index, load_index
>>> index = make_index("faiss-hnsw", dim=384, metric="cosine", M=32)
>>> index.add(keys, vectors); keys, scores = index.search(queries, k=10)
>>> index.save("dir"); same = load_index("dir")

Kinds: ``exact``, ``faiss-flat``, ``faiss-hnsw``, ``faiss-hnsw-sq``, ``faiss-ivf``, ``faiss-ivfpq``, ``usearch-hnsw``.

Layout: :mod:`indexers.spec` (what an index is, the protocol), :mod:`indexers.base` (the shared
contract), :mod:`indexers.validation`, :mod:`indexers.persistence` (files and manifests),
:mod:`indexers.errors`, and one module per backend (:mod:`indexers.exact`, :mod:`indexers.faiss`,
:mod:`indexers.usearch_index`). This package never imports ``vectorstore``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from indexers.base import BaseIndex
from indexers.errors import IncompatibleIndexError, InvalidInputError
from indexers.exact import ExactIndex
from indexers.persistence import read_manifest
from indexers.spec import Device, IndexSpec, Kind, Metric, VectorIndex

if TYPE_CHECKING:
    from indexers.usearch_index import USearchDtype

__all__ = [
    "KINDS",
    "BaseIndex",
    "IndexSpec",
    "Kind",
    "Metric",
    "VectorIndex",
    "index_class",
    "load_index",
    "make_index",
]

KINDS: tuple[str, ...] = (
    "exact",
    "faiss-flat",
    "faiss-hnsw",
    "faiss-hnsw-sq",
    "faiss-ivf",
    "faiss-ivfpq",
    "usearch-hnsw",
)


def index_class(kind: str, options: Mapping[str, Any] | None = None) -> type[BaseIndex]:
    """The backend class for ``kind`` and its options (FAISS and USearch are imported on first use).

    ``faiss-ivfpq`` has two: refined (``refine_factor >= 1``, the default) and raw PQ (``0``).
    """
    if kind == "exact":
        return ExactIndex
    if kind.startswith("faiss-"):
        from indexers import faiss as fi

        if kind == "faiss-ivfpq":
            refine = (options or {}).get("refine_factor", fi.FaissRefinedIVFPQIndex.defaults["refine_factor"])
            return (
                fi.FaissIVFPQIndex
                if refine == 0 and not isinstance(refine, bool)
                else fi.FaissRefinedIVFPQIndex
            )
        table: dict[str, type[BaseIndex]] = {
            "faiss-flat": fi.FaissFlatIndex,
            "faiss-hnsw": fi.FaissHNSWIndex,
            "faiss-hnsw-sq": fi.FaissHNSWSQIndex,
            "faiss-ivf": fi.FaissIVFIndex,
        }
        if kind in table:
            return table[kind]
    if kind == "usearch-hnsw":
        from indexers.usearch_index import USearchIndex

        return USearchIndex
    raise InvalidInputError(f"unknown index kind {kind!r}; expected one of {list(KINDS)}")


# One signature per kind, so a type checker knows each kind's options.
@overload
def make_index(kind: IndexSpec) -> BaseIndex: ...
@overload
def make_index(
    kind: Literal["exact"],
    dim: int,
    metric: Metric | str = ...,
    *,
    chunk_size: int = ...,
    device: Device = ...,
) -> BaseIndex: ...
@overload
def make_index(
    kind: Literal["faiss-flat"], dim: int, metric: Metric | str = ..., *, device: Device = ...
) -> BaseIndex: ...
@overload
def make_index(
    kind: Literal["faiss-hnsw"],
    dim: int,
    metric: Metric | str = ...,
    *,
    M: int = ...,
    efConstruction: int = ...,
    efSearch: int = ...,
) -> BaseIndex: ...
@overload
def make_index(
    kind: Literal["faiss-hnsw-sq"],
    dim: int,
    metric: Metric | str = ...,
    *,
    M: int = ...,
    efConstruction: int = ...,
    efSearch: int = ...,
    qtype: str = ...,
    train_size: int = ...,
) -> BaseIndex: ...
@overload
def make_index(
    kind: Literal["faiss-ivf"],
    dim: int,
    metric: Metric | str = ...,
    *,
    nlist: int = ...,
    nprobe: int = ...,
    train_size: int | None = ...,
    device: Device = ...,
) -> BaseIndex: ...
@overload
def make_index(
    kind: Literal["faiss-ivfpq"],
    dim: int,
    metric: Metric | str = ...,
    *,
    nlist: int = ...,
    nprobe: int = ...,
    m: int | None = ...,
    nbits: int = ...,
    refine_factor: int = ...,
    train_size: int | None = ...,
    device: Device = ...,
) -> BaseIndex: ...
@overload
def make_index(
    kind: Literal["usearch-hnsw"],
    dim: int,
    metric: Metric | str = ...,
    *,
    connectivity: int = ...,
    expansion_add: int = ...,
    expansion_search: int = ...,
    dtype: USearchDtype = ...,
) -> BaseIndex: ...
@overload
def make_index(kind: str, dim: int, metric: Metric | str = ..., **options: Any) -> BaseIndex: ...
def make_index(
    kind: str | IndexSpec, dim: int | None = None, metric: Metric | str = "cosine", **options: Any
) -> BaseIndex:
    """Create an empty index from a kind name (plus dim, metric, options) or an :class:`IndexSpec`.

    The options are copied, never changed; an unknown option raises :class:`InvalidInputError`
    listing the valid ones.
    """
    if isinstance(kind, IndexSpec):
        spec = kind
        kind, dim, metric, options = spec.kind, spec.dim, spec.metric, dict(spec.options)
    if dim is None:
        raise InvalidInputError("make_index needs dim")
    cls = index_class(kind, options)
    cls.check_options(options)
    return cls(dim, metric, **dict(options))


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
        cls = index_class(str(manifest["backend"]), manifest.get("options") or {})
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
