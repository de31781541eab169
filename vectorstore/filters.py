"""The ``where`` / ``where_document`` language, compiled to SQLAlchemy expressions with bound parameters.

Metadata filters::

    {"year": 2020}                                   # shorthand for {"year": {"$eq": 2020}}
    {"year": {"$gte": 2020}, "topic": "sports"}      # several keys: all must hold ($and)
    {"$or": [{"topic": "sports"}, {"topic": {"$in": ["art", "music"]}}]}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin`` on a key, ``$and $or`` over lists of filters.

Semantics:
- values are typed: ``1`` matches ints and floats equal to 1, never ``True`` or ``"1"``;
- a list-valued metadata field matches ``$eq``/``$in`` when any element matches;
- ``$ne`` and ``$nin`` match every record that does not match the positive form, including
  records that lack the key;
- ``$gt``/``$gte``/``$lt``/``$lte`` compare numbers with numbers and strings with strings;
- ``None`` is a value (``{"k": None}`` matches records whose ``k`` is null).

Document filters: ``{"$contains": "text"}``, ``{"$not_contains": "text"}``, combined with ``$and``/``$or``
(case-sensitive substring match).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Select, and_, false, not_, or_, select, true

from vectorstore.db.reader import Reader
from vectorstore.db.repository import Repository
from vectorstore.db.schema import metadata_kv, records
from vectorstore.errors import InvalidFilterError

__all__ = ["MatchingKeys", "compile_filter", "compile_where", "compile_where_document", "has_positive_term"]

_KEY_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
_LOGIC = ("$and", "$or")


def _typed_match(collection_id: int, key: str, op: str, value: Any) -> ColumnElement[bool]:
    """A condition on metadata_kv rows of ``key`` for one positive comparison."""
    kv = metadata_kv.c
    base = and_(kv.collection_id == collection_id, kv.key == key)
    if op == "$eq":
        if value is None:
            return and_(base, kv.vtype == "z")
        if isinstance(value, bool):
            return and_(base, kv.vtype == "b", kv.num_value == float(value))
        if isinstance(value, (int, float)):
            return and_(base, kv.vtype == "n", kv.num_value == float(value))
        if isinstance(value, str):
            return and_(base, kv.vtype == "s", kv.str_value == value)
        raise InvalidFilterError(f"cannot compare {key!r} with {value!r}: use str, int, float, bool or None")
    # range operators
    if isinstance(value, bool) or value is None:
        raise InvalidFilterError(f"operator {op} on {key!r} needs a number or a string, got {value!r}")
    if isinstance(value, (int, float)):
        column, vtype, bound = kv.num_value, "n", float(value)
    elif isinstance(value, str):
        column, vtype, bound = kv.str_value, "s", value  # type: ignore[assignment]
    else:
        raise InvalidFilterError(f"operator {op} on {key!r} needs a number or a string, got {value!r}")
    cmp = {"$gt": column > bound, "$gte": column >= bound, "$lt": column < bound, "$lte": column <= bound}[op]
    return and_(base, kv.vtype == vtype, cmp)


def _keys_where(cond: ColumnElement[bool]) -> ColumnElement[bool]:
    return records.c.key.in_(select(metadata_kv.c.record_key).where(cond))


def _compile_key(collection_id: int, key: str, spec: Any) -> ColumnElement[bool]:
    if not isinstance(key, str) or not key:
        raise InvalidFilterError(f"filter keys must be non-empty strings, got {key!r}")
    if key.startswith("$"):
        raise InvalidFilterError(f"unknown filter operator {key!r}; logical operators are {list(_LOGIC)}")
    if not isinstance(spec, Mapping):
        return _keys_where(_typed_match(collection_id, key, "$eq", spec))
    if len(spec) == 0:
        raise InvalidFilterError(f"empty operator dict for {key!r}")
    parts: list[ColumnElement[bool]] = []
    for op, value in spec.items():
        if op not in _KEY_OPS:
            raise InvalidFilterError(
                f"unknown filter operator {op!r} on {key!r}; expected one of {list(_KEY_OPS)}"
            )
        if op in ("$in", "$nin"):
            if not isinstance(value, (list, tuple)):
                raise InvalidFilterError(f"{op} on {key!r} needs a list, got {value!r}")
            if not value:
                parts.append(false() if op == "$in" else true())
                continue
            cond = or_(*[_typed_match(collection_id, key, "$eq", v) for v in value])
            parts.append(_keys_where(cond) if op == "$in" else not_(_keys_where(cond)))
        elif op == "$ne":
            parts.append(not_(_keys_where(_typed_match(collection_id, key, "$eq", value))))
        else:
            if isinstance(value, (list, tuple, dict)):
                raise InvalidFilterError(f"{op} on {key!r} needs a single value, got {value!r}")
            parts.append(_keys_where(_typed_match(collection_id, key, op, value)))
    return and_(*parts) if len(parts) > 1 else parts[0]


def compile_where(collection_id: int, where: Mapping[str, Any] | None) -> ColumnElement[bool] | None:
    """A condition on ``records`` rows, or None for no filter.

    Raises:
        InvalidFilterError: naming the unknown operator or malformed part.
    """
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise InvalidFilterError(f"where must be a dict, got {type(where).__name__}: {where!r:.80}")
    if not where:
        return None
    parts: list[ColumnElement[bool]] = []
    for key, spec in where.items():
        if key in _LOGIC:
            if not isinstance(spec, (list, tuple)) or not spec:
                raise InvalidFilterError(f"{key} needs a non-empty list of filters, got {spec!r}")
            subs = []
            for sub in spec:
                compiled = compile_where(collection_id, sub)
                if compiled is None:
                    raise InvalidFilterError(f"{key} contains an empty filter")
                subs.append(compiled)
            parts.append(and_(*subs) if key == "$and" else or_(*subs))
        else:
            parts.append(_compile_key(collection_id, key, spec))
    return and_(*parts) if len(parts) > 1 else parts[0]


def has_positive_term(where: Mapping[str, Any] | None) -> bool:
    """Whether some top-level term must match (a key with $eq/$in/range operators): then the matching
    rows are a subset of that term's indexed lookup, and the query can be driven from it."""
    if not where:
        return False
    for key, spec in where.items():
        if key == "$and":
            if any(has_positive_term(sub) for sub in spec):
                return True
        elif key == "$or":
            continue
        elif not isinstance(spec, Mapping) or any(op not in ("$ne", "$nin") for op in spec):
            return True
    return False


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def compile_where_document(where_document: Mapping[str, Any] | None) -> ColumnElement[bool] | None:
    """A condition on ``records.document``, or None."""
    if where_document is None or (isinstance(where_document, Mapping) and not where_document):
        return None
    if not isinstance(where_document, Mapping):
        raise InvalidFilterError(f"where_document must be a dict, got {where_document!r:.80}")
    parts: list[ColumnElement[bool]] = []
    for op, value in where_document.items():
        if op in _LOGIC:
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidFilterError(f"{op} needs a non-empty list of document filters, got {value!r}")
            subs = [compile_where_document(v) for v in value]
            if any(s is None for s in subs):
                raise InvalidFilterError(f"{op} contains an empty document filter")
            clean = [s for s in subs if s is not None]
            parts.append(and_(*clean) if op == "$and" else or_(*clean))
        elif op in ("$contains", "$not_contains"):
            if not isinstance(value, str) or not value:
                raise InvalidFilterError(f"{op} needs a non-empty string, got {value!r}")
            like = records.c.document.like(f"%{_like_escape(value)}%", escape="\\")
            parts.append(like if op == "$contains" else or_(records.c.document.is_(None), not_(like)))
        else:
            raise InvalidFilterError(
                f"unknown document filter operator {op!r}; expected $contains, $not_contains, $and, $or"
            )
    return and_(*parts) if len(parts) > 1 else parts[0]


