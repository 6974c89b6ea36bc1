"""The decision logic over every combination of its inputs."""

from __future__ import annotations

import itertools

import pytest

from hasvc.config import ACTIONS, Policy
from hasvc.engine import Decision, Health, View, backoff, combined_role, decide, order, topological, waves
from hasvc.model import Role

ROLES = list(Role)
APPLIED = [None, *Role]
HEALTHS = {
    "healthy": Health(),
    "failing-fresh": Health(failing=True, detail="probe timeout"),
    "failing-retrying": Health(failing=True, restarts=1, last_restart=100.0),
    "failing-exhausted": Health(failing=True, restarts=3, last_restart=100.0),
    "demoted": Health(failing=True, restarts=3, last_restart=100.0, demoted=True),
    "died-retrying": Health(restarts=2, last_restart=100.0),
}
NOWS = [100.0, 100.5, 1000.0]  # at the last restart, inside the backoff, long after


def policy(master: str = "start", backup: str = "stop", init: str = "stop", demote: bool = False,
           after: tuple[str, ...] = (), name: str = "svc", force: bool = False) -> Policy:
    return Policy(name=name, file="x.yaml", line=1, groups=(1,), start=("/bin/true",),
                  on={Role.MASTER: master, Role.BACKUP: backup, Role.INIT: init}, demote=demote,
                  restart_max=3, restart_backoff=1.0, restart_backoff_max=30.0, after=after, force=force)


def expected(p: Policy, role: Role, view: View, now: float) -> Decision:
    """The specification, written as a table rather than as the engine's code."""
    wanted = p.action(role)
    h = view.health
    if view.applied is not role and p.force and wanted != "none":
        forced = {"start": ("start", True), "stop": ("stop", False), "reload": ("reload", view.want_running),
                  "restart": ("restart" if view.running else "start", True)}
        action, want = forced[wanted]
        return Decision(action, "", want, h.demoted)
    if view.applied is not role:
        table = {
            ("start", True): ("none", True), ("start", False): ("start", True),
            ("stop", True): ("stop", False), ("stop", False): ("none", False),
            ("restart", True): ("restart", True), ("restart", False): ("start", True),
            ("reload", True): ("reload", True), ("reload", False): ("none", view.want_running),
            ("none", True): ("none", view.want_running), ("none", False): ("none", view.want_running),
        }
        action, want = table[(wanted, view.running)]
        return Decision(action, "", want, h.demoted)
    if not view.want_running:
        return Decision("stop" if view.running and wanted == "stop" else "none", "", False, h.demoted)
    broken = not view.running or h.failing
    if not broken:
        return Decision("none", "", True, h.demoted)
    demote = h.demoted or (p.demote and h.restarts >= p.restart_max and role is Role.MASTER)
    wait = 0.0 if h.restarts == 0 else min(2 ** (h.restarts - 1), 30.0)
    if now < h.last_restart + wait:
        return Decision("none", "", True, demote)
    return Decision("restart" if view.running else "start", "", True, demote, True)


CASES = list(itertools.product(ACTIONS, ROLES, APPLIED, [False, True], [False, True], HEALTHS, NOWS,
                               [False, True], [False, True]))


def test_every_combination() -> None:
    """One test over the whole space (17,280 cases), reporting every mismatch at once."""
    wrong = []
    for action, role, applied, want, running, health, now, demote, force in CASES:
        p = policy(**{role.value.lower(): action}, demote=demote, force=force)
        view = View(applied, want, running, HEALTHS[health])
        got = decide(p, role, view, now)
        exp = expected(p, role, view, now)
        case = (action, role.value, applied, want, running, health, now, demote, force)
        if (got.action, got.want_running, got.demote, got.counts_as_restart) != (
                exp.action, exp.want_running, exp.demote, exp.counts_as_restart):
            wrong.append((case, got, exp))
        # Invariants that must hold whatever the table says (forced steps are idempotent by contract).
        if force and applied is not role:
            pass
        elif (got.action == "start" and running) or (got.action in ("stop", "reload", "restart") and not running):
            wrong.append((case, got, "impossible action"))
        if not got.reason:
            wrong.append((case, got, "no reason"))
    assert not wrong, wrong[:5]


def test_case_count_covers_the_space() -> None:
    assert len(CASES) == 5 * 3 * 4 * 2 * 2 * len(HEALTHS) * len(NOWS) * 2 * 2


def test_backup_never_keeps_a_master_only_service() -> None:
    p = policy()
    for applied, running, health in itertools.product(APPLIED, [False, True], HEALTHS.values()):
        d = decide(p, Role.BACKUP, View(applied, True, running, health), 1000.0)
        assert d.want_running is False or applied is Role.BACKUP


def test_demotion_only_from_master_after_restarts_run_out() -> None:
    p = policy(demote=True)
    exhausted = Health(failing=True, restarts=3, last_restart=0.0)
    assert decide(p, Role.MASTER, View(Role.MASTER, True, True, exhausted), 1000.0).demote
    assert not decide(p, Role.MASTER, View(Role.MASTER, True, True, Health(True, 2, 0.0)), 1000.0).demote
    p_always = policy(backup="start", demote=True)
    assert not decide(p_always, Role.BACKUP, View(Role.BACKUP, True, True, exhausted), 1000.0).demote


def test_backoff_doubles_and_caps() -> None:
    p = policy()
    assert [backoff(p, n) for n in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize("match", ["all", "any"])
def test_combined_role_every_pair(match: str) -> None:
    states: list[Role | None] = [None, *Role]
    for a, b in itertools.product(states, states):
        got = combined_role({1: a, 2: b}, (1, 2), match)
        known = [s or Role.INIT for s in (a, b)]
        if match == "all":
            want = (Role.MASTER if known == [Role.MASTER, Role.MASTER]
                    else Role.INIT if Role.INIT in known else Role.BACKUP)
        else:
            want = (Role.MASTER if Role.MASTER in known
                    else Role.BACKUP if Role.BACKUP in known else Role.INIT)
        assert got is want, (a, b)


def test_unknown_vhid_is_never_master() -> None:
    assert combined_role({}, (1,)) is Role.INIT


def test_waves_stop_in_reverse_then_start_in_order_and_run_unrelated_together() -> None:
    pols = {
        "hast": policy(name="hast"),
        "zfs": policy(name="zfs", after=("hast",)),
        "nfsd": policy(name="nfsd", after=("zfs",)),
        "tftpd": policy(name="tftpd"),
    }
    assert topological(pols) == ["hast", "zfs", "nfsd", "tftpd"]
    start = {n: Decision("start", "", True) for n in pols}
    assert waves(pols, start) == [["hast", "tftpd"], ["zfs"], ["nfsd"]]
    stop = {n: Decision("stop", "", False) for n in pols}
    assert waves(pols, stop) == [["nfsd", "tftpd"], ["zfs"], ["hast"]]
    mixed = {"hast": Decision("start", "", True), "zfs": Decision("none", "", True),
             "nfsd": Decision("restart", "", True), "tftpd": Decision("stop", "", False)}
    assert waves(pols, mixed) == [["tftpd"], ["hast"], ["nfsd"]]
    # Order holds through services that do nothing this round; a lone action is one wave.
    assert waves(pols, {"nfsd": Decision("start", "", True), "hast": Decision("none", "", True)}) == [["nfsd"]]
    assert order(pols, stop) == ["nfsd", "tftpd", "zfs", "hast"]
