"""JSONL reading and writing with errors that name the file and line, atomic writes, durable appends and the one
repair of a line torn by a kill: the file infrastructure every command uses."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)


MAX_ROW_BYTES = 1 << 20
"""The most bytes one row of an input file (a problem, a labelled solution) may hold: MATH-500's longest row is
under 10 kB, PRM800K's under 100 kB; a larger one is a broken export, and a model handed it would tokenise
megabytes and fail minutes later (or truncate it silently) instead of naming the row now."""


def refuse_oversized_row(path: str | os.PathLike, where: str, size: int, limit: int | None = MAX_ROW_BYTES) -> None:
    """Raise ValueError naming the file and row when a row of `size` bytes is over `limit` (None: no limit)."""
    if limit is not None and size > limit:
        raise ValueError(f"{path}: {where}: {size / 2**20:.1f} MiB, over the {limit / 2**20:g} MiB one row may hold; "
                         "a row is one problem or solution: shorten or split it")


def read_jsonl(
    path: str | os.PathLike, *, skip_torn_tail: bool = False, max_row_bytes: int | None = MAX_ROW_BYTES
) -> Iterator[tuple[int, dict]]:
    """Yield `(line_no, row)` for each non-blank line of a JSONL file; `line_no` is 1-based.

    Raises ValueError naming the file and line for a line that is not UTF-8, not JSON, not a JSON object, or over
    `max_row_bytes` (None for files ttc writes itself, whose rows may hold many solutions).
    With `skip_torn_tail`, a last line without its newline that is not whole JSON (a write cut off by a kill) is
    skipped with a warning instead: readers of files that are appended to while a job may die use it.
    """
    path = Path(path)
    with path.open("rb") as handle:
        _refuse_other_formats(path, handle.read(4096))
        handle.seek(0)
        for line_no, raw in enumerate(handle, start=1):
            if skip_torn_tail and not raw.endswith(b"\n") and _is_torn(raw):
                logger.warning("%s: ignoring a torn last line (%d bytes) left by an interrupted write", path, len(raw))
                return
            refuse_oversized_row(path, f"line {line_no}", len(raw), max_row_bytes)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{path}: line {line_no}: not valid UTF-8 (byte {error.start} of the line); "
                    "re-encode the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}: line {line_no}: invalid JSON ({error.msg} at column {error.colno}); "
                    "each line must hold one JSON object"
                ) from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}: line {line_no}: expected a JSON object, got {type(row).__name__}; "
                    "each line must hold one JSON object"
                )
            yield line_no, row


def _to_line(row: Any) -> str:
    """One JSON line for a dict or a record with `to_dict()`."""
    if not isinstance(row, Mapping) and hasattr(row, "to_dict"):
        row = row.to_dict()
    if not isinstance(row, Mapping):
        raise TypeError(f"a JSONL row must be a dict or have to_dict(), got {type(row).__name__}")
    return json.dumps(dict(row), ensure_ascii=False) + "\n"


PARQUET_MAGIC = b"PAR1"
"""The first (and last) four bytes of every Parquet file."""

FileKind = Literal["jsonl", "json_array", "parquet", "dataset_dir", "empty", "unknown"]


def kind_of_head(head: bytes) -> FileKind:
    """What a file's first bytes say it holds: Parquet by its magic, a JSON array by a leading `[`, JSONL by a
    leading `{` (a UTF-8 byte-order mark and leading blank space are passed over)."""
    if head[:4] == PARQUET_MAGIC:
        return "parquet"
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "json_array"
    if text.startswith("{"):
        return "jsonl"
    return "unknown" if text else "empty"


def file_kind(path: str | os.PathLike) -> FileKind:
    """What a data file holds, told from its content rather than its suffix (a directory: a saved `datasets`
    dataset)."""
    path = Path(path)
    if path.is_dir():
        return "dataset_dir"
    with path.open("rb") as handle:
        return kind_of_head(handle.read(4096))


def _refuse_other_formats(path: Path, head: bytes) -> None:
    """A whole file in another format (Parquet, one JSON array) gets one error saying so, not a line-1 decode error."""
    kind = kind_of_head(head)
    if kind == "parquet":
        raise ValueError(f"{path}: a Parquet file, not JSON lines; this reads .jsonl files (one JSON object per line)")
    if kind == "json_array":
        raise ValueError(f"{path}: a JSON array, not JSON lines; write one JSON object per line (.jsonl)")


def _is_torn(raw: bytes) -> bool:
    """Whether a last line without its newline is a cut-off write: the start of a JSON object that is not whole.
    A line that does not start like a row is no torn row but a file of something else, left to fail by name."""
    if not raw.strip() or not raw.lstrip().startswith(b"{"):
        return False
    try:
        json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike: a write cut mid-row or mid-character
        return True
    return False


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on leaving the block it is fsynced and replaces `path`.

    So a reader (or a run killed meanwhile) never sees a half-written file; an error in the block removes the
    temporary file and leaves `path` as it was. Parent directories are created. For writers that take a path
    (Parquet, images); text goes through `atomic_write_lines`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_lines(path: str | os.PathLike, lines: Iterable[str]) -> int:
    """Write text `lines` to `path` atomically (`atomic_output`); return how many were written."""
    count = 0
    with atomic_output(path) as temporary, temporary.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line)
            count += 1
        handle.flush()
    return count


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace `path` with `text` atomically (see `atomic_write_lines`); returns the path."""
    atomic_write_lines(path, [text])
    return Path(path)


def write_json(path: str | os.PathLike, data: Any, *, indent: int = 2, sort_keys: bool = False) -> Path:
    """Write one JSON document (indented, with a final newline) atomically; returns the path."""
    return atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n")


def read_json(path: str | os.PathLike, *, fix: str = "") -> Any:
    """One JSON document; a missing, non-UTF-8 or malformed file raises naming it (`fix` says what to do)."""
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found{hint}")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not valid UTF-8 (byte {error.start}){hint}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error}){hint}") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Write `rows` (dicts or records with `to_dict()`) to `path` atomically; return the number written."""
    return atomic_write_lines(path, (_to_line(row) for row in rows))


def repair_torn_tail(path: str | os.PathLike) -> int:
    """Make an appended-to file end on a whole line before the next append; return the bytes dropped.

    A kill can only tear the last line. A last line without its newline that is whole JSON gets its newline;
    one that is not (a write cut off mid-row) is cut with a warning, so the rows it held are recomputed on resume
    and never duplicated. Reads only the file's tail. A missing or empty file is left alone.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with path.open("r+b") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return 0
        position, keep, block = size, 0, 1 << 16
        while position > 0:  # walk back block by block to the last newline
            start = max(0, position - block)
            handle.seek(start)
            cut = handle.read(position - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            position = start
        handle.seek(keep)
        if not _is_torn(handle.read(size - keep)):
            handle.seek(size)
            handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
            return 0
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    logger.warning("%s: dropped a torn last line (%d bytes) left by an interrupted write", path, size - keep)
    return size - keep


def append_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Append whole lines for `rows` to `path` and fsync; return the number appended.

    All rows are serialised before anything is written, so a bad row appends nothing; the file's torn last line,
    if a kill left one, is repaired first (`repair_torn_tail`), and the rows go out in one write.
    """
    path = Path(path)
    lines = [_to_line(row) for row in rows]
    payload = "".join(lines).encode("utf-8")
    if not payload:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_torn_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(lines)
