"""The config engine: config dataclasses filled from a strict YAML file and overridden by typed CLI flags.

Rules: a YAML file may not repeat a key (the error names both lines); every YAML key and CLI flag must be a field
(the error names the file or flag, the key, and the closest known name); values are checked (YAML) or converted
(CLI text) by the field's type hint; CLI beats YAML beats the field's default; a field's help is the attribute
docstring under it. A field may carry a hook in its metadata, read here and by the flag builder
(`inference.cli.add_config_arguments`), never a check of a particular class or field name:

- `metadata={"keyed_settings": KeyedSettings(...)}`: a mapping of names to per-name settings,
  `<field>.<name>.<setting>`, each checked and typed by that name's Settings dataclass;
- `metadata={"keyed_values": KeyedValues(...)}`: a mapping with known keys, one `--<field>.<key>` flag each.

Libraries checked before writing this (facts from their docs and a trial of the versions named):
- jsonargparse 4.53.0: nested `--section.key` flags and attribute-docstring help (with
  `docstring_parse_attribute_docstrings`), unknown keys refused, but a repeated YAML key silently keeps the last
  value, the unknown-key error names neither the file nor a close match ("Group 'sweep' does not accept option
  'max_nn'"), and a `dict[str, dict]` field is not checked per key against a per-name dataclass.
- draccus 0.11.6: nested flags and docstring help, unknown YAML keys refused ("The fields `max_nn` are not valid
  for Sweep", no file, no close match), a repeated YAML key silently keeps the last value, no per-name settings.
- tyro 1.0.17: suggests close flag names, but reads no config file (its docs load YAML by hand and pass it as
  `default=`, so repeated keys and errors naming the file are left to the caller), and a `dict[str, dict]` field
  takes untyped key-value text, not checked per name.
- transformers.HfArgumentParser / trl.TrlParser: flat dataclasses only (a dataclass field becomes one `--sweep`
  text flag, `--sweep.max_n` is refused), `parse_yaml_file` keeps the last of a repeated key, unknown keys are
  listed without a close match or file ("Some keys are not used by the HfArgumentParser: ['sede']"), help does not
  read attribute docstrings.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from data_prep.yaml_files import YAMLFileError, load_yaml_mapping


class ConfigError(ValueError):
    """A config file or flag breaks a rule; the message names the key, where it came from, and the fix."""


# --------------------------------------------------------------------------- field hooks


@dataclass(frozen=True)
class KeyedSettings:
    """Hook of a `dict[str, dict]` field mapping names to settings: `<field>.<name>.<setting>`, each name's keys
    checked and typed by the Settings dataclass `settings_of(name)`."""

    known_keys: Callable[[], Sequence[str]]
    """The known names (called when needed, so a registry can be imported late)."""
    settings_of: Callable[[str], type]
    """The Settings dataclass of a known name."""
    reserved: Mapping[str, str] = field(default_factory=dict)
    """Settings fields a section may not set -> the reason (where the value comes from instead)."""
    noun: str = "name"
    """What a name is, in messages (`strategy`)."""
    note: str = ""
    """Said after each name's settings in `--help` (e.g. where the reserved fields come from)."""
    example: str = ""
    """A `<name>.<setting> VALUE` example for the message about a bare `--<field> VALUE`."""


@dataclass(frozen=True)
class KeyedValues:
    """Hook of a `dict[str, X]` field whose keys are known: one `--<field>.<key>` flag per key in `--help`."""

    known_keys: Callable[[], Sequence[str]]
    """The known keys (called when needed)."""
    doc: str = ""
    """Help of each key's flag."""


def keyed_settings(spec: dataclasses.Field) -> KeyedSettings | None:
    """The field's KeyedSettings hook, if it has one."""
    return spec.metadata.get("keyed_settings")


def keyed_values(spec: dataclasses.Field) -> KeyedValues | None:
    """The field's KeyedValues hook, if it has one."""
    return spec.metadata.get("keyed_values")


# --------------------------------------------------------------------------- documentation from the source


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
        for statement, following in zip(body, body[1:]):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


