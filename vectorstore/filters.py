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
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Select,
    and_,
    bindparam,
    false,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles

from vectorstore.db.reader import Reader
from vectorstore.db.repository import Repository
from vectorstore.db.schema import metadata_kv, records
from vectorstore.errors import InvalidFilterError

__all__ = ["MatchingKeys", "compile_filter", "compile_where", "compile_where_document", "has_positive_term"]

_KEY_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
_LOGIC = ("$and", "$or")
MAX_DEPTH = 32  # nesting of $and / $or (and of operator dicts)
MAX_TERMS = 15_000  # comparisons in one filter outside $in / $nin lists: each binds two parameters, and
# SQLite allows 32,766 per statement
MAX_VALUES = 1_000_000  # values in one $in / $nin list
_INLINE_VALUES = 64  # longer $in lists are passed as one JSON parameter on SQLite (json_each)


class _InValues(ColumnElement[bool]):
    """``column IN (values)``, compiled per dialect: a JSON array unpacked by ``json_each`` on SQLite
    (one bound parameter for any number of values), an expanding list of parameters elsewhere."""

    inherit_cache = False

    def __init__(self, column: ColumnElement[Any], values: list[Any]) -> None:
        self.column = column
        self.values = values
        self.type = Boolean()


@compiles(_InValues)
def _in_values(element: _InValues, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.column.in_(element.values), **kw))


@compiles(_InValues, "sqlite")
def _in_values_sqlite(element: _InValues, compiler: Any, **kw: Any) -> str:
    if len(element.values) <= _INLINE_VALUES:
        return str(compiler.process(element.column.in_(element.values), **kw))
    param: Any = bindparam(None, json.dumps(element.values), unique=True)
    return f"{compiler.process(element.column, **kw)} IN (SELECT value FROM json_each({compiler.process(param, **kw)}))"


class _Parenthesised(ColumnElement[bool]):
    """A condition rendered inside its own parentheses, always: SQLAlchemy flattens nested AND / OR
    lists, and the database would parse the flat chain as deep as it is long."""

    inherit_cache = False

    def __init__(self, inner: ColumnElement[bool]) -> None:
        self.inner = inner
        self.type = Boolean()


@compiles(_Parenthesised)
def _parenthesised(element: _Parenthesised, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.inner, **kw)})"


def _constant(value: Any) -> ColumnElement[Any]:
    """A value the library itself chose (a collection id, a type tag), inlined instead of bound, so
    that wide filters stay under the database's bound-parameter limit. Never used for user values."""
    if isinstance(value, int):
        return literal_column(str(int(value)))
    assert isinstance(value, str) and value.isalpha()
    return literal_column(f"'{value}'")


def _typed_match(collection_id: int, key: str, op: str, value: Any) -> ColumnElement[bool]:
    """A condition on metadata_kv rows of ``key`` for one positive comparison."""
    kv = metadata_kv.c
    base = and_(kv.collection_id == _constant(collection_id), kv.key == key)
    if op == "$eq":
        if value is None:
            return and_(base, kv.vtype == _constant("z"))
        if isinstance(value, bool):
            return and_(base, kv.vtype == _constant("b"), kv.num_value == float(value))
        if isinstance(value, (int, float)):
            return and_(base, kv.vtype == _constant("n"), kv.num_value == _finite(key, value))
        if isinstance(value, str):
            return and_(base, kv.vtype == _constant("s"), kv.str_value == value)
        raise InvalidFilterError(f"cannot compare {key!r} with {value!r}: use str, int, float, bool or None")
    # range operators
    if isinstance(value, bool) or value is None:
        raise InvalidFilterError(f"operator {op} on {key!r} needs a number or a string, got {value!r}")
    if isinstance(value, (int, float)):
        column, vtype, bound = kv.num_value, "n", _finite(key, value)
    elif isinstance(value, str):
        column, vtype, bound = kv.str_value, "s", value  # type: ignore[assignment]
    else:
        raise InvalidFilterError(f"operator {op} on {key!r} needs a number or a string, got {value!r}")
    cmp = {"$gt": column > bound, "$gte": column >= bound, "$lt": column < bound, "$lte": column <= bound}[op]
    return and_(base, kv.vtype == _constant(vtype), cmp)


