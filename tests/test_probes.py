"""DHCP and TFTP probes against the real daemons (ISC dhcpd failover pair, in.tftpd) in the lab."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator

import pytest

from hasvc.lab import dhcpd, tftpd
from hasvc.lab.netns import Lab
from hasvc.probes import dhcp, tftp
from hasvc.probes.dhclient import Dhclient, parse_leases
from tests.conftest_lab import VIP4, VIP6, built_lab

CANARY = b"hasvc canary\n" * 100  # 1300 bytes: three blocks, the last one short
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def lab() -> Iterator[Lab]:
    with built_lab("dhcpd", "dhclient", "in.tftpd", "timeout") as built:
        yield built


@pytest.fixture
def dhcp_lab(lab: Lab) -> Iterator[tuple[Lab, dict[str, int]]]:
    pids = dhcpd.start_pair(lab, VIP4)
    dhcpd.wait_normal(lab, "n1", 10.0)
    dhcpd.wait_normal(lab, "n2", 10.0)
    yield lab, pids


def _client(lab: Lab) -> Dhclient:
    return Dhclient(lab.work_dir, "eth0", ["ip", "netns", "exec", lab.ns("cl")], lab.system)


def test_dhcp_probe_from_client(dhcp_lab: tuple[Lab, dict[str, int]]) -> None:
    lab, _ = dhcp_lab
    res = lab.call("cl", dhcp.discover, "eth0", VIP4, 3.0)
    print(f"client DHCP probe: {res.elapsed * 1000:.1f} ms, {res.detail}")
    assert res.ok, res.detail
    assert res.server_id == VIP4 and res.src_ip == VIP4
    assert res.yiaddr is not None and res.yiaddr.startswith("192.0.2.1")
    # Same servers, wrong expectation: the probe must say no.
    wrong = lab.call("cl", dhcp.discover, "eth0", "192.0.2.9", 1.2)
    assert not wrong.ok and "server-id 192.0.2.4" in wrong.detail


def test_dhcp_probe_on_the_server_node(dhcp_lab: tuple[Lab, dict[str, int]]) -> None:
    lab, pids = dhcp_lab
    chaddr = bytes.fromhex("020000c00201")
    for node in ("n1", "n2"):
        res = lab.call(node, dhcp.discover, "eth0", VIP4, 3.0, chaddr, 60, True)
        print(f"on-node DHCP probe on {node}: {res.elapsed * 1000:.1f} ms, {res.detail}")
        assert res.ok, f"{node}: {res.detail}"
        assert res.server_id == VIP4
    # The health-check path: a separate process in the node, as the supervisor runs it.
    argv = [sys.executable, "-m", "hasvc.probes.dhcp", "-i", "eth0", "--expect", VIP4, "--secs", "60",
            "--local", "--timeout", "3"]
    out = lab.run("n1", ["env", f"PYTHONPATH={REPO}", *argv], timeout=10.0)
    assert out.rc == 0, out
    assert json.loads(out.stdout)["server_id"] == VIP4

    # Local dhcpd dead: the peer still answers (secs=60 bypasses load balancing), but
    # its OFFER arrives from outside and must not make this node look healthy.
    lab.kill(pids["n1"])
    dead = lab.call("n1", dhcp.discover, "eth0", VIP4, 1.5, chaddr, 60, True)
    assert not dead.ok, dead.detail
    assert lab.call("cl", dhcp.discover, "eth0", VIP4, 3.0, chaddr, 60).ok


def test_dhclient_gets_and_renews_an_address(dhcp_lab: tuple[Lab, dict[str, int]]) -> None:
    lab, _ = dhcp_lab
    client = _client(lab)
    t0 = time.monotonic()
    res = client.obtain()
    print(f"dhclient -1 bound in {time.monotonic() - t0:.2f}s")
    assert res.ok, res.stdout + res.stderr
    lease = client.lease()
    assert lease is not None and lease.server_id == VIP4, lease
    assert f"inet {lease.address}/24" in lab.addresses("cl")
    assert client.pid() in lab.pids("cl"), "dhclient should stay to keep the lease"

    t0 = time.monotonic()
    assert client.renew().ok
    print(f"dhclient renew (INIT-REBOOT) in {time.monotonic() - t0:.2f}s")
    renewed = client.lease()
    assert renewed is not None and renewed.address == lease.address
    assert [e[1] for e in client.events()][-1] == "REBOOT"
    assert client.stop(release=True).ok
    assert f"inet {lease.address}/" not in lab.addresses("cl")


def test_parse_dhclient_leases() -> None:
    text = ('lease {\n  interface "eth0";\n  fixed-address 192.0.2.150;\n'
            "  option dhcp-server-identifier 192.0.2.4;\n  renew 0 2026/11/22 05:30:00;\n"
            "  expire 0 2026/11/22 05:40:00;\n}\n")
    (lease,) = parse_leases(text)
    assert (lease.address, lease.server_id, lease.interface) == ("192.0.2.150", VIP4, "eth0")


def test_tftp_from_the_vip(dhcp_lab: tuple[Lab, dict[str, int]]) -> None:
    lab, _ = dhcp_lab
    root = tftpd.make_root(lab, {"canary.bin": CANARY})
    # Without the VIP, in.tftpd cannot bind it (ip_nonlocal_bind is 0) and exits 71.
    bare = lab.run("n1", ["timeout", "3", "in.tftpd", "-L", "-a", f"{VIP4}:69", "-s", root])
    assert bare.rc == 71, bare
    lab.run("n1", ["ip", "addr", "add", f"{VIP4}/24", "dev", "eth0"])
    pid = tftpd.start_tftpd(lab, "n1", VIP4, root)
    tftpd.wait_bound(lab, "n1", VIP4)
    assert _client(lab).obtain().ok
    res = lab.call("cl", tftp.check_canary, VIP4, "canary.bin", CANARY, 3.0)
    print(f"TFTP canary over IPv4: {res.elapsed * 1000:.1f} ms, {res.detail}")
    assert res.ok and res.src_ip == VIP4 and res.data == CANARY, res.detail
    assert not lab.call("cl", tftp.check_canary, VIP4, "canary.bin", b"other", 3.0).ok
    missing = lab.call("cl", tftp.fetch, VIP4, "nope.bin", 3.0)
    assert not missing.ok and "TFTP error" in missing.detail

    # A server reachable at the VIP that answers from its node address must be rejected.
    lab.kill(pid)
    tftpd.start_misreplying_tftpd(lab, "n1", VIP4, "192.0.2.2", root)
    tftpd.wait_bound(lab, "n1", VIP4)
    bad = lab.call("cl", tftp.fetch, VIP4, "canary.bin", 3.0)
    print(f"TFTP from the wrong address: {bad.detail}")
    assert not bad.ok and bad.src_ip == "192.0.2.2", bad.detail


def test_tftp_over_ipv6(lab: Lab) -> None:
    root = tftpd.make_root(lab, {"canary.bin": CANARY})
    lab.run("n1", ["ip", "addr", "add", f"{VIP6}/64", "dev", "eth0", "nodad"])
    tftpd.start_tftpd(lab, "n1", VIP6, root)
    tftpd.wait_bound(lab, "n1", VIP6)
    res = lab.call("n2", tftp.check_canary, VIP6, "canary.bin", CANARY, 3.0)
    print(f"TFTP canary over IPv6: {res.elapsed * 1000:.1f} ms, {res.detail}")
    assert res.ok and res.src_ip == VIP6, res.detail


def test_probe_results_are_bounded_without_servers(lab: Lab) -> None:
    t0 = time.monotonic()
    res = lab.call("cl", dhcp.discover, "eth0", VIP4, 0.5)
    assert not res.ok and "no OFFER" in res.detail
    lab.run("n2", ["ip", "addr", "add", f"{VIP4}/24", "dev", "eth0"])
    quiet = lab.call("n1", tftp.fetch, VIP4, "x", 0.6, None, retry_interval=0.2)
    assert not quiet.ok
    assert time.monotonic() - t0 < 3.0
