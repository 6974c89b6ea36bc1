"""YAML loading that remembers where every value came from.

Config errors must say `file:line: key.path: reason`, so the loader keeps the
line of each mapping key and each value, indexed by its key path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from hasvc.errors import ConfigError

Path = tuple[str | int, ...]


@dataclass
class Doc:
    """A parsed YAML document: plain data plus the line of every key path."""

    file: str
    data: Any
    lines: dict[Path, int]

    def line(self, path: Path) -> int:
        # Fall back to the nearest enclosing key that has a known line.
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: Path, reason: str) -> ConfigError:
        return ConfigError(self.file, self.line(path), dotted(path), reason)


def dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def load(file: str, text: str | None = None) -> Doc:
    if text is None:
        try:
            with open(file, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(file, 0, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(file, line, "", f"YAML syntax: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, 1, "", f"YAML syntax: {exc}") from None
    lines: dict[Path, int] = {}
    data = _convert(node, (), lines, file) if node is not None else {}
    return Doc(file, data, lines)


_constructor = yaml.SafeLoader(stream="")


def _convert(node: yaml.Node, path: Path, lines: dict[Path, int], file: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are names, never YAML 1.1 booleans: `on:` must stay "on".
            if isinstance(key_node, yaml.ScalarNode):
                key = str(key_node.value)
            else:
                key = str(_constructor.construct_object(key_node, deep=True))
            sub = (*path, key)
            if key in out:
                raise ConfigError(file, key_node.start_mark.line + 1, dotted(sub), "duplicate key")
            lines[sub] = key_node.start_mark.line + 1
            out[key] = _convert(value_node, sub, lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    try:
        return _constructor.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        raise ConfigError(file, node.start_mark.line + 1, dotted(path), f"bad value: {exc}") from None
