"""`hasvc leases show [--json] FILE` and `hasvc leases status [--json]`.

The argparse wiring lives with the rest of the CLI; these take parsed values
and an output stream and return the exit code.
"""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from .parser import Lease, parse_file


def _lease_row(r: Lease) -> dict[str, Any]:
    row: dict[str, Any] = {
        "address": r.address,
        "family": r.family,
        "state": r.state,
        "ends": None if r.ends is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.ends)),
        "ends_epoch": r.ends,
        "hostname": r.hostname,
    }
    if r.family == 4:
        row["hardware"] = r.hardware
        row["uid"] = r.uid.hex() if r.uid is not None else None
    else:
        row["ia"] = r.ia.split()[0] if r.ia else None
        row["iaid"] = r.uid[:4].hex() if r.uid is not None else None
        row["duid"] = r.duid.hex() if r.duid is not None else None
    return row


def show_main(path: str, as_json: bool, out: TextIO) -> int:
    """Print the current state of every address in a lease file (last block wins)."""
    try:
        result = parse_file(path)
    except OSError as exc:
        out.write(f"hasvc leases show: {path}: {exc.strerror}\n")
        return 1
    rows = [_lease_row(r) for r in sorted(result.leases.values(), key=_sort_key)]
    if as_json:
        doc = {
            "file": path, "leases": rows, "errors": result.errors,
            "failover": result.failover,
            "server_duid": result.server_duid.hex() if result.server_duid is not None else None,
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 1 if result.errors else 0
    widths = (39, 10, 20, 40)
    out.write(f"{'ADDRESS':<{widths[0]}} {'STATE':<{widths[1]}} {'ENDS (UTC)':<{widths[2]}} "
              f"{'CLIENT':<{widths[3]}} HOSTNAME\n")
    for row in rows:
        if row["family"] == 4:
            hw = (row["hardware"] or "").removeprefix("ethernet ")
            client = hw or (f"uid {row['uid']}" if row["uid"] else "-")
        else:
            client = f"duid {row['duid']}" if row["duid"] else "-"
        ends = row["ends"] or "never"
        out.write(f"{row['address']:<{widths[0]}} {row['state']:<{widths[1]}} {ends:<{widths[2]}} "
                  f"{client:<{widths[3]}} {row['hostname'] or '-'}\n")
    for name, info in result.failover.items():
        out.write(f"failover {name}: my state {info.get('my_state', '?')}, "
                  f"partner state {info.get('partner_state', '?')}\n")
    for err in result.errors:
        out.write(f"warning: {path}: {err}\n")
    return 1 if result.errors else 0


def _sort_key(r: Lease) -> tuple[int, tuple[int, ...] | str]:
    if r.family == 4:
        return (4, tuple(int(x) for x in r.address.split(".")))
    return (6, r.address)


def status_main(status: dict[str, Any], as_json: bool, out: TextIO) -> int:
    """Pretty-print LeaseSync.status(); exit 1 when the link is down."""
    if as_json:
        json.dump(status, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
        return 0 if status.get("connected") else 1
    up = "connected" if status.get("connected") else "NOT connected"
    out.write(f"lease sync {status.get('node')} <-> {status.get('peer_node') or '?'} "
              f"({status.get('peer')}): {up}\n")
    out.write(f"  outbound: {'up' if status.get('out_connected') else 'down'}, "
              f"last seq sent {status.get('last_seq_sent')}, acked by peer {status.get('last_seq_acked')}, "
              f"lag {_ms(status.get('lag_ms'))}, oldest unacked {_ms(status.get('pending_ms'))}\n")
    out.write(f"  inbound:  {'up' if status.get('in_connected') else 'down'}, "
              f"last seq received {status.get('last_seq_received')}, "
              f"acked by us {status.get('last_seq_acked_by_us')}\n")
    out.write(f"  refused frames {status.get('refused', 0)}, resyncs asked {status.get('resyncs_sent', 0)}, "
              f"resyncs served {status.get('resyncs_received', 0)}\n")
    for name, f in sorted((status.get("files") or {}).items()):
        out.write(f"  {name} (v{f.get('family')}, {f.get('path')}):\n")
        out.write(f"    local: {_counts(f.get('local'))}\n")
        out.write(f"    peer:  {_counts(f.get('peer'))} (applied seq {f.get('peer_applied_seq')})\n")
    if status.get("last_error"):
        out.write(f"  last error: {status['last_error']}\n")
    return 0 if status.get("connected") else 1


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def _counts(c: Any) -> str:
    if not c:
        return "no leases"
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
