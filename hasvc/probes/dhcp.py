"""DHCPDISCOVER probe: does a DHCP server answer, and with the expected server identifier?

Everything is done on one AF_PACKET socket so the probe works in both places it is used:
- on a client (no IPv4 address needed), reading the servers' broadcast OFFERs;
- on a server node against its own dhcpd (the health check). dhcpd on Linux sends
  through a packet socket, so its OFFER to a local DISCOVER never reaches the local
  IP stack; a packet socket bound to ETH_P_ALL does see our host's transmitted frames
  (PACKET_OUTGOING). Outgoing frames are only handed to ETH_P_ALL sockets, hence
  ETH_P_ALL plus a kernel filter rather than ETH_P_IP.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
BROADCAST_FLAG = 0x8000
MAGIC = b"\x63\x82\x53\x63"
DHCPDISCOVER, DHCPOFFER = 1, 2

# Classic BPF for "IPv4, UDP, not a fragment, destination port 68" (what `tcpdump -dd
# 'udp dst port 68'` emits for IPv4), so a busy server does not wake us for every frame.
_BPF = [
    (0x28, 0, 0, 12),        # ldh [12]            ethertype
    (0x15, 0, 7, ETH_P_IP),  # jeq #0x800          else drop
    (0x30, 0, 0, 23),        # ldb [23]            IP protocol
    (0x15, 0, 5, 17),        # jeq #17 (UDP)       else drop
    (0x28, 0, 0, 20),        # ldh [20]            flags/fragment offset
    (0x45, 3, 0, 0x1FFF),    # jset #0x1fff        fragment: drop
    (0xB1, 0, 0, 14),        # ldxb 4*([14]&0xf)   IP header length
    (0x48, 0, 0, 16),        # ldh [x+16]          UDP destination port
    (0x15, 0, 1, 68),        # jeq #68             else drop
    (0x06, 0, 0, 0x40000),   # ret #262144         accept
    (0x06, 0, 0, 0),         # ret #0              drop
]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    server_id: str | None
    yiaddr: str | None
    src_ip: str | None
    elapsed: float
    detail: str


def _attach_filter(sock: socket.socket) -> None:
    prog = b"".join(struct.pack("HBBI", *ins) for ins in _BPF)
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = struct.pack("HL", len(_BPF), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def build_discover(xid: int, chaddr: bytes, secs: int) -> bytes:
    """BOOTP/DHCP payload. The broadcast flag makes servers broadcast the OFFER, which a
    client without an address (and a capture socket that is not promiscuous) can see."""
    options = bytes([53, 1, DHCPDISCOVER, 55, 4, 1, 3, 51, 54, 255])
    payload = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, min(secs, 0xFFFF), BROADCAST_FLAG,
                          b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, chaddr.ljust(16, b"\0"), b"", b"")
    payload += MAGIC + options
    return payload.ljust(300, b"\0")  # minimum BOOTP size some servers insist on


def build_frame(src_mac: bytes, payload: bytes) -> bytes:
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", 68, 67, udp_len, 0) + payload  # checksum 0 is legal over IPv4
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, 0, 0, 64, 17, 0,
                     b"\0" * 4, b"\xff" * 4)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return b"\xff" * 6 + src_mac + struct.pack("!H", ETH_P_IP) + ip + udp


@dataclass(frozen=True)
class Reply:
    msg_type: int | None
    xid: int
    chaddr: bytes
    yiaddr: str
    src_ip: str
    options: dict[int, bytes]

    @property
    def server_id(self) -> str | None:
        raw = self.options.get(54)
        return socket.inet_ntoa(raw) if raw and len(raw) == 4 else None



def parse_options(bootp: bytes) -> dict[int, bytes]:
    """DHCP options after the magic cookie; a repeated code is concatenated (RFC 3396)."""
    out: dict[int, bytes] = {}
    i = 240
    while i < len(bootp):
        code = bootp[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(bootp):
            break
        size = bootp[i + 1]
        out[code] = out.get(code, b"") + bootp[i + 2:i + 2 + size]
        i += 2 + size
    return out

def parse_reply(frame: bytes) -> Reply | None:
    """Parse an Ethernet frame holding a BOOTREPLY; None for anything else."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[23] != 17:
        return None
    src_ip = socket.inet_ntoa(frame[26:30])
    udp = 14 + ihl
    if struct.unpack("!H", frame[udp + 2:udp + 4])[0] != 68:
        return None
    bootp = frame[udp + 8:]
    if len(bootp) < 240 or bootp[0] != 2 or bootp[236:240] != MAGIC:
        return None
    xid = struct.unpack("!I", bootp[4:8])[0]
    hlen = min(bootp[2], 16)
    options = parse_options(bootp)
    msg = options.get(53)
    return Reply(msg[0] if msg else None, xid, bytes(bootp[28:28 + hlen]), socket.inet_ntoa(bootp[16:20]),
                 src_ip, options)