def compile_filter(
    collection_id: int, where: Mapping[str, Any] | None, where_document: Mapping[str, Any] | None
) -> ColumnElement[bool] | None:
    """The condition on ``records`` rows of both filters (None when neither filters anything)."""
    parts = [
        c
        for c in (compile_where(collection_id, where), compile_where_document(where_document))
        if c is not None
    ]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else and_(*parts)


class MatchingKeys:
    """The keys of a collection's records that match a filter, read through the query :class:`Reader`.

    The statement of each recent filter is kept by the reader (with its compiled SQL on SQLite), so a
    repeated filter skips compilation; its values stay bound parameters either way.
    """

    def __init__(self, collection_id: int, reader: Reader) -> None:
        self._collection_id = collection_id
        self._reader = reader

    def __call__(
        self, where: Mapping[str, Any] | None, where_document: Mapping[str, Any] | None
    ) -> np.ndarray:
        """Keys matching both filters, in no particular order.

        Raises:
            InvalidFilterError: the filter is malformed (nothing is cached for it).
        """
        try:
            cache_key: str | None = json.dumps([where, where_document], sort_keys=True)
        except (TypeError, ValueError):
            cache_key = None

        def build() -> Select[Any]:
            cond = compile_filter(self._collection_id, where, where_document)
            return Repository.keys_matching_stmt(
                self._collection_id,
                cond,
                driven_by_filter=has_positive_term(where),
                sqlite=self._reader.dialect == "sqlite",
            )

        rows = self._reader.rows(build, key=("filter", cache_key) if cache_key is not None else None)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
