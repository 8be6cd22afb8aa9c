"""Typed YAML loading: frozen dataclasses built from YAML, with errors that name the file, the key and the line.

The schema *is* the dataclass: its fields, their type hints and their defaults. Supported field types are
``str``, ``int``, ``float``, ``bool``, ``Literal[...]``, ``X | None``, ``tuple[X, ...]``, ``dict[str, X]`` and
nested dataclasses. Unknown keys are errors (never silently dropped), and so are wrong types and missing
required keys. Every error message starts with ``<file>:<line>:`` so an editor can jump to it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")

_SCALAR_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class SchemaError(ValueError):
    """A YAML document does not match its schema. The message names the file, the line and the key."""


@dataclasses.dataclass(frozen=True)
class _Located:
    """A plain value together with the line (1-based) it was read from."""

    value: Any
    line: int


def _to_located(node: yaml.Node) -> _Located:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, tuple[_Located, _Located]] = {}
        for key_node, value_node in node.value:
            key = _to_located(key_node)
            mapping[str(key.value)] = (key, _to_located(value_node))
        return _Located(mapping, line)
    if isinstance(node, yaml.SequenceNode):
        return _Located([_to_located(item) for item in node.value], line)
    return _Located(yaml.constructor.SafeConstructor().construct_object(node), line)


def load_yaml(path: Path, cls: type[T], *, what: str) -> T:
    """Read ``path`` and build ``cls`` from it.

    Args:
        path: The YAML file.
        cls: A frozen dataclass that describes the document.
        what: What the document is, for error messages ("device profile", "fit config").

    Raises:
        SchemaError: The file is not valid YAML, or does not match ``cls``.
        OSError: The file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    return parse_yaml(text, cls, source=str(path), what=what)


def parse_yaml(text: str, cls: type[T], *, source: str, what: str) -> T:
    """Like :func:`load_yaml`, from text; ``source`` names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise SchemaError(f"{source}:{line}: not valid YAML: {problem}") from None
    if node is None:
        raise SchemaError(f"{source}:1: the {what} is empty")
    return build(cls, _to_located(node), source=source, path=())


def build(cls: type[T], located: _Located, *, source: str, path: tuple[str, ...]) -> T:
    """Build the dataclass ``cls`` from a located mapping (see :func:`parse_yaml`)."""
    where = ".".join(path) or "the document"
    if not isinstance(located.value, dict):
        raise SchemaError(f"{source}:{located.line}: {where} must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, (key_loc, value_loc) in located.value.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise SchemaError(f"{source}:{key_loc.line}: unknown key '{_join(path, key)}' (known keys here: {known})")
        kwargs[key] = _convert(hints[key], value_loc, source=source, path=(*path, key))
    for name, field in fields.items():
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            raise SchemaError(f"{source}:{located.line}: missing required key '{_join(path, name)}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        # A dataclass's own validation names the field first ("threads must be >= 1"): point at its line.
        message = str(exc)
        field_name = message.split(" ", 1)[0]
        if field_name in located.value:
            key_loc, _ = located.value[field_name]
            raise SchemaError(f"{source}:{key_loc.line}: key '{_join(path, field_name)}': {message}") from None
        raise SchemaError(f"{source}:{located.line}: {where}: {message}") from None


def _join(path: tuple[str, ...], key: str) -> str:
    return ".".join((*path, key))


def _convert(hint: Any, located: _Located, *, source: str, path: tuple[str, ...]) -> Any:
    value, line = located.value, located.line
    key = ".".join(path)
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        non_none = [option for option in options if option is not type(None)]
        if len(non_none) == 1:
            return _convert(non_none[0], located, source=source, path=path)
        raise TypeError(f"unsupported union in schema: {hint}")
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise SchemaError(f"{source}:{line}: key '{key}' must be one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        item_hint = get_args(hint)[0]
        if not isinstance(value, list):
            raise SchemaError(f"{source}:{line}: key '{key}' must be a list, got {_describe(value)}")
        return tuple(
            _convert(item_hint, item, source=source, path=(*path[:-1], f"{path[-1]}[{i}]"))
            for i, item in enumerate(value)
        )
    if origin is dict:
        _, item_hint = get_args(hint)
        if not isinstance(value, dict):
            raise SchemaError(f"{source}:{line}: key '{key}' must be a mapping, got {_describe(value)}")
        return {k: _convert(item_hint, v, source=source, path=(*path, k)) for k, (_, v) in value.items()}
    if dataclasses.is_dataclass(hint):
        return build(hint, located, source=source, path=path)  # type: ignore[arg-type]
    if hint is Any:
        return _plain(located)
    if hint in _SCALAR_NAMES:
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise SchemaError(f"{source}:{line}: key '{key}' must be {_SCALAR_NAMES[hint]}, got {_describe(value)}")
        return value
    raise TypeError(f"unsupported type in schema: {hint}")


def _plain(located: _Located) -> Any:
    value = located.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, (_, v) in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def from_mapping(mapping: dict[str, Any], cls: type[T], *, source: str, what: str) -> T:
    """Build ``cls`` from plain values that did not come from a file (command-line flags), checked like YAML.

    Errors name ``source`` without a line number, e.g. ``--space: key 'min_depth' must be an integer``.
    """
    text = yaml.safe_dump(mapping, default_flow_style=True) if mapping else "{}"
    try:
        return parse_yaml(text, cls, source=source, what=what)
    except SchemaError as exc:
        message = str(exc)
        prefix = f"{source}:"
        if message.startswith(prefix):
            rest = message[len(prefix):]
            message = prefix + rest.split(":", 1)[1] if rest.split(":", 1)[0].isdigit() else message
        raise SchemaError(message) from None
