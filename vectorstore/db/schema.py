"""SQLAlchemy Core schema. SQLite (or any SQLAlchemy database) is the single source of truth.

Tables:
    meta            key/value facts about the database: schema version, the store's random id
                    (derived files carry it), the next record key.
    collections     one row per collection; ``config`` is the JSON collection config.
    records         ids, documents and metadata JSON of every record; ``key`` is the int64 key the
                    vector indexes use.
    vectors         the float32 vector of every record (raw little-endian bytes) and its CRC32, by key.
    metadata_kv     one row per metadata value (one per element for lists), typed and indexed, so
                    filters are indexed lookups rather than a JSON scan of every row.
    changes         the change log: a monotonically increasing ``seq`` per write of a record, which
                    derived index files record and replay from.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

__all__ = [
    "SCHEMA_VERSION",
    "changes",
    "collections",
    "meta",
    "metadata",
    "metadata_kv",
    "records",
    "vectors",
]

SCHEMA_VERSION = 2

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

collections = Table(
    "collections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("config", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

records = Table(
    "records",
    metadata,
    # INTEGER PRIMARY KEY is SQLite's rowid: the int64 key every vector index stores.
    Column("key", Integer, primary_key=True, autoincrement=True),
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("id", String, nullable=False),
    Column("document", Text, nullable=True),
    Column("metadata", Text, nullable=True),
    UniqueConstraint("collection_id", "id", name="uq_records_collection_id"),
)

# Vectors live in their own table so that records rows stay small: filters and hydration touch
# many records per page instead of one 1.5 KB row per page.
vectors = Table(
    "vectors",
    metadata,
    Column(
        "key", Integer, ForeignKey("records.key", ondelete="CASCADE"), primary_key=True, autoincrement=False
    ),
    Column("vector", LargeBinary, nullable=False),
    # CRC32 of the vector bytes (schema 2): SQLite keeps no page checksums, so a flipped bit inside a
    # stored vector would otherwise pass integrity_check and be served silently.
    Column("crc", Integer, nullable=True),
)

metadata_kv = Table(
    "metadata_kv",
    metadata,
    Column("collection_id", Integer, nullable=False),
    Column("record_key", Integer, ForeignKey("records.key", ondelete="CASCADE"), nullable=False),
    Column("key", String, nullable=False),
    # 's' string, 'n' number, 'b' bool, 'z' null
    Column("vtype", String(1), nullable=False),
    Column("str_value", Text, nullable=True),
    Column("num_value", Float, nullable=True),
    # record_key last: the indexes cover filter lookups, which never touch the table itself. Every
    # lookup names its vtype as a literal, so the string index holds string rows only (a partial
    # index: numeric metadata costs it nothing); the numeric one holds every row, for the lookups of
    # numbers, booleans and nulls alike. Stores created before this keep a full string index, which
    # answers the same lookups.
    Index("ix_kv_num", "collection_id", "key", "vtype", "num_value", "record_key"),
    Index(
        "ix_kv_str",
        "collection_id",
        "key",
        "vtype",
        "str_value",
        "record_key",
        sqlite_where=text("vtype = 's'"),
        postgresql_where=text("vtype = 's'"),
    ),
    Index("ix_kv_record", "record_key"),
)

changes = Table(
    "changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("collection_id", Integer, nullable=False),
    Column("record_key", Integer, nullable=False),
    Column("op", String(1), nullable=False),  # 'u' upsert, 'd' delete
    Index("ix_changes_collection_seq", "collection_id", "seq"),
)
