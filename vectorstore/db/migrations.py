"""Numbered schema migrations and the store's identity, applied by :func:`init_schema` on open.

Migration ``N`` upgrades a database at schema ``N - 1`` to ``N`` inside the opening transaction, so a
crash midway leaves the old schema intact. A database written by a newer version is refused.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
import zlib
from collections.abc import Callable

from sqlalchemy import Connection, Engine, bindparam, select, text
from tqdm.auto import tqdm

from vectorstore.db import schema
from vectorstore.db.engine import read_tx, write_tx
from vectorstore.errors import StorageError

__all__ = ["MIGRATIONS", "init_schema", "read_schema"]

logger = logging.getLogger(__name__)

_BATCH = 20_000


def _add_vector_checksums(conn: Connection) -> None:
    """Schema 2: a CRC32 per stored vector, computed for the rows already there."""
    conn.execute(text("ALTER TABLE vectors ADD COLUMN crc INTEGER"))
    total = int(conn.execute(text("SELECT count(*) FROM vectors")).scalar_one())
    show = total >= 100_000 and sys.stderr.isatty()
    last = -1
    with tqdm(total=total, desc="Checksumming stored vectors", unit="vec", disable=not show) as bar:
        while True:
            rows = conn.execute(
                select(schema.vectors.c.key, schema.vectors.c.vector)
                .where(schema.vectors.c.key > last)
                .order_by(schema.vectors.c.key)
                .limit(_BATCH)
            ).all()
            if not rows:
                return
            conn.execute(
                schema.vectors.update()
                .where(schema.vectors.c.key == bindparam("k"))
                .values(crc=bindparam("c")),
                [{"k": int(k), "c": zlib.crc32(v)} for k, v in rows],
            )
            last = int(rows[-1][0])
            bar.update(len(rows))


MIGRATIONS: dict[int, Callable[[Connection], None]] = {2: _add_vector_checksums}


def init_schema(engine: Engine) -> str:
    """Create missing tables, bring the schema to :data:`schema.SCHEMA_VERSION`, and return the store's
    random id (made on first open; derived files carry it, so files of another database are refused).

    A store already at this version is only read (one short read transaction, no table checks): the
    write path runs for new, older or incomplete stores."""
    current = _current_store_id(engine)
    if current is not None:
        return current
    with write_tx(engine, "opening the store (creating or checking its tables)") as conn:
        had_tables = bool(conn.dialect.has_table(conn, "meta"))
        version = schema.SCHEMA_VERSION
        if had_tables:
            row = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).first()
            version = int(json.loads(row[0])) if row is not None else schema.SCHEMA_VERSION
        if version > schema.SCHEMA_VERSION:
            raise StorageError(
                f"the store was written by a newer vectorstore (schema {version}); "
                f"this one reads schema {schema.SCHEMA_VERSION}: upgrade vectorstore to open it"
            )
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):
            logger.info("migrating store schema to version %d", target)
            MIGRATIONS[target](conn)
        schema.metadata.create_all(conn)
        facts = dict(conn.execute(select(schema.meta.c.key, schema.meta.c.value)).all())
        if facts.get("schema_version") != json.dumps(schema.SCHEMA_VERSION):
            conn.execute(schema.meta.delete().where(schema.meta.c.key == "schema_version"))
            conn.execute(
                schema.meta.insert().values(key="schema_version", value=json.dumps(schema.SCHEMA_VERSION))
            )
        store_id = facts.get("store_id")
        if store_id is None:
            store_id = uuid.uuid4().hex
            conn.execute(schema.meta.insert().values(key="store_id", value=store_id))
        return str(store_id)


def _current_store_id(engine: Engine) -> str | None:
    """The store id when the store is complete and at :data:`schema.SCHEMA_VERSION`, else None."""
    with read_tx(engine, "opening the store") as conn:
        if not conn.dialect.has_table(conn, "meta"):
            return None
        facts = dict(conn.execute(select(schema.meta.c.key, schema.meta.c.value)).all())
    # every table of a version is created when a store reaches it, and a version that adds a table
    # bumps SCHEMA_VERSION: a store at this version has them all
    if facts.get("schema_version") != json.dumps(schema.SCHEMA_VERSION) or "store_id" not in facts:
        return None
    return str(facts["store_id"])


def read_schema(engine: Engine) -> str:
    """:func:`init_schema` for a store opened read-only: check the schema version, return the store id.

    Raises:
        StorageError: the database is not a vectorstore store, or needs a migration (open it writable
            once) or a newer vectorstore.
    """
    with read_tx(engine, "opening the store read-only") as conn:
        if not conn.dialect.has_table(conn, "meta"):
            raise StorageError("this database holds no vectorstore store (no meta table)")
        facts = dict(conn.execute(select(schema.meta.c.key, schema.meta.c.value)).all())
    version = int(json.loads(facts.get("schema_version", "0")))
    if version != schema.SCHEMA_VERSION:
        newer = version > schema.SCHEMA_VERSION
        raise StorageError(
            f"the store has schema {version}, this vectorstore reads {schema.SCHEMA_VERSION}: "
            + ("upgrade vectorstore" if newer else "open it once without read_only to migrate it")
        )
    return str(facts.get("store_id", "unknown"))
