"""Service kinds against real processes and real commands (FreeBSD ones as recording scripts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hasvc import config
from hasvc.facade import System
from hasvc.kinds import make
from tests.support import DATA, wait_until

NODE = """\
node: t1
platform: {platform}
freebsd: {{ifconfig: {tmp}/ifconfig, service: {tmp}/service}}
linux: {{ip: {tmp}/ip}}
state_dir: {tmp}/state
addresses: {{ipv4: 192.0.2.2}}
groups:
  - {{vhid: 1, interface: vtnet0, ipv4: 192.0.2.4}}
"""


def load(tmp: Path, policy: str, platform: str = "freebsd", files: dict[str, str] | None = None) -> config.Config:
    (tmp / "services.d").mkdir(exist_ok=True)
    (tmp / "services.d" / "svc.yaml").write_text(textwrap.dedent(policy))
    for name, text in (files or {}).items():
        (tmp / "services.d" / name).write_text(text)
    (tmp / "hasvc.yaml").write_text(NODE.format(platform=platform, tmp=tmp))
    return config.load(str(tmp / "hasvc.yaml"))


def recorder(path: Path, output: str = "", rc: int = 0) -> Path:
    """A stand-in for a FreeBSD command: logs its argv, prints recorded output."""
    calls = path.with_suffix(".calls")
    out = path.with_suffix(".out")
    out.write_text(output)
    path.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncat {out}\nexit {rc}\n')
    path.chmod(0o755)
    return calls


def test_process_start_stop_reload_templates_and_touch(tmp_path: Path) -> None:
    code = f"import signal,time; signal.signal(signal.SIGHUP, lambda *a: open('{tmp_path}/hup','a').write('x')); "
    cfg = load(tmp_path, f"""
        groups: [1]
        start: [{sys.executable}, -S, -c, "{code}time.sleep(60)"]
        templates:
          - {{source: conf.in, dest: "{{state_dir}}/etc/svc.conf", mode: "0600"}}
        touch: ["{{state_dir}}/db/leases"]
        """, files={"conf.in": "server-identifier {vip4};\n"})
    kind = make(cfg.policies["svc"], cfg, System())
    out = kind.start()
    assert out.ok and kind.running() and out.pid
    conf = tmp_path / "state" / "etc" / "svc.conf"
    assert conf.read_text() == "server-identifier 192.0.2.4;\n" and (conf.stat().st_mode & 0o777) == 0o600
    assert (tmp_path / "state" / "db" / "leases").read_text() == ""
    assert (tmp_path / "state" / "run" / "svc.pid").read_text().strip() == str(out.pid)
    time.sleep(0.3)  # let the child install its SIGHUP handler
    assert kind.reload().ok
    wait_until(lambda: (tmp_path / "hup").exists(), 5, "SIGHUP to reach the service")
    assert kind.stop().ok and not kind.running()
    assert not (tmp_path / "state" / "run" / "svc.pid").exists()


def test_process_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    cfg = load(tmp_path, f"""
        groups: [1]
        start: [{sys.executable}, -S, -c, "{code}"]
        timeouts: {{stop: 0.5}}
        """)
    kind = make(cfg.policies["svc"], cfg, System())
    pid = kind.start().pid
    time.sleep(0.3)
    out = kind.stop()
    assert out.ok and "killed" in out.detail and not System().alive(pid)


def test_process_forking_daemon_with_pidfile_and_adoption(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    script = tmp_path / "forker.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        if os.fork():
            sys.exit(0)
        os.setsid()
        open("{pidfile}", "w").write(str(os.getpid()))
        time.sleep(60)
        """))
    cfg = load(tmp_path, f"groups: [1]\nstart: [{sys.executable}, -S, {script}]\npidfile: {pidfile}\n")
    kind = make(cfg.policies["svc"], cfg, System())
    out = kind.start()
    try:
        assert out.ok and out.pid == int(pidfile.read_text())
        # A new daemon instance (fresh kind object) adopts it instead of starting another.
        again = make(cfg.policies["svc"], cfg, System())
        assert again.adopt() == out.pid and again.running()
    finally:
        os.kill(out.pid, signal.SIGKILL)


