"""Test doubles that are real where they can be.

DevdServer is a real AF_UNIX SOCK_SEQPACKET listener speaking devd's
protocol (one event per packet). The fake ifconfig is a real executable
printing recorded FreeBSD output. The daemon runs as a real process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
SERVICE = Path(__file__).parent / "tcpsvc.py"


class DevdServer:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self.lock:
                self.clients.append(conn)

    def wait_client(self, timeout: float = 10.0) -> None:
        wait_until(lambda: bool(self.clients), timeout, "hasvc to connect to the devd socket")

    def send(self, message: str) -> None:
        with self.lock:
            for conn in list(self.clients):
                try:
                    conn.send(message.encode())
                except OSError:
                    self.clients.remove(conn)

    def carp(self, vhid: int, ifname: str, state: str) -> None:
        self.send(f"!system=CARP subsystem={vhid}@{ifname} type={state}\n")

    def drop_clients(self) -> None:
        with self.lock:
            for conn in self.clients:
                conn.close()
            self.clients.clear()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        self.drop_clients()
        self.sock.close()


def fake_ifconfig(tmp: Path, recorded: str) -> tuple[Path, Path]:
    """An ifconfig that prints whatever the returned state file holds."""
    state = tmp / "ifconfig.out"
    state.write_text((DATA / "freebsd" / recorded).read_text())
    script = tmp / "ifconfig"
    script.write_text(f"#!/bin/sh\nexec cat {state}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, state


def fake_sysctl(tmp: Path) -> tuple[Path, Path]:
    """Records each `sysctl name=value` call, one per line: the kernel counter itself cannot run here."""
    calls = tmp / "sysctl.calls"
    script = tmp / "sysctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    script.chmod(0o755)
    return script, calls


def node_config(tmp: Path, ifconfig: Path, devd: Path, services: dict[str, str], extra: str = "",
                groups: str = "") -> Path:
    (tmp / "services.d").mkdir(exist_ok=True)
    for name, text in services.items():
        (tmp / "services.d" / f"{name}.yaml").write_text(textwrap.dedent(text))
    groups = groups or ("  - {vhid: 1, interface: vtnet0, ipv4: 127.0.0.41}\n"
                        "  - {vhid: 2, interface: vtnet0, ipv4: 127.0.0.42}\n")
    cfg = tmp / "hasvc.yaml"
    cfg.write_text(
        "node: t1\nplatform: freebsd\nrole_source: devd\n"
        f"freebsd: {{ifconfig: {ifconfig}, devd_socket: {devd}}}\n"
        f"control_socket: {tmp}/hasvc.sock\nstate_dir: {tmp}/state\n"
        "addresses: {ipv4: 127.0.0.1}\n"
        f"groups:\n{groups}" + extra)
    return cfg


def service_yaml(port: int, vhid: int = 1, extra: str = "") -> str:
    return (f"groups: [{vhid}]\non: {{master: start, backup: stop, init: stop}}\nbind: vip4\n"
            f"start: [{sys.executable}, -S, {SERVICE}, '{{vip4}}', '{port}']\n" + extra)


class DaemonProc:
    """`hasvc run` as a child process, always killed at the end."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "hasvc", "-c", str(self.config), "run", "-d"],
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.ask("ping").get("ok"), 15, "the daemon's control socket")
        return self

    def ask(self, cmd: str, **kw: Any) -> dict[str, Any]:
        from hasvc import control

        try:
            return control.request(str(self.config.parent / "hasvc.sock"), {"cmd": cmd, **kw}, timeout=5)
        except (control.ControlError, OSError, ValueError):
            return {}

    def service(self, name: str) -> dict[str, Any]:
        return next(s for s in self.ask("status")["services"] if s["name"] == name)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def logtext(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def answers(addr: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            return s.recv(16).startswith(b"ok")
    except OSError:
        return False


def kill_pid(pid: int | None) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
