"""Lease sync inside the daemon: sync, status, and the install before a single-active start.

A single-active dhcpd (dhcpd6; dhcpd without failover) names its lease file
in its policy (`install_leases: NAME`). When it is about to start on a new
MASTER, its lease file is replaced by the merge of the local file and the
peer's copy, newest block per address winning (by cltt), validated by dhcpd
first and renamed into place atomically. Merging rather than copying keeps
what this node handed out during its own last term as MASTER.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from hasvc.config import Config, Policy
from hasvc.facade import System
from hasvc.leases.config import SyncConfig, sync_config_from_dict
from hasvc.leases.parser import Lease, parse_file
from hasvc.leases.store import LeaseStoreError, _cltt_key, render_leases, validate
from hasvc.leases.sync import LeaseSync
from hasvc.model import Role

log = logging.getLogger("hasvc")

MAX_DIVERGENT_SHOWN = 50
HOLD_MAX = 30.0  # seconds a returning node waits for the peer's leases at most


def sync_config(cfg: Config) -> SyncConfig:
    assert cfg.lease_sync is not None
    section = dict(cfg.lease_sync)
    section.setdefault("state_dir", os.path.join(cfg.state_dir, "leases"))
    return sync_config_from_dict(section, cfg.node)


def newest(local: dict[str, Lease], peer: dict[str, Lease]) -> dict[str, Lease]:
    """Per address, the block with the later cltt; a block without cltt loses."""
    merged = dict(local)
    for addr, rec in peer.items():
        mine = merged.get(addr)
        if mine is None or _key(rec) > _key(mine):
            merged[addr] = rec
    return merged


def _key(rec: Lease) -> str:
    # v4 records keep cltt in their block text; `starts` stands in for dhcpd versions without it.
    stamp = rec.cltt or _field(rec.text, "cltt") or _field(rec.text, "starts")
    return _cltt_key(stamp) if stamp else ""


def _field(text: str, name: str) -> str:
    m = re.search(rf"^\s*{name} ([^;]+);", text, re.M)
    return m.group(1) if m else ""


class LeaseAddon:
    def __init__(self, sync: LeaseSync, system: System, dhcpd: str = "/usr/sbin/dhcpd",
                 single_active: tuple[Policy, ...] = (),
                 role_of: Callable[[tuple[int, ...]], Role] | None = None) -> None:
        self.sync, self.system, self.dhcpd = sync, system, dhcpd
        self.single_active, self.role_of = single_active, role_of
        self.started = time.monotonic()
        self.caught_up = False

    @classmethod
    def from_config(cls, cfg: Config, system: System,
                    role_of: Callable[[tuple[int, ...]], Role] | None = None) -> LeaseAddon:
        dhcpd = next((dict(p.vars).get("dhcpd") for p in cfg.policies.values() if dict(p.vars).get("dhcpd")),
                     "/usr/sbin/dhcpd" if cfg.platform == "linux" else "/usr/local/sbin/dhcpd")
        single = tuple(p for p in cfg.policies.values() if p.install_leases)
        return cls(LeaseSync(sync_config(cfg), system, lambda m: log.warning("%s", m)), system, dhcpd,
                   single, role_of)

    def demote_reason(self) -> str:
        """A BACKUP that has not yet received the peer's leases must not preempt.

        It would start dhcpd6 on its own (empty or stale) lease file and answer
        the clients' renewals with NoBinding. If the peer is dead the hold
        costs nothing: a demoted node still takes over from a silent master;
        and it is held for HOLD_MAX after start at most.
        """
        if self.role_of is None:
            return ""
        # A BACKUP hears a live MASTER, i.e. the peer: its leases are worth waiting for.
        # Never for long: a broken sync must not keep a healthy node from its role for good.
        if self.caught_up:
            return ""
        missing = [p for p in self.single_active if not self.sync.snapshots_received.get(p.install_leases)]
        if not missing or time.monotonic() - self.started > HOLD_MAX:
            self.caught_up = True  # once, until restart: the hold must not make the VIP flap
            return ""
        for p in missing:
            if self.role_of(p.groups) is Role.BACKUP:
                return f"lease sync: waiting for the peer's {p.install_leases} leases before taking over"
        return ""

    def start(self) -> None:
        self.started = time.monotonic()
        self.sync.start()

    def stop(self) -> None:
        self.sync.stop()

    def status(self) -> dict[str, Any]:
        status = self.sync.status()
        for name, info in status.get("files", {}).items():
            info["snapshots_received"] = self.sync.snapshots_received.get(name, 0)
            diverged = self.sync.diverged(name)
            info["divergent"] = len(diverged)
            info["divergent_addresses"] = diverged[:MAX_DIVERGENT_SHOWN]
        return {"leases": status}

    def before_start(self, policy: Policy) -> str:
        """Install the synced state for a single-active dhcpd; returns a log line ("" if nothing to do)."""
        name = policy.install_leases
        if not name or name not in {f.name for f in self.sync.cfg.files}:
            return ""
        files = {f.name: f for f in self.sync.cfg.files}
        f = files[name]
        peer = self.sync.store.records(name)
        if not peer:
            return f"{policy.name}: no synced {name} leases from the peer yet; starting on the local file"
        local = parse_file(f.path) if os.path.exists(f.path) else None
        merged = newest(local.leases if local else {}, peer)
        duid = local.server_duid if local and local.server_duid else None
        text = render_leases(merged.values(), f.family, server_duid=duid)
        problems = validate(text, f.family, self.system, dhcpd=self.dhcpd)
        if problems:
            # Never install what dhcpd would choke on; the local file is still there.
            raise LeaseStoreError(f"merged {name} leases rejected by dhcpd: {'; '.join(problems[:3])}")
        self.system.write_file(f.path, text.encode("latin-1"), mode=0o644)
        return (f"{policy.name}: installed {len(merged)} {name} lease(s) into {f.path} "
                f"({len(peer)} from the peer, {len(local.leases) if local else 0} local)")
