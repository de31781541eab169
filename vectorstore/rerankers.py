"""Which cross-encoder a query reranks with: the ``rerank=`` argument against the collection's reranker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vectorstore.errors import InvalidInputError

if TYPE_CHECKING:
    from vectorstore.model_cache import ModelCache
    from vectorstore.models.cross_encoder import CrossEncoder

__all__ = ["resolve_reranker"]


def resolve_reranker(
    rerank: Any, query: Any, reranker_name: str | None, models: ModelCache, collection: str
) -> CrossEncoder | None:
    """The cross-encoder this query reranks with, or None.

    Nothing is imported or loaded when the answer is None, so plain queries stay free of
    torch/transformers work.

    Args:
        rerank: ``None`` (rerank text queries when the collection has a reranker), ``True`` (require
            one), ``False`` (never) or a :class:`~vectorstore.CrossEncoder`.
        query: the query text(s), or None for a ``query_embeddings`` query.
        reranker_name: the collection's reranker reference, or None.
        models: where the collection's reranker is loaded from.
        collection: the collection's name, for messages.

    Raises:
        InvalidInputError: ``rerank=True`` without a reranker, a value that is no cross-encoder,
            reranking without the query text, or a cross-encoder with more than one label.
    """
    if rerank is False:
        return None
    if rerank is None:
        if reranker_name is None or query is None:
            return None
        chosen = models.cross_encoder(reranker_name)
    elif rerank is True:
        if reranker_name is None:
            raise InvalidInputError(
                f"collection {collection!r} has no reranker; create it with reranker=... "
                "or pass rerank=CrossEncoder(...)"
            )
        chosen = models.cross_encoder(reranker_name)
    else:
        from vectorstore.models.cross_encoder import CrossEncoder

        if not isinstance(rerank, CrossEncoder):
            raise InvalidInputError(f"rerank must be True, False, None or a CrossEncoder, got {rerank!r:.60}")
        chosen = rerank
    if query is None:
        raise InvalidInputError("reranking needs the query text; pass query=..., not only query_embeddings")
    if chosen.num_labels != 1:
        raise InvalidInputError(
            f"a reranker needs one output label; this cross-encoder has {chosen.num_labels}"
        )
    return chosen
