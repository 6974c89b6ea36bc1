"""parse_ifconfig against recorded FreeBSD output, and the polling IfconfigSource."""

from __future__ import annotations

import os
import re
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from hasvc.facade import Result, System
from hasvc.model import Observation, Role
from hasvc.roles import RoleSourceError
from hasvc.roles.ifconfig import CarpVhid, IfconfigSource, parse_ifconfig

DATA = Path(__file__).parent / "data" / "freebsd"

M, B, INIT = Role.MASTER, Role.BACKUP, Role.INIT

# What every recorded file must parse to: (interface, vhid, state, advbase, advskew, addresses).
EXPECTED: dict[str, list[tuple[str, int, Role, int | None, int | None, tuple[str, ...]]]] = {
    "seed001_vtnet0_master.txt": [
        ("vtnet0", 1, M, 1, 100, ("192.0.2.1",)),
        ("vtnet0", 2, M, 1, 100, ("2001:db8::1",)),
    ],
    "seed001_vtnet0_backup.txt": [
        ("vtnet0", 1, B, 1, 200, ("192.0.2.1",)),
        ("vtnet0", 2, B, 1, 200, ("2001:db8::1",)),
    ],
    "fbsd13_em1_down_init.txt": [
        ("em1", 3, INIT, 1, 100, ("198.51.100.1",)),
    ],
    "fbsd14_vtnet0_peer_key.txt": [
        ("vtnet0", 7, M, 1, 0, ("203.0.113.1",)),
        ("vtnet0", 8, B, 1, 100, ("2001:db8:7::1",)),
    ],
    "fbsd13_lagg_vlan_multi.txt": [
        ("lagg0", 1, M, 1, 0, ("192.0.2.1", "2001:db8:1::1")),
        ("lagg0", 2, B, 1, 100, ("192.0.2.2",)),
        ("vlan100", 100, M, 2, 50, ("198.51.100.1", "198.51.100.2")),
        ("vlan100", 101, B, 1, 100, ("2001:db8:100::1",)),
    ],
}


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def as_tuples(found: list[CarpVhid]) -> list[tuple[str, int, Role, int | None, int | None, tuple[str, ...]]]:
    return [(c.interface, c.vhid, c.state, c.advbase, c.advskew, c.addresses) for c in found]


# --- recorded files -------------------------------------------------------------------------------

