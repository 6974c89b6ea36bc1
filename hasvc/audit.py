"""`hasvc audit`: who listens where, and what is on the wrong address.

Seed 000's rule: HA services answer from the shared address, everything
else stays on node addresses. Two findings break it:
- a process that is not an HA service listening on a shared address;
- an HA service listening on a wildcard address (it would also answer on
  the node address, and on the BACKUP), unless its policy says `bind: wildcard`
  (dhcpd must: broadcasts only reach a wildcard socket).
Exit status 1 when there is a finding, so it can feed monitoring.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import psutil

from hasvc.config import Config, expand

WILDCARDS = ("0.0.0.0", "::", "*")


@dataclass(frozen=True)
class Listener:
    proto: str
    address: str
    port: int
    pid: int | None
    process: str
    service: str  # the HA service it belongs to, or ""
    finding: str  # "" when fine


def ha_pids(cfg: Config) -> dict[int, str]:
    """pid -> service name, from hasvc's own pidfiles and exact argv matches."""
    pids: dict[int, str] = {}
    for name, policy in cfg.policies.items():
        path = os.path.join(cfg.state_dir, "run", f"{name}.pid")
        try:
            with open(path) as fh:
                text = fh.read().strip()
            if text.isdigit():
                pids[int(text)] = name
        except OSError:
            pass
        if policy.start:
            argv = expand(policy.start, policy, cfg)
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if proc.info["cmdline"] == argv:
                    pids[proc.info["pid"]] = name
    # Children (in.tftpd forks per transfer, inetd spawns tftpd) belong to their service.
    for pid, name in list(pids.items()):
        try:
            for child in psutil.Process(pid).children(recursive=True):
                pids.setdefault(child.pid, name)
        except psutil.Error:
            pass
    return pids


def listeners(cfg: Config) -> list[Listener]:
    shared = {a for g in cfg.groups.values() for a in (g.ipv4, g.ipv6) if a}
    wildcard_ok = {n for n, p in cfg.policies.items() if p.bind == "wildcard"}
    pids = ha_pids(cfg)
    out = []
    for conn in psutil.net_connections(kind="inet"):
        is_udp = conn.type == socket.SOCK_DGRAM
        if (not is_udp and conn.status != psutil.CONN_LISTEN) or (is_udp and conn.raddr):
            continue
        addr = conn.laddr.ip.split("%")[0]
        service = pids.get(conn.pid, "") if conn.pid else ""
        finding = ""
        if addr in shared and not service:
            finding = "not an HA service, listening on a shared address"
        elif addr in WILDCARDS and service and service not in wildcard_ok:
            finding = "HA service listening on a wildcard address"
        out.append(Listener("udp" if is_udp else "tcp", addr, conn.laddr.port, conn.pid,
                            _name(conn.pid), service, finding))
    return sorted(out, key=lambda x: (x.finding == "", x.address, x.port, x.proto))


def _name(pid: int | None) -> str:
    if not pid:
        return "?"
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


def main(cfg: Config, as_json: bool, out: TextIO) -> int:
    found = listeners(cfg)
    if as_json:
        data: dict[str, Any] = {"listeners": [asdict(x) for x in found],
                                "findings": sum(1 for x in found if x.finding)}
        out.write(json.dumps(data, indent=2) + "\n")
    else:
        from hasvc.cli import table

        rows = [("PROTO", "ADDRESS", "PORT", "PID", "PROCESS", "SERVICE", "FINDING")]
        rows += [(x.proto, x.address, str(x.port), str(x.pid or "-"), x.process, x.service or "-",
                  x.finding or "ok") for x in found]
        out.write(table(rows) + "\n")
    return 1 if any(x.finding for x in found) else 0
