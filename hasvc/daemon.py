"""The daemon: observations in, actions out.

Every input (devd event, ifconfig reading, notify hook, health result)
enters through `observe` or `observe_health`. Each vhid has a worker thread
that owns the services following it, so transitions of one vhid are
serialized while a slow switch on another vhid does not hold it up. A
worker waits out the debounce window after the last role change, then asks
the pure engine what to do and does it through the service kinds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from hasvc import config as config_mod
from hasvc import engine
from hasvc.config import Config, Policy
from hasvc.control import Server
from hasvc.demote import Demoter
from hasvc.facade import System
from hasvc.health import run_check
from hasvc.kinds import Kind, Outcome, make
from hasvc.model import Observation, Role
from hasvc.roles import RoleSource

log = logging.getLogger("hasvc")

LIVENESS_INTERVAL = 0.25  # how often a worker looks at its processes between events


@dataclass
class Service:
    policy: Policy
    kind: Kind
    applied: Role | None = None
    want_running: bool = False
    health: engine.Health = field(default_factory=engine.Health)
    failures: int = 0  # consecutive failed health rounds
    last_action: str = ""
    last_result: str = ""
    last_ok: bool | None = None
    last_time: float = 0.0
    last_check: str = ""
    demote: bool = False


class Worker:
    """Serializes everything done for the services of one vhid."""

    def __init__(self, daemon: Daemon, vhid: int) -> None:
        self.daemon, self.vhid = daemon, vhid
        self.cond = threading.Condition()
        self.due: float | None = time.monotonic()
        self.stopping = False
        self.tick = False
        self.thread = threading.Thread(target=self._loop, name=f"vhid-{vhid}", daemon=True)

    def poke(self, delay: float = 0.0) -> None:
        with self.cond:
            at = time.monotonic() + delay
            # A role change pushes the deadline (debounce); a health event must not shorten it.
            self.due = at if delay > 0 or self.due is None else max(self.due, at)
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.stopping:
                    now = time.monotonic()
                    if self.due is not None and now >= self.due:
                        break
                    wait = LIVENESS_INTERVAL if self.due is None else min(self.due - now, LIVENESS_INTERVAL)
                    if not self.cond.wait(wait) and self.due is None:
                        break  # periodic liveness look
                if self.stopping:
                    return
                tick, self.due = self.due is None, None
            try:
                self.daemon.reconcile(self.vhid, liveness_only=tick)
            except Exception:  # a bug in one round must not kill the vhid's worker
                log.exception("vhid %s: reconcile failed", self.vhid)


class Daemon:
    def __init__(self, cfg: Config, system: System | None = None,
                 source: RoleSource | None = None) -> None:
        self.cfg = cfg
        self.system = system or System()
        self.source = source or make_source(cfg, self.system)
        self.lock = threading.RLock()
        self.roles: dict[int, Observation] = {}
        self.services: dict[str, Service] = {}
        self.workers: dict[int, Worker] = {}
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.health_stops: list[threading.Event] = []
        self.demoter = Demoter(cfg, self.system)
        self.control: Server | None = None
        self.extras: list[Any] = []  # lease sync and other add-ons with start()/stop()/status()
        self.early: list[Observation] | None = []  # notifications queued during start
        self.demote_cond = threading.Condition()
        self.demote_want: tuple[bool, str] | None = None
        self.ready = False

    # ---- inputs -------------------------------------------------------

    def observe(self, obs: Observation) -> bool:
        """The one door for role information. Returns True when the role changed."""
        group = self.cfg.groups.get(obs.vhid)
        if group is None or group.interface != obs.interface:
            log.debug("ignoring %s@%s %s from %s: not a configured group",
                      obs.vhid, obs.interface, obs.state.value, obs.source)
            return False
        with self.lock:
            prev = self.roles.get(obs.vhid)
            if prev is not None and prev.state is obs.state:
                if obs.advbase is not None and prev.advbase is None:
                    self.roles[obs.vhid] = Observation(prev.vhid, prev.interface, prev.state, prev.source,
                                                       prev.time, obs.advbase, obs.advskew)
                return False
            if prev is not None and obs.advbase is None:
                obs = Observation(obs.vhid, obs.interface, obs.state, obs.source, obs.time,
                                  prev.advbase, prev.advskew)
            self.roles[obs.vhid] = obs
            before = prev.state.value if prev else "UNKNOWN"
        log.info("vhid %d@%s: %s -> %s (%s)", obs.vhid, obs.interface, before, obs.state.value, obs.source)
        delay = self.cfg.debounce_for(obs.vhid, obs.state)
        for worker in self._workers_following(obs.vhid):
            worker.poke(delay if prev is not None else 0.0)
        return True

    def observe_health(self, name: str, ok: bool, detail: str) -> None:
        with self.lock:
            svc = self.services.get(name)
            if svc is None:
                return
            svc.last_check = detail
            if ok:
                if svc.health.failing or svc.health.demoted or svc.failures:
                    log.info("%s: healthy again (%s)", name, detail)
                svc.failures = 0
                svc.health = engine.Health()
                return
            svc.failures += 1
            failing = svc.failures >= svc.policy.health_failures
            if failing and not svc.health.failing:
                log.warning("%s: health check failing: %s", name, detail)
            svc.health = engine.Health(failing, svc.health.restarts, svc.health.last_restart,
                                       svc.health.demoted, detail)
        if failing:
            self.workers[svc.policy.groups[0]].poke()

    def _workers_following(self, vhid: int) -> list[Worker]:
        owners = {s.policy.groups[0] for s in self.services.values() if vhid in s.policy.groups}
        return [self.workers[v] for v in sorted(owners) if v in self.workers]

    # ---- the loop of one vhid -----------------------------------------

    def reconcile(self, vhid: int, liveness_only: bool = False) -> None:
        """One round for the services of a vhid.

        Between events the worker only looks at processes (cheap); kinds whose
        state costs a command (rc, commands, address) are looked at on events
        and through their health checks.
        """
        with self.lock:
            roles = {v: o.state for v, o in self.roles.items()}
            mine = {n: s for n, s in self.services.items() if s.policy.groups[0] == vhid
                    and (not liveness_only or s.policy.kind == "process")}
        now = time.time()
        decisions: dict[str, engine.Decision] = {}
        for name, svc in mine.items():
            if any(v not in roles for v in svc.policy.groups):
                # No reading yet (the role source failed at start): acting on a guess could
                # stop a service that runs where it should. Wait for the first observation.
                continue
            role = engine.combined_role(roles, svc.policy.groups, svc.policy.match)
            view = engine.View(svc.applied, svc.want_running, svc.kind.running(), svc.health)
            decisions[name] = engine.decide(svc.policy, role, view, now)
            with self.lock:
                svc.applied = role
                svc.want_running = decisions[name].want_running
                svc.demote = decisions[name].demote
                if svc.demote and not svc.health.demoted:
                    # Sticky: giving up the VIP makes us BACKUP, where a MASTER-only service is not
                    # even run; only a passing check (or `hasvc reset`) may lift the demotion.
                    svc.health = replace(svc.health, demoted=True)
        for wave in engine.waves({n: s.policy for n, s in mine.items()}, decisions):
            if len(wave) == 1:
                self._act(mine[wave[0]], decisions[wave[0]])
                continue
            threads = [threading.Thread(target=self._act, args=(mine[n], decisions[n]), name=f"act-{n}")
                       for n in wave]
            for t in threads:
                t.start()
            for t in threads:
                # Each action is bounded by its own timeouts; this only guards against a hang.
                t.join(timeout=max(p.timeout_start + p.timeout_stop for p in (mine[n].policy for n in wave)) + 5)
        self._update_demotion()

    def _act(self, svc: Service, decision: engine.Decision) -> None:
        kind = svc.kind
        act = {"start": kind.start, "stop": kind.stop, "reload": kind.reload,
               "restart": lambda: _restart(kind)}[decision.action]
        if decision.action in ("start", "restart"):
            self._before_start(svc.policy)
        try:
            out = act()
        except Exception as exc:  # an action's failure is recorded, never fatal
            out = Outcome(False, f"{type(exc).__name__}: {exc}")
        with self.lock:
            svc.last_action, svc.last_result, svc.last_ok = decision.action, out.detail, out.ok
            svc.last_time = time.time()
            if decision.counts_as_restart:
                h = svc.health
                svc.health = replace(h, restarts=h.restarts + 1, last_restart=svc.last_time)
        line = (f"{svc.policy.name}: {decision.action} ({decision.reason}): "
                f"{'ok' if out.ok else 'FAILED'} {out.detail} [{out.elapsed * 1000:.0f} ms]")
        (log.info if out.ok else log.error)(line)

    def _before_start(self, policy: Policy) -> None:
        """Add-ons prepare a start (lease install); their failure is logged, the start goes on."""
        for extra in self.extras:
            hook = getattr(extra, "before_start", None)
            if hook is None:
                continue
            try:
                line = hook(policy)
            except Exception as exc:
                log.error("%s: before start: %s", policy.name, exc)
                continue
            if line:
                log.info("%s", line)

    def _demotion_wanted(self) -> tuple[bool, str]:
        with self.lock:
            reasons = [f"{s.policy.name}: {s.health.detail or s.last_result or 'failed'}"
                       for s in self.services.values() if s.demote]
        reasons += [r for r in (getattr(x, "demote_reason", lambda: "")() for x in self.extras) if r]
        return bool(reasons), "; ".join(reasons)

    def _update_demotion(self) -> None:
        """Hand the wish to the demotion thread: a demote command (which may wait for a role
        source to stop) must never hold up a vhid's worker."""
        with self.demote_cond:
            self.demote_want = self._demotion_wanted()
            self.demote_cond.notify()

    def _apply_demotion(self, want: tuple[bool, str]) -> None:
        change = self.demoter.set(*want)
        if change:
            (log.warning if want[0] else log.info)(change)

    def _demotion_loop(self) -> None:
        applied: tuple[bool, str] | None = None
        while not self.stop_event.is_set():
            with self.demote_cond:
                if self.demote_want == applied:
                    # Also a retry tick: a failed demote command is tried again.
                    self.demote_cond.wait(1.0)
                want = self.demote_want
            if want is not None:
                self._apply_demotion(want)
                applied = want if not self.demoter.error else None

    # ---- health -------------------------------------------------------

    def _health_loop(self, name: str, stop: threading.Event) -> None:
        while True:
            with self.lock:
                svc = self.services.get(name)
            if svc is None:
                return
            if stop.wait(svc.policy.health_interval):
                return
            with self.lock:
                active = svc.want_running and svc.applied is not None
            if not active:
                continue
            running = svc.kind.running()
            for check in svc.policy.health:
                result = run_check(check, svc.policy, self.cfg, self.system, running)
                if not result.ok:
                    break
            excuse = "" if result.ok else self._excuse(name)
            if excuse:
                # Expected to fail right now (a recovering dhcpd): neither healthy nor a failure.
                with self.lock:
                    svc.last_check = f"{result.detail} (not counted: {excuse})"
                continue
            self.observe_health(name, result.ok, result.detail)

    # ---- life cycle ---------------------------------------------------

    def build(self) -> None:
        """Service objects for the current config; adopt what already runs."""
        for name, policy in self.cfg.policies.items():
            svc = Service(policy, make(policy, self.cfg, self.system))
            pid = svc.kind.adopt()
            if pid:
                log.info("%s: adopted running pid %d", name, pid)
            svc.want_running = svc.kind.running()
            self.services[name] = svc
        for vhid in sorted({p.groups[0] for p in self.cfg.policies.values()}):
            self.workers[vhid] = Worker(self, vhid)

    def start(self) -> None:
        for sub in ("run", "log"):
            os.makedirs(os.path.join(self.cfg.state_dir, sub), exist_ok=True)
        # Services exist before anyone can ask about them. Notifications that arrive while
        # the roles are being read are queued and applied after that reading, in order.
        self.control = Server(self.cfg.control_socket, self.handle, log.warning)
        self.control.check_free()
        self.build()
        self.control.start()
        try:
            for obs in self.source.snapshot():
                self.observe(obs)
        except Exception as exc:
            log.error("reading roles at start (%s): %s", self.source.name, exc)
        with self.lock:
            early, self.early = self.early, None
        for obs in early or []:
            self.observe(obs)
        for extra in self.extras:
            extra.start()
        # Whatever holds this node back is in force before the first service moves.
        self.demote_want = self._demotion_wanted()
        self._apply_demotion(self.demote_want)
        self._spawn("demotion", self._demotion_loop)
        for worker in self.workers.values():
            worker.thread.start()
        self._spawn(self.source.name, self.source.run, self.observe, self.stop_event)
        self._start_health()
        self.ready = True
        log.info("started: node %s, %d group(s), %d service(s), role source %s", self.cfg.node,
                 len(self.cfg.groups), len(self.services), self.source.name)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _start_health(self) -> None:
        for name, svc in self.services.items():
            if svc.policy.health:
                stop = threading.Event()
                self.health_stops.append(stop)
                self._spawn(f"health-{name}", self._health_loop, name, stop)

    def _stop_health(self) -> None:
        for stop in self.health_stops:
            stop.set()
        self.health_stops = []

    def stop(self) -> None:
        """Leave services running: a restarted daemon adopts them (and an upgrade costs no outage)."""
        self.stop_event.set()
        with self.demote_cond:
            self.demote_cond.notify()
        self._stop_health()
        for worker in self.workers.values():
            worker.stop()
        for extra in self.extras:
            extra.stop()
        for t in self.threads:
            t.join(timeout=5)
        if self.control:
            self.control.stop()
        log.info("stopped")

    def reload(self) -> bool:
        """SIGHUP: replace the config only when the new one is valid; touch only what changed."""
        try:
            new = config_mod.load(self.cfg.file)
        except config_mod.ConfigError as exc:
            log.error("reload failed, keeping running config: %s", exc)
            return False
        fixed = _restart_needed(self.cfg, new)
        if fixed:
            log.error("reload: %s changed; these need a restart of hasvc, keeping running config",
                      ", ".join(fixed))
            return False
        for worker in self.workers.values():
            worker.stop()
        self._stop_health()
        old_services = self.services
        changed = [n for n, s in old_services.items()
                   if n not in new.policies or new.policies[n] != s.policy or _groups_changed(self.cfg, new, s)]
        for name, svc in old_services.items():
            if name not in changed and svc.kind.running() and _rendered_differs(svc, new):
                # Same policy, edited template: the service re-reads it (reload renders first).
                svc.kind.cfg = new  # type: ignore[attr-defined]
                out = svc.kind.reload()
                log.info("%s: reload (template changed): %s", name, out.detail)
        for name in changed:
            svc = old_services[name]
            if svc.kind.running():
                out = svc.kind.stop()
                log.info("%s: stop (policy %s): %s", name,
                         "removed" if name not in new.policies else "changed", out.detail)
        with self.lock:
            self.cfg = new
            self.demoter.cfg, self.demoter.dem = new, new.demotion
            self.services = {n: s for n, s in old_services.items() if n not in changed}
            for name, policy in new.policies.items():
                if name not in self.services:
                    self.services[name] = Service(policy, make(policy, new, self.system))
                else:
                    self.services[name].kind.cfg = new  # type: ignore[attr-defined]
            self.roles = {v: o for v, o in self.roles.items() if v in new.groups}
            self.workers = {v: Worker(self, v) for v in sorted({p.groups[0] for p in new.policies.values()})}
        for worker in self.workers.values():
            worker.thread.start()
        self._start_health()
        log.info("reloaded %s: %d service(s) changed, added or removed", new.file,
                 len(changed) + len(set(new.policies) - set(old_services)))
        return True

    def serve_forever(self) -> int:
        """Main thread: signals only. SIGHUP reloads, SIGTERM/SIGINT stop."""
        signal.signal(signal.SIGHUP, lambda *_: self.reload_event.set())
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        self.start()
        while not self.stop_event.is_set():
            if self.reload_event.wait(0.2):
                self.reload_event.clear()
                self.reload()
        self.stop()
        return 0

    # ---- control socket -----------------------------------------------

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"ok": True, "ready": self.ready}
        if cmd == "notify":
            obs = Observation(int(req["vhid"]), str(req["interface"]), Role.parse(str(req["state"])),
                              str(req.get("source") or "notify"))
            if obs.vhid not in self.cfg.groups or self.cfg.groups[obs.vhid].interface != obs.interface:
                return {"ok": False, "error": f"{obs.vhid}@{obs.interface} is not a configured group"}
            with self.lock:
                if self.early is not None:
                    self.early.append(obs)
                    return {"ok": True, "queued": True}
            return {"ok": True, "changed": self.observe(obs)}
        if cmd == "role":
            return {"ok": True, "groups": self.role_report()}
        if cmd == "status":
            return {"ok": True, **self.status_report()}
        if cmd == "reload":
            return {"ok": self.reload()}
        if cmd == "reset":
            return self._reset(str(req.get("service", "")))
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _excuse(self, name: str) -> str:
        for extra in self.extras:
            reason = getattr(extra, "excuse", lambda _n: "")(name)
            if reason:
                return str(reason)
        return ""

    def refresh_demotion(self) -> None:
        """For add-ons (failover watch) whose view of demotion changed."""
        self._update_demotion()

    def group_role(self, vhids: tuple[int, ...]) -> Role:
        with self.lock:
            return engine.combined_role({v: o.state for v, o in self.roles.items()}, vhids)

    def _reset(self, name: str) -> dict[str, Any]:
        with self.lock:
            svc = self.services.get(name)
            if svc is None:
                return {"ok": False, "error": f"no service {name!r}"}
            svc.health, svc.failures = engine.Health(), 0
            svc.demote = False
        self._update_demotion()
        self.workers[svc.policy.groups[0]].poke()
        return {"ok": True}

    def role_report(self) -> list[dict[str, Any]]:
        with self.lock:
            return [group_report(g, self.roles.get(v)) for v, g in sorted(self.cfg.groups.items())]

    def status_report(self) -> dict[str, Any]:
        with self.lock:
            roles = {v: o.state for v, o in self.roles.items()}
            services = []
            for name in engine.topological({n: s.policy for n, s in self.services.items()}):
                svc = self.services[name]
                running = svc.kind.running()
                role = engine.combined_role(roles, svc.policy.groups, svc.policy.match)
                state = ("failing" if svc.health.failing else "running") if running else "stopped"
                services.append({
                    "name": name, "kind": svc.policy.kind, "groups": list(svc.policy.groups),
                    "role": role.value, "state": state, "want": "running" if svc.want_running else "stopped",
                    "pid": svc.kind.pid(), "bind": self.cfg.bound_address(svc.policy),
                    "last_action": svc.last_action, "last_result": svc.last_result, "last_ok": svc.last_ok,
                    "last_time": svc.last_time or None, "health": svc.last_check,
                    "restarts": svc.health.restarts, "demote": svc.demote,
                })
        report = {"node": self.cfg.node, "groups": self.role_report(), "services": services,
                  "demotion": self.demoter.status()}
        for extra in self.extras:
            report.update(extra.status())
        return report


