"""Errors shared by the CLI and the config loader, importable without YAML."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration error located in a file."""

    def __init__(self, path: str, line: int, key: str, reason: str) -> None:
        self.path, self.line, self.key, self.reason = path, line, key, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"{self.path}:{self.line}: {where}{self.reason}"
