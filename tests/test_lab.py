"""The lab itself and the real Linux role sources (ucarp, keepalived) in it. Needs root."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hasvc.lab import carp
from hasvc.lab.netns import Lab, MissingTool, cleanup_stale, require
from tests.conftest_lab import PREFIX, VIP4, VIP6, built_lab, hook_recorder, read_lines, wait_last_line


@pytest.fixture
def lab() -> Iterator[Lab]:
    with built_lab() as built:
        yield built


def _ns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_missing_tool_fails_loudly_with_its_name() -> None:
    with pytest.raises(MissingTool, match="no-such-tool-hasvc"):
        require("ip", "no-such-tool-hasvc")


def test_layout(lab: Lab) -> None:
    for node in ("sw", "n1", "n2", "cl"):
        assert lab.ns(node) in _ns_list()
        assert lab.ns(node).startswith(f"{PREFIX}{os.getpid()}-")
    assert "inet 192.0.2.2/24" in lab.addresses("n1")
    assert "inet6 2001:db8:1:2::3/64" in lab.addresses("n2")
    assert " inet " not in lab.addresses("cl"), "the client must start without IPv4: DHCP gives it one"
    for node in ("n1", "n2"):
        keys = ["net.ipv4.ip_nonlocal_bind", "net.ipv6.conf.eth0.accept_dad"]
        out = lab.run(node, ["sysctl", "-n", *keys]).stdout
        assert out.split() == ["0", "0"]
    bridge = lab.run("sw", ["bridge", "link"]).stdout
    assert all(f"v-{n}@br0" in bridge for n in ("n1", "n2", "cl"))
    lab.link("n1", False)
    assert "NO-CARRIER" in lab.run("n1", ["ip", "link", "show", "eth0"]).stdout
    lab.link("n1", True)
    assert "LOWER_UP" in lab.run("n1", ["ip", "link", "show", "eth0"]).stdout


def test_call_runs_in_the_node_namespace(lab: Lab) -> None:
    import socket
    assert [name for _, name in lab.call("cl", socket.if_nameindex)] == ["lo", "eth0"]


def test_teardown_kills_everything_and_is_idempotent() -> None:
    with built_lab() as lab:
        tracked = lab.spawn("n1", ["sleep", "30"])
        # Not tracked: started behind the lab's back, still inside our namespace.
        stray = subprocess.Popen(["ip", "netns", "exec", lab.ns("n2"), "sleep", "30"])
        time.sleep(0.1)
        names = [lab.ns(n) for n in ("sw", "n1", "n2", "cl")]
        lab.teardown()
        lab.teardown()
        assert stray.wait(timeout=5) is not None
        assert not lab.alive(tracked)
        assert not set(names) & set(_ns_list())


def test_sigterm_tears_the_lab_down() -> None:
    # A separate process: SIGTERM mid-run must still leave nothing behind.
    code = (
        "import sys, time\n"
        "from hasvc.lab.netns import Lab\n"
        "lab = Lab('hv').__enter__()\n"
        "lab.spawn('n1', ['sleep', '30'])\n"
        "print(lab.tag, lab.work_dir, flush=True)\n"
        "time.sleep(30)\n"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        tag, work_dir = proc.stdout.readline().split()
        assert f"{tag}-n1" in _ns_list()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        cleanup_stale(PREFIX)
    assert not [n for n in _ns_list() if n.startswith(tag + "-")]
    assert not os.path.exists(work_dir)


def test_cleanup_stale_spares_live_owners(lab: Lab) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=5)
    stale = f"{PREFIX}{dead.pid}-n1"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        removed = cleanup_stale(PREFIX)
        assert stale in removed
        assert lab.ns("n1") in _ns_list(), "a live owner's namespaces must never be touched"
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, timeout=10)


def test_ucarp_pair_elects_n1_and_fails_over(lab: Lab) -> None:
    require("ucarp")
    hooks = {n: lab.path(f"hook-{n}") for n in ("n1", "n2")}
    p1 = carp.start_ucarp(lab, "n1", 1, VIP4, "192.0.2.2", "s3cret", 0, hook_recorder(hooks["n1"]))
    carp.start_ucarp(lab, "n2", 1, VIP4, "192.0.2.3", "s3cret", 100, hook_recorder(hooks["n2"]))
    carp.wait_role(lab, "n1", VIP4, True, 5.0)
    # Both claim MASTER for about a second at start; judge only after that settles.
    time.sleep(2.5)
    assert carp.has_vip(lab, "n1", VIP4)
    assert not carp.has_vip(lab, "n2", VIP4), lab.addresses("n2")
    wait_last_line(hooks["n1"], "1@eth0 MASTER")

    t0 = time.monotonic()
    lab.kill(p1, signal.SIGKILL)
    took = carp.wait_role(lab, "n2", VIP4, True, 6.0)
    print(f"ucarp failover after SIGKILL of the master: {time.monotonic() - t0:.2f}s (poll {took:.2f}s)")
    wait_last_line(hooks["n2"], "1@eth0 MASTER")
    # SIGKILL gives ucarp no chance to run its down script: the dead node keeps the VIP.
    assert carp.has_vip(lab, "n1", VIP4)


def test_keepalived_vrrp3_ipv6_pair(lab: Lab) -> None:
    require("keepalived")
    demote = lab.path("demote-n1")
    hooks = {n: lab.path(f"hook-{n}") for n in ("n1", "n2")}
    carp.start_keepalived(lab, "n1", 2, VIP6, 150, hook_recorder(hooks["n1"]), demote)
    carp.start_keepalived(lab, "n2", 2, VIP6, 100, hook_recorder(hooks["n2"]), None)
    carp.wait_role(lab, "n1", VIP6, True, 5.0)
    time.sleep(0.5)
    assert not carp.has_vip(lab, "n2", VIP6), lab.addresses("n2")
    assert "tentative" not in lab.addresses("n1")
    wait_last_line(hooks["n1"], "2@eth0 MASTER")

    # Demotion through the track file moves the role; clearing it brings it back (preempt).
    with open(demote, "w") as fh:
        fh.write("100\n")
    print(f"keepalived demotion: {carp.wait_role(lab, 'n2', VIP6, True, 3.0):.2f}s")
    carp.wait_role(lab, "n1", VIP6, False, 3.0)
    with open(demote, "w") as fh:
        fh.write("0\n")
    print(f"keepalived undemotion: {carp.wait_role(lab, 'n1', VIP6, True, 3.0):.2f}s")
    carp.wait_role(lab, "n2", VIP6, False, 3.0)

    # Crash of the VRRP process (no respawn): the backup takes over after master_down.
    t0 = time.monotonic()
    lab.kill(carp.keepalived_vrrp_pid(lab, "n1", 2), signal.SIGKILL)
    carp.wait_role(lab, "n2", VIP6, True, 3.0)
    print(f"keepalived failover after SIGKILL of the VRRP child: {time.monotonic() - t0:.2f}s")
    wait_last_line(hooks["n2"], "2@eth0 MASTER")
    assert "2@eth0 BACKUP" in read_lines(hooks["n2"])


def test_keepalived_ipv4_and_link_cut(lab: Lab) -> None:
    require("keepalived")
    carp.start_keepalived4(lab, "n1", 3, VIP4, 150, None)
    carp.start_keepalived4(lab, "n2", 3, VIP4, 100, None)
    carp.wait_role(lab, "n1", VIP4, True, 5.0)
    time.sleep(0.5)
    assert not carp.has_vip(lab, "n2", VIP4)
    t0 = time.monotonic()
    lab.link("n1", False)
    carp.wait_role(lab, "n2", VIP4, True, 3.0)
    print(f"keepalived failover on link cut: {time.monotonic() - t0:.2f}s")
    lab.link("n1", True)
    carp.wait_role(lab, "n2", VIP4, False, 5.0)
    carp.wait_role(lab, "n1", VIP4, True, 5.0)
