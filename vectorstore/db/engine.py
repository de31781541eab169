"""Engine creation: SQLite in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` for writers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select

from vectorstore.db import schema
from vectorstore.errors import StorageError

__all__ = ["configure_sqlite", "init_schema", "make_engine", "read_tx", "write_tx"]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
CACHE_KIB = 65_536  # SQLite page cache per connection (64 MiB): filters and hydration hit it, not the OS


def configure_sqlite(dbapi_conn: Any) -> None:
    """The settings of every SQLite connection the store opens (the engine's and the query reader's)."""
    # Let us issue BEGIN ourselves (pysqlite's implicit transactions cannot BEGIN IMMEDIATE).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA case_sensitive_like=ON")  # $contains is a case-sensitive substring match
    cur.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get WAL, a busy timeout, FULL sync and foreign keys."""
    is_sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {}
    if is_sqlite:
        kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    engine = create_engine(url, **kwargs)
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            configure_sqlite(dbapi_conn)

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # A writer takes the write lock up front: no deadlock upgrading a read lock later.
            mode = "IMMEDIATE" if conn.get_execution_options().get("vectorstore_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One atomic write transaction; database errors become :class:`StorageError`."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn:
            conn = conn.execution_options(vectorstore_write=True)
            with conn.begin():
                yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"database write failed, nothing of the batch was written: {exc}") from exc


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read transaction (one consistent snapshot)."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with engine.connect() as conn, conn.begin():
            yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"database read failed: {exc}") from exc


# Numbered migrations: version -> function upgrading from version-1. Version 1 is the initial schema.
MIGRATIONS: dict[int, Any] = {}


def init_schema(engine: Engine) -> None:
    """Create missing tables and bring the schema to :data:`schema.SCHEMA_VERSION`."""
    with write_tx(engine) as conn:
        schema.metadata.create_all(conn)
        row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).first()
        if row is None:
            conn.execute(
                schema.meta.insert().values(key="schema_version", value=json.dumps(schema.SCHEMA_VERSION))
            )
            return
        version = int(json.loads(row[0]))
        if version > schema.SCHEMA_VERSION:
            raise StorageError(
                f"the store was written by a newer vectorstore (schema {version}); this one reads {schema.SCHEMA_VERSION}"
            )
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):
            logger.info("migrating store schema to version %d", target)
            MIGRATIONS[target](conn)
        if version != schema.SCHEMA_VERSION:
            conn.execute(
                schema.meta.update()
                .where(schema.meta.c.key == "schema_version")
                .values(value=json.dumps(schema.SCHEMA_VERSION))
            )
