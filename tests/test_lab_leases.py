"""Lease state across a failover, in the namespace lab with real dhcpd, dhclient -6 and both role sources.

One scenario, in order (each step depends on the last):
1. a DHCPv6 client binds through n1 (vhid 2 MASTER); the binding reaches n2's store;
2. n1 dies: n2 installs the synced dhcpd6 leases before starting dhcpd6, and the
   client keeps its address through its renewals;
3. n1 comes back with EMPTY lease files: it does not preempt before its dhcpd is
   normal and its store holds n2's dhcpd6 leases; then it takes over and serves
   the client's address;
4. afterwards the two nodes' IPv4 lease databases do not diverge.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

from hasvc import control
from hasvc.lab import carp, drill
from hasvc.lab.netns import IFNAME, Lab

VIP6 = drill.VIP6


def wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Client6:
    """ISC dhclient -6 in the client namespace, with its own files; the script only records."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.lf = lab.path("dhclient6.leases")
        self.pf = lab.path("dhclient6.pid")
        self.script = lab.path("dhclient6.script")
        with open(self.script, "w", encoding="utf-8") as fh:
            fh.write(f'#!/bin/sh\necho "$(date +%s.%N) $reason $new_ip6_address" >> {lab.path("dhclient6.events")}\n')
        os.chmod(self.script, 0o755)

    def obtain(self) -> None:
        res = self.lab.run("cl", ["timeout", "20", "dhclient", "-6", "-1", "-v", "-lf", self.lf, "-pf", self.pf,
                                  "-sf", self.script, IFNAME], timeout=25)
        assert res.ok, res.stdout + res.stderr

    def addresses(self) -> list[str]:
        try:
            with open(self.lf, encoding="utf-8") as fh:
                return re.findall(r"iaaddr ([0-9a-f:]+) \{", fh.read())
        except FileNotFoundError:
            return []

    def events(self) -> list[tuple[float, str, str]]:
        try:
            with open(self.lab.path("dhclient6.events"), encoding="utf-8") as fh:
                rows = [line.split() for line in fh]
        except FileNotFoundError:
            return []
        return [(float(r[0]), r[1], r[2] if len(r) > 2 else "") for r in rows if len(r) >= 2]


def text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        return ""


def status(cluster: drill.Cluster, node: str) -> dict[str, Any]:
    return control.request(cluster.sock[node], {"cmd": "status"}, timeout=5.0)


def log_time(cluster: drill.Cluster, node: str, pattern: str, after: float) -> float | None:
    for when, line in drill._hasvc_events(cluster.hasvc_log(node), after):
        if re.search(pattern, line):
            return when
    return None


def test_leases_follow_the_vip_and_a_wiped_node_catches_up_before_taking_over() -> None:
    with Lab("hvls", clients=1) as lab:
        cluster = drill.Cluster(lab)
        try:
            scenario(lab, cluster)
        except AssertionError:
            for node in drill.NODES:
                print(f"--- hasvc on {node}\n" + text(cluster.hasvc_log(node))[-4000:])
            raise


def scenario(lab: Lab, cluster: drill.Cluster) -> None:
    cluster.start()
    client = Client6(lab)
    client.obtain()
    [addr] = set(client.addresses())
    n2_store = cluster.node_path("n2", "state", "leases", "dhcpd6.leases")
    wait(lambda: addr in text(n2_store), 15,
         "the client's DHCPv6 binding in n2's store")

    # 2. n1 dies; n2 installs the synced leases before dhcpd6 starts there.
    t0 = cluster.kill_node("n1")
    carp.wait_role(lab, "n2", VIP6, True, 15)
    installed = wait(lambda: log_time(cluster, "n2", r"dhcpd6: installed \d+ dhcpd6 lease", t0), 15,
                     "n2 to install the synced dhcpd6 leases")
    started = wait(lambda: log_time(cluster, "n2", r"dhcpd6: start \(MASTER", t0), 15, "dhcpd6 on n2")
    assert installed <= started
    wait(lambda: any(t > started and r in ("RENEW6", "REBIND6") for t, r, _ in client.events()), 20,
         "the client to renew with n2")
    assert set(client.addresses()) == {addr}, "the DHCPv6 client kept its address"

    # 3. n1 returns with empty lease files (a replaced disk) and must catch up first.
    for name in ("dhcpd.leases", "dhcpd6.leases"):
        os.truncate(cluster.node_path("n1", name), 0)
    t1 = cluster.revive_node("n1")
    carp.wait_role(lab, "n1", drill.VIP4, True, 60)
    carp.wait_role(lab, "n1", VIP6, True, 30)
    # The hook tells hasvc just after ucarp added the VIP: wait for its log line.
    took4 = wait(lambda: log_time(cluster, "n1", r"vhid 1@eth0: \w+ -> MASTER", t1), 10, "n1's MASTER line")
    normal = log_time(cluster, "n1", r"dhcpd failover: .* -> normal", t1)
    assert normal and normal <= took4, "n1 took the VIP before its dhcpd was normal"
    n1_status = status(cluster, "n1")
    assert n1_status["failover"]["local"] == "normal"
    assert n1_status["leases"]["files"]["dhcpd6"]["snapshots_received"] >= 1
    wait(lambda: log_time(cluster, "n1", r"dhcpd6: installed \d+ dhcpd6 lease", t1), 15,
         "n1 to install the synced dhcpd6 leases")
    assert addr in text(cluster.node_path("n1", "dhcpd6.leases"))
    took6 = wait(lambda: log_time(cluster, "n1", r"vhid 2@eth0: \w+ -> MASTER", t1), 10, "vhid 2 on n1")
    assert normal <= took6
    wait(lambda: any(t > took6 and r in ("RENEW6", "REBIND6") for t, r, _ in client.events()), 20,
         "the client to renew with n1")
    assert set(client.addresses()) == {addr}

    # 4. No divergence of the IPv4 lease databases once both dhcpds are normal.
    def converged() -> bool:
        files = [status(cluster, n)["leases"]["files"]["dhcpd4"] for n in drill.NODES]
        return all(f["divergent"] == 0 for f in files)

    wait(converged, 30, "the two nodes' dhcpd4 lease state to agree")
    assert cluster.duplicates() == []
