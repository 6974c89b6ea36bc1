"""Start the real Linux role sources (ucarp, keepalived) inside lab nodes.

Both get generated shell scripts that move the VIP themselves and then call the
hasvc hook as `HOOK... VHID@IF STATE`, which is the same shape devd gives on FreeBSD.
Each script also appends `EPOCH STATE` to an events file so tests can time transitions.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import time
from collections.abc import Sequence

from hasvc.lab.netns import IFNAME, Lab, require

HOOK_TIMEOUT = 10  # seconds; a hung hook must not wedge ucarp, which waits for its scripts


def _write_script(path: str, body: str) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)
    return path


def _hook_line(hook_argv: Sequence[str] | None, vhid: int, state: str) -> str:
    if not hook_argv:
        return ""
    argv = ["timeout", str(HOOK_TIMEOUT), *hook_argv, f"{vhid}@{IFNAME}", state]
    # The hook's failure must not change the role: the address work is already done.
    return " ".join(shlex.quote(a) for a in argv) + " || true\n"


def _event_line(events: str, state: str) -> str:
    return f"echo \"$(date +%s.%N) {state}\" >> {shlex.quote(events)}\n"


def events(path: str) -> list[tuple[float, str]]:
    """Parse an events file written by the generated scripts."""
    out: list[tuple[float, str]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                stamp, _, state = line.strip().partition(" ")
                out.append((float(stamp), state))
    except FileNotFoundError:
        pass
    return out


# --- ucarp ------------------------------------------------------------------------------

def start_ucarp(lab: Lab, node: str, vhid: int, vip4: str, node_addr: str, password: str, advskew: int,
                hook_argv: Sequence[str] | None, *, prefix_len: int = 24, advbase: int = 1,
                deadratio: int = 1, preempt: bool = True) -> int:
    """Run ucarp for one vhid in `node`; returns its pid. Events go to ucarp-NODE-VHID.events."""
    argv = ucarp_argv(lab, node, vhid, vip4, node_addr, password, advskew, hook_argv, prefix_len=prefix_len,
                      advbase=advbase, deadratio=deadratio, preempt=preempt)
    return lab.spawn(node, argv, log_path=lab.path(f"ucarp-{node}-{vhid}.log"))


def ucarp_argv(lab: Lab, node: str, vhid: int, vip4: str, node_addr: str, password: str, advskew: int,
               hook_argv: Sequence[str] | None, *, prefix_len: int = 24, advbase: int = 1,
               deadratio: int = 1, preempt: bool = True) -> list[str]:
    """The ucarp command line (scripts written), for callers that must restart it themselves
    later with the same arguments, e.g. a demotion script."""
    require("ucarp", "ip", "timeout")
    if ipaddress.ip_address(vip4).version != 4:
        raise ValueError("ucarp only handles IPv4 VIPs")
    base = lab.path(f"ucarp-{node}-{vhid}")
    ev = base + ".events"
    # ucarp passes $1=interface $2=VIP $3=xparam; `add` fails harmlessly if already there.
    up = _write_script(base + "-up.sh",
                       f'ip addr add "$2/{prefix_len}" dev "$1" 2>/dev/null\n'
                       + _event_line(ev, "MASTER") + _hook_line(hook_argv, vhid, "MASTER"))
    down = _write_script(base + "-down.sh",
                         f'ip addr del "$2/{prefix_len}" dev "$1" 2>/dev/null\n'
                         + _event_line(ev, "BACKUP") + _hook_line(hook_argv, vhid, "BACKUP"))
    argv = ["ucarp", "-i", IFNAME, "-s", node_addr, "-v", str(vhid), "-p", password, "-a", vip4,
            "-b", str(advbase), "-k", str(advskew), "-r", str(deadratio), "-z",
            "-u", up, "-d", down, "-x", node]
    if preempt:
        argv.append("-P")
    return argv


# --- keepalived ----------------------------------------------------------------------

def keepalived_conf(node: str, vhid: int, vip: str, priority: int, scripts: dict[str, str],
                    track_file: str | None, *, advert_int: float = 0.1) -> str:
    addr = ipaddress.ip_address(vip)
    vip_spec = f"{vip}/64 dev {IFNAME} -nodad" if addr.version == 6 else f"{vip}/24 dev {IFNAME}"
    track_def = track_use = ""
    if track_file:
        # weight -1: the number written into the file is subtracted from the priority,
        # like FreeBSD's carp demotion counter. init_file only creates a missing file,
        # so a demotion written before start is honoured.
        track_def = (f'track_file hasvc_demote_{vhid} {{\n    file "{track_file}"\n    weight -1\n'
                     f"    init_file 0\n}}\n")
        track_use = f"    track_file {{\n        hasvc_demote_{vhid}\n    }}\n"
    return (
        "global_defs {\n"
        f"    router_id hasvc_{node}\n"
        "    vrrp_version 3\n"
        # root runs the scripts; otherwise keepalived looks for a keepalived_script user.
        "    script_user root\n"
        "}\n"
        + track_def
        + f"vrrp_instance hasvc_{vhid} {{\n"
        "    state BACKUP\n"
        f"    interface {IFNAME}\n"
        f"    virtual_router_id {vhid}\n"
        f"    priority {priority}\n"
        f"    advert_int {advert_int:g}\n"
        f"    virtual_ipaddress {{\n        {vip_spec}\n    }}\n"
        + track_use
        + f"    notify_master {scripts['MASTER']}\n"
        f"    notify_backup {scripts['BACKUP']}\n"
        f"    notify_fault {scripts['FAULT']}\n"
        "}\n"
    )


def start_keepalived(lab: Lab, node: str, vhid: int, vip6: str, priority: int,
                     hook_argv: Sequence[str] | None, track_file: str | None = None, *,
                     respawn: bool = False) -> int:
    """Run keepalived (VRRPv3, advert 0.1 s) for one VIP in `node`; returns the VRRP parent's pid.

    keepalived adds/removes the VIP itself; the notify scripts only record and call the hook.
    FAULT is passed to the hook as INIT: the VIP is not held and the group is unusable here,
    which is what CARP calls INIT. The VRRP work is done by a child process
    (keepalived_vrrp_pid); with respawn=False a killed child stays dead, as a crashed
    CARP speaker would, instead of being restarted by the parent.
    """
    require("keepalived", "timeout")
    base = lab.path(f"keepalived-{node}-{vhid}")
    ev = base + ".events"
    scripts = {
        state: _write_script(f"{base}-{state.lower()}.sh",
                             _event_line(ev, state) + _hook_line(hook_argv, vhid, hook_state))
        for state, hook_state in (("MASTER", "MASTER"), ("BACKUP", "BACKUP"), ("FAULT", "INIT"))
    }
    conf = base + ".conf"
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(keepalived_conf(node, vhid, vip6, priority, scripts, track_file))
    # -n foreground, -l log to the log file via stdout, -G no syslog (there is none),
    # distinct pid files so several instances can share a machine.
    argv = ["keepalived", "-n", "-l", "-D", "-G", "-P", "-f", conf,
            "-p", base + ".pid", "-r", base + "-vrrp.pid", "-c", base + "-check.pid"]
    if not respawn:
        argv.append("-R")
    return lab.spawn(node, argv, log_path=base + ".log")


def keepalived_vrrp_pid(lab: Lab, node: str, vhid: int, timeout: float = 5.0) -> int:
    """The pid of keepalived's VRRP child, from its pid file (bounded wait for it to appear)."""
    path = lab.path(f"keepalived-{node}-{vhid}-vrrp.pid")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read().strip()
            if text.isdigit():
                return int(text)
        except FileNotFoundError:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no keepalived VRRP pid file {path} after {timeout:g}s")
        time.sleep(0.02)


