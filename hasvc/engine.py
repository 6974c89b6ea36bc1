"""The decision logic: roles + health -> what to do with every service.

Everything here is pure: no clock, no I/O. The daemon gathers a snapshot,
asks `decide` for each service and `order` for the sequence, then carries
the actions out through the facade. Tests walk every combination.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hasvc.config import Policy
from hasvc.model import Role


@dataclass(frozen=True)
class Health:
    """What the daemon knows of a service's health in the current episode."""

    failing: bool = False  # the last health_failures checks failed
    restarts: int = 0  # restarts since the service was last seen healthy
    last_restart: float = 0.0
    demoted: bool = False  # sticky: only a passing check (or `hasvc reset`) clears it
    detail: str = ""


@dataclass(frozen=True)
class View:
    """One service as the daemon sees it right now."""

    applied: Role | None  # the role whose action was last carried out (None: not yet)
    want_running: bool  # what the last carried-out action left us wanting
    running: bool
    health: Health = Health()


@dataclass(frozen=True)
class Decision:
    action: str  # start | stop | restart | reload | none
    reason: str
    want_running: bool
    demote: bool = False
    counts_as_restart: bool = False  # a recovery attempt, subject to backoff


def combined_role(roles: Mapping[int, Role | None], groups: Iterable[int], match: str = "all") -> Role:
    """The role a service follows when it names several vhids.

    `all`: MASTER only when every vhid is MASTER (a service bound to both the
    IPv4 and the IPv6 shared address needs both). `any`: MASTER when one is.
    An unknown vhid counts as INIT: we never act as MASTER on a guess.
    """
    states = [roles.get(v) or Role.INIT for v in groups]
    if match == "any":
        for role in (Role.MASTER, Role.BACKUP):
            if role in states:
                return role
        return Role.INIT
    if all(s is Role.MASTER for s in states):
        return Role.MASTER
    if all(s in (Role.MASTER, Role.BACKUP) for s in states):
        return Role.BACKUP
    return Role.INIT


def backoff(policy: Policy, restarts: int) -> float:
    """Delay before recovery attempt number restarts+1; the first is immediate."""
    if restarts <= 0:
        return 0.0
    return min(policy.restart_backoff * 2 ** (restarts - 1), policy.restart_backoff_max)


def decide(policy: Policy, role: Role, view: View, now: float) -> Decision:
    wanted = policy.action(role)
    if view.applied is not role:
        if policy.force and wanted != "none":
            return _forced(wanted, role, view)
        return _on_transition(wanted, role, view)
    return _steady(policy, role, wanted, view, now)


def _on_transition(wanted: str, role: Role, view: View) -> Decision:
    why = f"{role.value}: {wanted}"
    demoted = view.health.demoted
    if wanted == "start":
        if view.running:
            return Decision("none", f"{why} (already running)", True, demoted)
        return Decision("start", why, True, demoted)
    if wanted == "stop":
        if view.running:
            return Decision("stop", why, False, demoted)
        return Decision("none", f"{why} (not running)", False, demoted)
    if wanted == "restart":
        return Decision("restart" if view.running else "start", why, True, demoted)
    if wanted == "reload":
        if view.running:
            return Decision("reload", why, True, demoted)
        return Decision("none", f"{why} (not running, nothing to reload)", view.want_running, demoted)
    return Decision("none", why, view.want_running, demoted)


def _forced(wanted: str, role: Role, view: View) -> Decision:
    """Idempotent steps (kind commands) run on every transition: their state cannot be read."""
    action = "start" if wanted == "restart" and not view.running else wanted
    want = {"start": True, "restart": True, "stop": False}.get(wanted, view.want_running)
    return Decision(action, f"{role.value}: {wanted} (forced)", want, view.health.demoted)


def _steady(policy: Policy, role: Role, wanted: str, view: View, now: float) -> Decision:
    health = view.health
    if not view.want_running:
        if view.running and wanted == "stop":
            # Someone started it behind our back where policy says it must not run.
            return Decision("stop", f"{role.value}: must not run", False, health.demoted)
        return Decision("none", "stopped as wanted", False, health.demoted)
    broken = not view.running or health.failing
    if not broken:
        return Decision("none", "running", True, health.demoted)
    exhausted = health.restarts >= policy.restart_max
    # Demotion is the last resort, and only the MASTER has a role worth giving up.
    demote = health.demoted or (policy.demote and exhausted and role is Role.MASTER)
    what = "not running" if not view.running else f"failing ({health.detail or 'health check'})"
    due = health.last_restart + backoff(policy, health.restarts)
    if now < due:
        return Decision("none", f"{what}; next restart in {due - now:.1f}s", True, demote)
    action = "start" if not view.running else "restart"
    return Decision(action, f"{what}; restart {health.restarts + 1}", True, demote, counts_as_restart=True)


def waves(policies: Mapping[str, Policy], decisions: Mapping[str, Decision]) -> list[list[str]]:
    """Services to act on, as waves: each wave may run at once, waves one after another.

    Stops come first and in reverse `after:` order (take the NFS server down
    before exporting the pool); everything else follows in `after:` order.
    Services with no ordering between them share a wave, so one slow start
    does not delay an unrelated one.
    """
    acting = {n for n, d in decisions.items() if d.action != "none" and n in policies}
    stops = {n for n in acting if decisions[n].action == "stop"}
    starts = acting - stops

    def level(name: str, group: set[str], edges: Callable[[str], Iterable[str]], seen: tuple[str, ...] = ()) -> int:
        deps = [d for d in edges(name) if d in group and d not in seen]
        return 1 + max((level(d, group, edges, (*seen, name)) for d in deps), default=-1)

    def reach(name: str, step: Callable[[str], Iterable[str]]) -> set[str]:
        # Through services that do nothing this round too: order is transitive.
        seen: set[str] = set()
        todo = list(step(name))
        while todo:
            n = todo.pop()
            if n not in seen and n in policies:
                seen.add(n)
                todo.extend(step(n))
        return seen

    def after(name: str) -> Iterable[str]:
        return reach(name, lambda n: policies[n].after)

    def before(name: str) -> Iterable[str]:
        return reach(name, lambda n: [m for m in policies if n in policies[m].after])

    out: list[list[str]] = []
    for group, edges in ((stops, before), (starts, after)):
        levels: dict[int, list[str]] = {}
        for name in sorted(group):
            levels.setdefault(level(name, group, edges), []).append(name)
        out.extend(levels[k] for k in sorted(levels))
    return out


def order(policies: Mapping[str, Policy], decisions: Mapping[str, Decision]) -> list[str]:
    """The waves, one after another, as a single sequence."""
    return [name for wave in waves(policies, decisions) for name in wave]


def topological(policies: Mapping[str, Policy]) -> list[str]:
    """Names sorted so each comes after everything it names in `after:`.

    Ties keep name order, so the sequence is stable. Cycles were refused
    when the config was loaded.
    """
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in policies[name].after:
            if dep in policies:
                visit(dep)
        done.append(name)

    for name in sorted(policies):
        visit(name)
    return done
