"""JSONL reading and writing with errors that name the file and line, atomic writes and durable appends."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield `(line_no, row)` for each non-blank line of a JSONL file; `line_no` is 1-based.

    Raises ValueError naming the file and line for a line that is not UTF-8, not JSON, or not a JSON object.
    """
    path = Path(path)
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
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


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Write `rows` (dicts or records with `to_dict()`) to `path` atomically; return the number written.

    The rows go to a temporary file in the same directory, which replaces `path` only once complete,
    so readers never see a half-written file. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    count = 0
    try:
        with handle:
            for row in rows:
                handle.write(_to_line(row))
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return count


def append_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Append whole lines for `rows` to `path` and fsync; return the number appended.

    All rows are serialised before anything is written, so a bad row appends nothing. When the file does
    not end with a newline (an earlier write was cut off), the new rows start on a fresh line.
    """
    path = Path(path)
    lines = [_to_line(row) for row in rows]
    if not lines:
        return 0
    text = "".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab+") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                text = "\n" + text
        handle.write(text.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)
