"""Strict YAML config files: a repeated key, malformed YAML or a top level that is not a mapping is one error
naming the file and line (PyYAML alone keeps the last of a repeated key without a word)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YAMLFileError(ValueError):
    """A config file that is missing, malformed, repeats a key or is not a mapping; the message names it."""


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file ({} for an empty one); any failure raises YAMLFileError naming the file
    (and the line, for malformed YAML or a repeated key)."""
    path = Path(path)
    if not path.is_file():
        raise YAMLFileError(f"config file {path} not found; pass an existing YAML file to --config")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise YAMLFileError(f"{path}: not valid UTF-8 (byte {error.start}); re-encode the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise YAMLFileError(f"{path}{line}: malformed YAML ({problem}); fix the syntax at that line") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise YAMLFileError(f"{path}: the top level must be a mapping of config keys, got {type(data).__name__}")
    return data
