"""A daemon hasvc runs itself: exec argv, track its pid, signal it."""

from __future__ import annotations

import os
import signal
import time

import psutil

from hasvc.config import Config, Policy, expand, render
from hasvc.facade import System
from hasvc.kinds import Outcome, timed


class Process:
    def __init__(self, policy: Policy, cfg: Config, system: System) -> None:
        self.policy, self.cfg, self.system = policy, cfg, system
        self.argv = expand(policy.start, policy, cfg)
        self.pidfile = expand((policy.pidfile,), policy, cfg)[0] if policy.pidfile else ""
        self.own_pidfile = os.path.join(cfg.state_dir, "run", f"{policy.name}.pid")
        self.log = expand((policy.log,), policy, cfg)[0] if policy.log else os.path.join(
            cfg.state_dir, "log", f"{policy.name}.log")
        self._pid: int | None = None

    def pid(self) -> int | None:
        return self._pid

    def running(self) -> bool:
        if self._pid is not None and self.system.alive(self._pid):
            return True
        self._pid = None
        return False

    def write_templates(self) -> None:
        for dest, text, mode in render(self.policy, self.cfg):
            self.system.write_file(dest, text, mode)
        for path in expand(self.policy.touch, self.policy, self.cfg):
            if self.system.read_file(path) is None:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                self.system.write_file(path, "")

    @timed
    def start(self) -> Outcome:
        if self.running():
            return Outcome(True, "already running", self._pid)
        try:
            self.write_templates()
        except OSError as exc:
            return Outcome(False, f"template: {exc}")
        os.makedirs(os.path.dirname(self.log), exist_ok=True)
        failed = self._prestart()
        if failed:
            return Outcome(False, failed)
        if self.pidfile:
            self.system.remove_file(self.pidfile)
        try:
            child = self.system.spawn(self.argv, log_path=self.log, env=dict(self.policy.env) or None)
        except OSError as exc:
            return Outcome(False, f"exec {self.argv[0]}: {exc.strerror or exc}")
        pid = self._await_pid(child)
        if pid is None:
            return Outcome(False, f"{self.argv[0]} exited at start (see {self.log})")
        self._pid = pid
        self._remember(pid)
        return Outcome(True, f"pid {pid}", pid)

    def _prestart(self) -> str:
        """Steps before exec (e.g. a source route); "-" before the program ignores its failure."""
        for step in self.policy.prestart:
            argv = expand(step, self.policy, self.cfg)
            optional = argv[0].startswith("-")
            argv[0] = argv[0].removeprefix("-")
            res = self.system.run(argv, self.policy.timeout_start)
            if not res.ok and not optional:
                return f"prestart {' '.join(argv)} exited {res.rc}: {res.stderr.strip()}"
        return ""

    def _await_pid(self, child: int) -> int | None:
        """The pid to track: the child itself, or what a forking daemon writes to its pidfile."""
        if not self.pidfile:
            return child
        deadline = time.monotonic() + self.policy.timeout_start
        while time.monotonic() < deadline:
            pid = _read_pid(self.system.read_file(self.pidfile))
            if pid and self.system.alive(pid):
                return pid
            # A forking daemon's parent may exit before the pidfile appears, so a
            # dead child alone is not yet a failure.
            time.sleep(0.005)
        return child if self.system.alive(child) else None

    @timed
    def stop(self) -> Outcome:
        pid = self._pid if self.running() else self.adopt()
        if pid is None:
            self.system.remove_file(self.own_pidfile)
            return Outcome(True, "not running")
        if self.policy.stop:
            res = self.system.run(expand(self.policy.stop, self.policy, self.cfg), self.policy.timeout_stop)
            how = "stopped by command" if self.system.wait_exit(pid, self.policy.timeout_stop) else ""
            if not how:
                how = self.system.stop_pid(pid, signal.SIGKILL, 2.0)
            detail = f"{how} (stop command exited {res.rc})"
        else:
            sig = getattr(signal, "SIG" + self.policy.stop_signal)
            detail = self.system.stop_pid(pid, sig, self.policy.timeout_stop)
        self._pid = None
        self.system.remove_file(self.own_pidfile)
        alive = self.system.alive(pid)
        return Outcome(not alive, f"pid {pid} {detail}")

    @timed
    def reload(self) -> Outcome:
        if not self.running():
            return Outcome(False, "not running")
        try:
            self.write_templates()
        except OSError as exc:
            return Outcome(False, f"template: {exc}")
        if self.policy.reload:
            res = self.system.run(expand(self.policy.reload, self.policy, self.cfg), self.policy.timeout_reload)
            return Outcome(res.ok, f"reload command exited {res.rc}", self._pid)
        assert self._pid is not None
        ok = self.system.signal(self._pid, getattr(signal, "SIG" + self.policy.reload_signal))
        return Outcome(ok, f"SIG{self.policy.reload_signal} to pid {self._pid}", self._pid)

    def adopt(self) -> int | None:
        """Find an instance started before this daemon; match argv exactly, in our namespace."""
        for path in (self.own_pidfile, self.pidfile):
            pid = _read_pid(self.system.read_file(path)) if path else None
            if pid and self._matches(pid, strict=path == self.own_pidfile):
                return self._take(pid)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.info["cmdline"] == self.argv and _same_netns(proc.pid):
                    return self._take(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    def _take(self, pid: int) -> int:
        self._pid = pid
        self._remember(pid)
        return pid

    def _remember(self, pid: int) -> None:
        os.makedirs(os.path.dirname(self.own_pidfile), exist_ok=True)
        self.system.write_file(self.own_pidfile, f"{pid}\n")

    def _matches(self, pid: int, strict: bool) -> bool:
        try:
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        if cmdline == self.argv:
            return True
        # A daemon that rewrites its title still keeps its program name.
        return not strict and bool(cmdline) and os.path.basename(cmdline[0]) == os.path.basename(self.argv[0])


def _read_pid(text: str | None) -> int | None:
    if not text:
        return None
    first = text.split()[0] if text.split() else ""
    return int(first) if first.isdigit() else None


def _same_netns(pid: int) -> bool:
    """On Linux the lab runs two nodes in one pid space: never adopt the other node's process."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return not os.path.exists("/proc/self/ns/net")