def start_keepalived4(lab: Lab, node: str, vhid: int, vip4: str, priority: int,
                      hook_argv: Sequence[str] | None, track_file: str | None = None) -> int:
    """The IPv4 flavour (VRRPv3 over 224.0.0.18)."""
    if ipaddress.ip_address(vip4).version != 4:
        raise ValueError("start_keepalived4 wants an IPv4 VIP")
    return start_keepalived(lab, node, vhid, vip4, priority, hook_argv, track_file)


# --- observing ----------------------------------------------------------------------------

def has_vip(lab: Lab, node: str, vip: str) -> bool:
    want = ipaddress.ip_address(vip)
    for line in lab.addresses(node).splitlines():
        fields = line.split()
        for i, tok in enumerate(fields[:-1]):
            if tok in ("inet", "inet6") and ipaddress.ip_address(fields[i + 1].split("/")[0]) == want:
                return True
    return False


def wait_role(lab: Lab, node: str, vip: str, present: bool, timeout: float, interval: float = 0.02) -> float:
    """Wait until the VIP is (or is not) on node's eth0; returns seconds waited, TimeoutError otherwise."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if has_vip(lab, node, vip) == present:
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise TimeoutError(f"VIP {vip} still {'absent from' if present else 'present on'} {node} "
                               f"after {timeout:g}s: {lab.addresses(node)!r}")
        time.sleep(interval)
