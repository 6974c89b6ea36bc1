"""parse_devd_event, and DevdSource against a real seqpacket server and a real ifconfig script.

The server side speaks devd's protocol: an AF_UNIX SOCK_SEQPACKET listener that
writes one event per packet. ifconfig is a shell script printing a recorded file
that the test swaps to simulate transitions nobody told devd's clients about.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hasvc.facade import System
from hasvc.model import Observation, Role
from hasvc.roles.devd import DevdSource, parse_devd_event

DATA = Path(__file__).parent / "data" / "freebsd"
WAIT = 5.0  # upper bound for anything that should happen "at once"


# --- parse_devd_event -----------------------------------------------------------------------------

@pytest.mark.parametrize(("msg", "vhid", "ifname", "state"), [
    ("!system=CARP subsystem=1@vtnet0 type=MASTER", 1, "vtnet0", Role.MASTER),
    ("!system=CARP subsystem=2@vtnet0 type=BACKUP\n", 2, "vtnet0", Role.BACKUP),
    ("!system=CARP subsystem=255@igb0.100 type=INIT\n", 255, "igb0.100", Role.INIT),
    ('!system="CARP" subsystem="3@lagg0" type="MASTER"\n', 3, "lagg0", Role.MASTER),
    ("!system=CARP subsystem=4@vlan100 type=BACKUP timestamp=1732252800.123 jail=0\n",
     4, "vlan100", Role.BACKUP),
    ("!timestamp=1732252800 system=CARP subsystem=5@em0 type=MASTER", 5, "em0", Role.MASTER),
])
def test_parse_carp_events(msg: str, vhid: int, ifname: str, state: Role) -> None:
    obs = parse_devd_event(msg)
    assert obs is not None
    assert (obs.vhid, obs.interface, obs.state, obs.source) == (vhid, ifname, state, "devd")


@pytest.mark.parametrize("msg", [
    "!system=IFNET subsystem=vtnet0 type=LINK_UP\n",
    "!system=IFNET subsystem=vtnet0 type=LINK_DOWN\n",
    "!system=ETHERNET subsystem=vtnet0 type=IFATTACH\n",
    "+uhub0 at bus=0 sernum=\"\" on usbus0\n",
    "-uhub0 at bus=0 sernum=\"\" on usbus0\n",
    "? at pnpinfo vendor=0x8086 device=0x100e on pci0\n",
    "!system=CARP subsystem=1@vtnet0 type=LINK_UP\n",
    "!system=CARP subsystem=0@vtnet0 type=MASTER\n",
    "!system=CARP subsystem=256@vtnet0 type=MASTER\n",
    "!system=CARP subsystem=vtnet0 type=MASTER\n",
    "!system=CARP subsystem=1@ type=MASTER\n",
    "!system=CARP subsystem=x@vtnet0 type=MASTER\n",
    "!system=CARP subsystem=1@vtnet0\n",
    "!system=CARP type=MASTER\n",
    "system=CARP subsystem=1@vtnet0 type=MASTER\n",
    "!system=CARP subsystem=\"1@vtnet0 type=MASTER\n",
    "!",
    "",
    "\n",
    "\x00\xff garbage \ufffd",
    "!=== == =\"",
])
def test_parse_ignores_everything_else(msg: str) -> None:
    assert parse_devd_event(msg) is None


# --- a devd stand-in ------------------------------------------------------------------------------

class FakeDevd:
    """Listening seqpacket socket at `path`; each send() is one devd event packet."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.settimeout(WAIT)
        self.listener.bind(str(path))
        self.listener.listen(4)
        self.conns: list[socket.socket] = []

    def accept(self) -> socket.socket:
        conn, _ = self.listener.accept()
        conn.settimeout(WAIT)
        self.conns.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.listener.close()
        if self.path.exists():
            self.path.unlink()


class FakeIfconfig:
    """Executable that prints the file `show()` last selected, like `ifconfig -a` would."""

    def __init__(self, tmp_path: Path) -> None:
        self.output = tmp_path / "ifconfig.out"
        self.path = tmp_path / "ifconfig"
        self.path.write_text(f'#!/bin/sh\n[ "$1" = "-a" ] || exit 64\nexec cat "{self.output}"\n')
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def show(self, name: str) -> None:
        # Replace atomically so a concurrent run never sees half a file.
        staging = self.output.with_suffix(".new")
        shutil.copyfile(DATA / name, staging)
        os.replace(staging, self.output)

    def break_it(self) -> None:
        self.output.unlink(missing_ok=True)


