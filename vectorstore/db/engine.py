"""Engine creation: SQLite in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` for writers."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from vectorstore.errors import (
    DatabaseCorruptedError,
    DiskFullError,
    InvalidInputError,
    ReadOnlyStoreError,
    StorageError,
)

__all__ = [
    "configure_sqlite",
    "connect_read_only",
    "database_error",
    "give_back_free_pages",
    "make_engine",
    "read_tx",
    "write_tx",
]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
PAGE_SIZE = 16_384  # bytes per page of a database this version creates (existing ones keep theirs)
CACHE_KIB = 65_536  # SQLite page cache per connection (64 MiB): filters and hydration hit it, not the OS


def configure_sqlite(dbapi_conn: Any, *, read_only: bool = False) -> None:
    """The settings of every SQLite connection the store opens (the engine's and the query reader's)."""
    # Let us issue BEGIN ourselves (pysqlite's implicit transactions cannot BEGIN IMMEDIATE).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    if read_only:
        cur.execute("PRAGMA query_only=ON")  # a second lock besides mode=ro: no statement may write
    else:
        # only takes effect on a new, empty database (before its first table): then compaction can
        # hand freed pages back to the file system with PRAGMA incremental_vacuum. Set only there:
        # on an existing database the pragma changes nothing but still commits (a header write and
        # its fsync on every connection open)
        if cur.execute("PRAGMA page_count").fetchone()[0] == 0:
            # 16 KiB pages: a float32 vector row (1.5 KB at 384 dimensions, 3 KB at 768) leaves a
            # quarter of a 4 KiB page unused; at 16 KiB the database is ~20 % smaller, with ingest and
            # lookups no slower (measured, docs/store.md "Memory and disk")
            cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA case_sensitive_like=ON")  # $contains is a case-sensitive substring match
    cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cur.close()


def give_back_free_pages(engine: Engine) -> None:
    """Hand the free pages of a SQLite database created with incremental auto-vacuum back to the file
    system (a no-op on older stores; :meth:`Store.vacuum` rewrites those).

    ``PRAGMA incremental_vacuum`` frees one page per step, and Python's ``execute`` steps once, so it
    runs through ``executescript``, which steps it to the end (in its own transaction)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.executescript("PRAGMA incremental_vacuum;")
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise database_error(exc, "giving free pages back", engine.url.database) from exc


def connect_read_only(database: str) -> sqlite3.Connection:
    """A read-only connection to a SQLite file (``mode=ro``; ``immutable`` when its folder cannot be
    written, since SQLite could not even create its shared-memory file there)."""
    path = Path(database).resolve()
    immutable = "&immutable=1" if not os.access(path.parent, os.W_OK) else ""
    conn = sqlite3.connect(
        f"{path.as_uri()}?mode=ro{immutable}",
        uri=True,
        check_same_thread=False,
        isolation_level=None,
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    configure_sqlite(conn, read_only=True)
    return conn


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite connections get WAL, a busy timeout, FULL sync and foreign keys.

    ``read_only`` (SQLite files only) opens every connection with ``mode=ro`` and ``query_only``.
    """
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    is_sqlite = isinstance(url, str) and url.startswith("sqlite")
    kwargs: dict[str, Any] = {}
    if is_sqlite:
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    try:
        engine = create_engine(url, **kwargs)
        if read_only:
            database = engine.url.database
            if not is_sqlite or not database:
                raise InvalidInputError("read_only=True needs a SQLite database file")
            engine = create_engine(url, creator=lambda: connect_read_only(database))
    except (ArgumentError, NoSuchModuleError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"not a usable database URL {url!r}: {exc}") from exc
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            if not read_only:
                configure_sqlite(dbapi_conn)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A writer takes the write lock up front: no deadlock upgrading a read lock later.
            mode = "IMMEDIATE" if conn.get_execution_options().get("vectorstore_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


_CORRUPT = ("malformed", "not a database", "file is encrypted")
_FULL = ("database or disk is full", "no space left")


def database_error(exc: BaseException, what: str, database: str | None) -> StorageError:
    """The :class:`StorageError` subclass for a database failure while doing ``what``, naming the file."""
    text = str(getattr(exc, "orig", None) or exc)
    where = f" ({database})" if database else ""
    lowered = text.lower()
    if any(m in lowered for m in _CORRUPT):
        return DatabaseCorruptedError(
            f"the database{where} is damaged or not a vectorstore database ({what}): {text}"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return ReadOnlyStoreError(f"the database{where} is open read-only ({what}): {text}")
    if any(m in lowered for m in _FULL):
        return DiskFullError(f"the disk holding the database{where} is full ({what}): {text}")
    return StorageError(f"database error while {what}{where}: {text}")


@contextmanager
def write_tx(engine: Engine, what: str = "writing") -> Iterator[Connection]:
    """One atomic write transaction; a database failure becomes a :class:`StorageError` that says what
    was being done (``what``) and that nothing of it was written."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            conn = conn.execution_options(vectorstore_write=True)
            with conn.begin():
                yield conn
    except SQLAlchemyError as exc:
        raise database_error(exc, f"{what}; nothing of it was written", engine.url.database) from exc


@contextmanager
def read_tx(engine: Engine, what: str = "reading") -> Iterator[Connection]:
    """A read transaction (one consistent snapshot); failures become :class:`StorageError`."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn, conn.begin():
            yield conn
    except SQLAlchemyError as exc:
        raise database_error(exc, what, engine.url.database) from exc
