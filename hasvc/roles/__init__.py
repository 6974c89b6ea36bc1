"""Role sources: one module each, all with the same small interface.

A role source knows how to read the current role of every group from the
system (`snapshot`, used at start and after every reconnect, because event
streams such as devd never replay) and, optionally, how to follow changes
(`run`, which blocks until `stop` is set and hands each change to `emit`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from hasvc.model import Observation

Emit = Callable[[Observation], None]


class RoleSourceError(Exception):
    """The source could not be read (command failed, socket gone)."""


class RoleSource(Protocol):
    name: str

    def snapshot(self) -> list[Observation]:
        """Current role of every group this source can see."""
        ...

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Follow changes until `stop` is set; must return within about 0.5 s of it."""
        ...
