"""The notify hook, standalone: standard library only, so it runs as a plain script.

Role-source hooks (ucarp up/down scripts, keepalived notify scripts, devd.conf
actions) run it on every transition, and its start-up time is part of the
takeover. `python3 -S /path/to/hasvc/notify.py --socket SOCK VHID@IF STATE`
skips site-packages and the package import (about 15 ms instead of 60+).
`hasvc notify` is the same request with the usual CLI around it.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

STATES = ("INIT", "BACKUP", "MASTER")
# keepalived reports FAULT and STOP; for a service both mean "not MASTER, not ready".
ALIASES = {"FAULT": "INIT", "STOP": "INIT"}


def ask(path: str, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """One JSON request, one JSON answer, over the control socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(payload).encode() + b"\n")
        reply = json.loads(read_line(sock))
    if not isinstance(reply, dict):
        raise ValueError("malformed reply")
    return reply


def read_line(sock: socket.socket, limit: int = 4 << 20) -> str:
    """One newline-terminated message (or what came before the peer closed)."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError("message too large")
    return buf.decode()


def request(subsystem: str, state: str, source: str = "notify") -> dict[str, Any]:
    """The notify payload; ValueError on a bad VHID@IF or state."""
    vhid, sep, ifname = subsystem.partition("@")
    if not sep or not ifname or not vhid.isdigit() or not 1 <= int(vhid) <= 255:
        raise ValueError(f"expected VHID@INTERFACE, got {subsystem!r}")
    state = ALIASES.get(state.upper(), state.upper())
    if state not in STATES:
        raise ValueError(f"unknown CARP state {state!r} (want INIT, BACKUP or MASTER)")
    return {"cmd": "notify", "vhid": int(vhid), "interface": ifname, "state": state, "source": source}


def main(argv: list[str]) -> int:
    args = list(argv)
    opts = {"--socket": "", "--source": "notify"}
    for name in opts:
        if name in args:
            i = args.index(name)
            opts[name] = args[i + 1] if i + 1 < len(args) else ""
            del args[i:i + 2]
    if len(args) != 2 or not opts["--socket"]:
        print("usage: notify.py --socket SOCK [--source NAME] VHID@IF STATE", file=sys.stderr)
        return 2
    try:
        payload = request(args[0], args[1], opts["--source"])
        reply = ask(opts["--socket"], payload)
    except ValueError as exc:
        print(f"hasvc notify: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"hasvc notify: {opts['--socket']}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"hasvc notify: {reply.get('error', 'refused')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