def discover(ifname: str, server_id_expected: str | None, timeout: float, chaddr: bytes | None = None,
             secs: int = 0, capture_outgoing: bool = False, retransmit: float = 1.0) -> ProbeResult:
    """Broadcast a DHCPDISCOVER on `ifname` and wait (at most `timeout`) for an OFFER.

    capture_outgoing=True means the server under test is this host: only OFFERs this host
    transmitted count (a peer's OFFER must not make a dead local dhcpd look healthy).
    Otherwise only received OFFERs count. With ISC failover load balancing only one peer
    answers a given MAC unless `secs` >= load-balance-max-seconds (default 3), so a health
    check sets secs high. ok only if option 54 equals `server_id_expected` (when given).
    """
    start = time.monotonic()
    deadline = start + timeout
    xid = int.from_bytes(os.urandom(4), "big")
    seen: list[str] = []
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except OSError as exc:
        return ProbeResult(False, None, None, None, 0.0, f"packet socket: {exc} (needs CAP_NET_RAW)")
    try:
        _attach_filter(sock)
        sock.bind((ifname, ETH_P_ALL))
        mac = sock.getsockname()[4]
        hw = chaddr if chaddr is not None else mac
        if len(hw) != 6:
            raise ValueError("chaddr must be 6 bytes")
        frame = build_frame(mac, build_discover(xid, hw, secs))
        next_send = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            if now >= next_send:
                sock.send(frame)
                sent += 1
                next_send = now + retransmit
            wait = min(deadline, next_send) - time.monotonic()
            if time.monotonic() >= deadline:
                break
            ready, _, _ = select.select([sock], [], [], max(0.0, wait))
            if not ready:
                continue
            data, addr = sock.recvfrom(65535)
            outgoing = addr[2] == PACKET_OUTGOING
            if outgoing != capture_outgoing:
                continue
            reply = parse_reply(data)
            if reply is None or reply.xid != xid or reply.chaddr[:6] != hw or reply.msg_type != DHCPOFFER:
                continue
            elapsed = time.monotonic() - start
            sid = reply.server_id
            if server_id_expected is None or _same_ip(sid, server_id_expected):
                return ProbeResult(True, sid, reply.yiaddr, reply.src_ip, elapsed,
                                   f"OFFER {reply.yiaddr} from {reply.src_ip} server-id {sid}")
            # Keep listening: another server may still answer correctly, but remember this one.
            seen.append(f"OFFER {reply.yiaddr} from {reply.src_ip} with server-id {sid}")
    except (OSError, ValueError) as exc:
        return ProbeResult(False, None, None, None, time.monotonic() - start, f"{ifname}: {exc}")
    finally:
        sock.close()
    elapsed = time.monotonic() - start
    where = "sent by this host" if capture_outgoing else "received"
    if seen:
        return ProbeResult(False, None, None, None, elapsed,
                           f"no OFFER with server-id {server_id_expected}; got: " + "; ".join(seen))
    return ProbeResult(False, None, None, None, elapsed,
                       f"no OFFER {where} on {ifname} within {timeout:g}s "
                       f"({sent} DISCOVERs, xid {xid:#010x})")


def _same_ip(a: str | None, b: str) -> bool:
    return a is not None and ipaddress.ip_address(a) == ipaddress.ip_address(b)


def _mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise argparse.ArgumentTypeError(f"bad MAC {text!r}")
    return raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hasvc.probes.dhcp", description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--interface", required=True)
    ap.add_argument("--expect", help="server identifier the OFFER must carry (the VIP)")
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--chaddr", type=_mac)
    ap.add_argument("--secs", type=int, default=0)
    ap.add_argument("--local", action="store_true", help="probe this host's own dhcpd (PACKET_OUTGOING)")
    args = ap.parse_args(argv)
    res = discover(args.interface, args.expect, args.timeout, args.chaddr, args.secs, args.local)
    json.dump(asdict(res), sys.stdout)
    sys.stdout.write("\n")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
