"""``Reader``: the one way queries read SQL — one connection policy, one way to compile and run a
statement, on every SQLAlchemy dialect.

Statements are SQLAlchemy Core everywhere. On a file-backed SQLite database they run on one private
connection, configured exactly like the engine's (:func:`~vectorstore.db.engine.configure_sqlite`),
from SQL compiled once per statement shape: this skips the pool and transaction bookkeeping, which
otherwise cost more than the indexed lookups of a query. On any other database the same statements
run through the engine on a pooled connection. Either way each call reads one consistent snapshot.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.exc import SQLAlchemyError

from vectorstore.db import schema
from vectorstore.db.engine import BUSY_TIMEOUT_MS, configure_sqlite, connect_read_only, database_error

__all__ = ["Reader"]

_CACHE_SIZE = 256
# Keys one direct-path statement may bind: SQLite's default limit of bound variables is 999.
DIRECT_MAX_KEYS = 900


@functools.lru_cache(maxsize=512)
def _by_key_sql(table: str, columns: tuple[str, ...], key: str, n: int) -> str:
    """``SELECT columns FROM table WHERE key IN (?, ... n)``: built once per shape (it runs on every
    query)."""
    return f"SELECT {', '.join(columns)} FROM {table} WHERE {key} IN ({','.join('?' * n)})"


class Reader:
    """Runs the read statements of queries.

    Args:
        engine: the store's engine.
        direct: run on a private SQLite connection (``None``: whenever the database is a SQLite file;
            ``False`` forces the engine path, which is what other dialects use).
    """

    def __init__(self, engine: Engine, *, direct: bool | None = None, read_only: bool = False) -> None:
        self._engine = engine
        database = engine.url.database
        can_direct = engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"
        self._conn: sqlite3.Connection | None = None
        if can_direct and direct is not False:
            if read_only:
                conn = connect_read_only(str(database))
            else:
                conn = sqlite3.connect(
                    str(database),
                    check_same_thread=False,
                    isolation_level=None,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                )
                configure_sqlite(conn)
            self._conn = conn
        self._lock = threading.Lock()
        # key -> (statement, compiled SQL and parameter names for the direct path)
        self._cache: OrderedDict[
            Hashable, tuple[Select[Any], tuple[str, tuple[str, ...], dict[str, Any]] | None]
        ]
        self._cache = OrderedDict()

    @property
    def dialect(self) -> str:
        """The database's SQLAlchemy dialect name (``sqlite``, ``postgresql``...)."""
        return str(self._engine.dialect.name)

    @property
    def direct(self) -> bool:
        """Whether statements run on the private SQLite connection."""
        return self._conn is not None

    def _compile(self, stmt: Select[Any]) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        compiled = stmt.compile(dialect=self._engine.dialect, compile_kwargs={"render_postcompile": True})
        return str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params)

    def rows(
        self,
        build: Callable[[], Select[Any]],
        params: Mapping[str, Any] | None = None,
        *,
        key: Hashable | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run the statement ``build()`` returns, with ``params`` for its named bind parameters.

        ``key`` names the statement's shape: the statement (and on SQLite its compiled SQL) is kept
        for the next call with the same key, so ``build`` runs only once per shape.
        """
        entry = self._cache.get(key) if key is not None else None
        if entry is None:
            stmt = build()
            entry = (stmt, self._compile(stmt) if self._conn is not None else None)
            if key is not None:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.popitem(last=False)
                self._cache[key] = entry
        stmt, compiled = entry
        try:
            if compiled is None:
                with self._engine.connect() as conn, conn.begin():
                    return [tuple(r) for r in conn.execute(stmt, dict(params) if params else None)]
            sql, names, defaults = compiled
            values = [params[n] if params and n in params else defaults[n] for n in names]
            with self._lock:
                assert self._conn is not None
                return self._conn.execute(sql, values).fetchall()
        except (SQLAlchemyError, sqlite3.Error) as exc:
            raise database_error(exc, "reading for a query", self._engine.url.database) from exc

    def vector_rows(self, keys: list[int]) -> list[tuple[Any, ...]] | None:
        """``(key, vector bytes, crc)`` of the stored ``keys`` on the direct path — one plain statement,
        nothing compiled, so a fresh process's first call costs what the lookup costs — or None off
        it (the caller reads through the engine then)."""
        v = schema.vectors
        return self._rows_by_key(v, (v.c.key, v.c.vector, v.c.crc), keys, "reading stored vectors")

    def record_rows(self, keys: list[int]) -> list[tuple[Any, ...]] | None:
        """``(key, id, document, metadata JSON)`` of the stored ``keys`` on the direct path, as
        :meth:`vector_rows` reads vectors, or None off it."""
        r = schema.records
        return self._rows_by_key(
            r, (r.c.key, r.c.id, r.c.document, r.c.metadata), keys, "reading for a query"
        )

    def _rows_by_key(
        self, table: Any, columns: tuple[Any, ...], keys: list[int], what: str
    ) -> list[tuple[Any, ...]] | None:
        """``columns`` of ``table``'s rows whose ``key`` is one of ``keys``, in one uncompiled statement
        on the private connection; None off the direct path, or for more keys than
        :data:`DIRECT_MAX_KEYS` (SQLite's bound-variable limit), where the caller reads in chunks."""
        if self._conn is None or len(keys) > DIRECT_MAX_KEYS:
            return None
        sql = _by_key_sql(table.name, tuple(c.name for c in columns), table.c.key.name, len(keys))
        try:
            with self._lock:
                return self._conn.execute(sql, keys).fetchall()
        except sqlite3.Error as exc:
            raise database_error(exc, what, self._engine.url.database) from exc

    def data_version(self) -> int | None:
        """SQLite's ``PRAGMA data_version`` of the private connection: it changes whenever another
        connection commits (None off the direct path, where every call reads the log instead)."""
        if self._conn is None:
            return None
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        """Release the private connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
