"""Reads and writes of records, metadata rows and the change log. Callers own the transaction."""

from __future__ import annotations

import functools
import json
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    update,
)

from vectorstore.db.schema import changes, collections, meta, metadata_kv, records
from vectorstore.db.schema import vectors as vectors_table
from vectorstore.errors import ChangeLogTrimmedError, DatabaseCorruptedError

__all__ = ["Repository", "StoredRecord", "VectorRows", "hydrate_stmt", "kv_rows"]

_CHUNK = 5000  # ids per IN (...) list, well under SQLite's bound-variable limit


def _floor_key(collection_id: int) -> str:
    return f"log_floor:{collection_id}"


def _chunks(seq: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


# Rows per executemany. The driver's executemany loop runs in C and gives the GIL up only for each
# row's sqlite3_step, taking it straight back, so a query thread waiting for the GIL could wait out a
# whole 5,000-row insert (tens to hundreds of ms on 2 cores); between chunks Python bytecode runs and
# the interpreter hands the GIL over within its switch interval.
_INSERT_CHUNK = 256


def _insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` in :data:`_INSERT_CHUNK`-row executemany calls."""
    stmt = insert(table)
    for part in _chunks(rows, _INSERT_CHUNK):
        conn.execute(stmt, list(part))


def kv_rows(collection_id: int, key: int, metadata: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The typed, indexed rows that make a record's metadata filterable."""
    rows: list[dict[str, Any]] = []
    if not metadata:
        return rows
    for name, value in metadata.items():
        for v in value if isinstance(value, list) else [value]:
            row = {
                "collection_id": collection_id,
                "record_key": key,
                "key": name,
                "str_value": None,
                "num_value": None,
            }
            if v is None:
                row["vtype"] = "z"
            elif isinstance(v, bool):
                row["vtype"], row["num_value"] = "b", float(v)
            elif isinstance(v, (int, float)):
                row["vtype"], row["num_value"] = "n", float(v)
            else:
                row["vtype"], row["str_value"] = "s", str(v)
            rows.append(row)
    return rows


def metadata_json(metadata: Mapping[str, Any] | None) -> str | None:
    """A record's metadata as stored in ``records.metadata``: compact JSON (no spaces after the
    separators: one byte per key and value less on every row), or None."""
    return None if metadata is None else json.dumps(metadata, separators=(",", ":"))


def _read_json(text: str) -> Any:
    """``json.loads`` for JSON this library wrote itself, through the C scanner without the wrapper layers."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        return json.loads(text)  # raises the usual JSONDecodeError
    return value if end == len(text) else json.loads(text)


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__, untyped in typeshed


@dataclass(frozen=True)
class VectorRows:
    """Stored vectors read back from SQLite: the good ones, and the keys whose bytes fail their CRC."""

    keys: np.ndarray
    vectors: np.ndarray
    bad_keys: np.ndarray

    @classmethod
    def checked(cls, rows: Sequence[Sequence[Any]], dim: int) -> VectorRows:
        """From ``(key, vector bytes, crc)`` rows; rows written before schema 2 (crc NULL) are trusted."""
        # column-wise, at C speed: this runs on every query
        keys, blobs, crcs = zip(*rows) if rows else ((), (), ())
        bad: list[int] = []
        if list(map(zlib.crc32, blobs)) != list(crcs):
            crc = zlib.crc32
            fine = [c is None or crc(b) == c for b, c in zip(blobs, crcs)]
            bad = [int(k) for k, ok in zip(keys, fine) if not ok]
            keys = tuple(k for k, ok in zip(keys, fine) if ok)
            blobs = tuple(b for b, ok in zip(blobs, fine) if ok)
        vecs = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(keys), dim)
        return cls(np.array(keys, dtype=np.int64), vecs, np.array(bad, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record as stored."""

    key: int
    id: str
    document: str | None
    metadata: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> StoredRecord:
        """From ``(key, id, document, metadata JSON, ...)``."""
        return cls(int(row[0]), row[1], row[2], _read_json(row[3]) if row[3] is not None else None)


@functools.lru_cache(maxsize=256)
def hydrate_stmt(n: int) -> Select[Any]:
    """The hydration SELECT of ``n`` keys, bound as ``k0 .. k{n-1}`` (one statement shape per ``n``)."""
    return select(records.c.key, records.c.id, records.c.document, records.c.metadata).where(
        records.c.key.in_([bindparam(f"k{i}") for i in range(n)])
    )


class Repository:
    """SQL for one database; every method takes the connection of the caller's transaction."""

    # ---------------------------------------------------------------- collections
    @staticmethod
    def create_collection(conn: Connection, name: str, config: dict[str, Any]) -> int:
        result = conn.execute(
            insert(collections).values(
                name=name, config=json.dumps(config, sort_keys=True), created_at=time.time()
            )
        )
        pk = result.inserted_primary_key
        assert pk is not None
        return int(pk[0])

    @staticmethod
    def get_collection(conn: Connection, name: str) -> tuple[int, dict[str, Any], float] | None:
        """(id, config, created_at) of the named collection, or None."""
        row = conn.execute(
            select(collections.c.id, collections.c.config, collections.c.created_at).where(
                collections.c.name == name
            )
        ).first()
        return (int(row[0]), json.loads(row[1]), float(row[2])) if row else None

    @staticmethod
    def list_collections(conn: Connection) -> list[tuple[str, dict[str, Any]]]:
        rows = conn.execute(
            select(collections.c.name, collections.c.config).order_by(collections.c.name)
        ).all()
        return [(r[0], json.loads(r[1])) for r in rows]

    @staticmethod
    def delete_collection(conn: Connection, collection_id: int) -> None:
        conn.execute(delete(metadata_kv).where(metadata_kv.c.collection_id == collection_id))
        conn.execute(
            delete(vectors_table).where(
                vectors_table.c.key.in_(select(records.c.key).where(records.c.collection_id == collection_id))
            )
        )
        conn.execute(delete(records).where(records.c.collection_id == collection_id))
        conn.execute(delete(changes).where(changes.c.collection_id == collection_id))
        conn.execute(delete(collections).where(collections.c.id == collection_id))

    # ---------------------------------------------------------------- keys
    @staticmethod
    def allocate_keys(conn: Connection, n: int) -> np.ndarray:
        """``n`` fresh int64 keys, never reused (a counter in ``meta``; call inside a write transaction)."""
        row = conn.execute(select(meta.c.value).where(meta.c.key == "next_key")).first()
        start = (
            int(row[0])
            if row
            else int(conn.execute(select(func.coalesce(func.max(records.c.key), 0))).scalar_one()) + 1
        )
        if row:
            conn.execute(update(meta).where(meta.c.key == "next_key").values(value=str(start + n)))
        else:
            conn.execute(insert(meta).values(key="next_key", value=str(start + n)))
        return np.arange(start, start + n, dtype=np.int64)

    @staticmethod
    def keys_for_ids(conn: Connection, collection_id: int, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in _chunks(list(ids)):
            rows = conn.execute(
                select(records.c.id, records.c.key).where(
                    records.c.collection_id == collection_id, records.c.id.in_(part)
                )
            ).all()
            out.update({r[0]: int(r[1]) for r in rows})
        return out

    # ---------------------------------------------------------------- writes
    @staticmethod
    def _log(conn: Connection, collection_id: int, keys: Sequence[int], op: str) -> None:
        if keys:
            _insert_many(
                conn,
                changes,
                [{"collection_id": collection_id, "record_key": int(k), "op": op} for k in keys],
            )

    @staticmethod
    def insert_records(
        conn: Connection,
        collection_id: int,
        keys: np.ndarray,
        ids: Sequence[str],
        documents: Sequence[str | None] | None,
        metadatas: Sequence[dict[str, Any] | None] | None,
        vectors: np.ndarray,
    ) -> None:
        rows = []
        vec_rows = []
        kv: list[dict[str, Any]] = []
        for i, (key, rid) in enumerate(zip(keys.tolist(), ids)):
            md = metadatas[i] if metadatas is not None else None
            rows.append(
                {
                    "key": key,
                    "collection_id": collection_id,
                    "id": rid,
                    "document": documents[i] if documents is not None else None,
                    "metadata": metadata_json(md),
                }
            )
            blob = vectors[i].tobytes()
            vec_rows.append({"key": key, "vector": blob, "crc": zlib.crc32(blob)})
            kv.extend(kv_rows(collection_id, key, md))
        _insert_many(conn, records, rows)
        _insert_many(conn, vectors_table, vec_rows)
        if kv:
            _insert_many(conn, metadata_kv, kv)
        Repository._log(conn, collection_id, keys.tolist(), "u")

    @staticmethod
    def unchanged(
        conn: Connection,
        keys: Sequence[int],
        documents: Sequence[str | None] | None,
        metadatas: Sequence[dict[str, Any] | None] | None,
        vectors: np.ndarray,
    ) -> set[int]:
        """Positions ``i`` whose stored record already has ``documents[i]`` and ``metadatas[i]`` (each
        when given) and the bytes of ``vectors[i]``: overwriting them would change nothing."""
        stored: dict[int, tuple[Any, Any, bytes]] = {}
        for part in _chunks(list(keys)):
            stmt = (
                select(records.c.key, records.c.document, records.c.metadata, vectors_table.c.vector)
                .join_from(records, vectors_table, vectors_table.c.key == records.c.key)
                .where(records.c.key.in_(part))
            )
            stored.update((int(r[0]), (r[1], r[2], r[3])) for r in conn.execute(stmt))
        same: set[int] = set()
        for i, key in enumerate(keys):
            row = stored.get(int(key))
            if row is None or row[2] != vectors[i].tobytes():
                continue
            if documents is not None and row[0] != documents[i]:
                continue
            if metadatas is None:
                same.add(i)
                continue
            old_meta = _read_json(row[1]) if row[1] is not None else None
            if json.dumps(old_meta, sort_keys=True) == json.dumps(metadatas[i], sort_keys=True):
                same.add(i)
        return same

    @staticmethod
    def update_records(
        conn: Connection,
        collection_id: int,
        keys: Sequence[int],
        documents: Sequence[str | None] | None,
        metadatas: Sequence[dict[str, Any] | None] | None,
        vectors: np.ndarray | None,
    ) -> None:
        """Overwrite the given fields (None for a whole argument leaves that field alone)."""
        for i, key in enumerate(keys):
            values: dict[str, Any] = {}
            if documents is not None:
                values["document"] = documents[i]
            if metadatas is not None:
                values["metadata"] = metadata_json(metadatas[i])
            if values:
                conn.execute(update(records).where(records.c.key == key).values(**values))
            if vectors is not None:
                blob = vectors[i].tobytes()
                conn.execute(
                    update(vectors_table)
                    .where(vectors_table.c.key == key)
                    .values(vector=blob, crc=zlib.crc32(blob))
                )
        if metadatas is not None:
            for part in _chunks(list(keys)):
                conn.execute(delete(metadata_kv).where(metadata_kv.c.record_key.in_(part)))
            kv = [row for key, md in zip(keys, metadatas) for row in kv_rows(collection_id, int(key), md)]
            if kv:
                _insert_many(conn, metadata_kv, kv)
        if vectors is not None:
            Repository._log(conn, collection_id, list(keys), "u")

    @staticmethod
    def delete_records(conn: Connection, collection_id: int, keys: Sequence[int]) -> None:
        for part in _chunks(list(keys)):
            conn.execute(delete(metadata_kv).where(metadata_kv.c.record_key.in_(part)))
            conn.execute(delete(vectors_table).where(vectors_table.c.key.in_(part)))
            conn.execute(delete(records).where(records.c.key.in_(part)))
        Repository._log(conn, collection_id, list(keys), "d")

    # ---------------------------------------------------------------- change log
    @staticmethod
    def max_seq(conn: Connection, collection_id: int) -> int:
        return int(
            conn.execute(
                select(func.coalesce(func.max(changes.c.seq), 0)).where(
                    changes.c.collection_id == collection_id
                )
            ).scalar_one()
        )

    @staticmethod
    def log_floor(conn: Connection, collection_id: int) -> int:
        """The lowest change seq still in the log of this collection (0: never trimmed)."""
        row = conn.execute(select(meta.c.value).where(meta.c.key == _floor_key(collection_id))).first()
        return int(json.loads(row[0])) if row is not None else 0

    @staticmethod
    def trim_log(conn: Connection, collection_id: int, below: int) -> int:
        """Delete the collection's change rows with seq < ``below`` (every derived file this store
        keeps reflects them) and record the new floor; returns the rows deleted."""
        deleted = conn.execute(
            changes.delete().where(changes.c.collection_id == collection_id, changes.c.seq < below)
        ).rowcount
        floor = max(below, Repository.log_floor(conn, collection_id))
        conn.execute(meta.delete().where(meta.c.key == _floor_key(collection_id)))
        conn.execute(meta.insert().values(key=_floor_key(collection_id), value=json.dumps(floor)))
        return int(deleted or 0)

    @staticmethod
    def changed_keys_since(
        conn: Connection, collection_id: int, seq: int
    ) -> tuple[int, dict[int, tuple[str, int]]]:
        """(newest seq, key -> (last op, its seq)) for changes after ``seq``.

        Raises:
            ChangeLogTrimmedError: changes after ``seq`` were trimmed from the log, so they cannot be
                replayed: the caller rebuilds from the stored records instead.
        """
        floor = Repository.log_floor(conn, collection_id)
        if seq + 1 < floor:
            raise ChangeLogTrimmedError(
                f"the change log of collection {collection_id} starts at seq {floor}; state at seq {seq} "
                "cannot be caught up by replay"
            )
        rows = conn.execute(
            select(changes.c.seq, changes.c.record_key, changes.c.op)
            .where(changes.c.collection_id == collection_id, changes.c.seq > seq)
            .order_by(changes.c.seq)
        ).all()
        last: dict[int, tuple[str, int]] = {}
        newest = seq
        for s, key, op in rows:
            last[int(key)] = (op, int(s))
            newest = int(s)
        return newest, last

    # ---------------------------------------------------------------- reads
    @staticmethod
    def vectors_for(conn: Connection, keys: Sequence[int], dim: int) -> VectorRows:
        """The stored vectors of the given keys that are present, checked against their CRCs.

        Keys of one batch are mostly consecutive: a dense set is read as one key range (a primary-key
        range scan, no bound list) and filtered here."""
        if len(keys) > 64:
            arr = np.asarray(keys, dtype=np.int64)
            lo, hi = int(arr.min()), int(arr.max())
            if hi - lo + 1 <= 2 * len(arr):
                ranged = conn.execute(
                    select(vectors_table.c.key, vectors_table.c.vector, vectors_table.c.crc).where(
                        vectors_table.c.key.between(lo, hi)
                    )
                ).all()
                wanted = set(arr.tolist())
                return VectorRows.checked([r for r in ranged if r[0] in wanted], dim)
        rows: list[Any] = []
        for part in _chunks(list(keys)):
            rows.extend(
                conn.execute(
                    select(vectors_table.c.key, vectors_table.c.vector, vectors_table.c.crc).where(
                        vectors_table.c.key.in_(part)
                    )
                )
            )
        return VectorRows.checked(rows, dim)

    @staticmethod
    def iter_vectors(
        conn: Connection, collection_id: int, dim: int, batch: int = 20000
    ) -> Iterator[VectorRows]:
        """All stored vectors of a collection in batches (checked against their CRCs), for rebuilding indexes."""
        result = conn.execution_options(stream_results=True).execute(
            select(vectors_table.c.key, vectors_table.c.vector, vectors_table.c.crc)
            .join(records, records.c.key == vectors_table.c.key)
            .where(records.c.collection_id == collection_id)
            .order_by(vectors_table.c.key)
        )
        while True:
            rows = result.fetchmany(batch)
            if not rows:
                return
            yield VectorRows.checked(rows, dim)

    @staticmethod
    def keys_matching_stmt(
        collection_id: int,
        cond: ColumnElement[bool] | None,
        *,
        driven_by_filter: bool = False,
        sqlite: bool = True,
    ) -> Select[Any]:
        """SELECT of the keys of the collection's records matching ``cond``.

        ``driven_by_filter``: the condition has an indexed positive term; on SQLite the unary ``+``
        keeps the planner from scanning the whole collection through the collection_id index.
        """
        if driven_by_filter and sqlite:
            scope = literal_column("+records.collection_id") == collection_id
        else:
            scope = records.c.collection_id == collection_id
        stmt = select(records.c.key).where(scope)
        return stmt.where(cond) if cond is not None else stmt

    @staticmethod
    def keys_matching(conn: Connection, collection_id: int, cond: ColumnElement[bool] | None) -> np.ndarray:
        """Keys of the collection's records matching ``cond``."""
        stmt = Repository.keys_matching_stmt(collection_id, cond, sqlite=conn.dialect.name == "sqlite")
        return np.fromiter((r[0] for r in conn.execute(stmt)), dtype=np.int64)

    @staticmethod
    def count(conn: Connection, collection_id: int) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(records).where(records.c.collection_id == collection_id)
            ).scalar_one()
        )

    @staticmethod
    def records_for_keys(conn: Connection, keys: Sequence[int]) -> list[StoredRecord]:
        """Ids, documents and metadata of the given keys (in key order)."""
        out: list[StoredRecord] = []
        for part in _chunks(sorted(int(k) for k in keys)):
            stmt = (
                select(records.c.key, records.c.id, records.c.document, records.c.metadata)
                .where(records.c.key.in_(part))
                .order_by(records.c.key)
            )
            out.extend(StoredRecord.from_row(row) for row in conn.execute(stmt))
        return out

    @staticmethod
    def select_records(
        conn: Connection,
        collection_id: int,
        *,
        ids: Sequence[str] | None,
        cond: ColumnElement[bool] | None,
        limit: int | None,
        offset: int | None,
        with_vectors: bool,
    ) -> list[tuple[StoredRecord, bytes | None]]:
        cols = [records.c.key, records.c.id, records.c.document, records.c.metadata]
        if with_vectors:
            cols.extend([vectors_table.c.vector, vectors_table.c.crc])
        stmt = select(*cols).where(records.c.collection_id == collection_id)
        if with_vectors:
            stmt = stmt.join_from(records, vectors_table, vectors_table.c.key == records.c.key)
        if ids is not None:
            stmt = stmt.where(records.c.id.in_(list(ids)))
        if cond is not None:
            stmt = stmt.where(cond)
        stmt = stmt.order_by(records.c.key)
        if limit is not None:
            stmt = stmt.limit(limit)
        if offset:
            stmt = stmt.offset(offset)
        out = []
        for row in conn.execute(stmt):
            if with_vectors and row[5] is not None and zlib.crc32(row[4]) != row[5]:
                raise DatabaseCorruptedError(
                    f"the stored vector of record {row[1]!r} fails its checksum (the database file was "
                    "damaged); run `vectorstore verify STORE --repair` to re-embed it from its document"
                )
            out.append((StoredRecord.from_row(row), row[4] if with_vectors else None))
        return out