def test_every_recorded_file_has_expectations() -> None:
    assert sorted(p.name for p in DATA.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_recorded(name: str) -> None:
    assert as_tuples(parse_ifconfig(recorded(name))) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_files_keep_freebsd_layout(name: str) -> None:
    # Only interface headers start in column 0; everything else is tab-indented.
    for line in recorded(name).splitlines():
        assert line.startswith("\t") or re.match(r"[a-z0-9.]+: flags=[0-9a-f]+<", line), line


def test_link_local_scope_is_not_a_carp_address() -> None:
    found = parse_ifconfig(recorded("seed001_vtnet0_master.txt"))
    assert all("%" not in addr for c in found for addr in c.addresses)
    assert all(not addr.startswith("fe80:") for c in found for addr in c.addresses)


def test_freebsd14_peer_line_and_key_suffix() -> None:
    found = parse_ifconfig(recorded("fbsd14_vtnet0_peer_key.txt"))
    # The peer lines neither add vhids nor break the state/advskew of the carp line above them.
    assert [(c.vhid, c.state, c.advskew) for c in found] == [(7, M, 0), (8, B, 100)]


def test_interface_without_carp_yields_nothing() -> None:
    found = parse_ifconfig(recorded("fbsd13_lagg_vlan_multi.txt"))
    assert {c.interface for c in found} == {"lagg0", "vlan100"}


# --- synthetic corner cases -----------------------------------------------------------------------

HEADER = "{name}: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n"


@pytest.mark.parametrize("ifname", ["vtnet0", "em0", "vlan100", "lagg0", "igb0.100", "tap0", "bridge0"])
def test_interface_names(ifname: str) -> None:
    text = (HEADER.format(name=ifname)
            + "\tinet 192.0.2.9 netmask 0xffffff00 broadcast 192.0.2.255 vhid 9\n"
            + "\tcarp: BACKUP vhid 9 advbase 1 advskew 20\n")
    assert parse_ifconfig(text) == [CarpVhid(ifname, 9, B, 1, 20, ("192.0.2.9",))]


def test_vhid_addresses_attach_to_their_own_interface() -> None:
    text = (HEADER.format(name="em0")
            + "\tinet 192.0.2.1 netmask 0xffffff00 broadcast 192.0.2.255 vhid 1\n"
            + "\tcarp: MASTER vhid 1 advbase 1 advskew 0\n"
            + HEADER.format(name="em1")
            + "\tinet 198.51.100.1 netmask 0xffffff00 broadcast 198.51.100.255 vhid 1\n"
            + "\tinet6 fe80::1%em1 prefixlen 64 scopeid 0x2 vhid 1\n"
            + "\tcarp: BACKUP vhid 1 advbase 1 advskew 0\n")
    assert as_tuples(parse_ifconfig(text)) == [
        ("em0", 1, M, 1, 0, ("192.0.2.1",)),
        ("em1", 1, B, 1, 0, ("198.51.100.1", "fe80::1")),
    ]


def test_unknown_and_malformed_lines_are_ignored() -> None:
    text = ("\tcarp: MASTER vhid 5 advbase 1 advskew 0\n"  # before any header: no interface
            + HEADER.format(name="em0")
            + "\tcarp: <UNKNOWN> vhid 4 advbase 1 advskew 0\n"
            + "\tcarp: MASTER vhid x advbase 1 advskew 0\n"
            + "\tvrrp: MASTER vrid 6 prio 100 interval 100\n"
            + "\tsomething new: 1 2 3\n"
            + "\tinet 192.0.2.1 netmask 0xffffff00 vhid\n"
            + "\tcarp: MASTER vhid 3\n"
            + "garbage without a colon\n")
    assert parse_ifconfig(text) == [CarpVhid("em0", 3, M, None, None, ())]


def test_empty_output() -> None:
    assert parse_ifconfig("") == []


# --- IfconfigSource -------------------------------------------------------------------------------

class ScriptedSystem(System):
    """Answers run() from a list of Results; sets `stop` once they are used up."""

    def __init__(self, results: list[Result], stop: threading.Event | None = None) -> None:
        self.results = list(results)
        self.calls: list[tuple[list[str], float]] = []
        self.stop = stop

    def run(self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> Result:
        self.calls.append((list(argv), timeout))
        result = self.results.pop(0)
        if not self.results and self.stop is not None:
            self.stop.set()
        return result


def ok(name: str) -> Result:
    return Result(0, recorded(name), "")


def test_snapshot_runs_ifconfig_a() -> None:
    system = ScriptedSystem([ok("seed001_vtnet0_master.txt")])
    source = IfconfigSource(system, ifconfig="/usr/local/sbin/ifconfig", timeout=3.0)
    observations = source.snapshot()
    assert system.calls == [(["/usr/local/sbin/ifconfig", "-a"], 3.0)]
    assert [(o.interface, o.vhid, o.state, o.source, o.advbase, o.advskew) for o in observations] == [
        ("vtnet0", 1, M, "ifconfig", 1, 100),
        ("vtnet0", 2, M, "ifconfig", 1, 100),
    ]
    assert source.name == "ifconfig"


def test_snapshot_failure_raises_with_stderr() -> None:
    system = ScriptedSystem([Result(1, "", "ifconfig: interface vtnet9 does not exist\n")])
    with pytest.raises(RoleSourceError, match="vtnet9 does not exist"):
        IfconfigSource(system).snapshot()


def test_snapshot_through_real_executable(tmp_path: Path) -> None:
    output = tmp_path / "ifconfig.out"
    output.write_text(recorded("fbsd13_em1_down_init.txt"))
    script = tmp_path / "ifconfig"
    script.write_text(f'#!/bin/sh\n[ "$1" = "-a" ] || exit 64\nexec cat "{output}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    observations = IfconfigSource(System(), ifconfig=str(script)).snapshot()
    assert [(o.interface, o.vhid, o.state) for o in observations] == [("em1", 3, INIT)]
    os.unlink(output)
    with pytest.raises(RoleSourceError, match="No such file"):
        IfconfigSource(System(), ifconfig=str(script)).snapshot()


def test_run_emits_only_changes() -> None:
    stop = threading.Event()
    results = [
        ok("seed001_vtnet0_master.txt"),   # first poll: everything is new
        ok("seed001_vtnet0_master.txt"),   # unchanged: nothing
        ok("seed001_vtnet0_backup.txt"),   # both vhids flip
        Result(1, "", "boom"),             # failure: logged once, state kept
        Result(1, "", "boom"),
        ok("seed001_vtnet0_backup.txt"),   # unchanged after the failure: nothing
        ok("fbsd13_em1_down_init.txt"),    # vtnet0 gone, em1 appears
        ok("seed001_vtnet0_backup.txt"),   # vtnet0 back: reported again
    ]
    system = ScriptedSystem(results, stop)
    logs: list[str] = []
    emitted: list[Observation] = []
    source = IfconfigSource(system, interval=0.001, log=logs.append)
    thread = threading.Thread(target=source.run, args=(emitted.append, stop))
    thread.start()
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    assert [(o.interface, o.vhid, o.state) for o in emitted] == [
        ("vtnet0", 1, M), ("vtnet0", 2, M),
        ("vtnet0", 1, B), ("vtnet0", 2, B),
        ("em1", 3, INIT),
        ("vtnet0", 1, B), ("vtnet0", 2, B),
    ]
    assert len(logs) == 1 and "boom" in logs[0]


def test_run_returns_promptly_on_stop() -> None:
    stop = threading.Event()
    system = ScriptedSystem([ok("seed001_vtnet0_master.txt")] * 3)
    emitted: list[Observation] = []
    source = IfconfigSource(system, interval=60.0)
    thread = threading.Thread(target=source.run, args=(emitted.append, stop))
    thread.start()
    try:
        # The first poll happens at once; then the source sits in its 60 s wait.
        for _ in range(500):
            if len(emitted) == 2:
                break
            time.sleep(0.01)
        assert len(emitted) == 2
    finally:
        stop.set()
        thread.join(timeout=1.0)
    assert not thread.is_alive()
