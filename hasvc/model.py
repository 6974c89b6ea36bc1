"""Shared value types: roles, observations and service states.

Every role source turns what it sees into an Observation; the daemon feeds
each one through a single function (Daemon.observe), as ifstated does.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class Role(enum.Enum):
    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown CARP state {text!r} (want INIT, BACKUP or MASTER)") from None


@dataclass(frozen=True)
class Observation:
    """One reading of one vhid's role, whatever produced it."""

    vhid: int
    interface: str
    state: Role
    source: str  # devd | ifconfig | notify | address | ...
    time: float = field(default_factory=time.time)
    advbase: int | None = None
    advskew: int | None = None


def parse_subsystem(text: str) -> tuple[int, str]:
    """Split devd's/carp's `VHID@IF` notation, e.g. `1@vtnet0`."""
    vhid_s, sep, ifname = text.strip().partition("@")
    if not sep or not ifname or not vhid_s.isdigit():
        raise ValueError(f"expected VHID@INTERFACE, got {text!r}")
    vhid = int(vhid_s)
    if not 1 <= vhid <= 255:
        raise ValueError(f"vhid {vhid} out of range 1-255")
    return vhid, ifname
