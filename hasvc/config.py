"""hasvc.yaml (the node file) and the per-service policy files.

Every key is documented in README.md. Loading either succeeds completely or
raises ConfigError naming file, line and key: a running daemon keeps its
old config when a reload fails.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from hasvc import yamlpos
from hasvc.failover import OmapiConfig
from hasvc.model import Role
from hasvc.schema import Section, as_argv
from hasvc.yamlpos import ConfigError, Doc

ACTIONS = ("start", "stop", "restart", "reload", "none")
KINDS = ("process", "rc", "commands", "address")
BINDS = ("vip4", "vip6", "vip", "node4", "node6", "node", "wildcard", "none")
HEALTH_TYPES = ("process", "dhcp", "tftp", "pxe", "tcp", "udp", "command")
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")
PLACEHOLDERS = ("vip4", "vip6", "node4", "node6", "vhid", "interface", "node", "state_dir")


@dataclass(frozen=True)
class Group:
    vhid: int
    interface: str
    ipv4: str | None = None
    ipv6: str | None = None
    prefixlen4: int = 24
    prefixlen6: int = 64
    debounce: float | None = None
    debounce_master: float | None = None


@dataclass(frozen=True)
class Template:
    source: str  # absolute path of the template file
    dest: str
    mode: int = 0o644


@dataclass(frozen=True)
class HealthCheck:
    type: str
    timeout: float = 2.0
    argv: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    interface: str = ""
    file: str = ""
    expect: str = ""  # dhcp: server identifier; tftp: expected file content
    only: str = ""  # run only on this platform (the dhcp probe needs Linux packet sockets)


@dataclass(frozen=True)
class Policy:
    name: str
    file: str
    line: int
    kind: str = "process"
    groups: tuple[int, ...] = ()
    match: str = "all"
    on: dict[Role, str] = field(default_factory=dict)
    bind: str = "none"
    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    reload: tuple[str, ...] = ()
    stop_signal: str = "TERM"
    reload_signal: str = "HUP"
    pidfile: str = ""
    log: str = ""
    env: tuple[tuple[str, str], ...] = ()
    templates: tuple[Template, ...] = ()
    after: tuple[str, ...] = ()
    after_lines: tuple[int, ...] = ()
    timeout_start: float = 10.0
    timeout_stop: float = 10.0
    timeout_reload: float = 10.0
    health: tuple[HealthCheck, ...] = ()
    health_interval: float = 5.0
    health_failures: int = 2
    restart_max: int = 3
    restart_backoff: float = 1.0
    restart_backoff_max: float = 30.0
    demote: bool = False
    service: str = ""  # kind rc: the rc.d service name
    commands: dict[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    address_interface: str = ""
    address4: str = ""
    address6: str = ""
    vars: tuple[tuple[str, str], ...] = ()
    touch: tuple[str, ...] = ()  # files created empty before start if missing (dhcpd's lease file)
    install_leases: str = ""  # lease_sync file installed before start (single-active dhcpd)
    prestart: tuple[tuple[str, ...], ...] = ()  # argv steps before each start; a leading "-" ignores failure
    force: bool = False  # carry out the role's action on every transition, whatever the state looks like

    def action(self, role: Role) -> str:
        return self.on.get(role, "none")


@dataclass(frozen=True)
class ServiceEntry:
    """Where policies come from: a file or directory, optionally bound to groups and site values.

    Shipped policies are generic; the node file binds them: `{file:
    /usr/local/share/hasvc/services/dhcpd.yaml, groups: [1], vars: {...}}`.
    """

    path: str
    line: int
    where: tuple[str | int, ...]  # its key path in the node file, for error messages
    groups: tuple[int, ...] = ()
    vars: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Demotion:
    method: str = "none"  # sysctl | track_file | command | none
    amount: int = 240
    sysctl: str = "/sbin/sysctl"
    track_file: str = ""
    demote: tuple[str, ...] = ()
    undemote: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    file: str
    node: str
    platform: str
    role_source: str
    ifconfig: str
    devd_socket: str
    service_cmd: str
    ip_cmd: str
    control_socket: str
    state_dir: str
    node4: str | None
    node6: str | None
    groups: dict[int, Group]
    services: tuple[ServiceEntry, ...]
    policies: dict[str, Policy]
    debounce: float = 0.1
    debounce_master: float = 0.0
    poll_interval: float = 2.0
    demotion: Demotion = Demotion()
    vars: tuple[tuple[str, str], ...] = ()
    lease_sync: dict[str, Any] | None = None
    omapi: OmapiConfig | None = None

    def debounce_for(self, vhid: int, state: Role) -> float:
        """How long a role change must hold before services follow it.

        Taking over acts at once by default: the shared address is already
        ours and every millisecond is outage. Leaving MASTER waits, so a
        flap (MASTER -> BACKUP -> MASTER) never restarts anything.
        """
        g = self.groups[vhid]
        if state is Role.MASTER:
            return self.debounce_master if g.debounce_master is None else g.debounce_master
        return self.debounce if g.debounce is None else g.debounce

    def values(self, policy: Policy) -> dict[str, str]:
        """Placeholder values for one policy.

        {vip4}/{vip6} come from the first of its groups that has one, so a
        service following vhid 1 (IPv4) and vhid 2 (IPv6) sees both.
        """
        groups = [self.groups[v] for v in policy.groups if v in self.groups]
        group = groups[0] if groups else None
        return {
            "vip4": next((g.ipv4 for g in groups if g.ipv4), ""),
            "vip6": next((g.ipv6 for g in groups if g.ipv6), ""),
            "node4": self.node4 or "",
            "node6": self.node6 or "",
            "vhid": str(group.vhid) if group else "",
            "interface": group.interface if group else "",
            "node": self.node,
            "state_dir": self.state_dir,
            **dict(self.vars),
            **dict(policy.vars),  # already merged: policy defaults < node vars < service entry vars
        }

    def bound_address(self, policy: Policy) -> str:
        v = self.values(policy)
        return {"vip4": v["vip4"], "vip6": v["vip6"], "vip": v["vip4"] or v["vip6"],
                "node4": v["node4"], "node6": v["node6"], "node": v["node4"] or v["node6"],
                "wildcard": "*", "none": ""}[policy.bind]


NODE_KEYS = ("node", "platform", "role_source", "freebsd", "linux", "control_socket", "state_dir", "addresses",
             "groups", "services", "vars", "debounce", "debounce_master", "poll_interval", "demotion",
             "lease_sync", "omapi")


def detect_platform() -> str:
    return "freebsd" if sys.platform.startswith("freebsd") else "linux"


def substitute(text: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def load(path: str) -> Config:
    doc = yamlpos.load(path)
    top = Section(doc, (), doc.data)
    top.only(NODE_KEYS)  # a misspelt key says so before "required key missing" does
    platform = top.choice("platform", ("auto", "freebsd", "linux"), "auto")
    if platform == "auto":
        platform = detect_platform()
    default_source = "devd" if platform == "freebsd" else "notify"
    role_source = top.choice("role_source", ("devd", "ifconfig", "notify", "address"), default_source)
    if platform == "freebsd" and role_source == "address":
        # CARP keeps the shared address configured on the BACKUP too: its presence says nothing.
        raise top.error("role_source", "address presence cannot tell the role on FreeBSD; use devd or ifconfig")
    fb = top.section("freebsd")
    ifconfig = fb.str("ifconfig", "/sbin/ifconfig")
    devd_socket = fb.str("devd_socket", "/var/run/devd.seqpacket.pipe")
    service_cmd = fb.str("service", "/usr/sbin/service")
    sysctl = fb.str("sysctl", "/sbin/sysctl")
    fb.done()
    lx = top.section("linux")
    ip_cmd = lx.str("ip", "/sbin/ip")
    lx.done()
    addrs = top.section("addresses")
    node4 = addrs.address("ipv4", 4, None)
    node6 = addrs.address("ipv6", 6, None)
    addrs.done()
    base = os.path.dirname(os.path.abspath(path))
    groups = _groups(doc, top)
    node_vars = _vars(top, "vars")
    services = _service_entries(doc, top, base)
    demotion = _demotion(top.section("demotion"), platform, sysctl)
    cfg = Config(
        file=path,
        node=top.str("node"),
        platform=platform,
        role_source=role_source,
        ifconfig=ifconfig,
        devd_socket=devd_socket,
        service_cmd=service_cmd,
        ip_cmd=ip_cmd,
        control_socket=top.str("control_socket", "/var/run/hasvc.sock"),
        state_dir=top.str("state_dir", "/var/db/hasvc"),
        node4=node4,
        node6=node6,
        groups=groups,
        services=services,
        vars=node_vars,
        policies={},
        debounce=top.float("debounce", 0.1, lo=0, hi=60),
        debounce_master=top.float("debounce_master", 0.0, lo=0, hi=60),
        poll_interval=top.float("poll_interval", 2.0, lo=0.05, hi=3600),
        demotion=demotion,
        lease_sync=_opaque(top, "lease_sync"),
        omapi=_omapi(top, groups),
    )
    top.done()
    if cfg.lease_sync is not None:
        _check_lease_sync(doc, cfg)
    for entry in services:
        for i, vhid in enumerate(entry.groups):
            if vhid not in groups:
                raise doc.error((*entry.where, "groups", i), f"unknown vhid {vhid}")
    policies = load_policies(cfg)
    synced = {str(f.get("name")) for f in (cfg.lease_sync or {}).get("files") or [] if isinstance(f, dict)}
    for p in policies.values():
        # Without lease_sync the key is inert (a shipped policy may name its file anyway).
        if cfg.lease_sync is not None and p.install_leases and p.install_leases not in synced:
            raise ConfigError(p.file, p.line, "install_leases",
                              f"{p.install_leases!r} is not a lease_sync.files name in {cfg.file}")
    return Config(**{**cfg.__dict__, "policies": policies})


def _check_lease_sync(doc: Doc, cfg: Config) -> None:
    """Validate lease_sync with its own rules; errors point at the key they name."""
    from hasvc.leases.addon import sync_config

    try:
        sync_config(cfg)
    except ValueError as exc:
        text = str(exc)
        key = text.split(":", 1)[0]
        path = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", key) if p)
        raise doc.error(path, text.split(": ", 1)[-1]) from None


def _opaque(top: Section, key: str) -> dict[str, Any] | None:
    value = top.raw(key, None)
    if value is not None and not isinstance(value, dict):
        raise top.error(key, "must be a mapping")
    return value


def _omapi(top: Section, groups: dict[int, Group]) -> OmapiConfig | None:
    if top.raw("omapi", None) is None:
        return None
    sec = top.section("omapi")
    vhids = sec.list("groups", [min(groups)])
    for i, v in enumerate(vhids):
        if v not in groups:
            raise sec.doc.error(("omapi", "groups", i), f"unknown vhid {v!r}")
    cfg = OmapiConfig(
        address=sec.str("address", "127.0.0.1"),
        port=sec.int("port", 7911, lo=1, hi=65535),
        key_file=sec.str("key_file", ""),
        peer=sec.str("peer", "hasvc"),
        groups=tuple(vhids),
        interval=sec.float("interval", 2.0, lo=0.1, hi=3600),
        hold_preempt=sec.bool("hold_preempt", True),
        partner_down_after=sec.float("partner_down_after", 0.0, lo=0, hi=86400),
        service=sec.str("service", "dhcpd"),
    )
    sec.done()
    return cfg


def _groups(doc: Doc, top: Section) -> dict[int, Group]:
    groups: dict[int, Group] = {}
    for i, item in enumerate(top.list("groups")):
        sec = Section(doc, ("groups", i), item)
        vhid = sec.int("vhid", lo=1, hi=255)
        if vhid in groups:
            raise sec.error("vhid", f"duplicate vhid {vhid}")
        group = Group(
            vhid=vhid,
            interface=sec.str("interface"),
            ipv4=sec.address("ipv4", 4, None),
            ipv6=sec.address("ipv6", 6, None),
            prefixlen4=sec.int("prefixlen4", 24, lo=1, hi=32),
            prefixlen6=sec.int("prefixlen6", 64, lo=1, hi=128),
            debounce=sec.float("debounce", None, lo=0, hi=60),
            debounce_master=sec.float("debounce_master", None, lo=0, hi=60),
        )
        if not group.ipv4 and not group.ipv6:
            raise sec.error(None, "a group needs ipv4, ipv6 or both")
        sec.done()
        groups[vhid] = group
    if not groups:
        raise top.error("groups", "at least one group is required")
    return groups


def _demotion(sec: Section, platform: str, sysctl: str) -> Demotion:
    method = sec.choice("method", ("sysctl", "track_file", "command", "none"),
                        "sysctl" if platform == "freebsd" else "none")
    dem = Demotion(
        method=method,
        amount=sec.int("amount", 240, lo=1, hi=255),
        sysctl=sysctl,
        track_file=sec.str("track_file", ""),
        demote=sec.argv("demote", ()),
        undemote=sec.argv("undemote", ()),
    )
    if method == "track_file" and not dem.track_file:
        raise sec.error("track_file", "required when method is track_file")
    if method == "command" and not (dem.demote and dem.undemote):
        raise sec.error("demote" if not dem.demote else "undemote", "required when method is command")
    sec.done()
    return dem


def _vars(sec: Section, key: str) -> tuple[tuple[str, str], ...]:
    raw = sec.raw(key, {})
    if not isinstance(raw, dict):
        raise sec.error(key, "must be a mapping of name: value")
    out = []
    for name, value in raw.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in PLACEHOLDERS:
            raise sec.doc.error((*sec.path, key, name), "must be a lower-case name that is not a built-in placeholder")
        if isinstance(value, dict | list) or value is None:
            raise sec.doc.error((*sec.path, key, name), "must be a string or number")
        out.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return tuple(out)


def _service_entries(doc: Doc, top: Section, base: str) -> tuple[ServiceEntry, ...]:
    raw = top.raw("services", "services.d")
    if isinstance(raw, str):
        return (ServiceEntry(os.path.join(base, raw), doc.line(("services",)), ("services",)),)
    if not isinstance(raw, list):
        raise top.error("services", "must be a directory or a list of policy files")
    out = []
    for i, item in enumerate(raw):
        where = ("services", i)
        if isinstance(item, str):
            out.append(ServiceEntry(os.path.join(base, item), doc.line(where), where))
            continue
        sec = Section(doc, where, item)
        groups = sec.raw("groups", [])
        groups = groups if isinstance(groups, list) else [groups]
        if any(isinstance(g, bool) or not isinstance(g, int) for g in groups):
            raise sec.error("groups", "must be a list of vhid numbers")
        out.append(ServiceEntry(os.path.join(base, sec.str("file")), doc.line(where), where,
                                tuple(groups), _vars(sec, "vars")))
        sec.done()
    return tuple(out)


def load_policies(cfg: Config) -> dict[str, Policy]:
    policies: dict[str, Policy] = {}
    for entry in cfg.services:
        if os.path.isdir(entry.path):
            files = sorted(glob.glob(os.path.join(entry.path, "*.yaml")))
        elif os.path.isfile(entry.path):
            files = [entry.path]
        else:
            raise ConfigError(cfg.file, entry.line, yamlpos.dotted(entry.where),
                              f"{entry.path}: no such file or directory")
        for file in files:
            doc = yamlpos.load(file)
            policy = _policy(doc, cfg, entry)
            if policy.name in policies:
                raise doc.error(("name",), f"duplicate service name {policy.name!r} "
                                f"(also in {policies[policy.name].file})")
            policies[policy.name] = policy
    for policy in policies.values():
        for i, dep in enumerate(policy.after):
            if dep not in policies:
                raise ConfigError(policy.file, _line(policy, ("after", i)), f"after[{i}]",
                                  f"unknown service {dep!r}")
    _check_cycles(policies)
    return policies


def _line(policy: Policy, path: tuple[Any, ...]) -> int:
    if path[0] == "after" and len(path) == 2 and path[1] < len(policy.after_lines):
        return policy.after_lines[path[1]]
    return policy.line


def _policy(doc: Doc, cfg: Config, entry: ServiceEntry) -> Policy:
    sec = Section(doc, (), doc.data)
    name = sec.str("name", os.path.splitext(os.path.basename(doc.file))[0])
    kind = sec.choice("kind", KINDS, "process")
    if entry.groups:
        sec.raw("groups", None)  # the node file binds this policy to its own groups
        groups = entry.groups
    else:
        groups = tuple(_vhids(sec, cfg))
    on_sec = sec.section("on")
    on = {role: on_sec.choice(role.value.lower(), ACTIONS, "none") for role in Role}
    on_sec.done()
    pol: dict[str, Any] = dict(
        name=name, file=doc.file, line=1, kind=kind, groups=groups,
        match=sec.choice("match", ("all", "any"), "all"),
        on=on,
        bind=sec.choice("bind", BINDS, "none"),
        start=sec.argv("start", ()),
        stop=sec.argv("stop", ()),
        reload=sec.argv("reload", ()),
        stop_signal=_signal(sec, "stop_signal", "TERM"),
        reload_signal=_signal(sec, "reload_signal", "HUP"),
        pidfile=sec.str("pidfile", ""),
        touch=tuple(str(x) for x in sec.list("touch", [])),
        install_leases=sec.str("install_leases", ""),
        prestart=_steps(sec, doc, "prestart"),
        # Commands have no process to look at: by default run their steps on every transition.
        force=sec.bool("force", kind == "commands"),
        log=sec.str("log", ""),
        env=tuple(sorted((str(k), str(v)) for k, v in _mapping(sec, "env").items())),
        after=tuple(str(x) for x in sec.list("after", [])),
        demote=sec.bool("demote", False),
        service=sec.str("service", ""),
        # Policy defaults first, then the node file's, then this entry's: the site wins.
        vars=tuple({**dict(_vars(sec, "vars")), **dict(cfg.vars), **dict(entry.vars)}.items()),
    )
    pol["templates"] = tuple(_templates(sec, doc, cfg.values(Policy(**pol))))
    pol["after_lines"] = tuple(doc.line(("after", i)) for i in range(len(pol["after"])))
    t = sec.section("timeouts")
    pol.update(timeout_start=t.float("start", 10.0, lo=0.1, hi=3600),
               timeout_stop=t.float("stop", 10.0, lo=0.1, hi=3600),
               timeout_reload=t.float("reload", 10.0, lo=0.1, hi=3600))
    t.done()
    r = sec.section("restart")
    pol.update(restart_max=r.int("max", 3, lo=0, hi=1000),
               restart_backoff=r.float("backoff", 1.0, lo=0, hi=3600),
               restart_backoff_max=r.float("backoff_max", 30.0, lo=0, hi=86400))
    r.done()
    pol["health_interval"] = sec.float("health_interval", 5.0, lo=0.05, hi=3600)
    pol["health_failures"] = sec.int("health_failures", 2, lo=1, hi=100)
    pol["health"] = tuple(_health(sec, doc, cfg.platform))
    pol["commands"] = _commands(sec, doc)
    a = sec.section("address")
    pol.update(address_interface=a.str("interface", ""),
               address4=a.address("ipv4", 4, "", prefix=True), address6=a.address("ipv6", 6, "", prefix=True))
    a.done()
    sec.done()
    policy = Policy(**pol)
    _check_kind(sec, policy)
    _check_placeholders(doc, cfg, policy)
    return policy


def _vhids(sec: Section, cfg: Config) -> list[int]:
    raw = sec.raw("groups")
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, vhid in enumerate(items):
        key: tuple[Any, ...] = ("groups", i) if isinstance(raw, list) else ("groups",)
        if isinstance(vhid, bool) or not isinstance(vhid, int):
            raise sec.doc.error(key, f"must be a vhid number, not {vhid!r}")
        if vhid not in cfg.groups:
            raise sec.doc.error(key, f"unknown vhid {vhid} (groups in {cfg.file}: "
                                f"{', '.join(str(v) for v in sorted(cfg.groups))})")
        out.append(vhid)
    if not out:
        raise sec.error("groups", "at least one vhid is required")
    return out


def _signal(sec: Section, key: str, default: str) -> str:
    import signal as _sig

    value = sec.str(key, default).upper().removeprefix("SIG")
    if not hasattr(_sig, "SIG" + value):
        raise sec.error(key, f"unknown signal {value!r}")
    return value


def _mapping(sec: Section, key: str) -> dict[str, Any]:
    value = sec.raw(key, {})
    if not isinstance(value, dict):
        raise sec.error(key, "must be a mapping")
    return value


def _templates(sec: Section, doc: Doc, values: dict[str, str]) -> list[Template]:
    out = []
    base = os.path.dirname(os.path.abspath(doc.file))
    for i, item in enumerate(sec.list("templates", [])):
        t = Section(doc, ("templates", i), item)
        # The source may name a variable, e.g. dhcpd-{failover_role}.conf.in.
        raw_source = t.str("source")
        for m in PLACEHOLDER.finditer(raw_source):
            if not values.get(m.group(1)):
                raise t.error("source", f"unknown or empty placeholder {{{m.group(1)}}}")
        source = os.path.join(base, substitute(raw_source, values))
        mode_raw = t.raw("mode", 0o644)
        try:
            mode = int(mode_raw, 8) if isinstance(mode_raw, str) else mode_raw
        except ValueError:
            mode = None
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise t.error("mode", f"must be an octal mode like '0644', not {mode_raw!r}")
        out.append(Template(source=source, dest=t.str("dest"), mode=mode))
        if not os.path.isfile(source):
            raise t.error("source", f"{source}: no such file")
        t.done()
    return out


def _health(sec: Section, doc: Doc, platform: str) -> list[HealthCheck]:
    out = []
    for i, item in enumerate(sec.list("health", [])):
        h = Section(doc, ("health", i), item)
        kind = h.choice("type", HEALTH_TYPES)
        check = HealthCheck(
            type=kind,
            timeout=h.float("timeout", 2.0, lo=0.01, hi=600),
            argv=h.argv("argv", ()),
            address=h.str("address", ""),
            port=h.int("port", 0, lo=0, hi=65535),
            interface=h.str("interface", ""),
            file=h.str("file", ""),
            expect=h.str("expect", ""),
            only=h.choice("only", ("linux", "freebsd"), None) or "",
        )
        need = {"command": ("argv",), "tcp": ("address", "port"), "udp": ("address", "port"),
                "dhcp": ("interface",), "tftp": ("address", "file"), "pxe": ("address",)}.get(kind, ())
        for key in need:
            if not getattr(check, key):
                raise h.error(key, f"required for a {kind} check")
        h.done()
        if kind == "dhcp" and platform == "freebsd" and check.only != "linux":
            raise h.error("type", "the dhcp probe needs Linux packet sockets: add `only: linux` "
                          "and a check that runs on FreeBSD (e.g. tcp to the failover port)")
        if not check.only or check.only == platform:
            out.append(check)
    return out


def _steps(sec: Section, doc: Doc, key: str) -> tuple[tuple[str, ...], ...]:
    steps = sec.list(key, [])
    holder = Section(doc, (key,), dict(enumerate(steps)))
    return tuple(as_argv(holder, i, step) for i, step in enumerate(steps))


def _commands(sec: Section, doc: Doc) -> dict[str, tuple[tuple[str, ...], ...]]:
    """kind commands: ordered argv lists per action, e.g. a HAST/ZFS switch."""
    c = sec.section("commands")
    out: dict[str, tuple[tuple[str, ...], ...]] = {}
    for action in ("start", "stop", "reload"):
        steps = c.list(action, [])
        holder = Section(doc, ("commands", action), dict(enumerate(steps)))
        out[action] = tuple(as_argv(holder, i, step) for i, step in enumerate(steps))
    out["check"] = (c.argv("check"),) if c.has("check") else ()
    c.done()
    return out


def _check_kind(sec: Section, p: Policy) -> None:
    if p.kind == "process" and not p.start:
        raise sec.error("start", "required for kind process")
    if p.kind == "rc" and not p.service:
        raise sec.error("service", "required for kind rc")
    if p.kind == "commands" and not (p.commands.get("start") or p.commands.get("stop")):
        raise sec.error("commands", "kind commands needs commands.start or commands.stop")
    if p.kind == "address" and not (p.address_interface and (p.address4 or p.address6)):
        raise sec.error("address", "kind address needs interface and ipv4 or ipv6")


def _check_placeholders(doc: Doc, cfg: Config, p: Policy) -> None:
    values = cfg.values(p)

    def scan(text: str, path: tuple[Any, ...], where: str = "") -> None:
        for m in PLACEHOLDER.finditer(text):
            name = m.group(1)
            if name not in values:
                raise doc.error(path, f"unknown placeholder {{{name}}}{where} "
                                f"(known: {', '.join('{' + n + '}' for n in values)})")
            if not values[name]:
                raise doc.error(path, f"placeholder {{{name}}}{where} has no value "
                                "(no such address or variable configured)")

    for key in ("start", "stop", "reload"):
        for i, arg in enumerate(getattr(p, key)):
            scan(arg, (key, i))
    for key in ("pidfile", "log", "address4", "address6"):
        scan(getattr(p, key), (key,))
    for i, path in enumerate(p.touch):
        scan(path, ("touch", i))
    for i, step in enumerate(p.prestart):
        for arg in step:
            scan(arg, ("prestart", i))
    for action, steps in p.commands.items():
        for i, step in enumerate(steps):
            for arg in step:
                scan(arg, ("commands", action, i))
    for i, check in enumerate(p.health):
        for attr in ("address", "interface", "file", "expect"):
            scan(getattr(check, attr), ("health", i, attr))
        for arg in check.argv:
            scan(arg, ("health", i, "argv"))
    for i, t in enumerate(p.templates):
        scan(t.dest, ("templates", i, "dest"))
        with open(t.source, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                for m in PLACEHOLDER.finditer(line):
                    if not values.get(m.group(1)):
                        raise ConfigError(t.source, n, f"templates[{i}]",
                                          f"unknown or empty placeholder {{{m.group(1)}}}")


def _check_cycles(policies: dict[str, Policy]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            p = policies[chain[0]]
            raise ConfigError(p.file, _line(p, ("after", 0)), "after",
                              f"ordering cycle: {' -> '.join([*chain, name])}")
        state[name] = 1
        for dep in policies[name].after:
            visit(dep, [*chain, name])
        state[name] = 2

    for name in policies:
        visit(name, [])


def render(policy: Policy, cfg: Config) -> list[tuple[str, str, int]]:
    """Templates with placeholders filled: (dest, text, mode)."""
    values = cfg.values(policy)
    out = []
    for t in policy.templates:
        with open(t.source, encoding="utf-8") as fh:
            out.append((substitute(t.dest, values), substitute(fh.read(), values), t.mode))
    return out


def expand(argv: tuple[str, ...], policy: Policy, cfg: Config) -> list[str]:
    values = cfg.values(policy)
    return [substitute(a, values) for a in argv]
