"""The small JSON files kept beside checkpoints (PRM metadata, manifests): one way to write and read them."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from data_prep.io import read_json, write_json

Record = TypeVar("Record")


def write_json_record(record: Any, path: str | Path) -> Path:
    """Write a dataclass as sorted, indented JSON."""
    return write_json(path, asdict(record), sort_keys=True)


def read_json_record(cls: type[Record], path: str | Path, *, missing: str) -> Record:
    """Read a dataclass written by `write_json_record`; every failure names the file.

    `missing` completes the error of an absent file ("<path> not found: <missing>").
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {missing}")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    try:
        return cls(**raw)
    except TypeError as error:
        raise ValueError(f"{path}: {error}") from error