def test_process_adoption_by_exact_argv_only(tmp_path: Path) -> None:
    argv = [sys.executable, "-S", "-c", "import time; time.sleep(60)", "hasvc-adopt-test", str(tmp_path)]
    other = subprocess.Popen([*argv[:-1], "something-else"])
    cfg = load(tmp_path, "groups: [1]\nstart: [" + ", ".join(f'"{a}"' for a in argv) + "]\n")
    try:
        kind = make(cfg.policies["svc"], cfg, System())
        assert kind.adopt() is None, "a process with other arguments is not ours"
        mine = subprocess.Popen(argv)
        try:
            assert kind.adopt() == mine.pid
        finally:
            mine.kill()
            mine.wait(5)
    finally:
        other.kill()
        other.wait(5)


def test_rc_kind_uses_service_one_verbs(tmp_path: Path) -> None:
    calls = recorder(tmp_path / "service", rc=0)
    cfg = load(tmp_path, "kind: rc\ngroups: [1]\nservice: isc-dhcpd\n")
    kind = make(cfg.policies["svc"], cfg, System())
    assert kind.start().ok and kind.running() and kind.reload().ok and kind.stop().ok
    assert calls.read_text().split("\n")[:4] == [
        "isc-dhcpd onestart", "isc-dhcpd onestatus", "isc-dhcpd onereload", "isc-dhcpd onestop"]
    recorder(tmp_path / "service", output="isc-dhcpd is not running.\n", rc=1)
    assert not kind.running()
    failed = kind.start()
    assert not failed.ok and "exited 1: isc-dhcpd is not running." in failed.detail


def test_commands_kind_runs_steps_in_order_and_stops_at_first_failure(tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    step = f"[{sys.executable}, -S, -c, \"import sys; open('{trace}','a').write(sys.argv[1] + chr(10))\""
    cfg = load(tmp_path, f"""
        kind: commands
        groups: [1]
        commands:
          start: [{step}, hastctl-primary], {step}, zpool-import], [/bin/false], {step}, never]]
          stop: [{step}, zpool-export], {step}, hastctl-secondary]]
        """)
    kind = make(cfg.policies["svc"], cfg, System())
    out = kind.start()
    assert not out.ok and "step 3 /bin/false exited 1" in out.detail and not kind.running()
    assert kind.stop().ok
    assert trace.read_text().split() == ["hastctl-primary", "zpool-import", "zpool-export", "hastctl-secondary"]


def test_address_kind_freebsd_ifconfig(tmp_path: Path) -> None:
    recorded = (DATA / "freebsd" / "seed001_vtnet0_backup.txt").read_text()
    calls = recorder(tmp_path / "ifconfig", output=recorded)
    cfg = load(tmp_path, """
        kind: address
        groups: [1]
        address: {interface: vtnet0, ipv4: 203.0.113.10/24, ipv6: "2001:db8:ff::10/64"}
        """)
    kind = make(cfg.policies["svc"], cfg, System())
    assert not kind.running()
    assert kind.start().ok
    assert "vtnet0 inet 203.0.113.10/24 alias" in calls.read_text()
    assert "vtnet0 inet6 2001:db8:ff::10/64 alias" in calls.read_text()
    recorder(tmp_path / "ifconfig", output=recorded + "\tinet 203.0.113.10 netmask 0xffffff00\n"
             "\tinet6 2001:db8:ff::10 prefixlen 64\n")
    assert kind.running()
    assert kind.stop().ok
    assert "vtnet0 inet 203.0.113.10/24 -alias" in (tmp_path / "ifconfig.calls").read_text()


def test_address_kind_linux_ip_in_a_namespace(tmp_path: Path) -> None:
    ns = f"hvk{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "vtnet0", "type", "veth", "peer", "name", "p0"],
                       check=True, timeout=10)
        subprocess.run(["ip", "-n", ns, "link", "set", "vtnet0", "up"], check=True, timeout=10)
        (tmp_path / "ip").write_text(f'#!/bin/sh\nexec ip -n {ns} "$@"\n')
        (tmp_path / "ip").chmod(0o755)
        cfg = load(tmp_path, "kind: address\ngroups: [1]\naddress: {interface: vtnet0, ipv4: 203.0.113.10/24}\n",
                   platform="linux")
        kind = make(cfg.policies["svc"], cfg, System())
        assert not kind.running() and kind.start().ok and kind.running()
        shown = subprocess.run(["ip", "-n", ns, "-o", "addr", "show", "dev", "vtnet0"], capture_output=True,
                               text=True, timeout=10).stdout
        assert "203.0.113.10/24" in shown
        assert kind.stop().ok and not kind.running()
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=10)
