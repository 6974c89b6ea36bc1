"""CARP roles read from FreeBSD's `ifconfig -a`.

ifconfig is the ground truth for the local role: devd only reports
transitions and never replays them, so every event-driven source falls
back to a snapshot taken here.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hasvc.model import Observation, Role
from hasvc.roles import Emit, RoleSourceError

if TYPE_CHECKING:
    # Annotation only: importing the facade is not needed to parse or poll.
    from hasvc.facade import System

_log = logging.getLogger(__name__)

# Interface headers are the only lines that start in column 0, e.g.
# "vtnet0: flags=8943<UP,...> metric 0 mtu 1500" or "igb0.100: flags=...".
_HEADER = re.compile(r"^(?P<name>[^\s:]+): flags=")

# FreeBSD prints "\tcarp: STATE vhid N advbase N advskew N" and, with -k,
# a trailing ` key "..."`; FreeBSD 14 adds a "\t      peer ..." line after it,
# which matches nothing here and is therefore skipped.
_CARP = re.compile(
    r"^\s+carp:\s+(?P<state>\S+)\s+vhid\s+(?P<vhid>\d+)"
    r"(?:\s+advbase\s+(?P<advbase>\d+))?"
    r"(?:\s+advskew\s+(?P<advskew>\d+))?"
)

# "\tinet 192.0.2.1 netmask ... vhid 1" / "\tinet6 2001:db8::1 prefixlen 64 vhid 2"
_ADDRESS = re.compile(r"^\s+inet6?\s+(?P<addr>\S+)(?P<rest>.*)$")
_ADDR_VHID = re.compile(r"\svhid\s+(?P<vhid>\d+)\b")


@dataclass(frozen=True)
class CarpVhid:
    """One `carp:` line of ifconfig, with the addresses bound to its vhid."""

    interface: str
    vhid: int
    state: Role
    advbase: int | None
    advskew: int | None
    addresses: tuple[str, ...] = ()

    def observation(self, source: str = "ifconfig") -> Observation:
        return Observation(
            vhid=self.vhid, interface=self.interface, state=self.state, source=source,
            advbase=self.advbase, advskew=self.advskew,
        )


def parse_ifconfig(text: str) -> list[CarpVhid]:
    """Every CARP vhid in `ifconfig` / `ifconfig -a` output, in output order."""
    found: list[CarpVhid] = []
    addresses: dict[tuple[str, int], list[str]] = {}
    interface: str | None = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            interface = header.group("name")
            continue
        if interface is None:
            continue
        carp = _parse_carp_line(interface, line)
        if carp is not None:
            found.append(carp)
            continue
        bound = _parse_vhid_address(line)
        if bound is not None:
            vhid, addr = bound
            addresses.setdefault((interface, vhid), []).append(addr)
    # Addresses are printed before or after the carp line depending on the
    # FreeBSD release, so they are attached only once the whole text is read.
    return [
        _with_addresses(c, addresses.get((c.interface, c.vhid), [])) for c in found
    ]


def _parse_carp_line(interface: str, line: str) -> CarpVhid | None:
    match = _CARP.match(line)
    if match is None:
        return None
    try:
        # Old releases print "<UNKNOWN>" for a state out of range; no role to report.
        state = Role.parse(match.group("state"))
    except ValueError:
        return None
    return CarpVhid(
        interface=interface, vhid=int(match.group("vhid")), state=state,
        advbase=_opt_int(match.group("advbase")), advskew=_opt_int(match.group("advskew")),
    )


def _parse_vhid_address(line: str) -> tuple[int, str] | None:
    match = _ADDRESS.match(line)
    if match is None:
        return None
    bound = _ADDR_VHID.search(match.group("rest"))
    if bound is None:
        return None
    # Link-local IPv6 carries "%ifname"; the scope is implied by the interface.
    addr = match.group("addr").partition("%")[0]
    return int(bound.group("vhid")), addr


def _with_addresses(carp: CarpVhid, addresses: list[str]) -> CarpVhid:
    return CarpVhid(
        interface=carp.interface, vhid=carp.vhid, state=carp.state,
        advbase=carp.advbase, advskew=carp.advskew, addresses=tuple(addresses),
    )


def _opt_int(text: str | None) -> int | None:
    return None if text is None else int(text)


_Key = tuple[str, int]
_Seen = tuple[Role, int | None, int | None]


class IfconfigSource:
    """Role source that polls `ifconfig -a`."""

    name = "ifconfig"

    def __init__(self, system: System, ifconfig: str = "/sbin/ifconfig", interval: float = 2.0,
                 timeout: float = 5.0, *, log: Callable[[str], None] | None = None) -> None:
        self.system = system
        self.ifconfig = ifconfig
        self.interval = interval
        self.timeout = timeout
        self._log = log if log is not None else _log.warning

    def snapshot(self) -> list[Observation]:
        return [carp.observation(self.name) for carp in self.read()]

    def read(self) -> list[CarpVhid]:
        """Parsed `ifconfig -a`, including the addresses of each vhid."""
        result = self.system.run([self.ifconfig, "-a"], timeout=self.timeout)
        if not result.ok:
            detail = result.stderr.strip() or "no error output"
            raise RoleSourceError(f"{self.ifconfig} -a failed (rc {result.rc}): {detail}")
        return parse_ifconfig(result.stdout)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        seen: dict[_Key, _Seen] = {}
        last_error: str | None = None
        while not stop.is_set():
            try:
                current = self.snapshot()
            except RoleSourceError as exc:
                # A failing ifconfig fails every poll; say so once, not every interval.
                if str(exc) != last_error:
                    self._log(f"ifconfig: {exc}")
                last_error = str(exc)
            else:
                last_error = None
                for obs in _changes(seen, current):
                    emit(obs)
            stop.wait(self.interval)


def _changes(seen: dict[_Key, _Seen], current: list[Observation]) -> list[Observation]:
    """Observations that differ from `seen`; updates `seen` in place."""
    changed = []
    now: dict[_Key, _Seen] = {}
    for obs in current:
        key = (obs.interface, obs.vhid)
        now[key] = (obs.state, obs.advbase, obs.advskew)
        if seen.get(key) != now[key]:
            changed.append(obs)
    # A vhid that vanished is forgotten, so it is reported again if it returns.
    seen.clear()
    seen.update(now)
    return changed
