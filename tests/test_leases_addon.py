"""Installing synced leases before a single-active dhcpd starts: merge, validate with real dhcpd, rename."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from hasvc import config
from hasvc.facade import System
from hasvc.lab.netns import require
from hasvc.leases.addon import LeaseAddon, newest
from hasvc.leases.parser import parse_file, parse_text
from hasvc.leases.store import Applied, LeaseStore, LeaseStoreError
from hasvc.leases.sync import LeaseSync

DATA = Path(__file__).parent / "data" / "leases"

V4 = """\
lease 192.0.2.{n} {{
  starts 0 2026/11/22 {t};
  ends 0 2026/11/22 23:00:00;
  cltt 0 2026/11/22 {t};
  binding state {state};
  hardware ethernet 52:54:00:00:00:{n:02x};
}}
"""


def lease(n: int, t: str, state: str = "active") -> str:
    return V4.format(n=n, t=t, state=state)


def node(tmp: Path, extra_policy: str = "") -> config.Config:
    (tmp / "services.d").mkdir(exist_ok=True)
    key = tmp / "sync.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    (tmp / "services.d" / "dhcpd6.yaml").write_text(textwrap.dedent(f"""\
        groups: [1]
        on: {{master: start, backup: stop}}
        start: [/usr/sbin/dhcpd, -6, -f]
        install_leases: dhcpd4
        {extra_policy}"""))
    (tmp / "hasvc.yaml").write_text(textwrap.dedent(f"""\
        node: n1
        platform: linux
        state_dir: {tmp}/state
        addresses: {{ipv4: 192.0.2.2}}
        groups: [{{vhid: 1, interface: eth0, ipv4: 192.0.2.4}}]
        lease_sync:
          listen: 127.0.0.1:0
          peer: 127.0.0.1
          key_file: {key}
          files: [{{name: dhcpd4, path: {tmp}/dhcpd.leases, family: 4}}]
        """))
    return config.load(str(tmp / "hasvc.yaml"))


def test_newest_block_per_address_wins() -> None:
    local = parse_text(lease(10, "10:00:00") + lease(11, "12:00:00", "free")).leases
    peer = parse_text(lease(10, "11:00:00", "free") + lease(11, "11:30:00") + lease(12, "09:00:00")).leases
    merged = newest(local, peer)
    assert {a: r.state for a, r in merged.items()} == {
        "192.0.2.10": "free", "192.0.2.11": "free", "192.0.2.12": "active"}


def test_install_merges_validates_and_renames(tmp_path: Path) -> None:
    require("dhcpd")
    cfg = node(tmp_path)
    local_file = tmp_path / "dhcpd.leases"
    local_file.write_text(lease(10, "10:00:00") + lease(20, "12:00:00"))
    addon = LeaseAddon.from_config(cfg, System())
    addon.sync.store.load("dhcpd4", 4)
    addon.sync.store.replace("dhcpd4", 4, parse_text(lease(10, "11:00:00", "free") + lease(30, "09:00:00")),
                             Applied("n2", "e1", 1))
    line = addon.before_start(cfg.policies["dhcpd6"])
    assert "installed 3 dhcpd4 lease(s)" in line and "1 from the peer" not in line
    got = {a: r.state for a, r in parse_file(str(local_file)).leases.items()}
    assert got == {"192.0.2.10": "free", "192.0.2.20": "active", "192.0.2.30": "active"}


def test_corrupt_synced_state_is_refused_and_local_file_kept(tmp_path: Path) -> None:
    require("dhcpd")
    cfg = node(tmp_path)
    local_file = tmp_path / "dhcpd.leases"
    local_file.write_text(lease(10, "10:00:00"))
    before = local_file.read_bytes()
    addon = LeaseAddon.from_config(cfg, System())
    addon.sync.store.load("dhcpd4", 4)
    bad = parse_text(lease(40, "11:00:00").replace("binding state active;", "binding state activ e;"))
    addon.sync.store.replace("dhcpd4", 4, bad, Applied("n2", "e1", 1))
    with pytest.raises(LeaseStoreError, match="rejected by dhcpd"):
        addon.before_start(cfg.policies["dhcpd6"])
    assert local_file.read_bytes() == before


def test_nothing_synced_yet_leaves_the_local_file(tmp_path: Path) -> None:
    cfg = node(tmp_path)
    (tmp_path / "dhcpd.leases").write_text(lease(10, "10:00:00"))
    addon = LeaseAddon.from_config(cfg, System())
    addon.sync.store.load("dhcpd4", 4)
    assert "no synced dhcpd4 leases" in addon.before_start(cfg.policies["dhcpd6"])


def test_config_errors_for_lease_sync(tmp_path: Path) -> None:
    node(tmp_path)
    text = (tmp_path / "hasvc.yaml").read_text()
    (tmp_path / "hasvc.yaml").write_text(text.replace("  peer: 127.0.0.1\n", "  peer: 127.0.0.1\n  peers: x\n"))
    with pytest.raises(config.ConfigError) as err:
        config.load(str(tmp_path / "hasvc.yaml"))
    assert str(err.value).endswith("hasvc.yaml:9: lease_sync.peers: unknown key")
    (tmp_path / "hasvc.yaml").write_text(text.replace("name: dhcpd4,", "name: other,"))
    with pytest.raises(config.ConfigError) as err:
        config.load(str(tmp_path / "hasvc.yaml"))
    assert "install_leases: 'dhcpd4' is not a lease_sync.files name" in str(err.value)


def test_store_is_the_peers_copy_never_the_running_file(tmp_path: Path) -> None:
    cfg = node(tmp_path)
    sync = LeaseSync(LeaseAddon.from_config(cfg, System()).sync.cfg, System(), lambda m: None)
    assert isinstance(sync.store, LeaseStore)
    assert os.path.dirname(sync.store.path("dhcpd4")) == str(tmp_path / "state" / "leases")