def _finite(key: str, value: int | float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise InvalidFilterError(f"filter on {key!r} compares with {value!r}; only finite numbers can match")
    return number


def _in_match(collection_id: int, key: str, op: str, values: list[Any]) -> ColumnElement[bool]:
    """Records with some value of ``key`` among ``values`` (typed as ``$eq`` is), one IN per type."""
    if len(values) > MAX_VALUES:
        raise InvalidFilterError(
            f"{op} on {key!r} has {len(values)} values; at most {MAX_VALUES} are allowed"
        )
    kv = metadata_kv.c
    strings = sorted({v for v in values if isinstance(v, str)})
    bools = sorted({float(v) for v in values if isinstance(v, bool)})
    numbers = sorted(
        {_finite(key, v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)}
    )
    bad = [v for v in values if v is not None and not isinstance(v, (str, int, float))]
    if bad:
        raise InvalidFilterError(f"cannot compare {key!r} with {bad[0]!r}: use str, int, float, bool or None")
    groups: list[ColumnElement[bool]] = []
    if strings:
        groups.append(and_(kv.vtype == _constant("s"), _InValues(kv.str_value, strings)))
    if numbers:
        groups.append(and_(kv.vtype == _constant("n"), _InValues(kv.num_value, numbers)))
    if bools:
        groups.append(and_(kv.vtype == _constant("b"), kv.num_value.in_(bools)))
    if any(v is None for v in values):
        groups.append(kv.vtype == _constant("z"))
    base = and_(kv.collection_id == _constant(collection_id), kv.key == key)
    return and_(base, or_(*groups)) if len(groups) > 1 else and_(base, groups[0])


def _balanced(combine: Any, parts: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """``combine`` (and_ / or_) of ``parts`` as a balanced, parenthesised tree: databases parse a flat
    ``a OR b OR ...`` as a chain as deep as it is long (SQLite stops at depth 1000)."""
    if len(parts) <= 8:
        return combine(*parts) if len(parts) > 1 else parts[0]
    mid = len(parts) // 2
    return combine(
        _Parenthesised(_balanced(combine, parts[:mid])), _Parenthesised(_balanced(combine, parts[mid:]))
    )


def _check_shape(where: Any, what: str) -> None:
    """Bound the nesting depth and the number of comparisons before anything recurses over the filter."""
    terms = 0
    stack: list[tuple[Any, int]] = [(where, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidFilterError(f"{what} is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, Mapping):
            terms += 1
            stack.extend(
                (v, depth + 1) for k, v in node.items() if not (k in ("$in", "$nin") and isinstance(v, list))
            )
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)
        if terms > MAX_TERMS:
            raise InvalidFilterError(
                f"{what} has more than {MAX_TERMS} comparisons; use $in / $nin for many values of one key"
            )


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
            cond = _in_match(collection_id, key, op, list(value))
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
    _check_shape(where, "where")
    return _compile_where(collection_id, where)


def _compile_where(collection_id: int, where: Mapping[str, Any]) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    for key, spec in where.items():
        if key in _LOGIC:
            if not isinstance(spec, (list, tuple)) or not spec:
                raise InvalidFilterError(f"{key} needs a non-empty list of filters, got {spec!r}")
            subs = []
            for sub in spec:
                if not isinstance(sub, Mapping):
                    raise InvalidFilterError(f"{key} needs a list of filter dicts, got {sub!r:.80}")
                if not sub:
                    raise InvalidFilterError(f"{key} contains an empty filter")
                subs.append(_compile_where(collection_id, sub))
            parts.append(_balanced(and_ if key == "$and" else or_, subs))
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
    _check_shape(where_document, "where_document")
    return _compile_document(where_document)


def _compile_document(where_document: Mapping[str, Any]) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    for op, value in where_document.items():
        if op in _LOGIC:
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidFilterError(f"{op} needs a non-empty list of document filters, got {value!r}")
            if any(not isinstance(v, Mapping) for v in value):
                raise InvalidFilterError(f"{op} needs a list of document filter dicts, got {value!r:.80}")
            if any(not v for v in value):
                raise InvalidFilterError(f"{op} contains an empty document filter")
            clean = [_compile_document(v) for v in value]
            parts.append(_balanced(and_ if op == "$and" else or_, clean))
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
        if where:
            _check_shape(where, "where")  # before anything recurses over it (json.dumps included)
        if where_document:
            _check_shape(where_document, "where_document")
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
