"""``Store.verify``: check the truth and every derived file against it, and optionally repair.

What is checked:

1. SQLite's own ``PRAGMA integrity_check`` (page structure, indexes) — SQLite only;
2. every stored vector against its CRC32 (schema 2), so a flipped bit inside a vector is found;
3. each collection's saved index files: every file's full CRC, that they belong to this database and
   collection, and that the vector cache agrees with SQLite — every record unchanged since the files'
   sequence is in the cache with the same float32 vector and nothing else is — and the index holds the
   same keys as the cache.

``repair=True`` re-embeds damaged vectors from their documents (when the collection has a model and
the record a document) and rebuilds the derived files of any collection whose files are wrong. A
damaged database structure cannot be repaired here: restore it from a backup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import text

from vectorstore.db.engine import read_tx, write_tx
from vectorstore.db.repository import Repository
from vectorstore.derived_files import has_saved_files, load_pair
from vectorstore.errors import ChangeLogTrimmedError, IncompatibleIndexError, IndexCorruptedError

if TYPE_CHECKING:
    from vectorstore.collection import Collection
    from vectorstore.index_state import IndexState
    from vectorstore.store import Store

__all__ = ["Problem", "VerifyReport", "verify_store"]

logger = logging.getLogger(__name__)

# A code-only index (faiss-hnsw-sq) agrees with SQLite where each decoded vector lies within this share
# of the stored vector's length of it (8-bit codes: ~1 %; another record's vector: ~140 %).
_CODE_TOLERANCE = 0.2


@dataclass(frozen=True)
class Problem:
    """One thing found wrong.

    Attributes:
        where: ``"database"`` or ``"collection NAME"``.
        what: what is wrong, in one line.
        repaired: whether ``repair=True`` fixed it.
    """

    where: str
    what: str
    repaired: bool = False


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`Store.verify` found.

    Attributes:
        problems: everything found wrong (repaired or not).
        collections: the collections checked.
        vectors_checked: stored vectors whose checksum was verified.
    """

    problems: list[Problem] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    vectors_checked: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong that was not repaired."""
        return all(p.repaired for p in self.problems)


def verify_store(store: Store, *, repair: bool = False) -> VerifyReport:
    """See the module docstring."""
    problems: list[Problem] = []
    if store.engine.dialect.name == "sqlite":
        with read_tx(store.engine, "running integrity_check") as conn:
            rows = [r[0] for r in conn.execute(text("PRAGMA integrity_check"))]
        if rows != ["ok"]:
            problems.append(Problem("database", "integrity_check: " + "; ".join(map(str, rows[:5]))))
    names = store.list_collections()
    checked = 0
    for name in names:
        col = store.get_collection(name)
        state = store._state_of(name)
        where = f"collection {name}"
        checked += _check_vectors(col, state, where, repair, problems)
        _check_files(col, state, where, repair, problems)
    return VerifyReport(problems, names, checked)


def _check_vectors(
    col: Collection, state: IndexState, where: str, repair: bool, problems: list[Problem]
) -> int:
    bad: list[int] = []
    n = 0
    with read_tx(state.engine, "reading stored vectors to verify them") as conn:
        for part in Repository.iter_vectors(conn, col.id, col.dim):
            n += len(part.keys) + len(part.bad_keys)
            bad.extend(part.bad_keys.tolist())
    if not bad:
        return n
    with read_tx(state.engine) as conn:
        records = Repository.records_for_keys(conn, bad)
    fixable = [r for r in records if r.document is not None] if col.model_name is not None else []
    if repair and fixable:
        vectors = np.asarray(col.model.encode_document([r.document or "" for r in fixable]), dtype=np.float32)
        with write_tx(state.engine, "re-embedding damaged vectors") as conn:
            Repository.update_records(conn, col.id, [r.key for r in fixable], None, None, vectors)
        state.catch_up()
    fixed = {r.key for r in fixable} if repair else set()
    for r in records:
        how = (
            "re-embedded from its document"
            if r.key in fixed
            else (
                "repairable by re-embedding its document (verify --repair)"
                if r in fixable
                else "not repairable here (no model or no document): upsert its vector again"
            )
        )
        problems.append(
            Problem(where, f"record {r.id!r}: the stored vector fails its checksum; {how}", r.key in fixed)
        )
    return n


def _check_files(
    col: Collection, state: IndexState, where: str, repair: bool, problems: list[Problem]
) -> None:
    directory = state.directory
    if directory is None or not has_saved_files(directory):
        return
    with read_tx(state.engine, "reading the change log") as conn:
        newest = Repository.max_seq(conn, col.id)
    found: str | None = None
    try:
        saved = load_pair(directory, state.spec, state.identity, newest, verify="full")
    except (IndexCorruptedError, IncompatibleIndexError) as exc:
        found = str(exc)
    else:
        try:
            found = _disagreement(col, state, saved.vectors, saved.index, saved.sequence)
        except ChangeLogTrimmedError as exc:  # older than the compacted log: not checkable, stale
            found = str(exc)
    if found is None:
        return
    if repair:
        state.rebuild()
        state.persist()
    problems.append(
        Problem(where, f"saved index files: {found}" + ("; rebuilt from SQLite" if repair else ""), repair)
    )


def _disagreement(col: Collection, state: IndexState, cache: object, index: object, seq: int) -> str | None:
    """Why the saved files disagree with SQLite at their sequence, or None."""
    from indexers import BaseIndex
    from indexers.exact import ExactIndex
    from indexers.scoring import normalize_rows
    from vectorstore.vector_cache import SharedVectors, vector_cache_for

    assert (cache is None or isinstance(cache, ExactIndex)) and isinstance(index, BaseIndex)
    # an index of codes rescored from SQLite has no cache of its own: its decoded codes are compared
    # with the truth, within the codes' precision
    coded = index.rescore_from_truth and cache is None
    vectors = SharedVectors(index) if coded else vector_cache_for(index, cache)
    # the index's own storage (where it is the cache) holds cosine vectors at unit length
    unit = not vectors.raw and index.metric == "cosine"
    with read_tx(state.engine, "reading stored vectors to verify index files") as conn:
        _, changed = Repository.changed_keys_since(conn, col.id, seq)
        truth_keys: list[np.ndarray] = []
        damaged: set[int] = set()  # reported on their own by _check_vectors
        for part in Repository.iter_vectors(conn, col.id, col.dim):
            damaged.update(part.bad_keys.tolist())
            keep = np.array([k not in changed for k in part.keys.tolist()], dtype=bool)
            keys = part.keys[keep]
            truth_keys.append(keys)
            if len(keys):
                present = vectors.contains_many(keys)
                if not present.all():
                    return f"{int((~present).sum())} stored record(s) missing from the vector cache"
                held, truth = vectors.get_vectors(keys), part.vectors[keep]
                want = normalize_rows(truth) if unit else truth
                if coded:
                    agree = bool(
                        np.all(
                            np.linalg.norm(held - want, axis=1)
                            <= _CODE_TOLERANCE * np.linalg.norm(want, axis=1) + 1e-6
                        )
                    )
                elif unit:
                    agree = np.allclose(held, want, rtol=0, atol=1e-6)
                else:
                    agree = np.array_equal(held, want)
                if not agree:
                    return "the vector cache holds vectors that differ from the stored ones"
    expected = np.concatenate(truth_keys) if truth_keys else np.empty(0, np.int64)
    cached = vectors.stored_keys()
    unchanged_cached = np.array(
        [k for k in cached.tolist() if k not in changed and k not in damaged], dtype=np.int64
    )
    if len(unchanged_cached) != len(expected):
        return (
            f"the vector cache holds {len(unchanged_cached) - len(expected)} record(s) SQLite does not have"
        )
    if set(index.keys().tolist()) != set(cached.tolist()):
        return "the index and the vector cache hold different keys"
    return None
