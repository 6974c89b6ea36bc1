"""Drive ISC dhclient as the real DHCP client in drills.

dhclient gets its own lease, pid and config files and a -sf script that only
(un)configures the address: it must never rewrite resolv.conf or routes of the
machine it runs on. Every call is bounded with `timeout`.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from hasvc.facade import Result, System

# reason-driven, like dhclient-script, minus DNS, routes and hooks. Also logs each
# event so a drill can see BOUND/REBOOT/RENEW and which server answered.
_SCRIPT = r"""#!/bin/sh
echo "$(date +%s.%N) $reason $new_ip_address $new_dhcp_server_identifier" >> EVENTS
case "$reason" in
PREINIT|PREINIT6)
    ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
        ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" || exit 1 ;;
EXPIRE|FAIL|RELEASE|STOP)
    if [ -n "$old_ip_address" ]; then
        ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
    fi ;;
TIMEOUT)
    # A remembered lease we cannot confirm is not good enough for a drill.
    exit 1 ;;
esac
exit 0
"""


@dataclass(frozen=True)
class Lease:
    address: str
    server_id: str | None
    interface: str | None
    renew: str | None
    expire: str | None


def parse_leases(text: str) -> list[Lease]:
    """All `lease { ... }` blocks of a dhclient lease file, oldest first."""
    out: list[Lease] = []
    for block in re.findall(r"lease\s*\{(.*?)\}", text, flags=re.S):
        def field(pattern: str, body: str = block) -> str | None:
            match = re.search(pattern, body)
            return match.group(1) if match else None
        address = field(r"fixed-address\s+([0-9.]+);")
        if address:
            out.append(Lease(address, field(r"option dhcp-server-identifier\s+([0-9.]+);"),
                             field(r'interface\s+"([^"]+)";'), field(r"renew\s+([^;]+);"),
                             field(r"expire\s+([^;]+);")))
    return out


class Dhclient:
    """One dhclient for one interface, with all its files in `work_dir`.

    `prefix` is prepended to every command, e.g. ["ip", "netns", "exec", NS] to run in
    a lab namespace.
    """

    def __init__(self, work_dir: str, ifname: str = "eth0", prefix: Sequence[str] = (),
                 system: System | None = None, name: str = "dhclient", wait: int = 5) -> None:
        self.ifname = ifname
        self.prefix = list(prefix)
        self.system = system or System()
        self.wait = wait
        base = os.path.join(work_dir, name)
        self.lease_file = base + ".leases"
        self.pid_file = base + ".pid"
        self.conf_file = base + ".conf"
        self.script = base + ".sh"
        self.events_file = base + ".events"
        self.log_file = base + ".log"
        with open(self.script, "w", encoding="utf-8") as fh:
            fh.write(_SCRIPT.replace("EVENTS", shlex.quote(self.events_file)))
        os.chmod(self.script, 0o755)
        with open(self.conf_file, "w", encoding="utf-8") as fh:
            # A short per-attempt timeout and quick retransmits keep `-1` bounded.
            # backoff-cutoff 1 keeps retransmits (renewals too) about a second apart, the
            # shortest dhclient allows: a drill measures the servers, not dhclient's backoff.
            fh.write(f"timeout {wait};\ninitial-interval 1;\nbackoff-cutoff 1;\nretry 1;\n"
                     "request subnet-mask, broadcast-address, dhcp-server-identifier, dhcp-lease-time;\n")

    def _argv(self, *extra: str) -> list[str]:
        return [*self.prefix, "timeout", str(self.wait + 5), "dhclient", "-4", "-v", "-cf", self.conf_file,
                "-lf", self.lease_file, "-pf", self.pid_file, "-sf", self.script, *extra, self.ifname]

    def _log(self, res: Result) -> Result:
        with open(self.log_file, "a", encoding="utf-8") as fh:
            fh.write(res.stdout + res.stderr)
        return res

    def obtain(self) -> Result:
        """Get a lease once (-1); on success dhclient leaves a daemon behind that keeps it."""
        return self._log(self.system.run(self._argv("-1"), timeout=self.wait + 10))

    def stop(self, release: bool = False) -> Result:
        """-x stops the daemon keeping the lease (so the next obtain is an INIT-REBOOT); -r releases."""
        return self._log(self.system.run(self._argv("-r" if release else "-x"), timeout=self.wait + 10))

    def renew(self) -> Result:
        """Force the client back to the servers now: stop, then start again from the lease file,
        which makes dhclient send a REQUEST for its address (INIT-REBOOT) at once."""
        self.stop()
        return self.obtain()

    def pid(self) -> int | None:
        try:
            with open(self.pid_file, encoding="utf-8") as fh:
                text = fh.read().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def lease(self) -> Lease | None:
        """The newest lease in the lease file (the bound one after a successful obtain)."""
        try:
            with open(self.lease_file, encoding="utf-8") as fh:
                leases = parse_leases(fh.read())
        except FileNotFoundError:
            return None
        return leases[-1] if leases else None

    def events(self) -> list[list[str]]:
        try:
            with open(self.events_file, encoding="utf-8") as fh:
                return [line.split() for line in fh if line.strip()]
        except FileNotFoundError:
            return []