class Runner:
    """DevdSource.run on a thread, with emitted observations and log lines queued."""

    def __init__(self, source: DevdSource) -> None:
        self.source = source
        self.events: queue.Queue[Observation] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=source.run, args=(self.events.put, self.stop), daemon=True)

    def start(self) -> Runner:
        self.thread.start()
        return self

    def take(self, n: int) -> list[tuple[str, int, Role, str]]:
        got = []
        for _ in range(n):
            try:
                obs = self.events.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail(f"expected {n} observations, got {got}")
            got.append((obs.interface, obs.vhid, obs.state, obs.source))
        return got

    def halt(self) -> float:
        """Stop the source; returns how long run() took to return."""
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=WAIT)
        assert not self.thread.is_alive(), "DevdSource.run ignored stop"
        return time.monotonic() - started


MakeRunner = Callable[..., Runner]


class Logs:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)

    def matching(self, text: str) -> list[str]:
        with self.lock:
            return [line for line in self.lines if text in line]

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + WAIT
        while not self.matching(text):
            if time.monotonic() > deadline:
                pytest.fail(f"no log line containing {text!r} in {self.lines}")
            time.sleep(0.01)


@pytest.fixture
def ifconfig(tmp_path: Path) -> FakeIfconfig:
    fake = FakeIfconfig(tmp_path)
    fake.show("seed001_vtnet0_master.txt")
    return fake


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "devd.pipe"


@pytest.fixture
def devd(sock_path: Path) -> Iterator[FakeDevd]:
    server = FakeDevd(sock_path)
    yield server
    server.close()


@pytest.fixture
def logs() -> Logs:
    return Logs()


@pytest.fixture
def make_runner(sock_path: Path, ifconfig: FakeIfconfig, logs: Logs) -> Iterator[MakeRunner]:
    runners: list[Runner] = []

    def make(backoff_initial: float = 0.02, backoff_max: float = 0.1) -> Runner:
        source = DevdSource(System(), socket_path=str(sock_path), ifconfig=str(ifconfig.path),
                            backoff_initial=backoff_initial, backoff_max=backoff_max, log=logs)
        runner = Runner(source)
        runners.append(runner)
        return runner.start()

    yield make
    for runner in runners:
        runner.halt()


MASTER_SNAPSHOT = [("vtnet0", 1, Role.MASTER, "ifconfig"), ("vtnet0", 2, Role.MASTER, "ifconfig")]
BACKUP_SNAPSHOT = [("vtnet0", 1, Role.BACKUP, "ifconfig"), ("vtnet0", 2, Role.BACKUP, "ifconfig")]


# --- DevdSource -----------------------------------------------------------------------------------

def test_snapshot_delegates_to_ifconfig(ifconfig: FakeIfconfig, sock_path: Path) -> None:
    source = DevdSource(System(), socket_path=str(sock_path), ifconfig=str(ifconfig.path))
    assert source.name == "devd"
    assert [(o.interface, o.vhid, o.state, o.source) for o in source.snapshot()] == MASTER_SNAPSHOT


def test_snapshot_at_connect_then_only_carp_events(devd: FakeDevd, make_runner: MakeRunner) -> None:
    runner = make_runner()
    conn = devd.accept()
    assert runner.take(2) == MASTER_SNAPSHOT
    for packet in [
        b"!system=IFNET subsystem=vtnet0 type=LINK_DOWN\n",
        b"+uhub0 at bus=0 sernum=\"\" on usbus0\n",
        b"?at pnpinfo vendor=0x1af4 on pci0\n",
        b"\xff\xfe not even utf-8",
        b"!system=CARP subsystem=2@vtnet0 type=WHATEVER\n",
        b"!system=CARP subsystem=2@vtnet0 type=BACKUP\n",
        b"!system=IFNET subsystem=vtnet0 type=LINK_UP\n",
        b'!system="CARP" subsystem="2@vtnet0" type="MASTER" extra=1\n',
    ]:
        conn.send(packet)
    # Ordering proves the non-CARP packets before and between were dropped.
    assert runner.take(2) == [("vtnet0", 2, Role.BACKUP, "devd"), ("vtnet0", 2, Role.MASTER, "devd")]
    assert runner.events.empty()


