"""TFTP servers for drills: the real in.tftpd bound to the VIP, and a misbehaving one."""

from __future__ import annotations

import ipaddress
import os
import sys
import time

import hasvc
from hasvc.lab.netns import Lab, require


def make_root(lab: Lab, files: dict[str, bytes], name: str = "tftproot") -> str:
    """A TFTP root readable after in.tftpd has chrooted and dropped to `nobody`."""
    root = lab.path(name)
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    for fname, content in files.items():
        path = os.path.join(root, fname)
        with open(path, "wb") as fh:
            fh.write(content)
        os.chmod(path, 0o644)
    return root


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ipaddress.ip_address(addr).version == 6 else f"{addr}:{port}"


def start_tftpd(lab: Lab, node: str, addr: str, root: str, port: int = 69) -> int:
    """Standalone in.tftpd bound to `addr` (the VIP), so DATA leaves from it.

    Without the address present (and ip_nonlocal_bind=0) it exits 71 at once, silently.
    """
    require("in.tftpd")
    return lab.spawn(node, ["in.tftpd", "-L", "-a", _endpoint(addr, port), "-s", root],
                     log_path=lab.path(f"tftpd-{node}.log"))


def wait_bound(lab: Lab, node: str, addr: str, port: int = 69, timeout: float = 5.0) -> float:
    """Wait until something listens on addr:port/udp in node: a request sent earlier is lost."""
    want = ipaddress.ip_address(addr)
    start = time.monotonic()
    while True:
        out = lab.run(node, ["ss", "-H", "-u", "-l", "-n"], timeout=5.0).stdout
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 4:
                host, _, sport = fields[3].rpartition(":")
                host = host.strip("[]").split("%")[0]
                wildcard = host in ("*", "0.0.0.0", "::")
                if sport == str(port) and not wildcard and ipaddress.ip_address(host) == want:
                    return time.monotonic() - start
        if time.monotonic() - start >= timeout:
            raise TimeoutError(f"nothing bound to {_endpoint(addr, port)}/udp in {node} after {timeout:g}s")
        time.sleep(0.02)


def start_misreplying_tftpd(lab: Lab, node: str, listen: str, reply_from: str, root: str) -> int:
    """A server that listens on `listen` but answers from `reply_from`, like inetd's first
    transfer did in the lab notes; the probe must reject it."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(hasvc.__file__)))
    env = {"PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return lab.spawn(node, [sys.executable, "-m", "hasvc.lab.tftp_misreply", listen, reply_from, root],
                     log_path=lab.path(f"misreply-{node}.log"), env=env)
