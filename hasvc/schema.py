"""Typed reading of one YAML mapping with located errors.

A Section hands out typed values by key and, at `done()`, rejects every key
nobody asked for, so a typo is an error rather than a silent default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from hasvc.yamlpos import ConfigError, Doc, Path

_MISSING = object()


class Section:
    def __init__(self, doc: Doc, path: Path, data: Any) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise doc.error(path, f"must be a mapping, not {_kind(data)}")
        self.doc, self.path, self.data = doc, path, data
        self.seen: set[str] = set()

    def error(self, key: str | int | None, reason: str) -> ConfigError:
        return self.doc.error(self.path if key is None else (*self.path, key), reason)

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.error(key, "required key missing")
            return default
        return self.data[key]

    def has(self, key: str) -> bool:
        return key in self.data

    def str(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        return str(value)

    def int(self, key: str, default: Any = _MISSING, lo: int | None = None, hi: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {_kind(value)}")
        check_range(self, key, value, lo, hi)
        return value

    def float(self, key: str, default: Any = _MISSING,
              lo: float | None = None, hi: float | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, not {_kind(value)}")
        check_range(self, key, value, lo, hi)
        return float(value)

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_kind(value)}")
        return value

    def choice(self, key: str, choices: Iterable[str], default: Any = _MISSING) -> Any:
        value = self.str(key, default)
        choices = tuple(choices)
        if value is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def argv(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        return as_argv(self, key, value)

    def list(self, key: str, default: Any = _MISSING) -> Any:
        value = self.raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(key, f"must be a list, not {_kind(value)}")
        return value

    def section(self, key: str, required: bool = False) -> Section:
        value = self.raw(key, _MISSING if required else {})
        return Section(self.doc, (*self.path, key), value)

    def address(self, key: str, family: int, default: Any = _MISSING, prefix: bool = False) -> Any:
        value = self.str(key, default)
        if value is None or (value is default and default is not _MISSING):
            return value
        return check_address(self, key, value, family, prefix)

    def only(self, keys: Iterable[str]) -> None:
        allowed = set(keys)
        for key in self.data:
            if key not in allowed:
                raise self.error(key, "unknown key")

    def done(self) -> None:
        for key in self.data:
            if key not in self.seen:
                raise self.error(key, "unknown key")


def as_argv(sec: Section, key: str | int, value: Any) -> tuple[str, ...]:
    """Commands are argv lists, never shell strings: a string is refused."""
    if isinstance(value, str):
        raise sec.error(key, "must be an argv list like [/usr/sbin/daemon, -f], not a shell string")
    if not isinstance(value, list) or not value:
        raise sec.error(key, f"must be a non-empty argv list, not {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise sec.doc.error((*sec.path, key, i), f"argv items must be strings, not {_kind(item)}")
        out.append(str(item))
    return tuple(out)


def check_address(sec: Section, key: str, value: str, family: int, prefix: bool = False) -> str:
    """An address; with prefix=True an optional /len is allowed and checked."""
    text, slash, plen = value.partition("/")
    what = f"an IPv{family} address" + (" (optionally with /prefixlen)" if prefix else "")
    try:
        addr = ipaddress.ip_address(text)
        if slash:
            if not prefix:
                raise ValueError
            ipaddress.ip_interface(f"{addr}/{plen}")
    except ValueError:
        raise sec.error(key, f"{value!r} is not {what}") from None
    if addr.version != family:
        raise sec.error(key, f"{value!r} is not {what}")
    return f"{addr}/{plen}" if slash else str(addr)


def check_range(sec: Section, key: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise sec.error(key, f"must be >= {lo}, not {value}")
    if hi is not None and value > hi:
        raise sec.error(key, f"must be <= {hi}, not {value}")


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)