def test_reconnect_waits_backoff_and_resyncs(devd: FakeDevd, make_runner: MakeRunner,
                                             ifconfig: FakeIfconfig, logs: Logs) -> None:
    runner = make_runner(backoff_initial=0.3, backoff_max=1.0)
    first = devd.accept()
    assert runner.take(2) == MASTER_SNAPSHOT
    # The transition devd announces while nobody listens is gone for good...
    ifconfig.show("seed001_vtnet0_backup.txt")
    closed_at = time.monotonic()
    first.close()
    second = devd.accept()
    assert time.monotonic() - closed_at >= 0.3 * 0.9, "reconnected without backing off"
    # ...so the fresh connection must start from ifconfig.
    assert runner.take(2) == BACKUP_SNAPSHOT
    assert len(logs.matching("devd closed the connection")) == 1
    second.send(b"!system=CARP subsystem=1@vtnet0 type=MASTER\n")
    assert runner.take(1) == [("vtnet0", 1, Role.MASTER, "devd")]


def test_devd_restart_picks_up_missed_transition(sock_path: Path, make_runner: MakeRunner,
                                                 ifconfig: FakeIfconfig, logs: Logs) -> None:
    server = FakeDevd(sock_path)
    try:
        runner = make_runner(backoff_initial=0.02, backoff_max=0.1)
        server.accept()
        assert runner.take(2) == MASTER_SNAPSHOT
    finally:
        server.close()  # devd exits: connection and socket file gone
    logs.wait_for("devd closed the connection")
    # Several retries fail while devd is down, and the roles change meanwhile.
    time.sleep(0.4)
    ifconfig.show("seed001_vtnet0_backup.txt")
    server = FakeDevd(sock_path)
    try:
        conn = server.accept()
        assert runner.take(2) == BACKUP_SNAPSHOT
        conn.send(b"!system=CARP subsystem=2@vtnet0 type=MASTER\n")
        assert runner.take(1) == [("vtnet0", 2, Role.MASTER, "devd")]
        # One outage, one complaint: the failed retries are not logged one by one.
        assert len(logs.matching("devd closed the connection")) == 1
        assert logs.matching("cannot connect") == []
        assert len(logs.matching("reconnected")) == 1
    finally:
        server.close()


def test_backoff_grows_to_max(sock_path: Path, ifconfig: FakeIfconfig, logs: Logs) -> None:
    attempts: list[float] = []

    class Recording(DevdSource):
        def _connect(self, quiet: bool) -> socket.socket | None:
            attempts.append(time.monotonic())
            return super()._connect(quiet)

    source = Recording(System(), socket_path=str(sock_path), ifconfig=str(ifconfig.path),
                       backoff_initial=0.02, backoff_max=0.08, log=logs)
    runner = Runner(source).start()
    try:
        deadline = time.monotonic() + WAIT
        while len(attempts) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        runner.halt()
    gaps = [b - a for a, b in itertools.pairwise(attempts)][:5]
    assert len(gaps) == 5
    for i, gap in enumerate(gaps):
        expected = min(0.02 * 2 ** i, 0.08)
        assert gap >= expected * 0.9, (i, gaps)
    assert max(gaps) < 0.08 + 1.0, gaps


def test_snapshot_failure_after_connect_keeps_following(devd: FakeDevd, make_runner: MakeRunner,
                                                        ifconfig: FakeIfconfig, logs: Logs) -> None:
    ifconfig.break_it()
    runner = make_runner()
    conn = devd.accept()
    logs.wait_for("snapshot after connect failed")
    assert "No such file" in logs.matching("snapshot after connect failed")[0]
    conn.send(b"!system=CARP subsystem=1@vtnet0 type=BACKUP\n")
    assert runner.take(1) == [("vtnet0", 1, Role.BACKUP, "devd")]


def test_stop_while_connected_is_prompt(devd: FakeDevd, make_runner: MakeRunner) -> None:
    runner = make_runner()
    conn = devd.accept()
    assert runner.take(2) == MASTER_SNAPSHOT
    assert runner.halt() < 1.0
    # run() closed its end: the server sees EOF.
    assert conn.recv(64) == b""


def test_stop_during_long_backoff_is_prompt(make_runner: MakeRunner, logs: Logs) -> None:
    runner = make_runner(backoff_initial=30.0, backoff_max=60.0)  # no server at all
    logs.wait_for("cannot connect")
    assert runner.halt() < 1.0
    assert runner.events.empty()
