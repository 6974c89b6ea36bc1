"""Synthetic lease blocks in dhcpd 4.4's exact layout, for tests and the bench.

Addresses come from documentation/benchmark ranges only: 198.18.0.0/15
(RFC 2544, 131072 addresses, enough for 100k-lease files), and 2001:db8::/32.
"""

from __future__ import annotations

import ipaddress

from .parser import format_time, quote

HEADER = (
    "# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
    "# This lease file was written by isc-dhcp-4.4.3\n"
    "\n"
    "# authoring-byte-order entry is generated, DO NOT DELETE\n"
    "authoring-byte-order little-endian;\n"
    "\n"
)
BENCH_NET = ipaddress.IPv4Network("198.18.0.0/15")
BASE_TIME = 1795323600  # 2026-11-22 05:00:00 UTC


def bench_address(i: int) -> str:
    return str(BENCH_NET.network_address + 1 + i)


def mac(i: int) -> str:
    return "52:54:" + ":".join(f"{(i >> s) & 0xFF:02x}" for s in (24, 16, 8, 0))


def lease4_block(address: str, i: int, state: str = "active", t: int = BASE_TIME,
                 hostname: str | None = None) -> str:
    hw = mac(i)
    uid = quote(b"\x01" + bytes.fromhex(hw.replace(":", "")))
    lines = [
        f"lease {address} {{",
        f"  starts {format_time(t)};",
        f"  ends {format_time(t + 43200 if state == 'active' else t)};",
    ]
    if state != "active":
        lines.append(f"  tstp {format_time(t)};")
    lines += [
        f"  cltt {format_time(t)};",
        f"  binding state {state};",
    ]
    if state == "active":
        lines.append("  next binding state free;")
    lines += [
        "  rewind binding state free;",
        f"  hardware ethernet {hw};",
        f"  uid {uid};",
        '  set vendor-class-identifier = "PXEClient:Arch:00000:UNDI:002001";',
        f'  client-hostname "{hostname or f"pxe-{i:06d}"}";',
        "}",
    ]
    return "\n".join(lines) + "\n"


def v4_file(n: int, updates: int = 0) -> str:
    """n leases, then `updates` further blocks per lease (renewals), last one free."""
    parts = [HEADER]
    for i in range(n):
        parts.append(lease4_block(bench_address(i), i))
    for u in range(updates):
        state = "free" if u == updates - 1 else "active"
        for i in range(n):
            parts.append(lease4_block(bench_address(i), i, state, BASE_TIME + 600 * (u + 1)))
    return "".join(parts)