def group_report(group: config_mod.Group, obs: Observation | None) -> dict[str, Any]:
    return {
        "vhid": group.vhid, "interface": group.interface,
        "role": obs.state.value if obs else "UNKNOWN",
        "advbase": obs.advbase if obs else None, "advskew": obs.advskew if obs else None,
        "ipv4": group.ipv4, "ipv6": group.ipv6,
        "source": obs.source if obs else None, "since": obs.time if obs else None,
    }


def _restart(kind: Kind) -> Outcome:
    stopped = kind.stop()
    if not stopped.ok:
        return Outcome(False, f"stop: {stopped.detail}")
    started = kind.start()
    return Outcome(started.ok, f"{stopped.detail}; {started.detail}", started.pid,
                   stopped.elapsed + started.elapsed)


def _rendered_differs(svc: Service, new: Config) -> bool:
    for dest, text, _mode in config_mod.render(svc.policy, new):
        try:
            with open(dest, encoding="utf-8") as fh:
                if fh.read() != text:
                    return True
        except OSError:
            return True
    return False


def _groups_changed(old: Config, new: Config, svc: Service) -> bool:
    return any(old.groups.get(v) != new.groups.get(v) for v in svc.policy.groups) or (
        old.node4, old.node6, old.state_dir) != (new.node4, new.node6, new.state_dir)


def _restart_needed(old: Config, new: Config) -> list[str]:
    keys = ("control_socket", "role_source", "platform", "devd_socket", "ifconfig")
    return [k for k in keys if getattr(old, k) != getattr(new, k)]


def make_source(cfg: Config, system: System) -> RoleSource:
    from hasvc.roles.address import AddressSource, NotifySource

    if cfg.role_source == "devd":
        from hasvc.roles.devd import DevdSource

        return DevdSource(system, socket_path=cfg.devd_socket, ifconfig=cfg.ifconfig,
                          log=lambda m: log.warning("%s", m))
    if cfg.role_source == "ifconfig":
        from hasvc.roles.ifconfig import IfconfigSource

        return IfconfigSource(system, ifconfig=cfg.ifconfig, interval=cfg.poll_interval)
    if cfg.role_source == "address":
        return AddressSource(cfg.groups, interval=cfg.poll_interval)
    if cfg.platform == "freebsd":
        from hasvc.roles.ifconfig import IfconfigSource

        # CARP addresses stay configured on the BACKUP: the start state must come from ifconfig.
        return NotifySource(cfg.groups, reader=IfconfigSource(system, ifconfig=cfg.ifconfig))
    return NotifySource(cfg.groups)
