"""The failover drills against the real lab (ucarp, keepalived, dhcpd, in.tftpd, dnsmasq, dhclient)
supervised by hasvc itself. Correctness only; timing figures go to bench/drill.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hasvc.lab import drill
from tests.conftest_lab import built_lab


@pytest.fixture(scope="module")
def cluster() -> Iterator[drill.Cluster]:
    with built_lab(*drill.TOOLS, clients=3) as lab:
        lab_cluster = drill.Cluster(lab)
        try:
            lab_cluster.start()
        except Exception:
            print(drill.describe_failure(lab_cluster))
            raise
        yield lab_cluster


def _check_takeover(res: dict, node: str) -> None:
    assert res["vip_moved"] and res["new_master"] == node, res
    assert res["ipv6_moved"], res
    # Every MASTER service answered from the VIP after the hook (None would mean never).
    assert all(v is not None for v in res["answer_ms"].values()), res["probe_detail"]
    assert res["reaction_ms"] is not None and res["tftp_outage_ms"] is not None
    assert res["dhcp_outage_ms"] is not None, res["dhcp_renewals_ms"]
    assert all(res["address_kept"].values()), res["address_kept"]
    assert res["duplicates"] == [], res["duplicates"]


def test_a_master_dies(cluster: drill.Cluster) -> None:
    res, timeline = drill.master_dies(cluster)
    print("\n".join(timeline.lines()))
    _check_takeover(res, "n2")


def test_b_master_returns_and_preempts(cluster: drill.Cluster) -> None:
    res, timeline = drill.master_returns(cluster, "n1")
    print("\n".join(timeline.lines()))
    _check_takeover(res, "n1")


def test_c1_dhcpd_killed_is_restarted(cluster: drill.Cluster) -> None:
    res = drill.dhcpd_killed(cluster)
    print(res)
    assert res["vip_stayed"] and res["restart_ms"] is not None and res["dhcp_answer_ms"] is not None
    assert res["duplicates"] == []


def test_c2_dhcpd_crashloop_demotes(cluster: drill.Cluster) -> None:
    res = drill.dhcpd_crashloop(cluster)
    print(res)
    assert res["new_master"] == "n2" and res["kills"] >= 2
    dem = res["demotion"]
    assert dem["demoted"] and dem["method"] == "command" and "dhcpd" in dem["reason"], dem
    assert res["dhcp_answer_ms"] is not None
    assert all(res["address_kept"].values()) and res["duplicates"] == []
    # The CLI shows the same demotion while it lasts or, once healed, n1 is back in charge.
    out = subprocess.run([sys.executable, "-m", "hasvc", "-c", cluster.conf["n1"], "status", "--json"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["demotion"]["method"] == "command"
    # Healed, undemoted: n1 preempts again and everything answers from it.
    drill.settle_back(cluster, "n1")


def test_d_tftpd_killed_first_transfer_from_the_vip(cluster: drill.Cluster) -> None:
    res = drill.tftpd_killed(cluster)
    print(res)
    assert res["restart_ms"] is not None
    assert res["first_transfer_ok"] and res["first_transfer_from"] == drill.VIP4, res


def test_e_audit_flags_a_stray_listener_on_the_shared_address(cluster: drill.Cluster) -> None:
    node = cluster.master()
    lab = cluster.lab

    def audit() -> tuple[int, dict]:
        res = lab.run(node, [sys.executable, "-m", "hasvc", "-c", cluster.conf[node], "audit", "--json"],
                      timeout=30)
        return res.rc, json.loads(res.stdout)

    rc, report = audit()
    listeners = report["listeners"]
    assert rc == 0 and report["findings"] == 0, listeners
    by_service = {(x["service"], x["proto"], x["port"]) for x in listeners}
    assert ("tftpd", "udp", 69) in by_service, listeners
    assert any(x["service"] == "dhcpd" and x["address"] == "0.0.0.0" for x in listeners), \
        "dhcpd's wildcard socket is declared (bind: wildcard), not flagged"
    # Something that is not an HA service starts answering on the VIP.
    stray = lab.spawn(node, [sys.executable, "-S", "-c",
                             "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
                             f"socket.SO_REUSEADDR, 1); s.bind(('{drill.VIP4}', 8080)); s.listen(); time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while True:
            rc, report = audit()
            flagged = [x for x in report["listeners"] if x["finding"]]
            if flagged or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert rc == 1 and [(x["address"], x["port"]) for x in flagged] == [(drill.VIP4, 8080)], flagged
        assert "not an HA service" in flagged[0]["finding"]
    finally:
        lab.kill(stray)
