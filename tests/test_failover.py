"""The failover watch: pure decisions, then OMAPI against a real dhcpd failover pair."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator

import pytest

from hasvc import omapi
from hasvc.failover import FailoverState, FailoverWatch, OmapiConfig, decide_hold, decide_partner_down
from hasvc.lab import dhcpd as labdhcpd
from hasvc.lab.netns import ADDR4, Lab, require
from hasvc.model import Role

STATES = ["normal", "partner-down", "recover", "startup", "communications-interrupted", "recover-wait"]


def test_hold_only_a_backup_whose_dhcpd_is_catching_up() -> None:
    cfg = OmapiConfig()
    for role in Role:
        for local in STATES:
            for error in ("", "connection refused"):
                for ever_read, age in ((True, 100.0), (False, 1.0), (False, 100.0)):
                    state = FailoverState(local=local, error=error, started=1000.0, ever_read=ever_read)
                    reason = decide_hold(cfg, role, state, 1000.0 + age)
                    catching_up = local in ("recover", "startup", "recover-wait")
                    starting = not ever_read and age < 10
                    want = role is Role.BACKUP and (starting or (ever_read and not error and catching_up))
                    assert bool(reason) is want, (role, local, error, ever_read, age)
    assert decide_hold(OmapiConfig(hold_preempt=False), Role.BACKUP, FailoverState(local="recover"), 0.0) == ""


def test_partner_down_needs_both_signals_for_the_whole_delay() -> None:
    cfg = OmapiConfig(partner_down_after=30)
    both = FailoverState(local="communications-interrupted", interrupted_and_master_since=100.0)
    assert not decide_partner_down(cfg, Role.MASTER, both, 129.9)
    assert decide_partner_down(cfg, Role.MASTER, both, 130.0)
    assert not decide_partner_down(cfg, Role.BACKUP, both, 500.0), "a network split leaves us BACKUP"
    assert not decide_partner_down(cfg, Role.MASTER, FailoverState(local="normal", interrupted_and_master_since=1),
                                   500.0)
    assert not decide_partner_down(OmapiConfig(), Role.MASTER, both, 10_000.0), "off by default"
    done = FailoverState(local="communications-interrupted", interrupted_and_master_since=100.0,
                         partner_down_set=True)
    assert not decide_partner_down(cfg, Role.MASTER, done, 500.0)


def test_key_file_parsing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "k"
    good.write_text('key hasvc-omapi {\n  algorithm hmac-md5;\n  secret "c2VjcmV0c2VjcmV0c2VjcmV0";\n};\n')
    assert omapi.read_key_file(str(good)).name == b"hasvc-omapi"
    bad = tmp_path / "b"
    bad.write_text('key x { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    with pytest.raises(omapi.OmapiError, match="hmac-md5"):
        omapi.read_key_file(str(bad))


@pytest.fixture
def pair() -> Iterator[tuple[Lab, str]]:
    require("dhcpd")
    with Lab(prefix="hvfo") as lab:
        keyfile = lab.path("omapi.key")
        secret = base64.b64encode(os.urandom(16)).decode()
        with open(keyfile, "w") as fh:
            fh.write(f'key hasvc-omapi {{ algorithm hmac-md5; secret "{secret}"; }};\n')
        os.chmod(keyfile, 0o600)
        plain = labdhcpd.dhcpd_conf

        def with_omapi(*args, **kwargs):  # type: ignore[no-untyped-def]
            return plain(*args, **kwargs) + f'include "{keyfile}";\nomapi-port 7911;\nomapi-key hasvc-omapi;\n'

        labdhcpd.dhcpd_conf = with_omapi  # type: ignore[assignment]
        try:
            pids = labdhcpd.start_pair(lab, "192.0.2.4")
        finally:
            labdhcpd.dhcpd_conf = plain  # type: ignore[assignment]
        lab.pair_pids = pids  # type: ignore[attr-defined]
        yield lab, keyfile


def poll_until(lab: Lab, node: str, watch: FailoverWatch, want: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lab.call(node, watch.poll_once)
        if watch.state.local == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{node}: failover state {watch.state.local!r} ({watch.state.error}), wanted {want!r}")


def test_real_pair_states_partner_down_and_wrong_key(pair: tuple[Lab, str]) -> None:
    lab, keyfile = pair
    role = {"n1": Role.BACKUP}
    changes: list[str] = []
    cfg = OmapiConfig(address=ADDR4["n1"], key_file=keyfile, partner_down_after=0.3)
    watch = FailoverWatch(cfg, lambda: role["n1"], lambda: changes.append(watch.state.local))
    poll_until(lab, "n1", watch, "normal", 15)
    assert watch.state.partner == "normal" and watch.hold_reason() == ""
    assert watch.status()["failover"]["local"] == "normal" and changes

    wrong = lab.path("wrong.key")
    with open(wrong, "w") as fh:
        fh.write('key hasvc-omapi { algorithm hmac-md5; secret "d3Jvbmd3cm9uZ3dyb25nd3Jvbmc="; };\n')
    bad = FailoverWatch(OmapiConfig(address=ADDR4["n1"], key_file=wrong), lambda: Role.BACKUP, lambda: None)
    lab.call("n1", bad.poll_once)
    assert bad.state.local == "unknown" and "wrong or missing key" in bad.state.error
    assert "not read yet" in bad.hold_reason(), "a dhcpd that is just starting is waited for"
    bad.state.started -= 60
    assert bad.hold_reason() == "", "a node that cannot read its dhcpd must still be free to take over"

    # The peer dies: interrupted alone (still BACKUP, a split looks the same) must not trigger partner-down.
    lab.kill(lab.pair_pids["n2"])  # type: ignore[attr-defined]
    poll_until(lab, "n1", watch, "communications-interrupted", 15)
    time.sleep(0.5)
    lab.call("n1", watch.poll_once)
    assert watch.state.local == "communications-interrupted" and not watch.state.partner_down_set
    # CARP makes us MASTER too: both signals; after the delay the survivor goes partner-down.
    role["n1"] = Role.MASTER
    lab.call("n1", watch.poll_once)
    time.sleep(0.4)
    poll_until(lab, "n1", watch, "partner-down", 10)
    assert watch.state.partner_down_set


def test_a_recovering_dhcpd_is_not_failed_for_its_silence() -> None:
    watch = FailoverWatch(OmapiConfig(service="dhcpd"), lambda: Role.BACKUP, lambda: None)
    for local, excused in (("recover-wait", True), ("recover", True), ("startup", True), ("normal", False),
                           ("communications-interrupted", False), ("partner-down", False)):
        watch.state.local = local
        assert bool(watch.excuse("dhcpd")) is excused, local
        assert watch.excuse("tftpd") == ""


def test_one_failed_reading_does_not_lift_the_hold() -> None:
    cfg = OmapiConfig()
    state = FailoverState(local="recover-wait", error="timed out", error_since=100.0, started=0.0, ever_read=True)
    assert decide_hold(cfg, Role.BACKUP, state, 102.0), "the last reading still counts for a few seconds"
    assert decide_hold(cfg, Role.BACKUP, state, 106.0) == "", "then a blind node is free to take over"
