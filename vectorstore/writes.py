"""The write path: embed documents while a writer thread fills one SQLite transaction, and the
transactions of add / upsert / update / delete.

Every write is one transaction (DESIGN invariant 3): :meth:`RecordWriter.commit` allocates keys,
inserts or overwrites each chunk of (positions, vectors) as it arrives and logs one change per
record; any failure, on the encoding side or the database side, rolls the whole batch back.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy import ColumnElement, Engine
from tqdm.auto import tqdm

from vectorstore.db.engine import read_tx, write_tx
from vectorstore.db.repository import Repository
from vectorstore.errors import DuplicateIDError, InvalidIDError
from vectorstore.results import WriteCounts
from vectorstore.validation import check_embeddings

if TYPE_CHECKING:
    from vectorstore.models.sentence_transformer import SentenceTransformer

__all__ = ["Chunks", "Committed", "RecordWriter", "WriteMode"]

WriteMode = Literal["add", "upsert"]
# (positions into the batch, their vectors), in any order of positions
Chunks = Iterator[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Committed:
    """What one write transaction committed."""

    keys: np.ndarray
    vectors: np.ndarray
    seq: int  # the change-log sequence of its last change
    counts: WriteCounts
    after: int = -1  # the collection's newest change-log sequence before it (-1: not known)

    @property
    def known(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """For :meth:`IndexState.catch_up`: vectors it need not read back from SQLite, and the
        change-log range ``(after, seq]`` its changes took."""
        return self.keys, self.vectors, self.seq, self.after


_ENCODE_CHUNK = 1024  # documents per encode step when ingest overlaps encoding with writing
_PROGRESS_MIN_DOCS = 2000
_DONE = object()


class RecordWriter:
    """Writes one collection's records.

    Args:
        engine: the store's engine.
        collection_id: the collection's row id.
        dim: its vector dimension.
        name: its name, for progress bars and messages.
    """

    def __init__(self, engine: Engine, collection_id: int, dim: int, name: str) -> None:
        self._engine = engine
        self._collection_id = collection_id
        self._dim = dim
        self._name = name

    # ------------------------------------------------------------------ embedding
    def encode_in_order(
        self, model: SentenceTransformer, documents: Sequence[str | None], show_progress_bar: bool | None
    ) -> Chunks:
        """(positions, vectors) chunks, longest documents first so batches pad little across the whole write."""
        n = len(documents)
        show = (
            show_progress_bar
            if show_progress_bar is not None
            else (n >= _PROGRESS_MIN_DOCS and sys.stderr.isatty())
        )
        order = np.argsort([-len(d or "") for d in documents], kind="stable")
        with tqdm(total=n, desc=f"Embedding {self._name}", unit="doc", disable=not show) as bar:
            for start in range(0, n, _ENCODE_CHUNK):
                idx = order[start : start + _ENCODE_CHUNK]
                # one bar for the whole write (this one), none per chunk from the encoder
                texts = [documents[i] or "" for i in idx]
                vecs = np.asarray(
                    model.encode_document(texts, batch_size=32, show_progress_bar=False), dtype=np.float32
                )
                bar.update(len(idx))
                yield idx, vecs

    def encode_all(
        self, model: SentenceTransformer, documents: Sequence[str | None], show_progress_bar: bool | None
    ) -> np.ndarray:
        """Every document's vector, in input order."""
        out = np.empty((len(documents), self._dim), dtype=np.float32)
        for idx, vecs in self.encode_in_order(model, documents, show_progress_bar):
            out[idx] = check_embeddings(vecs, len(idx), self._dim)
        return out

    # ------------------------------------------------------------------ add / upsert
    def reject_known(self, id_list: Sequence[str]) -> None:
        """Raise :class:`DuplicateIDError` for ids already stored (a cheap check before a long encode;
        the transaction checks again)."""
        with read_tx(self._engine) as conn:
            _reject_existing(Repository.keys_for_ids(conn, self._collection_id, id_list))

    def commit(
        self,
        id_list: list[str],
        docs: list[str | None] | None,
        metas: Sequence[dict[str, Any] | None] | None,
        chunks: Chunks,
        mode: WriteMode,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> Committed:
        """One transaction: check ids, allocate keys, insert/overwrite each chunk of (positions, vectors).

        ``on_commit(after, last)`` is called with the change-log range ``(after, last]`` of this write
        just before it commits (no other writer can commit in between: this one holds the lock)."""
        n = len(id_list)
        cid = self._collection_id
        with write_tx(self._engine) as conn:
            before = Repository.max_seq(conn, cid)  # we hold the write lock: later changes are ours
            existing = Repository.keys_for_ids(conn, cid, id_list)
            if mode == "add":
                _reject_existing(existing)
            is_new = np.array([rid not in existing for rid in id_list], dtype=bool)
            keys = np.empty(n, dtype=np.int64)
            if is_new.any():
                keys[is_new] = Repository.allocate_keys(conn, int(is_new.sum()))
            for i in np.nonzero(~is_new)[0].tolist():
                keys[i] = existing[id_list[i]]
            all_vecs = np.empty((n, self._dim), dtype=np.float32)
            unchanged = 0
            for span, vecs in chunks:
                all_vecs[span] = check_embeddings(vecs, len(span), self._dim)
                part_new = np.sort(span[is_new[span]]).tolist()
                part_old = np.sort(span[~is_new[span]]).tolist()
                if part_old:
                    # an upsert that changes nothing about a record writes nothing (no change-log row)
                    same = Repository.unchanged(
                        conn,
                        [int(keys[i]) for i in part_old],
                        [docs[i] for i in part_old] if docs is not None else None,
                        [metas[i] for i in part_old] if metas is not None else None,
                        all_vecs[part_old],
                    )
                    unchanged += len(same)
                    part_old = [i for j, i in enumerate(part_old) if j not in same]
                if part_new:
                    Repository.insert_records(
                        conn,
                        cid,
                        keys[part_new],
                        [id_list[i] for i in part_new],
                        [docs[i] for i in part_new] if docs is not None else None,
                        [metas[i] for i in part_new] if metas is not None else None,
                        all_vecs[part_new],
                    )
                if part_old:
                    Repository.update_records(
                        conn,
                        cid,
                        [int(keys[i]) for i in part_old],
                        # fields not given stay as they are: documents, metadatas alike
                        [docs[i] for i in part_old] if docs is not None else None,
                        [metas[i] for i in part_old] if metas is not None else None,
                        all_vecs[part_old],
                    )
            # we hold the write lock: the newest change is ours
            our_seq = Repository.max_seq(conn, cid)
            if on_commit is not None:
                on_commit(before, our_seq)
        added = int(is_new.sum())
        return Committed(
            keys, all_vecs, our_seq, WriteCounts(added, n - added - unchanged, unchanged), after=before
        )

    def commit_while_encoding(
        self,
        model: SentenceTransformer,
        id_list: list[str],
        docs: list[str | None],
        metas: Sequence[dict[str, Any] | None] | None,
        mode: WriteMode,
        show_progress_bar: bool | None,
        on_commit: Callable[[int, int], None] | None = None,
    ) -> Committed:
        """Encode on this thread (torch runs best on it) while a writer thread inserts the chunks
        already encoded into one open transaction; any failure on either side rolls it all back.
        ``on_commit`` as for :meth:`commit`."""
        q: queue.Queue[Any] = queue.Queue(maxsize=2)
        result: dict[str, Any] = {}

        def chunks() -> Chunks:
            while True:
                item = q.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        def write() -> None:
            try:
                result["ok"] = self.commit(id_list, docs, metas, chunks(), mode, on_commit)
            except BaseException as exc:
                result["error"] = exc

        writer = threading.Thread(target=write, name="vectorstore-writer", daemon=True)
        writer.start()

        def put(item: Any) -> bool:
            while writer.is_alive():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in self.encode_in_order(model, docs, show_progress_bar):
                if not put(item):
                    break  # the writer stopped (its error is raised below)
            put(_DONE)
        except BaseException as exc:
            put(exc)  # abort: the writer raises it inside the transaction, which rolls back
            writer.join()
            raise
        writer.join()
        if "error" in result:
            raise result["error"]
        ok: Committed = result["ok"]
        return ok

    # ------------------------------------------------------------------ update / delete
    def update(
        self,
        id_list: list[str],
        docs: list[str | None] | None,
        metas: Sequence[dict[str, Any] | None] | None,
        vectors: np.ndarray | None,
    ) -> None:
        """Overwrite the given fields of existing records (None for a whole argument leaves that field).

        Raises:
            InvalidIDError: listing ids that are not stored (nothing is written).
        """
        with write_tx(self._engine) as conn:
            existing = Repository.keys_for_ids(conn, self._collection_id, id_list)
            missing = [rid for rid in id_list if rid not in existing]
            if missing:
                raise InvalidIDError(
                    f"{len(missing)} id(s) are not in collection {self._name!r}, e.g. {missing[:5]}"
                )
            Repository.update_records(
                conn,
                self._collection_id,
                [existing[r] for r in id_list],
                docs,
                metas,
                vectors,
            )

    def delete(self, id_list: list[str] | None, cond: ColumnElement[bool] | None) -> int:
        """Delete records matching ``cond`` (all when None) and, when given, named by ``id_list``."""
        cid = self._collection_id
        with write_tx(self._engine) as conn:
            keys = Repository.keys_matching(conn, cid, cond)
            if id_list is not None:
                by_id = Repository.keys_for_ids(conn, cid, list(dict.fromkeys(id_list)))
                keys = np.intersect1d(keys, np.fromiter(by_id.values(), dtype=np.int64, count=len(by_id)))
            if len(keys):
                Repository.delete_records(conn, cid, keys.tolist())
        return len(keys)


def _reject_existing(existing: Mapping[str, int]) -> None:
    if existing:
        some = sorted(existing)[:5]
        raise DuplicateIDError(
            f"{len(existing)} id(s) already exist in the collection, e.g. {some}; use upsert to overwrite"
        )
