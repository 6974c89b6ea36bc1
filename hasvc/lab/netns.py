"""A throw-away two-node network lab built from Linux network namespaces.

Layout: a switch namespace holds bridge br0; the server nodes n1 and n2 and the
client cl each get an eth0 that is a veth into that bridge. Nothing is attached to
the root namespace and there is no route out, so test traffic cannot leak.
Only documentation addresses are used.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, TypeVar

import psutil

from hasvc.facade import Result, System

T = TypeVar("T")

SWITCH = "sw"
NODES = ("n1", "n2")
CLIENT = "cl"
ALL_NODES = (SWITCH, *NODES, CLIENT)

ADDR4 = {"n1": "192.0.2.2", "n2": "192.0.2.3"}
ADDR6 = {"n1": "2001:db8:1:2::2", "n2": "2001:db8:1:2::3"}
PREFIX4 = 24
PREFIX6 = 64
IFNAME = "eth0"

_CLONE_NEWNET = 0x40000000
_NETNS_DIR = "/run/netns"
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


class MissingTool(RuntimeError):
    """A program the lab needs is not installed; tests must fail, never skip."""


class LabError(RuntimeError):
    """A lab build step failed."""


def which(tool: str) -> str:
    """Resolve a tool, looking in sbin too: root's PATH is not always complete."""
    found = shutil.which(tool)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = os.path.join(directory, tool)
        if os.access(candidate, os.X_OK):
            return candidate
    raise MissingTool(f"missing tool: {tool} (install it; the lab cannot run without it)")


def require(*tools: str) -> dict[str, str]:
    """Fail loudly, naming every missing tool at once."""
    missing: list[str] = []
    found: dict[str, str] = {}
    for tool in tools:
        try:
            found[tool] = which(tool)
        except MissingTool:
            missing.append(tool)
    if missing:
        raise MissingTool("missing tool(s): " + ", ".join(missing))
    return found


