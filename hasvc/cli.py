"""Command line: hasvc [-c FILE] check|run|role|status|notify|reset|audit|leases|demo."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from hasvc import control
from hasvc.errors import ConfigError

if TYPE_CHECKING:
    from hasvc.config import Config

DEFAULT_CONFIG = "/usr/local/etc/hasvc/hasvc.yaml"
EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not getattr(args, "func", None):
        parser().print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except control.ControlError as exc:
        print(f"hasvc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `hasvc leases show | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hasvc", description=__doc__)
    p.add_argument("-c", "--config", default=os.environ.get("HASVC_CONFIG", DEFAULT_CONFIG),
                   help=f"node config file (default {DEFAULT_CONFIG})")
    sub = p.add_subparsers(metavar="COMMAND")

    s = sub.add_parser("check", help="validate the config and every policy")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("run", help="run the daemon in the foreground")
    s.add_argument("-d", "--debug", action="store_true", help="debug logging to stderr")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("role", help="the role of every group")
    s.add_argument("--json", action="store_true")
    s.add_argument("--vhid", type=int, help="exit 0 MASTER, 1 BACKUP, 2 INIT or unknown")
    s.set_defaults(func=cmd_role)

    s = sub.add_parser("status", help="groups, services, demotion")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("notify", help="deliver a role change (devd, ucarp, keepalived hook)")
    s.add_argument("subsystem", metavar="VHID@IF")
    s.add_argument("state", metavar="STATE", help="MASTER, BACKUP or INIT (keepalived's FAULT/STOP = INIT)")
    s.add_argument("--source", default="notify", help="name shown in logs and `hasvc role`")
    s.add_argument("--socket", help="control socket; skips reading the config (fast path for hooks)")
    s.set_defaults(func=cmd_notify)

    s = sub.add_parser("reset", help="forget a service's failures and lift its demotion")
    s.add_argument("service")
    s.set_defaults(func=cmd_reset)

    s = sub.add_parser("reload", help="ask the daemon to reload its config (like SIGHUP)")
    s.set_defaults(func=cmd_reload)

    s = sub.add_parser("audit", help="who listens on shared and node addresses")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("leases", help="DHCP lease state")
    lsub = s.add_subparsers(metavar="WHAT")
    ls = lsub.add_parser("show", help="current state per address of a lease file")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("file", nargs="?")
    ls.set_defaults(func=cmd_leases_show)
    ls = lsub.add_parser("status", help="sync lag, sequences, counts, divergence")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_leases_status)

    s = sub.add_parser("demo", help="two-node lab in network namespaces with a failover drill (Linux, root)")
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
    s.add_argument("--keep", action="store_true", help="keep the lab's work directory")
    s.set_defaults(func=cmd_demo)
    return p


def load_config(path: str) -> Config:
    # Imported here so the notify hook does not pay for YAML and the schema.
    from hasvc import config

    return config.load(path)


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print("configuration OK")
    if sys.stdout.isatty():
        print(f"  {len(cfg.groups)} group(s), {len(cfg.policies)} service(s)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hasvc import log as logmod
    from hasvc.daemon import Daemon

    cfg = load_config(args.config)
    logmod.setup(debug=args.debug, stderr=args.debug)
    daemon = Daemon(cfg)
    attach_extras(daemon)
    return daemon.serve_forever()


def attach_extras(daemon: Any) -> None:
    """Lease sync and OMAPI watching, when configured."""
    cfg = daemon.cfg
    if cfg.omapi:
        from hasvc.failover import FailoverWatch

        groups = cfg.omapi.groups
        daemon.extras.append(FailoverWatch(cfg.omapi, lambda: daemon.group_role(groups), daemon.refresh_demotion))
    if cfg.lease_sync:
        from hasvc.leases.addon import LeaseAddon

        daemon.extras.append(LeaseAddon.from_config(cfg, daemon.system, daemon.group_role))


def cmd_role(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    groups = _ask(cfg, "role")["groups"] if _daemon_up(cfg) else _read_roles(cfg)
    if args.vhid is not None:
        groups = [g for g in groups if g["vhid"] == args.vhid]
        if not groups:
            print(f"hasvc: vhid {args.vhid} is not configured", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(groups if args.vhid is None else groups[0], indent=2))
    else:
        print(format_roles(groups))
    if args.vhid is not None:
        return {"MASTER": 0, "BACKUP": 1}.get(groups[0]["role"], 2)
    return 0


def _daemon_up(cfg: Config) -> bool:
    return os.path.exists(cfg.control_socket) and control.answers(cfg.control_socket)


def _ask(cfg: Config, cmd: str, **kw: Any) -> dict[str, Any]:
    reply = control.request(cfg.control_socket, {"cmd": cmd, **kw})
    if not reply.get("ok"):
        raise control.ControlError(str(reply.get("error", "request failed")))
    return reply


def _read_roles(cfg: Config) -> list[dict[str, Any]]:
    """No daemon: read the system the way the configured role source would at start."""
    from hasvc.daemon import group_report, make_source
    from hasvc.facade import System

    seen = {}
    try:
        seen = {o.vhid: o for o in make_source(cfg, System()).snapshot()}
    except Exception as exc:
        print(f"hasvc: reading roles: {exc}", file=sys.stderr)
    return [group_report(g, seen.get(v)) for v, g in sorted(cfg.groups.items())]


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ts)) if ts else "-"


def format_roles(groups: list[dict[str, Any]]) -> str:
    rows = [("VHID", "INTERFACE", "ROLE", "ADVBASE", "ADVSKEW", "IPV4", "IPV6", "SOURCE", "SINCE")]
    for g in groups:
        rows.append((str(g["vhid"]), g["interface"], g["role"], _dash(g["advbase"]), _dash(g["advskew"]),
                     _dash(g["ipv4"]), _dash(g["ipv6"]), _dash(g["source"]), _when(g["since"])))
    return table(rows)


def _dash(v: Any) -> str:
    return "-" if v in (None, "") else str(v)


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    report = _ask(cfg, "status")
    report.pop("ok", None)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"node {report['node']}")
    print(format_roles(report["groups"]))
    print()
    rows = [("SERVICE", "ROLE", "STATE", "PID", "BIND", "LAST ACTION", "RESULT")]
    for s in report["services"]:
        result = ("ok " if s["last_ok"] else "FAILED " if s["last_ok"] is False else "") + (s["last_result"] or "")
        rows.append((s["name"], s["role"], s["state"] + (" (demoting)" if s["demote"] else ""),
                     _dash(s["pid"]), _dash(s["bind"]),
                     f"{s['last_action'] or '-'} {_when(s['last_time'])}", result.strip() or "-"))
    print(table(rows))
    dem = report["demotion"]
    print()
    print(f"demotion: {'DEMOTED (' + dem['reason'] + ')' if dem['demoted'] else 'none'}"
          f" [method {dem['method']}]" + (f" error: {dem['error']}" if dem["error"] else ""))
    for key in ("leases", "failover"):
        if key in report:
            print(f"{key}: {json.dumps(report[key])}")
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    from hasvc import notify

    try:
        payload = notify.request(args.subsystem, args.state, args.source)
    except ValueError as exc:
        print(f"hasvc: {exc}", file=sys.stderr)
        return 2
    reply = control.request(args.socket or load_config(args.config).control_socket, payload)
    if not reply.get("ok"):
        raise control.ControlError(str(reply.get("error", "request failed")))
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    _ask(cfg, "reset", service=args.service)
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if not _ask(cfg, "reload").get("ok"):
        return 1
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from hasvc import audit

    cfg = load_config(args.config)
    return audit.main(cfg, args.json, sys.stdout)


def cmd_leases_show(args: argparse.Namespace) -> int:
    from hasvc.leases import cli as lcli

    path = args.file
    if not path:
        cfg = load_config(args.config)
        files = (cfg.lease_sync or {}).get("files") or []
        if not files:
            print("hasvc: give a lease FILE or configure lease_sync.files", file=sys.stderr)
            return 2
        path = files[0]["path"]
    return lcli.show_main(path, args.json, sys.stdout)


def cmd_leases_status(args: argparse.Namespace) -> int:
    from hasvc.leases import cli as lcli

    cfg = load_config(args.config)
    reply = _ask(cfg, "status")
    if "leases" not in reply:
        print("hasvc: lease sync is not configured", file=sys.stderr)
        return 1
    return lcli.status_main(reply["leases"], args.json, sys.stdout)


def cmd_demo(args: argparse.Namespace) -> int:
    from hasvc.lab import demo

    return demo.main(as_json=args.json, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
