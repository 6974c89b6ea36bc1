"""Every shipped example config must pass `hasvc check`, through the real CLI."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# examples/lab holds the Linux lab's own configs, maintained elsewhere.
CONFIGS = sorted(p for p in EXAMPLES.glob("**/hasvc.yaml") if "lab" not in p.relative_to(EXAMPLES).parts)
SEEDS = sorted(p for p in EXAMPLES.glob("seed*") if p.is_dir())


def test_examples_exist() -> None:
    assert len(SEEDS) == 5, SEEDS
    for seed in SEEDS:
        assert (seed / "README.md").is_file(), seed
        assert any(seed.glob("*/hasvc.yaml")), f"{seed}: no node config"


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(EXAMPLES)) for p in CONFIGS])
def test_example_passes_check(config: Path) -> None:
    # HASVC_CONFIG must not leak in: -c is what is being tested.
    env = {k: v for k, v in os.environ.items() if k != "HASVC_CONFIG"}
    res = subprocess.run([sys.executable, "-m", "hasvc", "-c", str(config), "check"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[0] == "configuration OK", res.stdout


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(EXAMPLES)) for p in CONFIGS])
def test_example_uses_freebsd_defaults(config: Path) -> None:
    from hasvc import config as config_mod

    cfg = config_mod.load(str(config))
    assert cfg.platform == "freebsd"
    assert cfg.control_socket == "/var/run/hasvc.sock"
    assert cfg.state_dir == "/var/db/hasvc"


_ADDR = re.compile(r"(?<![\w:.])(\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){2,7})(?![\w:])")
_DOC_NETS = [ipaddress.ip_network(n) for n in
             ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]
# Not host addresses: multicast groups (CARP, pxe) and netmasks.
_ALLOWED = [ipaddress.ip_network(n) for n in ("224.0.0.0/4", "ff00::/8", "255.255.255.0/32")]


def _example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*")
                  if p.is_file() and "lab" not in p.relative_to(EXAMPLES).parts)


def test_examples_use_documentation_addresses_only() -> None:
    bad = []
    for path in _example_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in _ADDR.finditer(line):
                try:
                    addr = ipaddress.ip_address(m.group(1))
                except ValueError:
                    continue  # a MAC address, a time, a version number
                if not any(addr in net for net in _DOC_NETS + _ALLOWED):
                    bad.append(f"{path.relative_to(ROOT)}:{n}: {addr}")
    assert not bad, "non-documentation addresses:\n" + "\n".join(bad)


def test_pair_nodes_share_their_policies() -> None:
    """Two nodes of one pair differ in hasvc.yaml and templates, never in policy files."""
    for seed in SEEDS:
        nodes = sorted(p.parent for p in seed.glob("*/hasvc.yaml"))
        first = nodes[0]
        for other in nodes[1:]:
            for policy in (first / "services.d").glob("*.yaml"):
                twin = other / "services.d" / policy.name
                assert twin.is_file(), twin
                assert twin.read_text() == policy.read_text(), f"{policy} != {twin}"


def test_dhcp_failover_roles_are_fixed_per_node() -> None:
    """dhcp01 is primary, dhcp02 secondary, each naming the other as peer."""
    base = EXAMPLES / "seed000-dhcp-pair"
    one = (base / "dhcp01/templates/dhcpd.conf").read_text()
    two = (base / "dhcp02/templates/dhcpd.conf").read_text()
    assert re.search(r"^\s*primary;", one, re.M) and "peer address 192.0.2.3;" in one
    assert re.search(r"^\s*secondary;", two, re.M) and "peer address 192.0.2.2;" in two
    for text in (one, two):
        assert "server-identifier {vip4};" in text and "next-server {vip4};" in text
        assert "address {node4};" in text


def test_dhcpd6_only_on_master_dhcpd_on_both() -> None:
    from hasvc import config as config_mod
    from hasvc.model import Role

    cfg = config_mod.load(str(EXAMPLES / "seed000-dhcp-pair/dhcp01/hasvc.yaml"))
    dhcpd, dhcpd6 = cfg.policies["dhcpd"], cfg.policies["dhcpd6"]
    assert dhcpd.action(Role.MASTER) == "start" and dhcpd.action(Role.BACKUP) == "start"
    assert dhcpd6.action(Role.MASTER) == "start" and dhcpd6.action(Role.BACKUP) == "stop"
    tftpd = cfg.policies["tftpd"]
    assert tftpd.start[0] == "/usr/sbin/inetd" and "{vip4}" in tftpd.start


def test_hast_switch_order() -> None:
    """Start: HAST primary, pool, mountd, nfsd; stop in exactly the reverse order."""
    from hasvc import config as config_mod
    from hasvc import engine

    cfg = config_mod.load(str(EXAMPLES / "seed003-hast-zfs/skunk1/hasvc.yaml"))
    chain = ["hast", "zpool", "mountd", "nfsd"]
    start = {n: engine.Decision("start", "", True) for n in chain}
    assert engine.order(cfg.policies, start) == chain
    stop = {n: engine.Decision("stop", "", False) for n in chain}
    assert engine.order(cfg.policies, stop) == chain[::-1]
