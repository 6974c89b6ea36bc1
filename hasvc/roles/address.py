"""Role read from address presence (Linux).

ucarp and keepalived add the shared address to the MASTER's interface and
remove it on the BACKUP, so its presence is the role whenever no event
stream is at hand: at start, and as a slow poll when configured alone.
"""

from __future__ import annotations

import socket
import threading

import psutil

from hasvc.config import Group
from hasvc.model import Observation, Role
from hasvc.roles import Emit, RoleSource


def read_role(group: Group, addrs: dict[str, list[str]], up: dict[str, bool]) -> Role:
    if group.interface not in addrs or not up.get(group.interface, False):
        return Role.INIT
    present = {a.address.split("%")[0] for a in addrs[group.interface]
               if a.family in (socket.AF_INET, socket.AF_INET6)}
    shared = [a for a in (group.ipv4, group.ipv6) if a]
    return Role.MASTER if all(a in present for a in shared) else Role.BACKUP


class AddressSource:
    name = "address"

    def __init__(self, groups: dict[int, Group], interval: float = 2.0) -> None:
        self.groups, self.interval = groups, interval

    def snapshot(self) -> list[Observation]:
        addrs = psutil.net_if_addrs()
        up = {name: st.isup for name, st in psutil.net_if_stats().items()}
        return [Observation(g.vhid, g.interface, read_role(g, addrs, up), self.name)
                for g in self.groups.values()]

    def run(self, emit: Emit, stop: threading.Event) -> None:
        last: dict[int, Role] = {}
        while not stop.wait(self.interval):
            for obs in self.snapshot():
                if last.get(obs.vhid) is not obs.state:
                    last[obs.vhid] = obs.state
                    emit(obs)


class NotifySource(AddressSource):
    """Events arrive through `hasvc notify` on the control socket; only the start is read.

    The start reading comes from address presence (Linux), or from another
    source's snapshot (ifconfig on FreeBSD) when one is given.
    """

    name = "notify"

    def __init__(self, groups: dict[int, Group], reader: RoleSource | None = None) -> None:
        super().__init__(groups)
        self.reader = reader

    def snapshot(self) -> list[Observation]:
        if self.reader is not None:
            return self.reader.snapshot()
        return [Observation(o.vhid, o.interface, o.state, "address", o.time) for o in super().snapshot()]

    def run(self, emit: Emit, stop: threading.Event) -> None:
        stop.wait()