# --------------------------------------------------------------------------- YAML loading


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file; malformed YAML or a repeated key raises ConfigError naming the file and
    line (`data_prep.yaml_files`, which the training arm's configs are checked with too)."""
    try:
        return load_yaml_mapping(path)
    except YAMLFileError as error:
        raise ConfigError(str(error)) from None


# --------------------------------------------------------------------------- building a config from layers


NO_FILE = "<no config file>"


class CliValue(str):
    """A value typed on the command line (text to convert by the field's type, not YAML)."""


_NONE_WORDS = {"null", "none", "~"}
_TRUE_WORDS = {"true", "yes", "on", "1"}
_FALSE_WORDS = {"false", "no", "off", "0"}


def unknown_message(what: str, key: str, known: Mapping[str, Any] | Sequence[str]) -> str:
    """`<what> is not known; did you mean '<closest>'? Known: ...` (the hint only when a name is close)."""
    names = list(known)
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{what} is not known{hint} Known: {', '.join(names)}"


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` checked (YAML) or converted (CliValue text) against the type hint `hint`; errors name `where`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return _cli_scalar(value) if isinstance(value, CliValue) else value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args:
            if value is None or (isinstance(value, CliValue) and value.strip().lower() in _NONE_WORDS):
                return None
        errors = []
        for option in options:
            try:
                return coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_type_name(hint)}")
    if isinstance(value, list) and all(isinstance(v, CliValue) for v in value) and origin not in (tuple, list):
        if len(value) != 1:
            raise ConfigError(f"{where}: takes one value, got {len(value)}: {' '.join(value)}")
        value = value[0]
    if origin is Literal:
        text = value.strip() if isinstance(value, CliValue) else value
        if text in args:
            return text
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
    if origin in (tuple, list):
        item_hint = args[0] if args else Any
        if isinstance(value, CliValue):
            value = [value]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], CliValue):
            text = value[0].strip()
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            parts = text.split(",") if "," in text or not text else [text]
            value = [CliValue(part.strip()) for part in parts if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [coerce(item, item_hint, f"{where}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, CliValue):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_hint, item_hint = args if args else (Any, Any)
        return {coerce(k, key_hint, where): coerce(v, item_hint, f"{where}.{k}") for k, v in value.items()}
    if hint is str:
        if isinstance(value, str):
            return str(value)
        raise ConfigError(f"{where}: expected text, got {value!r} ({type(value).__name__}); quote it in YAML")
    if hint is bool:
        if isinstance(value, CliValue):
            word = value.strip().lower()
            if word in _TRUE_WORDS | _FALSE_WORDS:
                return word in _TRUE_WORDS
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, CliValue):
            try:
                return int(value.strip())
            except ValueError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, CliValue):
            try:
                return float(value.strip())
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        hint_text = " (YAML reads 1e-3 as text; write 1.0e-3)" if isinstance(value, str) else ""
        raise ConfigError(f"{where}: expected a number, got {value!r}{hint_text}")
    raise ConfigError(f"{where}: unsupported config type {_type_name(hint)}")


def _cli_scalar(value: CliValue) -> Any:
    """A CLI value for an untyped slot: YAML scalar rules (`4` is an int, `true` a bool, `x` text)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return str(value)


@dataclass
class Layers:
    """Config values by source: the YAML file's nested mapping, and CLI flags as dotted keys."""

    file_data: dict[str, Any] = field(default_factory=dict)
    file_name: str = NO_FILE
    cli: dict[str, Any] = field(default_factory=dict)
    """Dotted key -> CliValue (or list of CliValue for list fields)."""

    def sources(self) -> str:
        """`file: `, `file + command line: `, `command line: ` or `` (defaults only), to prefix a rule's message."""
        names = [self.file_name] if self.file_name != NO_FILE else []
        names += ["command line"] if self.cli else []
        return f"{' + '.join(names)}: " if names else ""

    def origin(self, dotted: str, from_cli: bool) -> str:
        return f"command line (--{dotted})" if from_cli else self.file_name


def _cli_section(cli: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The CLI entries under `prefix.` with the prefix removed."""
    start = prefix + "."
    return {key[len(start):]: value for key, value in cli.items() if key.startswith(start)}


def dict_value_hint(hint: Any) -> Any | None:
    """The value type of a `dict[str, X]` (or `dict[str, X] | None`) hint; None for other hints."""
    for candidate in (hint, *typing.get_args(hint)):
        if typing.get_origin(candidate) is dict:
            return typing.get_args(candidate)[1]
    return None


def default_value(spec: dataclasses.Field) -> Any:
    """A dataclass field's default (calling its default_factory)."""
    if spec.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return spec.default_factory()  # type: ignore[misc]
    return spec.default


def _check_known(cls: type, file_data: Mapping[str, Any], cli: Mapping[str, Any], layers: Layers, prefix: str) -> None:
    """Every YAML key and CLI flag under `prefix` must be a field of `cls`."""
    if not isinstance(file_data, Mapping):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{layers.file_name}: '{where}' must be a mapping, got {file_data!r}")
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in file_data:
        if key not in known:
            raise ConfigError(unknown_message(f"{layers.file_name}: key '{prefix}{key}'", str(key), known))
    for dotted in cli:
        key = dotted.split(".", 1)[0]
        if key not in known:
            raise ConfigError(unknown_message(f"command line: flag --{prefix}{key}", key, known))


_MISSING = object()


def _field_value(spec: dataclasses.Field, hint: Any, file_data: Mapping[str, Any], cli: Mapping[str, Any],
                 layers: Layers, dotted: str) -> Any:
    """One scalar, list or mapping field: CLI value, else YAML value, else default; `--a.b.key` flags merge
    into a mapping field."""
    name = spec.name
    value_hint = dict_value_hint(hint)
    nested = _cli_section(cli, name)
    if nested and value_hint is None:
        raise ConfigError(f"command line: flag --{dotted}.{next(iter(nested))} is not known; {dotted} has no keys")
    if name in cli:
        value = coerce(cli[name], hint, layers.origin(dotted, True))
    elif name in file_data:
        value = coerce(file_data[name], hint, f"{layers.file_name}: {dotted}")
    elif not nested:
        return _MISSING
    else:
        value = default_value(spec)
    if nested:
        value = dict(value or {})
        for key, raw in nested.items():
            value[key] = coerce(raw, value_hint, layers.origin(f"{dotted}.{key}", True))
    return value


def build_dataclass(cls: type, file_data: Mapping[str, Any], cli: Mapping[str, Any], layers: Layers,
                    prefix: str = "") -> Any:
    """An instance of dataclass `cls` from a YAML mapping and CLI dotted entries (CLI over YAML over defaults)."""
    _check_known(cls, file_data, cli, layers, prefix)
    file_data, cli = _apply_exclusive(cls, dict(file_data), dict(cli))
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for spec in (f for f in dataclasses.fields(cls) if f.init):
        name, hint, dotted = spec.name, hints[spec.name], prefix + spec.name
        hook = keyed_settings(spec)
        if dataclasses.is_dataclass(hint):
            if name in cli:
                raise ConfigError(f"command line: --{dotted} is a section; set its keys, e.g. --{dotted}.<key> VALUE")
            section = file_data.get(name, {}) or {}
            values[name] = build_dataclass(hint, section, _cli_section(cli, name), layers, dotted + ".")
        elif hook is not None:
            if name in cli:  # a bare --<field> VALUE would otherwise be dropped without a word
                example = f", e.g. --{dotted}.{hook.example}" if hook.example else ""
                raise ConfigError(f"command line: --{dotted} is a section; set one setting per flag{example}")
            base = file_data.get(name, _MISSING)
            values[name] = _build_keyed_settings(hook, spec, dotted, base, _cli_section(cli, name), layers)
        else:
            value = _field_value(spec, hint, file_data, cli, layers, dotted)
            if value is not _MISSING:
                values[name] = value
    try:
        return cls(**values)
    except ConfigError as error:
        raise ConfigError(f"{layers.sources()}{error}") from None


def _apply_exclusive(cls: type, file_data: dict, cli: dict) -> tuple[dict, dict]:
    """For field groups where one source sets exactly one member (the class's `_exclusive` pairs, e.g.
    n_values / max_n), that source's choice wins."""
    for group in getattr(cls, "_exclusive", ()):
        if any(key in cli for key in group):
            for key in group:
                file_data.pop(key, None)
                cli.setdefault(key, None)
        elif any(key in file_data for key in group):
            for key in group:
                file_data.setdefault(key, None)
    return file_data, cli


def _build_keyed_settings(hook: KeyedSettings, spec: dataclasses.Field, dotted: str, file_value: Any,
                          cli: Mapping[str, Any], layers: Layers) -> dict[str, dict[str, Any]]:
    """A KeyedSettings field: each named section's keys checked and converted by that name's Settings fields."""
    noun = hook.noun
    if file_value is _MISSING:
        base: Any = default_value(spec)
        base_origin = "the default config"
    else:
        base = file_value or {}
        base_origin = layers.file_name
        if not isinstance(base, Mapping):
            raise ConfigError(f"{layers.file_name}: '{dotted}' must map {noun} names to settings, got {base!r}")
    result: dict[str, dict[str, Any]] = {}
    entries: list[tuple[str, str, Any, str]] = []
    for name, section in base.items():
        if not isinstance(section, Mapping):
            raise ConfigError(f"{base_origin}: {dotted}.{name} must be a mapping of settings, got {section!r}")
        result.setdefault(str(name), {})
        entries += [
            (str(name), str(key), value, f"{base_origin}: {dotted}.{name}.{key}") for key, value in section.items()
        ]
    for flag, value in cli.items():
        if "." not in flag:
            raise ConfigError(
                f"command line: --{dotted}.{flag} is a section; set its keys, e.g. --{dotted}.{flag}.<key> V"
            )
        name, key = flag.split(".", 1)
        result.setdefault(name, {})
        entries.append((name, key, value, layers.origin(f"{dotted}.{flag}", True)))
    known = list(hook.known_keys())
    for name in result:
        if name not in known:
            origin = base_origin if name in base else "command line"
            raise ConfigError(unknown_message(f"{origin}: {dotted}.{name}: {noun} '{name}'", name, known))
    for name, key, value, where in entries:
        settings_cls = hook.settings_of(name)
        fields = [f.name for f in dataclasses.fields(settings_cls)]
        if key in hook.reserved:
            raise ConfigError(f"{where}: '{key}' cannot be set per {noun} ({hook.reserved[key]})")
        if key not in fields:
            allowed = [f for f in fields if f not in hook.reserved]
            raise ConfigError(unknown_message(f"{where}: '{key}' for {noun} {name!r}", key, allowed))
        hint = typing.get_type_hints(settings_cls)[key]
        result[name][key] = coerce(value, hint, where)
    return result


def parse_config(cls: type, config_path: str | Path | None, cli: Mapping[str, Any]) -> Any:
    """Build config dataclass `cls` from an optional YAML file and CLI dotted overrides (CliValue values)."""
    layers = Layers(cli=dict(cli))
    if config_path is not None:
        layers.file_data = load_yaml(config_path)
        layers.file_name = str(config_path)
    try:
        return build_dataclass(cls, layers.file_data, layers.cli, layers)
    except ConfigError:
        raise
    except ValueError as error:  # a section's own validation (e.g. FieldMapping) without location
        raise ConfigError(f"{layers.sources()}{error}") from None


def to_plain(config: Any) -> Any:
    """A config as plain YAML-able data (dataclasses -> dicts, tuples -> lists)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_plain(getattr(config, f.name)) for f in dataclasses.fields(config) if f.init}
    if isinstance(config, Mapping):
        return {str(k): to_plain(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_plain(v) for v in config]
    return config


def dump_config(config: Any) -> str:
    """The resolved config as YAML that `--config` reads back to an equal config."""
    return yaml.safe_dump(to_plain(config), sort_keys=False, allow_unicode=True, width=100)
