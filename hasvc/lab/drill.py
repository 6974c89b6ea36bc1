"""Failover drills on the two-node lab, run with hasvc itself supervising real daemons.

`Cluster` turns a built `Lab` into the setup of examples/lab/: per node a hasvc daemon
(the shipped policies, bound by the lab node files), ucarp for vhid 1 and keepalived
for vhid 2 whose hooks call `hasvc notify`, and real dhclients in several client
namespaces. Each drill returns its figures in milliseconds plus the correctness facts
the tests assert. Clock: wall time (time.time()), because hook scripts stamp events with
`date +%s.%N` in other processes. Every wait is bounded; polls are a few ms apart.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

import hasvc
from hasvc import control, notify
from hasvc.lab import carp
from hasvc.lab.netns import ADDR4, IFNAME, NODES, Lab, enter_netns, require
from hasvc.probes import dhcp, pxe, tftp
from hasvc.probes.dhclient import Dhclient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(hasvc.__file__)))
EXAMPLES = os.path.join(REPO, "examples", "lab")
PREFIX = "/run/hasvc-lab"
VIP4 = "192.0.2.4"
VIP6 = "2001:db8:1:2::4"
PASSWORD = "hasvc-lab"
NODE_DIR = {"n1": "dhcp01", "n2": "dhcp02"}
# n1 is the preferred master. ucarp's master-down time is deadratio * (advbase +
# advskew/256) against the master's advertisement every advbase + its advskew/256: with
# deadratio 1, the backup's skew IS the margin for a late advertisement. advskew 1 (4 ms)
# made a loaded 2-core machine fail over spuriously; 100 (390 ms) does not, and n1 with
# advskew 0 still wins and preempts.
ADVSKEW = {"n1": 0, "n2": 100}
PRIORITY = {"n1": 150, "n2": 100}
CANARY = b"hasvc lab canary\n" * 40
TOOLS = ("ip", "ss", "ucarp", "keepalived", "dhcpd", "dhclient", "in.tftpd", "dnsmasq", "timeout", "setsid")
POLL = 0.005
KILL_POLL = 0.02  # the crash loop's pace: fast enough to catch every restart, light on the CPU


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _other(node: str) -> str:
    return "n2" if node == "n1" else "n1"


@dataclass
class Timeline:
    """Events of a drill, relative to its t0; printed by the demo."""

    t0: float = 0.0
    items: list[tuple[float, str]] = field(default_factory=list)

    def add(self, when: float | None, what: str) -> None:
        if when is not None:
            self.items.append((when, what))

    def lines(self) -> list[str]:
        return [f"t={when - self.t0:+8.3f}s  {what}" for when, what in sorted(self.items)]


class Cluster:
    """The lab setup of examples/lab/ running in `lab` (two servers, `lab.clients` clients)."""

    def __init__(self, lab: Lab) -> None:
        require(*TOOLS)
        self.lab = lab
        self.base = lab.work_dir
        self.conf: dict[str, str] = {}
        self.sock: dict[str, str] = {}
        self.clients: dict[str, Dhclient] = {}
        self.ucarp_pid: dict[str, int] = {}
        self.env = {"PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}

    # --- paths -------------------------------------------------------------------------

    def node_path(self, node: str, *rest: str) -> str:
        return os.path.join(self.base, NODE_DIR[node], *rest)

    def track_file(self, node: str) -> str:
        return self.node_path(node, "keepalived.track")

    def service_log(self, node: str, name: str) -> str:
        return self.node_path(node, "state", "log", f"{name}.log")

    def hasvc_log(self, node: str) -> str:
        return self.node_path(node, "hasvc.log")

    # --- setup ---------------------------------------------------------------------------

    def prepare(self) -> None:
        """Copy examples/lab/ in, moving /run/hasvc-lab to the work dir and making the
        policy paths absolute, and create the TFTP root with its canary."""
        for name in os.listdir(EXAMPLES):
            src = os.path.join(EXAMPLES, name)
            if os.path.isfile(src) and name.endswith(".subnets"):
                with open(src, encoding="utf-8") as fh:
                    text = fh.read().replace(PREFIX, self.base)
                with open(os.path.join(self.base, name), "w", encoding="utf-8") as fh:
                    fh.write(text)
        for node, sub in NODE_DIR.items():
            src_dir = os.path.join(EXAMPLES, sub)
            with open(os.path.join(src_dir, "hasvc.yaml"), encoding="utf-8") as fh:
                doc = yaml.safe_load(fh)
            doc = _replace_prefix(doc, PREFIX, self.base)
            for entry in doc["services"]:
                entry["file"] = os.path.normpath(os.path.join(src_dir, entry["file"]))
                if "pxe-dnsmasq" in entry["file"]:
                    # The daemon's own interpreter has hasvc importable; the example names the system one.
                    entry.setdefault("vars", {})["python"] = sys.executable
            os.makedirs(self.node_path(node), exist_ok=True)
            self.conf[node] = self.node_path(node, "hasvc.yaml")
            with open(self.conf[node], "w", encoding="utf-8") as fh:
                yaml.safe_dump(doc, fh, sort_keys=False)
            self.sock[node] = doc["control_socket"]
        root = os.path.join(self.base, "tftp")
        os.makedirs(root, exist_ok=True)
        for path, data in ((os.path.join(root, "hasvc-canary.txt"), CANARY),
                           (os.path.join(root, "pxelinux.0"), b"\0" * 1024)):
            with open(path, "wb") as fh:
                fh.write(data)
            os.chmod(path, 0o644)
        # mkdtemp made the work dir 0700; in.tftpd drops to the tftp user inside its chroot only.
        os.chmod(self.base, 0o755)
        os.chmod(root, 0o755)
        for node in NODES:
            self._write_demote_script(node)
        self._write_keys()

    def _write_keys(self) -> None:
        """The pair's shared secrets: lease sync (HMAC) and OMAPI (a dhcpd key clause), 0600."""
        secrets_ = {
            "lease-sync.key": secrets.token_hex(32) + "\n",
            "omapi.key": f'key hasvc-omapi {{ algorithm hmac-md5; secret "'
                         f'{base64.b64encode(secrets.token_bytes(32)).decode()}"; }};\n',
        }
        for name, text in secrets_.items():
            path = os.path.join(self.base, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)

    def _hook(self, node: str, source: str) -> list[str]:
        # The standalone hook: no site-packages, no package import; its start-up is part of the takeover.
        return [sys.executable, "-S", notify.__file__, "--socket", self.sock[node], "--source", source]

    def _ucarp_argv(self, node: str) -> list[str]:
        return carp.ucarp_argv(self.lab, node, 1, VIP4, ADDR4[node], PASSWORD, ADVSKEW[node],
                               self._hook(node, "ucarp"))

    def _write_demote_script(self, node: str) -> None:
        pidfile = self.node_path(node, "ucarp.pid")
        track = self.track_file(node)
        log = self.lab.path(f"ucarp-{node}-1.log")
        argv = " ".join(shlex.quote(a) for a in self._ucarp_argv(node))
        body = f"""#!/bin/sh
# Generated by hasvc.lab.drill: hasvc's demotion command for lab node {node}.
# on: stop ucarp (its down script drops the VIP and tells hasvc) and raise keepalived's
# track file; off: clear the track file and start ucarp again with the same arguments.
PIDF={shlex.quote(pidfile)}
TRACK={shlex.quote(track)}
alive() {{ [ -n "$1" ] && [ -e /proc/$1 ] && ! grep -q '^State:.Z' /proc/$1/status 2>/dev/null; }}
pid=$(cat "$PIDF" 2>/dev/null)
case "$1" in
on)
    echo 254 > "$TRACK"
    if alive "$pid"; then
        kill "$pid"
        i=0
        while alive "$pid" && [ $i -lt 300 ]; do sleep 0.01; i=$((i + 1)); done
    fi ;;
off)
    echo 0 > "$TRACK"
    if ! alive "$pid"; then
        setsid {argv} >> {shlex.quote(log)} 2>&1 < /dev/null &
        echo $! > "$PIDF"
    fi ;;
*)
    echo "usage: $0 on|off" >&2; exit 2 ;;
esac
exit 0
"""
        with open(self.node_path(node, "demote"), "w", encoding="utf-8") as fh:
            fh.write(body)
        with open(track, "w", encoding="utf-8") as fh:
            fh.write("0\n")

    def start_hasvc(self, node: str) -> int:
        pid = self.lab.spawn(node, [sys.executable, "-m", "hasvc", "-c", self.conf[node], "run", "-d"],
                             log_path=self.hasvc_log(node), env=self.env)
        _wait(lambda: os.path.exists(self.sock[node]) and self._ready(node), 10.0,
              f"hasvc on {node} ready on {self.sock[node]}")
        return pid

    def start_ucarp(self, node: str) -> int:
        """Start the node's ucarp, unless hasvc has it demoted: with ucarp, demotion means
        "not running" (see the demote script), and the script's "off" starts it later."""
        if self._demoted(node):
            return 0
        try:
            with open(self.node_path(node, "ucarp.pid"), encoding="utf-8") as fh:
                text = fh.read().strip()
        except FileNotFoundError:
            text = ""
        if text.isdigit() and self.lab.alive(int(text)):
            return int(text)  # the demote script's "off" started it already
        pid = self.lab.spawn(node, self._ucarp_argv(node), log_path=self.lab.path(f"ucarp-{node}-1.log"),
                             env=self.env)
        with open(self.node_path(node, "ucarp.pid"), "w", encoding="utf-8") as fh:
            fh.write(f"{pid}\n")
        self.ucarp_pid[node] = pid
        return pid

    def _ready(self, node: str) -> bool:
        """Started through: its first demotion decision is in force (the lab starts ucarp next)."""
        try:
            return bool(control.request(self.sock[node], {"cmd": "ping"}, timeout=2.0).get("ready"))
        except control.ControlError:
            return False

    def _demoted(self, node: str) -> bool:
        try:
            with open(self.track_file(node), encoding="utf-8") as fh:
                return fh.read().strip() not in ("", "0")
        except FileNotFoundError:
            return False

    def start_keepalived(self, node: str) -> int:
        return carp.start_keepalived(self.lab, node, 2, VIP6, PRIORITY[node], self._hook(node, "keepalived"),
                                     self.track_file(node))

    def start(self, timeout: float = 40.0) -> None:
        """Bring the pair up with n1 as master and every client bound."""
        self.prepare()
        self.start_hasvc("n1")
        # The secondary's dhcpd must find the primary listening, or it retries only after ~5 s.
        _wait(lambda: _listening(self.lab, "n1", "tcp", 647), 10.0, "dhcpd on n1 listening on 647")
        self.start_hasvc("n2")
        self.start_ucarp("n1")
        self.start_keepalived("n1")
        carp.wait_role(self.lab, "n1", VIP4, True, 10.0)
        carp.wait_role(self.lab, "n1", VIP6, True, 10.0)
        # Started together both claim MASTER for about a second: n2 joins once n1 holds the VIPs.
        self.start_ucarp("n2")
        self.start_keepalived("n2")
        self.wait_settled("n1", timeout)
        for node in self.lab.clients:
            client = Dhclient(self.lab.work_dir, IFNAME, ["ip", "netns", "exec", self.lab.ns(node)],
                              self.lab.system, name=f"dhclient-{node}")
            res = client.obtain()
            if not res.ok:
                raise RuntimeError(f"dhclient in {node} got no lease: {res.stdout}{res.stderr}")
            self.clients[node] = client
        self.wait_settled("n1", timeout)

    def wait_settled(self, master: str, timeout: float) -> None:
        """master holds both VIPs, the other none, its MASTER services answer from the VIP,
        and both dhcpds are in failover state normal."""
        backup = _other(master)
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        carp.wait_role(self.lab, master, VIP4, True, left())
        carp.wait_role(self.lab, master, VIP6, True, left())
        carp.wait_role(self.lab, backup, VIP4, False, left())
        carp.wait_role(self.lab, backup, VIP6, False, left())
        _wait(lambda: self.running(master, "tftpd", "pxe-dnsmasq", "dhcpd6", "dhcpd")
              and self.running(backup, "dhcpd"), left(), f"services running on {master}")
        if self.clients:  # a client needs its address to fetch anything
            _wait(lambda: self.lab.call("cl", tftp.check_canary, VIP4, "hasvc-canary.txt", CANARY, 0.5).ok,
                  left(), "TFTP canary from the VIP")
            _wait(lambda: self.lab.call("cl", pxe.request, VIP4, 0.5).ok, left(), "PXE from the VIP")
        _wait(lambda: all(_dhcpd_normal(self.service_log(n, "dhcpd")) for n in NODES), left(),
              "both dhcpds in failover state normal")

    # --- observing -------------------------------------------------------------------------

    def status(self, node: str) -> dict[str, Any]:
        return control.request(self.sock[node], {"cmd": "status"}, timeout=5.0)

    def service(self, node: str, name: str) -> dict[str, Any]:
        for svc in self.status(node)["services"]:
            if svc["name"] == name:
                return dict(svc)
        raise KeyError(name)

    def running(self, node: str, *names: str) -> bool:
        try:
            services = {s["name"]: s for s in self.status(node)["services"]}
        except (control.ControlError, OSError, ValueError):
            return False
        return all(services[n]["state"] == "running" for n in names)

    def master(self) -> str:
        holders = [n for n in NODES if carp.has_vip(self.lab, n, VIP4)]
        if len(holders) != 1:
            raise RuntimeError(f"VIP {VIP4} held by {holders or 'nobody'}")
        return holders[0]

    def leases(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for node, client in self.clients.items():
            lease = client.lease()
            out[node] = lease.address if lease else None
        return out

    def renewals_after(self, t0: float) -> dict[str, float | None]:
        """Per client: the first answered renewal (any bound event) stamped after t0."""
        out: dict[str, float | None] = {}
        for node, client in self.clients.items():
            stamps = [float(e[0]) for e in client.events()
                      if len(e) > 1 and e[1] in ("RENEW", "REBIND", "REBOOT", "BOUND") and float(e[0]) > t0]
            out[node] = min(stamps) if stamps else None
        return out

    def hook_time(self, node: str, vhid: int, state: str, after: float) -> float | None:
        path = self.lab.path(f"{'ucarp' if vhid == 1 else 'keepalived'}-{node}-{vhid}.events")
        stamps = [t for t, s in carp.events(path) if s == state and t > after]
        return min(stamps) if stamps else None

    def duplicates(self) -> list[str]:
        """Addresses active for two MACs across both nodes' lease files, or held by two clients."""
        problems: list[str] = []
        active: dict[str, set[str]] = {}
        for node in NODES:
            for addr, (state, mac) in _lease_states(self.node_path(node, "dhcpd.leases")).items():
                if state == "active" and mac:
                    active.setdefault(addr, set()).add(mac)
        problems += [f"{a} active for {sorted(m)}" for a, m in active.items() if len(m) > 1]
        held: dict[str, list[str]] = {}
        for node in self.clients:
            for addr in re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", self.lab.addresses(node)):
                held.setdefault(addr, []).append(node)
        problems += [f"{a} configured on {n}" for a, n in held.items() if len(n) > 1]
        return problems

    def kill_node(self, node: str) -> float:
        """The node dies: every process in it gets SIGKILL and its cable is cut. Returns t0."""
        pids = self.lab.pids(node)
        t0 = time.time()
        for pid in pids:
            self.lab.system.signal(pid, signal.SIGKILL)
        self.lab.link(node, False)
        for pid in pids:
            self.lab.system.wait_exit(pid, 3.0)
        return t0

    def revive_node(self, node: str) -> float:
        """The node boots again: no VIPs (a reboot clears them), cable in, hasvc, then the role
        daemons. Returns t0 = the moment ucarp and keepalived start."""
        for addr in (f"{VIP4}/24", f"{VIP6}/64"):
            self.lab.run(node, ["ip", "addr", "del", addr, "dev", IFNAME])
        self.lab.link(node, True)
        self.start_hasvc(node)
        t0 = time.time()
        self.start_ucarp(node)
        self.start_keepalived(node)
        return t0


# --- polling helpers ----------------------------------------------------------------------

class Poller(threading.Thread):
    """Calls `probe` again and again inside a node's namespace until it succeeds with an
    attempt started after `t0` (and `accept` agrees), or the deadline passes."""

    def __init__(self, lab: Lab, node: str, probe: Callable[[], Any], deadline: float,
                 accept: Callable[[Any], bool] | None = None) -> None:
        super().__init__(daemon=True)
        self.ns, self.probe, self.deadline = lab.ns(node), probe, deadline
        self.accept = accept or (lambda res: bool(res.ok))
        self.t0: float | None = None
        self.first_ok: float | None = None
        self.last: Any = None
        self.error: BaseException | None = None
        self.go = threading.Event()

    def run(self) -> None:
        try:
            enter_netns(self.ns)
            self.go.wait(30.0)
            while time.time() < self.deadline:
                started = time.time()
                res = self.probe()
                self.last = res
                if self.t0 is not None and started >= self.t0 and self.accept(res):
                    self.first_ok = time.time()
                    return
                time.sleep(POLL)
        except BaseException as exc:  # handed to the drill, which reports it
            self.error = exc

    def begin(self, t0: float) -> None:
        self.t0 = t0


def _start_pollers(cluster: Cluster, deadline: float, mac: str | None = None) -> dict[str, Poller]:
    """TFTP (canary, every DATA from the VIP), PXE (ACK from the VIP) and DHCP (OFFER with
    server id VIP) from the first client. With `mac`, TFTP/PXE only count once the client
    reaches the VIP at that MAC (the node that should now serve)."""
    lab = cluster.lab

    def on_mac(res: Any) -> bool:
        return bool(res.ok) and (mac is None or _neigh_mac(VIP4) == mac)

    pollers = {
        # Short attempts: an attempt that straddles the service's start must not hide it for long.
        "tftp": Poller(lab, "cl", lambda: tftp.fetch(VIP4, "hasvc-canary.txt", 0.1, retry_interval=0.02,
                                                      max_retries=4), deadline,
                       lambda r: on_mac(r) and r.data == CANARY and r.src_ip == VIP4),
        "pxe": Poller(lab, "cl", lambda: pxe.request(VIP4, 0.3, retransmit=0.02), deadline, on_mac),
        "dhcp": Poller(lab, "cl", lambda: dhcp.discover(IFNAME, VIP4, 0.3, secs=60, retransmit=0.05), deadline),
    }
    for p in pollers.values():
        p.start()
    return pollers


def _release(pollers: dict[str, Poller], t0: float) -> None:
    for p in pollers.values():
        p.begin(t0)
        p.go.set()


def _join(pollers: dict[str, Poller], deadline: float) -> None:
    for p in pollers.values():
        p.join(max(0.1, deadline - time.time() + 1.0))
        if p.error is not None:
            raise p.error


def _neigh_mac(ip: str) -> str | None:
    """The calling thread's namespace ARP entry for ip (thread-self: namespaces are per thread)."""
    try:
        with open("/proc/thread-self/net/arp", encoding="utf-8") as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields and fields[0] == ip and fields[2] != "0x0":
                    return fields[3].lower()
    except OSError:
        return None
    return None


def _mac(lab: Lab, node: str) -> str:
    out = lab.run(node, ["cat", f"/sys/class/net/{IFNAME}/address"]).stdout.strip().lower()
    return out


def _wait(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> float:
    start = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - start
        except (OSError, TimeoutError, control.ControlError):
            pass
        if time.monotonic() - start >= timeout:
            raise TimeoutError(f"{what}: not reached after {timeout:g}s")
        time.sleep(interval)


def _listening(lab: Lab, node: str, proto: str, port: int) -> bool:
    out = lab.run(node, ["ss", "-H", "-l", "-n", "-t" if proto == "tcp" else "-u"], timeout=5.0).stdout
    return any(len(f) > 3 and f[3].endswith(f":{port}") for f in (line.split() for line in out.splitlines()))


def _dhcpd_normal(log_path: str) -> bool:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except FileNotFoundError:
        return False
    states = re.findall(r"I move from \S+ to (\S+)", text)
    return bool(states) and states[-1] == "normal"


def _lease_states(path: str) -> dict[str, tuple[str, str | None]]:
    """Last state and MAC per address in an ISC dhcpd lease file (later blocks win)."""
    out: dict[str, tuple[str, str | None]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except FileNotFoundError:
        return out
    for addr, body in re.findall(r"^lease ([0-9.]+) \{(.*?)^\}", text, flags=re.S | re.M):
        state = re.search(r"^\s*binding state (\S+);", body, flags=re.M)
        mac = re.search(r"hardware ethernet ([0-9a-f:]+);", body)
        out[addr] = (state.group(1) if state else "?", mac.group(1) if mac else None)
    return out


def _replace_prefix(obj: Any, old: str, new: str) -> Any:
    if isinstance(obj, str):
        return new + obj[len(old):] if obj.startswith(old) else obj
    if isinstance(obj, list):
        return [_replace_prefix(x, old, new) for x in obj]
    if isinstance(obj, dict):
        return {k: _replace_prefix(v, old, new) for k, v in obj.items()}
    return obj


def _hasvc_events(path: str, after: float) -> list[tuple[float, str]]:
    """hasvc's own log lines after `after`: `2024-01-02 03:04:05,678 hasvc: message`."""
    out: list[tuple[float, str]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return out
    for line in lines:
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) hasvc: (.*)", line)
        if not m:
            continue
        when = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000.0
        if when >= after - 0.001:
            out.append((when, m.group(3).strip()))
    return out


# --- the drills ------------------------------------------------------------------------------

def _takeover_figures(cluster: Cluster, new: str, t0: float, hook: float | None, pollers: dict[str, Poller],
                      renewals: dict[str, float | None], before: dict[str, str | None]) -> dict[str, Any]:
    firsts = {k: p.first_ok for k, p in pollers.items()}
    answered = [v for v in firsts.values() if v is not None]
    after = cluster.leases()
    dhcp_first = min((v for v in renewals.values() if v is not None), default=None)
    return {
        "new_master": new,
        "carp_detection_ms": _ms(hook - t0) if hook else None,
        "reaction_ms": _ms(max(answered) - hook) if hook and len(answered) == len(firsts) else None,
        "answer_ms": {k: _ms(v - t0) if v else None for k, v in firsts.items()},
        "dhcp_outage_ms": _ms(dhcp_first - t0) if dhcp_first else None,
        "dhcp_renewals_ms": {c: _ms(v - t0) if v else None for c, v in renewals.items()},
        "tftp_outage_ms": _ms(firsts["tftp"] - t0) if firsts["tftp"] else None,
        "address_kept": {c: before[c] is not None and before[c] == after[c] for c in before},
        "duplicates": cluster.duplicates(),
        "probe_detail": {k: getattr(p.last, "detail", None) for k, p in pollers.items()},
    }


def _timeline(cluster: Cluster, t0: float, label: str, nodes: tuple[str, ...], res: dict[str, Any]) -> Timeline:
    tl = Timeline(t0)
    tl.add(t0, label)
    for node in nodes:
        for vhid, src in ((1, "ucarp"), (2, "keepalived")):
            path = cluster.lab.path(f"{src}-{node}-{vhid}.events")
            for when, state in carp.events(path):
                if when >= t0:
                    tl.add(when, f"vhid {vhid}@{IFNAME} -> {state} on {node} ({src} hook)")
        for when, msg in _hasvc_events(cluster.hasvc_log(node), t0):
            if re.match(r"(tftpd|pxe-dnsmasq|dhcpd6|dhcpd): (start|stop|restart)", msg) or "demotion" in msg:
                tl.add(when, f"{node} hasvc: {msg[:110]}")
    for key, what in (("tftp", f"first TFTP from {VIP4} (canary, every DATA from the VIP)"),
                      ("pxe", f"first PXE boot-server ACK from {VIP4}"),
                      ("dhcp", f"DHCP OFFER with server id {VIP4}")):
        ms = res.get("answer_ms", {}).get(key)
        if ms is not None:
            tl.add(t0 + ms / 1000.0, what)
    for client, ms in res.get("dhcp_renewals_ms", {}).items():
        if ms is not None:
            tl.add(t0 + ms / 1000.0, f"DHCP renew answered for {client}")
    return tl


def master_dies(cluster: Cluster, timeout: float = 15.0) -> tuple[dict[str, Any], Timeline]:
    """(a) The master node dies (every process SIGKILLed, cable cut); the backup takes over."""
    old = cluster.master()
    new = _other(old)
    before = cluster.leases()
    deadline = time.time() + timeout
    pollers = _start_pollers(cluster, deadline)
    t0 = cluster.kill_node(old)
    _release(pollers, t0)
    carp.wait_role(cluster.lab, new, VIP4, True, timeout)
    _wait(lambda: cluster.hook_time(new, 1, "MASTER", t0) is not None, 5.0, "ucarp MASTER hook on " + new)
    hook = cluster.hook_time(new, 1, "MASTER", t0)
    _join(pollers, deadline)
    _wait(lambda: all(v is not None for v in cluster.renewals_after(t0).values()), max(1.0, deadline - time.time()),
          "every client renewed after the takeover")
    res = _takeover_figures(cluster, new, t0, hook, pollers, cluster.renewals_after(t0), before)
    res["old_master"] = old
    res["vip_moved"] = carp.has_vip(cluster.lab, new, VIP4)
    res["ipv6_moved"] = carp.has_vip(cluster.lab, new, VIP6)
    return res, _timeline(cluster, t0, f"kill {old} (SIGKILL every process, cable cut)", (new,), res)


def master_returns(cluster: Cluster, node: str = "n1", timeout: float = 60.0) -> tuple[dict[str, Any], Timeline]:
    """(b) The dead preferred master boots again and preempts; services move back to it.

    The bound is generous: the returning node holds back until its dhcpd is normal,
    which after a failover recovery takes MCLT (20 s in the lab)."""
    other = _other(node)
    before = cluster.leases()
    deadline = time.time() + timeout
    mac = _mac(cluster.lab, node)
    pollers = _start_pollers(cluster, deadline, mac=mac)
    t0 = cluster.revive_node(node)
    _release(pollers, t0)
    carp.wait_role(cluster.lab, node, VIP4, True, timeout)
    _wait(lambda: cluster.hook_time(node, 1, "MASTER", t0) is not None, 5.0, "ucarp MASTER hook on " + node)
    hook = cluster.hook_time(node, 1, "MASTER", t0)
    assert hook is not None
    _join(pollers, deadline)
    # Renewals that count went to the returned master: stamped after it took the VIP.
    _wait(lambda: all(v is not None for v in cluster.renewals_after(hook).values()),
          max(1.0, deadline - time.time()), "every client renewed after the preemption")
    res = _takeover_figures(cluster, node, t0, hook, pollers, cluster.renewals_after(hook), before)
    res["vip_moved"] = carp.has_vip(cluster.lab, node, VIP4) and not carp.has_vip(cluster.lab, other, VIP4)
    cluster.wait_settled(node, max(5.0, deadline - time.time()))
    res["ipv6_moved"] = carp.has_vip(cluster.lab, node, VIP6)
    return res, _timeline(cluster, t0, f"{node} boots: ucarp and keepalived start", (node, other), res)


def _kill_service(cluster: Cluster, node: str, name: str) -> tuple[int, float]:
    pid = cluster.service(node, name)["pid"]
    if not pid:
        raise RuntimeError(f"{name} not running on {node}")
    t0 = time.time()
    cluster.lab.system.signal(int(pid), signal.SIGKILL)
    return int(pid), t0


def dhcpd_killed(cluster: Cluster, timeout: float = 20.0) -> dict[str, Any]:
    """(c1) dhcpd dies on the VIP holder: hasvc restarts it; renewals (unicast to the VIP)
    are answered again."""
    node = cluster.master()
    old_pid, t0 = _kill_service(cluster, node, "dhcpd")
    deadline = time.time() + timeout
    _wait(lambda: (cluster.service(node, "dhcpd")["pid"] or old_pid) != old_pid, timeout, "dhcpd restarted")
    restarted = time.time()
    _wait(lambda: all(v is not None for v in cluster.renewals_after(t0).values()), max(1.0, deadline - time.time()),
          "renewals answered after the dhcpd restart")
    first = min(v for v in cluster.renewals_after(t0).values() if v is not None)
    return {"node": node, "restart_ms": _ms(restarted - t0), "dhcp_answer_ms": _ms(first - t0),
            "vip_stayed": cluster.master() == node, "duplicates": cluster.duplicates()}


def dhcpd_crashloop(cluster: Cluster, timeout: float = 30.0) -> dict[str, Any]:
    """(c2) dhcpd on the VIP holder is killed every time it comes back: after its restarts
    hasvc demotes the node, the VIP moves, and the new holder answers renewals."""
    node = cluster.master()
    new = _other(node)
    before = cluster.leases()
    t0 = time.time()
    deadline = t0 + timeout
    kills = 0
    status: dict[str, Any] = {}
    while not carp.has_vip(cluster.lab, new, VIP4):
        if time.time() > deadline:
            raise TimeoutError(f"VIP did not leave {node} within {timeout:g}s of dhcpd crash-looping")
        for pid in cluster.lab.pids(node):
            if _is_dhcpd4(pid):
                cluster.lab.system.signal(pid, signal.SIGKILL)
                kills += 1
        # Sampled all along: the demotion may be lifted again soon after the VIP left.
        dem = cluster.status(node)["demotion"]
        if dem.get("demoted") and not status:
            status = dict(dem)
        time.sleep(KILL_POLL)
    moved = time.time()
    if not status:
        # The status only says "demoted" once the demote command has returned, and the
        # lab's command waits for ucarp to exit, which may be after the VIP moved; or the
        # demotion may be applied and lifted between two looks. The daemon's log line
        # (written when the command returns) is the record: wait for it a little.
        def logged() -> dict[str, Any] | None:
            for _when, line in _hasvc_events(cluster.hasvc_log(node), t0):
                m = re.match(r"demotion: demoted \((.*)\)$", line)
                if m:
                    return {**cluster.status(node)["demotion"], "demoted": True, "reason": m.group(1),
                            "from_log": True}
            return None

        try:
            _wait(lambda: logged() is not None, 6.0, f"the demotion of {node} in its log")
            status = logged() or {}
        except TimeoutError:
            status = dict(cluster.status(node)["demotion"])
    hook = cluster.hook_time(new, 1, "MASTER", t0)
    _wait(lambda: all(v is not None for v in cluster.renewals_after(moved).values()),
          max(1.0, deadline - time.time()), "renewals answered by the new VIP holder")
    first = min(v for v in cluster.renewals_after(moved).values() if v is not None)
    res = {"node": node, "new_master": new, "kills": kills, "vip_move_ms": _ms(moved - t0),
           "hook_ms": _ms(hook - t0) if hook else None, "dhcp_answer_ms": _ms(first - t0),
           "demotion": status, "address_kept": {c: before[c] == a for c, a in cluster.leases().items()},
           "duplicates": cluster.duplicates()}
    return res


def settle_back(cluster: Cluster, node: str = "n1", timeout: float = 90.0) -> None:
    """After a demotion heals, n1 undemotes and preempts: wait for the steady state.

    Healing is dhcpd passing its own probe again; a dhcpd that was killed over and over
    may go through failover recovery first (up to MCLT, 20 s in the lab), hence the
    generous bound."""
    cluster.wait_settled(node, timeout)


def tftpd_killed(cluster: Cluster, timeout: float = 10.0) -> dict[str, Any]:
    """(d) tftpd dies on the VIP holder: hasvc restarts it; the first transfer after that
    must come from the VIP."""
    node = cluster.master()
    deadline = time.time() + timeout
    poll = Poller(cluster.lab, "cl", lambda: tftp.fetch(VIP4, "hasvc-canary.txt", 0.3, retry_interval=0.02,
                                                        max_retries=14), deadline)
    poll.start()
    old_pid, t0 = _kill_service(cluster, node, "tftpd")
    _release({"tftp": poll}, t0)
    _wait(lambda: (cluster.service(node, "tftpd")["pid"] or old_pid) != old_pid, timeout, "tftpd restarted")
    restarted = time.time()
    _join({"tftp": poll}, deadline)
    res = poll.last
    return {"node": node, "restart_ms": _ms(restarted - t0),
            "first_transfer_ms": _ms(poll.first_ok - t0) if poll.first_ok else None,
            "first_transfer_from": getattr(res, "src_ip", None), "first_transfer_ok": bool(poll.first_ok),
            "detail": getattr(res, "detail", None)}


def _is_dhcpd4(pid: int) -> bool:
    """The IPv4 dhcpd only: dhcpd6 is the same program, run with -6."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and os.path.basename(argv[0]) == b"dhcpd" and b"-4" in argv


def describe_failure(cluster: Cluster) -> str:
    """Logs worth reading when a drill fails: the tails of hasvc's and the services' logs."""
    parts = []
    for node in NODES:
        parts.append(f"--- {node} addresses ---\n{cluster.lab.addresses(node)}")
        for path in [cluster.hasvc_log(node)] + [cluster.service_log(node, n)
                                                  for n in ("dhcpd", "tftpd", "pxe-dnsmasq", "dhcpd6")]:
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    parts.append(f"--- {path} ---\n{fh.read()[-1500:]}")
            except FileNotFoundError:
                pass
    return "\n".join(parts)


__all__ = ["Cluster", "Timeline", "dhcpd_crashloop", "dhcpd_killed", "master_dies", "master_returns",
           "settle_back", "tftpd_killed"]
