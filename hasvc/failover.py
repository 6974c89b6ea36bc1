"""Watching the local dhcpd's failover state over OMAPI.

Three uses:
- `hasvc status` shows the local and partner failover states;
- a node that comes back holds back its preemption (by demoting itself)
  while it is BACKUP and its dhcpd is still catching up with its peer
  (startup, recover, ...; not communications-interrupted, which is what a
  BACKUP sees when the master died): taking the VIP
  before the pair has resynchronised would send renewals to a dhcpd that
  serves nothing yet (measured: a dhcpd with an empty lease file stays in
  recover until it has seen its peer);
- optionally (off by default) putting the survivor into partner-down once
  the peer is confirmed dead by two independent signals for a set time:
  CARP made us MASTER (the peer stopped advertising) and dhcpd's own
  failover channel is communications-interrupted. partner-down lets the
  survivor hand out the peer's free addresses, so it must never follow a
  mere network split, hence both signals and the delay.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hasvc import omapi
from hasvc.model import Role

log = logging.getLogger("hasvc")

# A dhcpd in these states is catching up with its peer after a restart; one that lost its
# peer (communications-interrupted) is not, and must stay free to take over.
CATCHING_UP = ("startup", "recover", "recover-wait", "recover-done", "potential-conflict",
               "resolution-interrupted", "conflict-done")


@dataclass(frozen=True)
class OmapiConfig:
    address: str = "127.0.0.1"
    port: int = 7911
    key_file: str = ""
    peer: str = "hasvc"
    groups: tuple[int, ...] = (1,)
    interval: float = 2.0
    hold_preempt: bool = True
    partner_down_after: float = 0.0  # seconds; 0 = never
    service: str = "dhcpd"  # the policy running this dhcpd: its probe failures are excused while it recovers


@dataclass
class FailoverState:
    local: str = "unknown"
    partner: str = "unknown"
    error: str = ""
    since: float = 0.0  # when the local state last changed
    interrupted_and_master_since: float = 0.0
    partner_down_set: bool = False
    started: float = 0.0  # when the watch started
    ever_read: bool = False  # OMAPI answered at least once since then
    caught_up: bool = False  # seen settled once since start: never hold again (no flapping)
    error_since: float = 0.0  # when OMAPI started failing (0: it answers)

STARTUP_GRACE = 10.0  # seconds a just-started dhcpd may take to answer OMAPI
ERROR_GRACE = 5.0  # one slow answer does not make the node blind: the last state holds this long


def decide_hold(cfg: OmapiConfig, role: Role, state: FailoverState, now: float) -> str:
    """The reason to hold back preemption, or "" (pure).

    Only a BACKUP whose dhcpd is catching up holds back, and one whose dhcpd
    has not answered yet during the first STARTUP_GRACE seconds (it is
    starting). Later an unreadable OMAPI does not hold: a blind node must
    still be able to take over. Once caught up, never again until restart:
    the hold is for a node coming back, and must not make the VIP flap.
    """
    if not cfg.hold_preempt or role is not Role.BACKUP or state.caught_up:
        return ""
    if not state.ever_read:
        if now - state.started < STARTUP_GRACE:
            return "dhcpd failover state not read yet: not taking over before it is normal"
        return ""
    if state.error and now - state.error_since >= ERROR_GRACE:
        return ""
    if state.local in CATCHING_UP:
        return f"dhcpd failover {state.local}: not taking over before it is normal"
    return ""


def decide_partner_down(cfg: OmapiConfig, role: Role, state: FailoverState, now: float) -> bool:
    """Both signals held for partner_down_after seconds (pure)."""
    if cfg.partner_down_after <= 0 or state.partner_down_set:
        return False
    if role is not Role.MASTER or state.local != "communications-interrupted":
        return False
    return bool(state.interrupted_and_master_since) and now - state.interrupted_and_master_since >= \
        cfg.partner_down_after


class FailoverWatch:
    def __init__(self, cfg: OmapiConfig, role_of: Callable[[], Role], changed: Callable[[], None],
                 client: Callable[..., omapi.Client] = omapi.Client) -> None:
        self.cfg, self.role_of, self.changed, self.client = cfg, role_of, changed, client
        self.state = FailoverState(started=time.time())
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def _key(self) -> omapi.Key | None:
        return omapi.read_key_file(self.cfg.key_file) if self.cfg.key_file else None

    def poll_once(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        before = (self.state.local, self.state.error, self.hold_reason())
        try:
            with self.client(self.cfg.address, self.cfg.port, self._key(), timeout=2.0) as c:
                got = c.failover_state(self.cfg.peer)
            local, partner, error = str(got["local_state"]), str(got["partner_state"]), ""
            self.state.ever_read = True
            if local not in CATCHING_UP:
                self.state.caught_up = True
        except (OSError, omapi.OmapiError) as exc:
            error = str(exc) or type(exc).__name__
            # Keep the last reading for a while (ERROR_GRACE); after that it is unknown.
            stale = self.state.error_since and now - self.state.error_since >= ERROR_GRACE
            local, partner = ("unknown", "unknown") if stale or not self.state.ever_read else (
                self.state.local, self.state.partner)
        self.state.error_since = (self.state.error_since or now) if error else 0.0
        if local != self.state.local:
            self.state.since = now
            log.info("dhcpd failover: %s -> %s (partner %s)", self.state.local, local, partner)
        self.state.local, self.state.partner, self.state.error = local, partner, error
        role = self.role_of()
        if role is Role.MASTER and local == "communications-interrupted":
            self.state.interrupted_and_master_since = self.state.interrupted_and_master_since or now
        else:
            self.state.interrupted_and_master_since = 0.0
        if local != "partner-down":
            self.state.partner_down_set = False
        if decide_partner_down(self.cfg, role, self.state, now):
            self._partner_down()
        if (self.state.local, self.state.error, self.hold_reason()) != before:
            self.changed()

    def _partner_down(self) -> None:
        try:
            with self.client(self.cfg.address, self.cfg.port, self._key(), timeout=2.0) as c:
                c.set_partner_down(self.cfg.peer)
            self.state.partner_down_set = True
            log.warning("dhcpd failover: peer confirmed dead (CARP MASTER and communications-interrupted "
                        "for %.0fs): set partner-down", self.cfg.partner_down_after)
        except (OSError, omapi.OmapiError) as exc:
            log.error("dhcpd failover: setting partner-down failed: %s", exc)

    def hold_reason(self) -> str:
        return decide_hold(self.cfg, self.role_of(), self.state, time.time())

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            self.poll_once()
            self.stop_event.wait(self.cfg.interval)

    def start(self) -> None:
        self.state.started = time.time()
        self.thread = threading.Thread(target=self._loop, name="failover", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout=5)

    def status(self) -> dict[str, Any]:
        s = self.state
        return {"failover": {"peer": self.cfg.peer, "local": s.local, "partner": s.partner, "error": s.error,
                             "since": s.since or None, "holding_preemption": bool(self.hold_reason()),
                             "partner_down_set": s.partner_down_set}}

    def demote_reason(self) -> str:
        return self.hold_reason()

    def excuse(self, service: str) -> str:
        """Why a failed health check of `service` must not count (or "").

        A dhcpd catching up with its peer (recover, recover-wait, ...) answers
        no DISCOVER by design; restarting it would only start its recovery over.
        """
        if service == self.cfg.service and self.state.local in CATCHING_UP:
            return f"dhcpd failover {self.state.local}"
        return ""
