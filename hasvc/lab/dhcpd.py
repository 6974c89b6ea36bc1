"""A real ISC dhcpd failover pair on the lab nodes (n1 primary, n2 secondary)."""

from __future__ import annotations

import time

from hasvc.lab.netns import ADDR4, IFNAME, Lab, require

PRIMARY_PORT = 647
SECONDARY_PORT = 847
PEER_NAME = "hasvc"


def dhcpd_conf(role: str, me: str, peer: str, vip: str, *, range_lo: str = "192.0.2.100",
               range_hi: str = "192.0.2.199", lease_time: int = 600) -> str:
    if role not in ("primary", "secondary"):
        raise ValueError("role is primary or secondary")
    primary = role == "primary"
    my_port, peer_port = (PRIMARY_PORT, SECONDARY_PORT) if primary else (SECONDARY_PORT, PRIMARY_PORT)
    # mclt/split are only allowed on the primary; the secondary learns them.
    primary_only = "    mclt 10;\n    split 128;\n" if role == "primary" else ""
    return (
        "authoritative;\n"
        # The default ping check adds about a second to every first OFFER.
        "ping-check false;\n"
        f"default-lease-time {lease_time};\nmax-lease-time {lease_time * 2};\n"
        # Clients must always talk to the VIP holder, whichever peer answered.
        f"server-identifier {vip};\nnext-server {vip};\n"
        f'failover peer "{PEER_NAME}" {{\n'
        f"    {role};\n"
        f"    address {me};\n    port {my_port};\n"
        f"    peer address {peer};\n    peer port {peer_port};\n"
        "    max-response-delay 30;\n    max-unacked-updates 10;\n    load balance max seconds 3;\n"
        + primary_only
        + "}\n"
        "subnet 192.0.2.0 netmask 255.255.255.0 {\n"
        f'    pool {{\n        failover peer "{PEER_NAME}";\n        range {range_lo} {range_hi};\n    }}\n'
        "}\n"
    )


def start_dhcpd(lab: Lab, node: str, role: str, peer_node: str, vip: str) -> int:
    require("dhcpd")
    base = lab.path(f"dhcpd-{node}")
    with open(base + ".conf", "w", encoding="utf-8") as fh:
        fh.write(dhcpd_conf(role, ADDR4[node], ADDR4[peer_node], vip))
    # dhcpd refuses to start without an existing lease file.
    open(base + ".leases", "a").close()
    argv = ["dhcpd", "-4", "-f", "-d", "-cf", base + ".conf", "-lf", base + ".leases", "-pf", base + ".pid",
            IFNAME]
    return lab.spawn(node, argv, log_path=base + ".log")


def start_pair(lab: Lab, vip: str) -> dict[str, int]:
    """n1 primary, n2 secondary; started together so they reach `normal` without a 15 s startup.

    The secondary starts once the primary listens: a peer that finds nobody listening
    retries only after about 5 s, which made the pair's start take 0.2 s or 5 s at random.
    """
    pids = {"n1": start_dhcpd(lab, "n1", "primary", "n2", vip)}
    _wait_listening(lab, "n1", PRIMARY_PORT, 3.0)
    pids["n2"] = start_dhcpd(lab, "n2", "secondary", "n1", vip)
    return pids


def _wait_listening(lab: Lab, node: str, port: int, timeout: float) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        out = lab.run(node, ["ss", "-H", "-t", "-l", "-n"], timeout=5.0).stdout
        if any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if len(line.split()) > 3):
            return
        time.sleep(0.02)
    # Not fatal: the pair still gets there, only slower; wait_normal reports real trouble.


def log(lab: Lab, node: str) -> str:
    try:
        with open(lab.path(f"dhcpd-{node}.log"), encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def wait_normal(lab: Lab, node: str, timeout: float) -> float:
    """Wait for the failover state machine to say `I move from ... to normal`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if "to normal" in log(lab, node):
            return time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError(f"dhcpd on {node} not in failover state normal after {timeout:g}s; "
                       f"log tail: {log(lab, node)[-800:]}")

