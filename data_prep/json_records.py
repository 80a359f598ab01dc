"""The small JSON files kept beside checkpoints (PRM metadata, manifests): one way to write and read them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

Record = TypeVar("Record")


def write_json_record(record: Any, path: str | Path) -> Path:
    """Write a dataclass as sorted, indented JSON."""
    path = Path(path)
    path.write_text(json.dumps(asdict(record), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_json_record(cls: type[Record], path: str | Path, *, missing: str) -> Record:
    """Read a dataclass written by `write_json_record`; every failure names the file.

    `missing` completes the error of an absent file ("<path> not found: <missing>").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {missing}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    try:
        return cls(**raw)
    except TypeError as error:
        raise ValueError(f"{path}: {error}") from error
