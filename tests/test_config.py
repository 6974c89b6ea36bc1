"""Config loading: valid files load, every kind of mistake is located and exits 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hasvc import cli, config
from hasvc.model import Role

NODE = """\
node: dhcp01
platform: freebsd
role_source: devd
freebsd: {ifconfig: /sbin/ifconfig, devd_socket: /var/run/devd.seqpacket.pipe}
control_socket: /var/run/hasvc.sock
state_dir: /var/db/hasvc
addresses: {ipv4: 192.0.2.2, ipv6: "2001:db8:1:2::2"}
groups:
  - {vhid: 1, interface: vtnet0, ipv4: 192.0.2.4, ipv6: "2001:db8:1:2::4"}
services: services.d
"""

TFTPD = """\
groups: [1]
on: {master: start, backup: stop, init: stop}
bind: vip4
start: [/usr/sbin/inetd, -d, -a, "{vip4}", "{state_dir}/inetd.conf"]
health:
  - {type: tftp, address: "{vip4}", file: canary.txt}
"""


def write(tmp: Path, node: str = NODE, **policies: str) -> Path:
    (tmp / "services.d").mkdir(exist_ok=True)
    (tmp / "hasvc.yaml").write_text(node)
    for name, text in policies.items():
        (tmp / "services.d" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return tmp / "hasvc.yaml"


def error_of(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["-c", str(path), "check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: "), err
    return err.removeprefix("Error: ")


def test_valid_config_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, tftpd=TFTPD)
    assert cli.main(["-c", str(path), "check"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "configuration OK"
    cfg = config.load(str(path))
    p = cfg.policies["tftpd"]
    assert p.on == {Role.MASTER: "start", Role.BACKUP: "stop", Role.INIT: "stop"}
    assert config.expand(p.start, p, cfg) == ["/usr/sbin/inetd", "-d", "-a", "192.0.2.4", "/var/db/hasvc/inetd.conf"]
    assert cfg.bound_address(p) == "192.0.2.4"


def test_exit_code_and_stderr_from_the_real_command(tmp_path: Path) -> None:
    path = write(tmp_path, tftpd=TFTPD.replace("bind: vip4", "bnd: vip4"))
    proc = subprocess.run([sys.executable, "-m", "hasvc", "-c", str(path), "check"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"Error: {tmp_path}/services.d/tftpd.yaml:3: bnd: unknown key"


@pytest.mark.parametrize("node,expect", [
    (NODE.replace("node: dhcp01", "nodename: dhcp01"), "hasvc.yaml:1: nodename: unknown key"),
    (NODE.replace("vhid: 1,", "vhid: one,"), "hasvc.yaml:9: groups[0].vhid: must be an integer, not a string"),
    (NODE.replace("vhid: 1,", "vhid: 300,"), "hasvc.yaml:9: groups[0].vhid: must be <= 255, not 300"),
    (NODE.replace("ipv4: 192.0.2.4", "ipv4: 192.0.2.400"),
     "hasvc.yaml:9: groups[0].ipv4: '192.0.2.400' is not an IPv4 address"),
    (NODE.replace('ipv6: "2001:db8:1:2::2"', "ipv6: 192.0.2.9"),
     "hasvc.yaml:7: addresses.ipv6: '192.0.2.9' is not an IPv6 address"),
    (NODE.replace("platform: freebsd", "platform: solaris"),
     "hasvc.yaml:2: platform: must be one of auto, freebsd, linux, not 'solaris'"),
    (NODE.replace("groups:\n", "groups:\n  - {vhid: 1, interface: em0, ipv4: 192.0.2.5}\n"),
     "hasvc.yaml:10: groups[1].vhid: duplicate vhid 1"),
    (NODE + "debounce: [1]\n", "hasvc.yaml:11: debounce: must be a number, not a list"),
    (NODE.replace("addresses: {", "addresses: {{"), "hasvc.yaml:8: YAML syntax"),
    (NODE.replace("node: dhcp01\n", ""), "hasvc.yaml:1: node: required key missing"),
    (NODE + "node: again\n", "hasvc.yaml:11: node: duplicate key"),
])
def test_node_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], node: str, expect: str) -> None:
    err = error_of(write(tmp_path, node=node, tftpd=TFTPD), capsys)
    assert err.startswith(f"{tmp_path}/{expect}"), err


@pytest.mark.parametrize("policy,expect", [
    ("groups: [7]\nstart: [/bin/true]\n", "tftpd.yaml:1: groups[0]: unknown vhid 7"),
    ("groups: [1]\nstart: /usr/sbin/inetd -a 192.0.2.4\n", "tftpd.yaml:2: start: must be an argv list"),
    ("groups: [1]\nstart: [/bin/x, '{vip5}']\n", "tftpd.yaml:2: start[1]: unknown placeholder {vip5}"),
    ("groups: [1]\non: {master: begin}\nstart: [/bin/true]\n",
     "tftpd.yaml:2: on.master: must be one of start, stop, restart, reload, none, not 'begin'"),
    ("groups: [1]\nstart: [/bin/true]\ntimeouts: {start: fast}\n",
     "tftpd.yaml:3: timeouts.start: must be a number, not a string"),
    ("groups: [1]\nstart: [/bin/true]\nafter: [nosuch]\n", "tftpd.yaml:3: after[0]: unknown service 'nosuch'"),
    ("groups: [1]\nkind: process\n", "tftpd.yaml:1: start: required for kind process"),
    ("groups: [1]\nstart: [/bin/true]\nhealth:\n  - {type: tftp}\n",
     "tftpd.yaml:4: health[0].address: required for a tftp check"),
    ("groups: [1]\nstart: [/bin/true]\nstop_signal: SIGFOO\n", "tftpd.yaml:3: stop_signal: unknown signal 'FOO'"),
    ("groups: [1]\nstart: [/bin/true]\ntemplates:\n  - {source: none.in, dest: /tmp/x}\n",
     "tftpd.yaml:4: templates[0].source:"),
    ("groups: [1]\nstart: [/bin/true, [a]]\n", "tftpd.yaml:2: start[1]: argv items must be strings, not a list"),
    ("groups: [1]\n  start: [/bin/true]\n", "tftpd.yaml:2: YAML syntax"),
])
def test_policy_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: str, expect: str) -> None:
    err = error_of(write(tmp_path, tftpd=policy), capsys)
    assert err.startswith(f"{tmp_path}/services.d/{expect}"), err


def test_duplicate_service_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, a="name: tftpd\ngroups: [1]\nstart: [/bin/true]\n",
                 b="name: tftpd\ngroups: [1]\nstart: [/bin/true]\n")
    err = error_of(path, capsys)
    assert err.startswith(f"{tmp_path}/services.d/b.yaml:1: name: duplicate service name 'tftpd'"), err


def test_ordering_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, a="groups: [1]\nstart: [/bin/true]\nafter: [b]\n",
                 b="groups: [1]\nstart: [/bin/true]\nafter: [a]\n")
    assert "ordering cycle: a -> b -> a" in error_of(path, capsys)


def test_placeholder_without_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    node = NODE.replace(', ipv6: "2001:db8:1:2::4"}', "}")
    path = write(tmp_path, node=node, a="groups: [1]\nstart: [/bin/x, '{vip6}']\n")
    assert "start[1]: placeholder {vip6} has no value" in error_of(path, capsys)


def test_template_placeholders_checked_with_their_own_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "services.d").mkdir()
    (tmp_path / "services.d" / "dhcpd.conf.in").write_text(
        "subnet 192.0.2.0 netmask 255.255.255.0 {\n  option routers {gateway};\n}\n")
    path = write(tmp_path, dhcpd="groups: [1]\nstart: [/bin/true]\n"
                 "templates:\n  - {source: dhcpd.conf.in, dest: /tmp/dhcpd.conf}\n")
    err = error_of(path, capsys)
    assert err.startswith(f"{tmp_path}/services.d/dhcpd.conf.in:2: templates[0]: unknown or empty placeholder"), err


def test_dhcpd_braces_are_not_placeholders(tmp_path: Path) -> None:
    (tmp_path / "services.d").mkdir()
    (tmp_path / "services.d" / "dhcpd.conf.in").write_text(
        "subnet 192.0.2.0 netmask 255.255.255.0 { option routers 192.0.2.1; }\nserver-identifier {vip4};\n")
    path = write(tmp_path, dhcpd="groups: [1]\nstart: [/bin/true]\n"
                 "templates:\n  - {source: dhcpd.conf.in, dest: /tmp/dhcpd.conf}\n")
    cfg = config.load(str(path))
    [(dest, text, mode)] = config.render(cfg.policies["dhcpd"], cfg)
    assert "server-identifier 192.0.2.4;" in text and "{ option routers" in text
    assert (dest, mode) == ("/tmp/dhcpd.conf", 0o644)


def test_yaml_keys_on_and_yes_stay_names(tmp_path: Path) -> None:
    cfg = config.load(str(write(tmp_path, tftpd=TFTPD)))
    assert cfg.policies["tftpd"].action(Role.MASTER) == "start"


def test_node_file_binds_shared_policies_to_groups_and_site_values(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "tftpd.yaml").write_text("groups: [1]\nstart: [/usr/sbin/in.tftpd, -a, '{vip4}:69', -s, '{tftp_root}']\n")
    node = NODE.replace("  - {vhid: 1,", "  - {vhid: 2, interface: vtnet0, ipv4: 192.0.2.5}\n  - {vhid: 1,")
    node = node.replace("services: services.d\n", "vars: {tftp_root: /srv/tftp}\nservices:\n"
                        "  - {file: shared/tftpd.yaml, groups: [2], vars: {tftp_root: /srv/boot}}\n")
    (tmp_path / "hasvc.yaml").write_text(node)
    cfg = config.load(str(tmp_path / "hasvc.yaml"))
    p = cfg.policies["tftpd"]
    assert p.groups == (2,)
    assert config.expand(p.start, p, cfg) == ["/usr/sbin/in.tftpd", "-a", "192.0.2.5:69", "-s", "/srv/boot"]


@pytest.mark.parametrize("services,expect", [
    ("services:\n  - {file: nosuch.yaml}\n", "hasvc.yaml:11: services[0]: "),
    ("services:\n  - {file: services.d, groups: [9]}\n", "hasvc.yaml:11: services[0].groups[0]: unknown vhid 9"),
    ("services:\n  - {file: services.d, grops: [1]}\n", "hasvc.yaml:11: services[0].grops: unknown key"),
    ("vars: {vip4: x}\nservices: services.d\n", "hasvc.yaml:10: vars.vip4: must be a lower-case name"),
])
def test_service_entry_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], services: str, expect: str) -> None:
    path = write(tmp_path, node=NODE.replace("services: services.d\n", services), tftpd=TFTPD)
    err = error_of(path, capsys)
    assert err.startswith(f"{tmp_path}/{expect}"), err
