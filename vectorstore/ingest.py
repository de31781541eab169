"""Read documents from files for ingest: ``.jsonl``, ``.csv``, ``.txt`` (one per line), folders of ``.txt``/``.md``.

Every record gets a stable id (its id field, else ``<file>:<line>`` or the file's path in a folder),
so ingesting the same files again upserts the same records. A malformed line becomes a
:class:`SourceProblem` naming its file and line; nothing about it is half-read.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vectorstore.errors import InvalidInputError, InvalidMetadataError
from vectorstore.validation import check_metadatas

__all__ = ["FORMATS", "SourceProblem", "SourceRecord", "read_sources"]

FORMATS = (".jsonl", ".csv", ".txt", ".md")
_FOLDER_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class SourceRecord:
    """One document read from a file."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "file:line" or "file", for messages


@dataclass(frozen=True)
class SourceProblem:
    """A line or file that could not be read as a document."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass(frozen=True)
class FieldSpec:
    """Which fields of a structured row hold the id, the text and the metadata."""

    id_field: str | None = "id"
    text_field: str = "text"
    metadata_fields: tuple[str, ...] | None = None  # None: every other field


def _csv_value(value: str) -> Any:
    """CSV cells are text; numbers-looking cells become numbers so range filters work on them."""
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value


def _from_row(row: dict[str, Any], spec: FieldSpec, default_id: str, where: str) -> SourceRecord:
    if spec.text_field not in row:
        raise InvalidInputError(f"no {spec.text_field!r} field (fields: {sorted(row)[:10]})")
    text = row[spec.text_field]
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"field {spec.text_field!r} must be a non-empty string, got {text!r:.60}")
    rid: Any = default_id
    if spec.id_field is not None and spec.id_field in row:
        rid = row[spec.id_field]
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid) == "":
            raise InvalidInputError(
                f"field {spec.id_field!r} must be a non-empty string or int, got {rid!r:.60}"
            )
    skip = {spec.text_field, spec.id_field}
    names = spec.metadata_fields if spec.metadata_fields is not None else [k for k in row if k not in skip]
    metadata = {k: row[k] for k in names if k in row and row[k] is not None and row[k] != ""}
    try:
        check_metadatas([metadata], 1)
    except InvalidMetadataError as exc:
        raise InvalidInputError(str(exc).replace("metadata 0: ", "")) from exc
    return SourceRecord(str(rid), text, metadata, where)


def _read_jsonl(path: Path, label: str, spec: FieldSpec) -> Iterator[SourceRecord | SourceProblem]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{label}:{lineno}"
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise InvalidInputError(f"expected a JSON object, got {type(row).__name__}")
                yield _from_row(row, spec, where, where)
            except json.JSONDecodeError as exc:
                yield SourceProblem(where, f"invalid JSON: {exc.msg} (column {exc.colno})")
            except InvalidInputError as exc:
                yield SourceProblem(where, str(exc))


def _read_csv(path: Path, label: str, spec: FieldSpec) -> Iterator[SourceRecord | SourceProblem]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return
        for row in reader:
            where = f"{label}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                yield SourceProblem(where, f"expected {len(reader.fieldnames)} columns")
                continue
            try:
                values = {
                    k: (v if k in (spec.text_field, spec.id_field) else _csv_value(v)) for k, v in row.items()
                }
                yield _from_row(values, spec, where, where)
            except InvalidInputError as exc:
                yield SourceProblem(where, str(exc))


def _read_lines(path: Path, label: str) -> Iterator[SourceRecord | SourceProblem]:
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if text:
                where = f"{label}:{lineno}"
                yield SourceRecord(where, text, {"source": label, "line": lineno}, where)


def _read_folder(folder: Path, label: str) -> Iterator[SourceRecord | SourceProblem]:
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _FOLDER_SUFFIXES):
        rel = f"{label}/{path.relative_to(folder).as_posix()}"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as exc:
            yield SourceProblem(rel, f"not UTF-8 text ({exc.reason})")
            continue
        if not text:
            yield SourceProblem(rel, "empty file")
            continue
        yield SourceRecord(rel, text, {"source": rel}, rel)


def read_sources(
    paths: Sequence[str | os.PathLike[str]],
    *,
    id_field: str | None = "id",
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
) -> Iterator[SourceRecord | SourceProblem]:
    """Records (and problems) from files and folders, in order.

    Args:
        paths: ``.jsonl`` / ``.csv`` files (one object or row per record), ``.txt`` / ``.md`` files
            (one document per non-empty line) and folders (every ``.txt`` / ``.md`` file below is one
            document).
        id_field: the field holding the id in ``.jsonl`` / ``.csv``; records without it get
            ``<file>:<line>``.
        text_field: the field holding the document.
        metadata_fields: fields to keep as metadata (default: every other field).

    Raises:
        InvalidInputError: a path that does not exist or has an unsupported suffix.
    """
    spec = FieldSpec(id_field, text_field, tuple(metadata_fields) if metadata_fields is not None else None)
    for raw in paths:
        path = Path(raw)
        label = os.fspath(raw)
        if path.is_dir():
            yield from _read_folder(path, label.rstrip("/"))
            continue
        if not path.is_file():
            raise InvalidInputError(f"{label}: no such file or folder")
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            yield from _read_jsonl(path, label, spec)
        elif suffix == ".csv":
            yield from _read_csv(path, label, spec)
        elif suffix in (".txt", ".md"):
            yield from _read_lines(path, label)
        else:
            raise InvalidInputError(
                f"{label}: unsupported file type {suffix!r}; expected one of {list(FORMATS)}"
            )
