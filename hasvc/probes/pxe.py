"""PXE boot-server probe: a PXE client's DHCPREQUEST to SERVER:4011, as a PXE ROM sends it
after its DHCP exchange.

The request carries the PXE vendor class (option 60 "PXEClient:Arch:00000:..."), the
client architecture (option 93), the network interface id (94), a machine UUID (97) and a
boot-item request (option 43, sub-option 71), like a real ROM. `ok` needs an ACK whose IP
source address is the server asked (the VIP): a ROM drops answers from anywhere else.
Exit status 0 when ok, so it doubles as a `command` health check:

    python3 -m hasvc.probes.pxe 192.0.2.4 --timeout 1
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass

from hasvc.probes.dhcp import parse_options

PXE_PORT = 4011
MAGIC = b"\x63\x82\x53\x63"
DHCPREQUEST, DHCPACK = 3, 5
VENDOR_CLASS = b"PXEClient:Arch:00000:UNDI:002001"
# dnsmasq numbers --pxe-service entries that name a boot file from 32768 up.
BOOT_TYPE = 32768


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    src_ip: str | None
    boot_file: str | None
    server_id: str | None
    elapsed: float
    detail: str


def build_request(xid: int, chaddr: bytes, ciaddr: str, *, arch: int = 0, item_type: int = 0,
                  item_layer: int = 0) -> bytes:
    """A boot-server discovery REQUEST (PXE spec 2.1, section 2.2.5)."""
    uuid = os.urandom(16)
    # Option 43 for the boot server: sub-option 71 (PXE_BOOT_ITEM) = type, layer.
    vendor = bytes([71, 4]) + struct.pack("!HH", item_type, item_layer) + b"\xff"
    options = (bytes([53, 1, DHCPREQUEST])
               + bytes([60, len(VENDOR_CLASS)]) + VENDOR_CLASS
               + bytes([93, 2]) + struct.pack("!H", arch)
               + bytes([94, 3, 1, 2, 1])
               + bytes([97, 17, 0]) + uuid
               + bytes([43, len(vendor)]) + vendor
               + bytes([55, 4, 1, 3, 43, 60])
               + b"\xff")
    payload = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0,
                          socket.inet_aton(ciaddr), b"\0" * 4, b"\0" * 4, b"\0" * 4,
                          chaddr.ljust(16, b"\0"), b"", b"")
    return (payload + MAGIC + options).ljust(300, b"\0")


def _local_address(server: str) -> str:
    """The source address the kernel would use towards `server` (the client's ciaddr)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((server, PXE_PORT))
        return str(s.getsockname()[0])


def is_local(addr: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


def request(server: str, timeout: float = 2.0, *, item_type: int = BOOT_TYPE, retransmit: float = 0.5,
            chaddr: bytes | None = None, port: int = PXE_PORT, local: bool = False) -> ProbeResult:
    """Ask server:port; bounded by `timeout`, retransmitting every `retransmit` seconds.

    local=True is for a probe run on the server itself: the request then travels over
    loopback and Linux sources local replies from the primary address of the interface,
    so an ACK from one of this host's addresses is accepted as long as it names `server`
    as server identifier.
    """
    start = time.monotonic()
    deadline = start + timeout
    xid = int.from_bytes(os.urandom(4), "big")
    hw = chaddr if chaddr is not None else b"\x02\x00" + os.urandom(4)
    seen: list[str] = []
    try:
        if ipaddress.ip_address(server).version != 4:
            raise ValueError("PXE boot servers are IPv4 here")
        ciaddr = _local_address(server)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except (OSError, ValueError) as exc:
        return ProbeResult(False, None, None, None, time.monotonic() - start, f"{server}: {exc}")
    try:
        # Not connect(): an answer from another address must be seen to be reported.
        sock.bind((ciaddr, 0))
        pkt = build_request(xid, hw, ciaddr, item_type=item_type)
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                sock.sendto(pkt, (server, port))
                next_send = now + retransmit
            ready, _, _ = select.select([sock], [], [], max(0.0, min(deadline, next_send) - time.monotonic()))
            if not ready:
                continue
            data, (src, _sport) = sock.recvfrom(4096)
            if len(data) < 240 or data[0] != 2 or data[236:240] != MAGIC:
                continue
            if struct.unpack("!I", data[4:8])[0] != xid:
                continue
            opts = parse_options(data)
            msg = opts.get(53, b"\0")[0]
            sid_raw = opts.get(54)
            sid = socket.inet_ntoa(sid_raw) if sid_raw and len(sid_raw) == 4 else None
            boot = data[108:236].split(b"\0", 1)[0].decode(errors="replace") or None
            if msg != DHCPACK:
                seen.append(f"message type {msg} from {src}")
                continue
            elapsed = time.monotonic() - start
            from_server = ipaddress.ip_address(src) == ipaddress.ip_address(server)
            if local and not from_server and sid == server and is_local(src):
                return ProbeResult(True, src, boot, sid, elapsed,
                                   f"PXE ACK (local, via {src}) server-id {sid} boot file {boot!r}")
            if not from_server:
                return ProbeResult(False, src, boot, sid, elapsed,
                                   f"PXE ACK from {src} but asked {server}: not from the VIP")
            return ProbeResult(True, src, boot, sid, elapsed, f"PXE ACK from {src} boot file {boot!r}")
    except OSError as exc:
        return ProbeResult(False, None, None, None, time.monotonic() - start, f"{server}:{port}: {exc}")
    finally:
        sock.close()
    extra = ("; got: " + "; ".join(seen)) if seen else ""
    return ProbeResult(False, None, None, None, time.monotonic() - start,
                       f"no PXE ACK from {server}:{port} within {timeout:g}s{extra}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hasvc.probes.pxe", description=__doc__.splitlines()[0])
    ap.add_argument("server", help="the PXE boot server (the VIP)")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--type", type=int, default=BOOT_TYPE, dest="item_type", help="boot server type asked")
    ap.add_argument("--local", action="store_true", help="probing this host's own server (see request())")
    ap.add_argument("--port", type=int, default=PXE_PORT)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    res = request(args.server, args.timeout, item_type=args.item_type, port=args.port, local=args.local)
    if args.json:
        print(json.dumps(asdict(res)))
    else:
        print(f"ok={res.ok} src={res.src_ip} elapsed={res.elapsed:.3f}s {res.detail}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
