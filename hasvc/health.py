"""Health checks: real clients of each protocol, run from the node itself."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from hasvc.config import Config, HealthCheck, Policy, substitute
from hasvc.facade import System


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    elapsed: float


def run_check(check: HealthCheck, policy: Policy, cfg: Config, system: System,
              running: bool) -> CheckResult:
    values = cfg.values(policy)
    sub = lambda s: substitute(s, values)  # noqa: E731
    t0 = time.monotonic()
    try:
        ok, detail = _dispatch(check, sub, system, running)
    except OSError as exc:
        ok, detail = False, f"{check.type}: {exc.strerror or exc}"
    except Exception as exc:  # a probe's bug must fail the check, not end the health thread
        ok, detail = False, f"{check.type}: {type(exc).__name__}: {exc}"
    return CheckResult(ok, detail, time.monotonic() - t0)


def _dispatch(check: HealthCheck, sub, system: System, running: bool) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    if check.type == "process":
        return running, "process alive" if running else "process not running"
    if check.type == "command":
        res = system.run([sub(a) for a in check.argv], check.timeout)
        return res.ok, f"{check.argv[0]} exited {res.rc}"
    if check.type == "tcp":
        with socket.create_connection((sub(check.address), check.port), timeout=check.timeout):
            return True, "tcp connect ok"
    if check.type == "dhcp":
        from hasvc.probes import dhcp

        expect = sub(check.expect) if check.expect else None
        r = dhcp.discover(sub(check.interface), expect, timeout=check.timeout, secs=60,
                          capture_outgoing=True)
        return r.ok, f"dhcp: {r.detail}"
    if check.type == "tftp":
        from hasvc.probes import tftp

        r = tftp.fetch(sub(check.address), sub(check.file), timeout=check.timeout)
        if r.ok and check.expect and r.data != sub(check.expect).encode():
            return False, "tftp: canary content differs"
        return r.ok, f"tftp: {r.detail}"
    if check.type == "pxe":
        from hasvc.probes import pxe

        addr = sub(check.address)
        # On the node itself the answer comes back over loopback from the node address.
        r = pxe.request(addr, timeout=check.timeout, port=check.port or pxe.PXE_PORT, local=pxe.is_local(addr))
        return r.ok, f"pxe: {r.detail}"
    if check.type == "udp":
        with socket.socket(socket.AF_INET6 if ":" in sub(check.address) else socket.AF_INET,
                           socket.SOCK_DGRAM) as s:
            s.settimeout(check.timeout)
            s.connect((sub(check.address), check.port))
            s.send(b"\0")
            try:
                s.recv(1)
            except TimeoutError:
                pass  # silence is fine; an ICMP port unreachable raises ConnectionRefusedError
            return True, "udp port open"
    return False, f"unknown check {check.type}"
