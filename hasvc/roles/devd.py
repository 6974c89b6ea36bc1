"""CARP transitions pushed by devd(8) over its seqpacket socket.

devd writes one event per SOCK_SEQPACKET packet to every connected client,
e.g. `!system=CARP subsystem=1@vtnet0 type=MASTER`. It keeps no history, so
a transition that happens while we are not connected is lost for good: after
every (re)connect the current roles are read from ifconfig instead.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hasvc.model import Observation, Role, parse_subsystem
from hasvc.roles import Emit, RoleSourceError
from hasvc.roles.ifconfig import IfconfigSource

if TYPE_CHECKING:
    from hasvc.facade import System

_log = logging.getLogger(__name__)

# Values are bare words in current devd and double-quoted in some releases.
_PAIR = re.compile(r'([A-Za-z0-9_.-]+)=(?:"([^"]*)"|(\S*))')

# How long one recv()/connect() may block; bounds how late `stop` is noticed.
_POLL = 0.25
# devd events are far shorter; a larger buffer just avoids truncation surprises.
_RECV_SIZE = 65536


def parse_devd_event(msg: str) -> Observation | None:
    """A CARP role change from one devd message, or None for anything else."""
    text = msg.strip().rstrip("\x00")
    # "!" marks a notify event; "+", "-" and "?" are device attach/detach/nomatch.
    if not text.startswith("!"):
        return None
    fields = _fields(text[1:])
    if fields.get("system", "").upper() != "CARP":
        return None
    try:
        vhid, interface = parse_subsystem(fields.get("subsystem", ""))
        state = Role.parse(fields.get("type", ""))
    except ValueError:
        return None
    return Observation(vhid=vhid, interface=interface, state=state, source="devd")


def _fields(body: str) -> dict[str, str]:
    return {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _PAIR.finditer(body)}


class DevdSource:
    """Role source following devd's event socket, re-synced from ifconfig on connect."""

    name = "devd"

    def __init__(self, system: System, socket_path: str = "/var/run/devd.seqpacket.pipe",
                 ifconfig: str = "/sbin/ifconfig", backoff_initial: float = 0.1,
                 backoff_max: float = 5.0, log: Callable[[str], None] | None = None) -> None:
        self.socket_path = socket_path
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._log = log if log is not None else _log.warning
        self._ifconfig = IfconfigSource(system, ifconfig, log=self._log)

    def snapshot(self) -> list[Observation]:
        return self._ifconfig.snapshot()

    def run(self, emit: Emit, stop: threading.Event) -> None:
        delay = self.backoff_initial
        # Set from a lost or failed connection until the next success, so one
        # outage is logged once rather than once per retry.
        outage = False
        while not stop.is_set():
            sock = self._connect(quiet=outage)
            if sock is not None:
                if outage:
                    self._log(f"devd: reconnected to {self.socket_path}")
                outage = False
                connected_at = time.monotonic()
                with sock:
                    self._resync(emit)
                    reason = self._follow(sock, emit, stop)
                if stop.is_set():
                    return
                self._log(f"devd: {reason}; reconnecting to {self.socket_path}")
                # Only a connection that lived a while proves devd healthy again;
                # otherwise a devd that accepts and drops at once would be hammered.
                if time.monotonic() - connected_at >= self.backoff_max:
                    delay = self.backoff_initial
            outage = True
            stop.wait(delay)
            delay = min(delay * 2, self.backoff_max)

    def _connect(self, quiet: bool) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.settimeout(_POLL)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            if not quiet:
                self._log(f"devd: cannot connect to {self.socket_path}: {exc}; retrying")
            return None
        return sock

    def _resync(self, emit: Emit) -> None:
        # Runs after connect, so any transition racing the snapshot is also
        # queued on the socket and is applied after it.
        try:
            observations = self.snapshot()
        except RoleSourceError as exc:
            self._log(f"devd: ifconfig snapshot after connect failed, following events only: {exc}")
            return
        for obs in observations:
            emit(obs)

    def _follow(self, sock: socket.socket, emit: Emit, stop: threading.Event) -> str:
        """Emit CARP events until stop or the connection ends; returns why it ended."""
        while not stop.is_set():
            try:
                packet = sock.recv(_RECV_SIZE)
            except TimeoutError:
                continue
            except OSError as exc:
                return f"read from {self.socket_path} failed: {exc}"
            if not packet:
                return "devd closed the connection"
            obs = parse_devd_event(packet.decode("utf-8", errors="replace"))
            if obs is not None:
                emit(obs)
        return "stopped"
