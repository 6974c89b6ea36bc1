"""The real daemon on a real devd seqpacket socket and recorded FreeBSD ifconfig output.

Services are real processes bound to loopback addresses standing in for
the shared address.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    DATA,
    DaemonProc,
    DevdServer,
    answers,
    fake_ifconfig,
    fake_sysctl,
    free_port,
    kill_pid,
    node_config,
    service_yaml,
    wait_until,
)


class Node:
    def __init__(self, tmp: Path, debounce: float = 0.05, extra_services: dict[str, str] | None = None,
                 extra: str = "") -> None:
        self.tmp = tmp
        self.devd = DevdServer(tmp / "devd.pipe")
        self.ifconfig, self.ifstate = fake_ifconfig(tmp, "seed001_vtnet0_backup.txt")
        self.p1, self.p2 = free_port(), free_port()
        services = {"svc1": service_yaml(self.p1, 1), "svc2": service_yaml(self.p2, 2), **(extra_services or {})}
        self.config = node_config(tmp, self.ifconfig, tmp / "devd.pipe", services,
                                  extra=f"debounce: {debounce}\n" + extra)
        self.daemon = DaemonProc(self.config, tmp / "hasvc.log")

    def start(self) -> Node:
        self.daemon.start()
        self.devd.wait_client()
        return self

    def recorded(self, name: str) -> None:
        self.ifstate.write_text((DATA / "freebsd" / name).read_text())

    def pid(self, name: str) -> int | None:
        return self.daemon.service(name)["pid"]

    def cleanup(self) -> None:
        self.daemon.stop()
        self.devd.close()
        # The daemon leaves services running on exit by design (they get adopted); tests must not.
        run = self.tmp / "state" / "run"
        for pidfile in run.glob("*.pid") if run.exists() else []:
            text = pidfile.read_text().strip()
            kill_pid(int(text) if text.isdigit() else None)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    try:
        yield n.start()
    finally:
        n.cleanup()


def test_master_starts_backup_stops(node: Node) -> None:
    assert node.daemon.service("svc1")["state"] == "stopped"
    node.devd.carp(1, "vtnet0", "MASTER")
    wait_until(lambda: answers("127.0.0.41", node.p1), 10, "svc1 to answer on the stand-in shared address")
    assert not answers("127.0.0.42", node.p2), "svc2 follows vhid 2, which is still BACKUP"
    node.devd.carp(1, "vtnet0", "BACKUP")
    wait_until(lambda: not answers("127.0.0.41", node.p1), 10, "svc1 to stop")
    log = node.daemon.logtext()
    assert "vhid 1@vtnet0: UNKNOWN -> BACKUP (ifconfig)" in log
    assert "vhid 1@vtnet0: BACKUP -> MASTER (devd)" in log
    assert "vhid 1@vtnet0: MASTER -> BACKUP (devd)" in log


def test_non_carp_events_and_other_interfaces_are_ignored(node: Node) -> None:
    for msg in ("!system=IFNET subsystem=vtnet0 type=LINK_UP\n", "+uhub0 at bus=0\n", "garbage",
                "!system=CARP subsystem=1@em0 type=MASTER\n", "!system=CARP subsystem=9@vtnet0 type=MASTER\n"):
        node.devd.send(msg)
    node.devd.carp(2, "vtnet0", "MASTER")
    wait_until(lambda: answers("127.0.0.42", node.p2), 10, "svc2 to start")
    roles = {g["vhid"]: g["role"] for g in node.daemon.ask("role")["groups"]}
    assert roles == {1: "BACKUP", 2: "MASTER"}


def test_flap_inside_debounce_leaves_service_untouched(tmp_path: Path) -> None:
    n = Node(tmp_path, debounce=1.5)
    try:
        n.start()
        n.devd.carp(1, "vtnet0", "MASTER")
        wait_until(lambda: answers("127.0.0.41", n.p1), 10, "svc1 to start")
        pid = n.pid("svc1")
        started = n.daemon.service("svc1")["last_time"]
        n.devd.carp(1, "vtnet0", "BACKUP")
        n.devd.carp(1, "vtnet0", "MASTER")
        time.sleep(2.5)  # past the debounce window: any action would have happened by now
        svc = n.daemon.service("svc1")
        assert (svc["pid"], svc["last_time"], svc["state"]) == (pid, started, "running")
        log = n.daemon.logtext()
        assert "vhid 1@vtnet0: MASTER -> BACKUP (devd)" in log and log.count("svc1: stop") == 0
    finally:
        n.cleanup()


def test_adopts_running_services_after_daemon_restart(node: Node) -> None:
    node.devd.carp(1, "vtnet0", "MASTER")
    wait_until(lambda: answers("127.0.0.41", node.p1), 10, "svc1 to start")
    pid = node.pid("svc1")
    assert node.daemon.stop() == 0
    assert answers("127.0.0.41", node.p1), "services keep running while hasvc is down"
    node.recorded("seed001_vtnet0_master.txt")
    node.devd.drop_clients()
    node.daemon.start()
    svc = wait_until(lambda: node.daemon.service("svc1")["pid"] and node.daemon.service("svc1"), 10, "status")
    assert svc["pid"] == pid and svc["state"] == "running"
    assert f"svc1: adopted running pid {pid}" in node.daemon.logtext()
    time.sleep(0.5)
    assert node.pid("svc1") == pid and node.daemon.service("svc1")["last_action"] == ""
    # vhid 2 is MASTER in the new recording: its service starts, while svc1 is left alone.
    wait_until(lambda: answers("127.0.0.42", node.p2), 10, "svc2 to start from the ifconfig reading")


def test_reconnect_rereads_ifconfig(node: Node) -> None:
    node.devd.drop_clients()
    # The transition happens while hasvc is disconnected: devd never replays it.
    node.recorded("seed001_vtnet0_master.txt")
    wait_until(lambda: answers("127.0.0.41", node.p1) and answers("127.0.0.42", node.p2), 15,
               "both services to start from the ifconfig read after reconnect")
    assert "MASTER (ifconfig)" in node.daemon.logtext()


def test_role_command_exit_codes_and_json(node: Node) -> None:
    node.devd.carp(1, "vtnet0", "MASTER")
    wait_until(lambda: node.daemon.ask("role")["groups"][0]["role"] == "MASTER", 10, "role MASTER")

    def role(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hasvc", "-c", str(node.config), "role", *args],
                              capture_output=True, text=True, timeout=30)

    assert role("--vhid", "1").returncode == 0
    assert role("--vhid", "2").returncode == 1
    out = role("--json", "--vhid", "2")
    import json

    data = json.loads(out.stdout)
    assert (data["role"], data["advbase"], data["advskew"], data["source"]) == ("BACKUP", 1, 200, "ifconfig")
    assert "MASTER" in role().stdout


def test_control_socket_is_root_only(node: Node) -> None:
    mode = stat.S_IMODE(os.stat(node.tmp / "hasvc.sock").st_mode)
    assert mode == 0o600


def test_bad_config_at_start_exits_2(tmp_path: Path) -> None:
    n = Node(tmp_path, extra_services={"bad": "groups: [3]\nstart: [/bin/true]\n"})
    try:
        proc = subprocess.run([sys.executable, "-m", "hasvc", "-c", str(n.config), "run"],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"Error: {tmp_path}/services.d/bad.yaml:1: groups[0]: unknown vhid 3")
    finally:
        n.cleanup()


def test_reload_keeps_running_config_when_invalid_and_applies_only_changes(node: Node) -> None:
    node.devd.carp(1, "vtnet0", "MASTER")
    node.devd.carp(2, "vtnet0", "MASTER")
    wait_until(lambda: answers("127.0.0.41", node.p1) and answers("127.0.0.42", node.p2), 10, "both services")
    pid1, pid2 = node.pid("svc1"), node.pid("svc2")
    good = (node.tmp / "services.d" / "svc2.yaml").read_text()
    (node.tmp / "services.d" / "svc2.yaml").write_text(good.replace("bind: vip4", "bind: everywhere"))
    node.daemon.signal(signal.SIGHUP)
    wait_until(lambda: "reload failed, keeping running config" in node.daemon.logtext(), 10, "the reload error")
    assert "svc2.yaml:3: bind: must be one of" in node.daemon.logtext()
    assert (node.pid("svc1"), node.pid("svc2")) == (pid1, pid2)
    new_port = free_port()
    (node.tmp / "services.d" / "svc2.yaml").write_text(good.replace(f"'{node.p2}'", f"'{new_port}'"))
    node.daemon.signal(signal.SIGHUP)
    wait_until(lambda: answers("127.0.0.42", new_port), 10, "svc2 on its new port")
    assert not answers("127.0.0.42", node.p2)
    assert node.pid("svc1") == pid1, "an unchanged service is not touched by a reload"


def test_after_orders_start_and_reverse_stop(tmp_path: Path) -> None:
    trace = tmp_path / "trace"

    def step(name: str, action: str) -> str:
        return f"[{sys.executable}, -c, 'open(\"{trace}\", \"a\").write(\"{action} {name}\\n\")']"

    def cmds(name: str, after: str = "") -> str:
        return (f"kind: commands\ngroups: [1]\non: {{master: start, backup: stop}}\n"
                f"commands:\n  start: [{step(name, 'start')}]\n  stop: [{step(name, 'stop')}]\n"
                + (f"after: [{after}]\n" if after else ""))

    n = Node(tmp_path, extra_services={"hast": cmds("hast"), "zfs": cmds("zfs", "hast"), "nfsd": cmds("nfsd", "zfs")})
    try:
        n.start()
        # Commands cannot be looked at, so the BACKUP's steps run at start too (hastctl role secondary).
        wait_until(lambda: trace.exists() and trace.read_text().count("\n") == 3, 10, "three stop steps at start")
        n.devd.carp(1, "vtnet0", "MASTER")
        wait_until(lambda: trace.read_text().count("\n") == 6, 10, "three start steps")
        n.devd.carp(1, "vtnet0", "BACKUP")
        wait_until(lambda: trace.read_text().count("\n") == 9, 10, "three stop steps")
        assert trace.read_text().split("\n")[:9] == [
            "stop nfsd", "stop zfs", "stop hast",
            "start hast", "start zfs", "start nfsd", "stop nfsd", "stop zfs", "stop hast"]
    finally:
        n.cleanup()


def test_failing_service_is_restarted_then_demotes_and_recovers(tmp_path: Path) -> None:
    sysctl, calls = fake_sysctl(tmp_path)
    port = free_port()
    broken = (f"groups: [1]\non: {{master: start, backup: stop}}\nbind: vip4\n"
              f"start: [{sys.executable}, -S, -c, 'import time; time.sleep(120)']\n"
              f"health:\n  - {{type: tcp, address: '{{vip4}}', port: {port}, timeout: 0.2}}\n"
              "health_interval: 0.1\nhealth_failures: 1\nrestart: {max: 2, backoff: 0.1}\ndemote: true\n")
    n = Node(tmp_path, extra_services={"broken": broken},
             extra="demotion: {method: sysctl, amount: 50}\n")
    n.config.write_text(n.config.read_text().replace("freebsd: {", f"freebsd: {{sysctl: {sysctl}, "))
    try:
        n.start()
        n.devd.carp(1, "vtnet0", "MASTER")
        wait_until(lambda: calls.exists() and "net.inet.carp.demotion=50" in calls.read_text(), 20, "demotion")
        status = n.daemon.ask("status")
        svc = next(s for s in status["services"] if s["name"] == "broken")
        assert svc["restarts"] >= 2 and svc["demote"]
        assert status["demotion"]["demoted"] and "broken" in status["demotion"]["reason"]
        assert (tmp_path / "state" / "demotion").read_text().strip() == "50"
        # The demotion worked: the peer takes over and we become BACKUP. It must stay demoted
        # (the service is not even run here), or the VIP would flap straight back.
        n.devd.carp(1, "vtnet0", "BACKUP")
        wait_until(lambda: n.daemon.service("broken")["state"] == "stopped", 10, "the service to stop")
        time.sleep(0.5)
        assert calls.read_text().split() == ["net.inet.carp.demotion=50"]
        assert n.daemon.ask("status")["demotion"]["demoted"]
        # The peer dies too: MASTER again, and this time the service is repaired.
        n.devd.carp(1, "vtnet0", "MASTER")
        # Repair: the check's port now answers; the demotion is lifted by exactly our share.
        fix = subprocess.Popen([sys.executable, "-S", str(Path(__file__).parent / "tcpsvc.py"), "127.0.0.41",
                                str(port)])
        try:
            wait_until(lambda: "net.inet.carp.demotion=-50" in calls.read_text(), 20, "undemotion")
        finally:
            fix.kill()
            fix.wait(5)
        assert calls.read_text().split() == ["net.inet.carp.demotion=50", "net.inet.carp.demotion=-50"]
    finally:
        n.cleanup()


def test_reload_with_edited_template_reloads_the_service_in_place(tmp_path: Path) -> None:
    hup = tmp_path / "hup"
    code = f"import signal,time; signal.signal(signal.SIGHUP, lambda *a: open('{hup}','a').write('x')); time.sleep(120)"
    svc = (f"groups: [1]\non: {{master: start, backup: stop}}\nstart: [{sys.executable}, -S, -c, \"{code}\"]\n"
           "templates:\n  - {source: svc.conf.in, dest: '{state_dir}/svc.conf'}\n")
    n = Node(tmp_path, extra_services={"conf": svc})
    (tmp_path / "services.d" / "svc.conf.in").write_text("next-server {vip4};\n")
    try:
        n.start()
        n.devd.carp(1, "vtnet0", "MASTER")
        pid = wait_until(lambda: n.pid("conf"), 10, "the service to start")
        time.sleep(0.3)  # its SIGHUP handler is installed
        (tmp_path / "services.d" / "svc.conf.in").write_text("next-server {vip4};\nfilename \"pxeboot\";\n")
        n.daemon.signal(signal.SIGHUP)
        wait_until(lambda: hup.exists(), 10, "SIGHUP to reach the service")
        assert (tmp_path / "state" / "svc.conf").read_text().endswith('filename "pxeboot";\n')
        assert n.pid("conf") == pid
    finally:
        n.cleanup()


def test_unreadable_roles_at_start_leave_running_services_alone(tmp_path: Path) -> None:
    n = Node(tmp_path)
    try:
        n.start()
        n.devd.carp(1, "vtnet0", "MASTER")
        wait_until(lambda: answers("127.0.0.41", n.p1), 10, "svc1 to start")
        pid = n.pid("svc1")
        n.daemon.stop()
        n.ifconfig.write_text("#!/bin/sh\necho 'ifconfig: cannot talk to the kernel' >&2\nexit 1\n")
        n.devd.drop_clients()
        n.devd.close()  # no devd either: hasvc knows nothing about the roles
        n.daemon.start()
        time.sleep(1.0)
        assert n.pid("svc1") == pid and answers("127.0.0.41", n.p1)
        assert n.daemon.ask("role")["groups"][0]["role"] == "UNKNOWN"
    finally:
        n.cleanup()