class Lab:
    """Build with `with Lab() as lab:`; everything is undone on exit, atexit, SIGTERM or SIGINT."""

    def __init__(self, prefix: str = "hv", *, keep: bool = False, system: System | None = None,
                 handle_signals: bool = True, clients: int = 1) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9]{0,5}", prefix):
            raise ValueError("prefix must be 1-6 lowercase letters/digits starting with a letter")
        if not 1 <= clients <= 9:
            raise ValueError("clients must be 1..9")
        self.prefix = prefix
        self.keep = keep
        # Extra clients are separate namespaces (cl2, cl3, ...), not extra interfaces in `cl`:
        # several interfaces of one host in one subnet answer ARP for each other and
        # dhclient, which listens on its own interface only, would miss its renewals.
        self.clients: tuple[str, ...] = (CLIENT, *(f"{CLIENT}{i}" for i in range(2, clients + 1)))
        self.nodes: tuple[str, ...] = (SWITCH, *NODES, *self.clients)
        self.system = system or System()
        self.handle_signals = handle_signals
        self.tag = f"{prefix}{os.getpid()}"
        self.work_dir = ""
        self._pids: dict[int, str] = {}
        self._made: list[str] = []
        self._lock = threading.RLock()
        self._torn_down = False

    # --- building -----------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def ns(self, node: str) -> str:
        if node not in self.nodes:
            raise KeyError(f"unknown lab node {node!r} (want one of {', '.join(self.nodes)})")
        return f"{self.tag}-{node}"

    def path(self, name: str) -> str:
        """A file in the lab work dir (removed at teardown unless keep=True)."""
        return os.path.join(self.work_dir, name)

    def build(self) -> None:
        require("ip")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, raw sockets)")
        _LIVE.add(self)
        _ensure_atexit()
        if self.handle_signals:
            install_signal_handlers()
        self.work_dir = tempfile.mkdtemp(prefix=f"hasvc-lab-{os.getpid()}-")
        for node in self.nodes:
            name = self.ns(node)
            if os.path.exists(os.path.join(_NETNS_DIR, name)):
                raise LabError(f"namespace {name} already exists: is another lab of this pid running?")
            self._ip("netns", "add", name)
            self._made.append(name)
            self._ip("-n", name, "link", "set", "lo", "up")
        sw = self.ns(SWITCH)
        self._ip("-n", sw, "link", "add", "br0", "type", "bridge")
        # Snooping could hide VRRP/CARP multicast from a port that has not sent a report yet.
        self._ip("-n", sw, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
        self._ip("-n", sw, "link", "set", "br0", "up")
        for node in (*NODES, *self.clients):
            name = self.ns(node)
            self._ip("-n", sw, "link", "add", f"v-{node}", "type", "veth", "peer", "name", IFNAME,
                     "netns", name)
            self._ip("-n", sw, "link", "set", f"v-{node}", "master", "br0", "up")
            if node in NODES:
                # Before eth0 comes up, so its link-local address is never tentative either:
                # keepalived sends VRRPv3 IPv6 adverts from it.
                for scope in ("all", "default", IFNAME):
                    self._sysctl(node, f"net.ipv6.conf.{scope}.accept_dad", "0")
            self._ip("-n", name, "link", "set", IFNAME, "up")
            if node in NODES:
                self._ip("-n", name, "addr", "add", f"{ADDR4[node]}/{PREFIX4}", "dev", IFNAME)
                self._ip("-n", name, "addr", "add", f"{ADDR6[node]}/{PREFIX6}", "dev", IFNAME, "nodad")

    def _ip(self, *args: str, timeout: float = 10.0) -> Result:
        res = self.system.run(["ip", *args], timeout=timeout)
        if not res.ok:
            raise LabError(f"ip {' '.join(args)}: rc={res.rc} {res.stderr.strip()}")
        return res

    def _sysctl(self, node: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")
        res = self.run(node, ["sh", "-c", f'echo {value} > "$1"', "sh", path], timeout=5.0)
        if not res.ok:
            raise LabError(f"sysctl {key}={value} in {node}: {res.stderr.strip()}")

    def sysctl(self, node: str, key: str, value: str) -> None:
        """Set a per-namespace sysctl (e.g. net.ipv4.ip_nonlocal_bind) inside one node only."""
        self._sysctl(node, key, value)

    # --- running things in nodes -----------------------------------------------------

    def run(self, node: str, argv: Sequence[str], timeout: float = 10.0) -> Result:
        return self.system.run(["ip", "netns", "exec", self.ns(node), *argv], timeout=timeout)

    def spawn(self, node: str, argv: Sequence[str], log_path: str | None = None, *,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> int:
        """Start a long-running process in a node; `ip netns exec` execs, so the pid is the daemon's."""
        with self._lock:
            if self._torn_down:
                raise LabError("lab already torn down")
            pid = self.system.spawn(["ip", "netns", "exec", self.ns(node), *argv], log_path=log_path,
                                    env=env, cwd=cwd)
            self._pids[pid] = node
        return pid

    def alive(self, pid: int) -> bool:
        return self.system.alive(pid)

    def pids(self, node: str) -> list[int]:
        """Every process in the node's namespace (all of them are ours)."""
        return _netns_pids(self.system, self.ns(node))

    def kill(self, pid: int, sig: int = signal.SIGTERM, timeout: float = 3.0) -> str:
        """Stop one process we started: `sig`, then SIGKILL after `timeout`. Returns exited|killed|gone."""
        with self._lock:
            ours = pid in self._pids
        # A daemon's own children (keepalived's VRRP process) live in our namespaces: ours too.
        if not ours and not any(pid in _netns_pids(self.system, name) for name in self._made):
            raise ValueError(f"pid {pid} was not started by this lab and is not in its namespaces")
        how = self.system.stop_pid(pid, sig, timeout)
        with self._lock:
            self._pids.pop(pid, None)
        return how

    def link(self, node: str, up: bool) -> None:
        """Cut or restore a node's cable: the bridge-side veth, so the node sees carrier loss."""
        if node == SWITCH:
            raise ValueError("the switch has no link of its own")
        self.ns(node)
        self._ip("-n", self.ns(SWITCH), "link", "set", f"v-{node}", "up" if up else "down")

    def call(self, node: str, fn: Callable[..., T], *args: Any, timeout: float = 30.0, **kwargs: Any) -> T:
        """Run fn in a thread whose network namespace is the node's (sockets it opens live there)."""
        box: dict[str, Any] = {}

        def body() -> None:
            try:
                enter_netns(self.ns(node))
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed back to the caller below
                box["error"] = exc

        thread = threading.Thread(target=body, name=f"lab-{node}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"{getattr(fn, '__name__', fn)} in {node} still running after {timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def addresses(self, node: str) -> str:
        """`ip -o addr` of the node's eth0, for assertions and failure messages."""
        return self.system.run(["ip", "-n", self.ns(node), "-o", "addr", "show", "dev", IFNAME],
                               timeout=5.0).stdout

    # --- teardown --------------------------------------------------------------------------

    def teardown(self) -> None:
        """Idempotent: stop our processes, then anything left in our namespaces, then delete them.

        Every step is safe to repeat, and there is no "already done" shortcut: a signal
        handler that interrupts a teardown runs it again to the end before the process dies.
        """
        with self._lock:
            self._torn_down = True
            pids = list(self._pids)
        _stop_all(self.system, pids)
        with self._lock:
            for pid in pids:
                self._pids.pop(pid, None)
        for name in list(self._made):
            _stop_all(self.system, _netns_pids(self.system, name))
        for name in list(self._made):
            res = self.system.run(["ip", "netns", "del", name], timeout=10.0)
            if res.ok or not os.path.exists(os.path.join(_NETNS_DIR, name)):
                with self._lock:
                    if name in self._made:
                        self._made.remove(name)
        if self.work_dir and not self.keep:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        if not self._made:
            _LIVE.discard(self)


def enter_netns(name: str) -> None:
    """Move the calling thread (only it: the net namespace is per thread) into a named namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(_NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _netns_pids(system: System, name: str) -> list[int]:
    res = system.run(["ip", "netns", "pids", name], timeout=5.0)
    return [int(tok) for tok in res.stdout.split() if tok.isdigit()] if res.ok else []


def _stop_all(system: System, pids: Sequence[int], grace: float = 3.0) -> None:
    """TERM everyone at once, wait (bounded) for all, then KILL the stragglers."""
    pids = [pid for pid in pids if pid != os.getpid()]
    for pid in pids:
        system.signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if system.alive(pid)]
        if left:
            time.sleep(0.02)
    for pid in left:
        system.signal(pid, signal.SIGKILL)
    for pid in left:
        system.wait_exit(pid, 2.0)


def cleanup_stale(prefix: str = "hv", system: System | None = None) -> list[str]:
    """Remove namespaces and work dirs left by crashed labs whose owning pid is gone.

    Names carry the owner's pid; a namespace whose owner is still alive belongs to a
    running lab (maybe another test run) and is never touched.
    """
    system = system or System()
    removed: list[str] = []
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-({'|'.join(ALL_NODES)}\d?)$")
    res = system.run(["ip", "netns", "list"], timeout=10.0)
    for line in res.stdout.splitlines():
        name = line.split(" ", 1)[0].strip()
        match = pattern.match(name)
        if not match or _pid_alive(int(match.group(1))):
            continue
        _stop_all(system, _netns_pids(system, name))
        if system.run(["ip", "netns", "del", name], timeout=10.0).ok:
            removed.append(name)
    tmp = tempfile.gettempdir()
    for entry in os.listdir(tmp):
        match = re.match(r"^hasvc-lab-(\d+)-", entry)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(tmp, entry), ignore_errors=True)
            removed.append(os.path.join(tmp, entry))
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


# --- process-wide safety net ---------------------------------------------------------

_LIVE: set[Lab] = set()
_ATEXIT_DONE = False
_PREVIOUS: dict[int, Any] = {}


def teardown_all() -> None:
    for lab in list(_LIVE):
        lab.teardown()


def _ensure_atexit() -> None:
    global _ATEXIT_DONE
    if not _ATEXIT_DONE:
        atexit.register(teardown_all)
        _ATEXIT_DONE = True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    teardown_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)  # e.g. Python's own SIGINT handler raises KeyboardInterrupt
    elif previous == signal.SIG_IGN:
        return
    else:
        # The default disposition, now that the labs are gone: die of the signal, so the
        # caller (a test runner, a shell) sees exactly what it asked for. An exception
        # here could be swallowed (pytest would report it and run the next test).
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install_signal_handlers(signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> bool:
    """Tear every live lab down on SIGTERM/SIGINT, then chain to the previous handler.

    Only possible from the main thread; returns False elsewhere (atexit and the
    context manager still clean up).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in signals:
        current = signal.getsignal(sig)
        if current is _on_signal:
            continue
        _PREVIOUS[sig] = current
        signal.signal(sig, _on_signal)
    return True
