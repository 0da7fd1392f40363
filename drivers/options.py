"""Validated option tables: the base of every `[[drivers]]` table's options and of syncd's
config sections, on msgspec (it validates a TOML table in microseconds and imports in a few
milliseconds, so that a command's start-up is not spent building validators).

- `Options`: frozen, unknown keys refused, keyword-only; a subclass declares its keys with
  types and `Annotated[..., Meta(ge=..., pattern=...)]` constraints, and normalises or
  cross-checks them in `__post_init__` (raising ValueError("key: what is wrong"), so that
  the error names the key; `self._set` rewrites a key).
- `Secret`: a value that never shows in a repr, a log or an error (`get_secret_value()`).
- `convert(data, cls)`: a table to `cls`, or `InvalidOptions` naming the key, as
  "permissions[1]: 'fly' is not one of: list, get, put, delete"; input values are never
  quoted in messages except a choice's, so secrets cannot leak through them.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import msgspec
from msgspec import Meta, field  # noqa: F401  (re-exported for option classes)

T = TypeVar("T")


class Secret:
    """A secret string: `get_secret_value()` gives it, everything else shows stars."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):  # pickled into worker processes with the options that hold it
        return (Secret, (self._value,))


class Options(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An option table. Subclasses repeat `kw_only=True` (msgspec does not inherit it)."""

    def _set(self, name: str, value: Any) -> None:
        """Normalise a key in `__post_init__` (the struct is frozen)."""
        msgspec.structs.force_setattr(self, name, value)

    def replace(self: T, **changes: Any) -> T:
        return msgspec.structs.replace(self, **changes)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return cls.__struct_fields__


class InvalidOptions(ValueError):
    """A table did not validate; the message is 'key.path: what is wrong'."""


def _decode(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    if kind is Secret and isinstance(value, str):
        return Secret(value)
    raise TypeError(f"Expected `{'str' if kind in (Path, Secret) else kind.__name__}`,"
                    f" got `{type(value).__name__}`")


def convert(data: Any, cls: type[T]) -> T:
    """`data` (a parsed TOML table) as `cls`, or InvalidOptions naming the bad key."""
    try:
        return msgspec.convert(data, cls, dec_hook=_decode)
    except msgspec.ValidationError as error:
        raise InvalidOptions(describe(str(error), cls)) from None


_AT = re.compile(r"^(?P<message>.*) - at `\$(?P<path>[^`]*)`$", re.S)
_KEYED = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])*): (.*)$", re.S)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def describe(message: str, cls: type) -> str:
    """msgspec's 'Expected `int` >= 1 - at `$.a[0].b`' as 'a[0].b: expected `int` >= 1'."""
    match = _AT.match(message)
    message, path = (match["message"], match["path"]) if match else (message, "")
    key = path.lstrip(".")
    if found := re.match(r"Object missing required field `(.+)`$", message):
        key, message = _join(key, found[1]), "missing"
    elif found := re.match(r"Object contains unknown field `(.+)`$", message):
        key, message = _join(key, found[1]), "unknown key"
    elif found := re.match(r"Invalid (?:enum )?value (.+)$", message):
        choices = _choices(cls, path)
        message = (f"{found[1]} is not one of: {', '.join(map(str, choices))}" if choices
                   else f"invalid value {found[1]}")
    elif message.startswith("Expected "):
        message = "expected " + message[len("Expected "):]
    elif found := _KEYED.match(message):  # __post_init__'s "key: what is wrong"
        key, message = _join(key, found[1]), found[2]
    return f"{key}: {message}" if key else message


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _choices(cls: type, path: str) -> tuple[Any, ...]:
    """The values a Literal (or a tagged union's tag) at `path` below `cls` may take, in the
    order they are declared."""
    kind: Any = cls
    for name, _index in _PATH_PART.findall(path):
        kind = _strip(kind)
        if name:
            structs = [k for k in _members(kind) if isinstance(k, type) and issubclass(k, msgspec.Struct)]
            if len(structs) > 1 and name == structs[0].__struct_config__.tag_field:
                return tuple(k.__struct_config__.tag for k in structs)
            if len(structs) != 1:
                return ()
            kind = typing.get_type_hints(structs[0]).get(name)
        else:
            args = typing.get_args(kind)
            kind = args[0] if args else None
    kind = _strip(kind)
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else ()


def _members(kind: Any) -> tuple[Any, ...]:
    return typing.get_args(kind) if typing.get_origin(kind) in (Union, types.UnionType) else (kind,)


def _strip(kind: Any) -> Any:
    """A type without its constraints (Annotated) or `| None`."""
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    members = [k for k in _members(kind) if k is not type(None)]
    return members[0] if len(members) == 1 else kind
