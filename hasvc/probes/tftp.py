"""TFTP read probe (RFC 1350, 512-byte blocks, octet mode), IPv4 and IPv6.

Its point is the source address: PXE ROMs drop DATA that does not come from the
address they asked, so a server that answers from its node address instead of the
VIP is broken even though the file arrives. `ok` needs both: a complete transfer
and every DATA packet from the address asked.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import sys
import time
from dataclasses import dataclass

RRQ, DATA, ACK, ERROR = 1, 3, 4, 5
BLOCK = 512
UNKNOWN_TID = 5


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    src_ip: str | None
    data: bytes
    elapsed: float
    detail: str


def _same(a: str, b: str) -> bool:
    return ipaddress.ip_address(a.split("%")[0]) == ipaddress.ip_address(b.split("%")[0])


def _error(code: int, msg: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + msg.encode() + b"\0"


def fetch(server: str, filename: str, timeout: float, bind: str | None = None, *, port: int = 69,
          retry_interval: float = 1.0, max_retries: int = 5, max_size: int = 64 * 1024 * 1024) -> ProbeResult:
    """Read `filename` from server:port; bounded by `timeout` overall and `max_retries` per packet."""
    start = time.monotonic()
    deadline = start + timeout
    family = socket.AF_INET6 if ipaddress.ip_address(server.split("%")[0]).version == 6 else socket.AF_INET
    data = bytearray()
    src_ip: str | None = None
    tid: tuple[str, int] | None = None

    def result(ok: bool, detail: str) -> ProbeResult:
        return ProbeResult(ok, src_ip, bytes(data), time.monotonic() - start, detail)

    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
    except OSError as exc:
        return result(False, f"socket: {exc}")
    try:
        if bind:
            sock.bind((bind, 0))
        last = struct.pack("!H", RRQ) + filename.encode() + b"\0octet\0"
        dest: tuple[str, int] = (server, port)
        sock.sendto(last, dest)
        expect = 1
        retries = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return result(False, f"timed out after {timeout:g}s waiting for block {expect}")
            sock.settimeout(min(retry_interval, left))
            try:
                pkt, addr = sock.recvfrom(4 + BLOCK + 64)
            except TimeoutError:
                retries += 1
                if retries > max_retries:
                    return result(False, f"no answer for block {expect} after {max_retries} retries")
                sock.sendto(last, dest)
                continue
            host, sport = addr[0], addr[1]
            if not _same(host, server):
                # The server answered, but from the wrong address: a PXE client would
                # ignore it. Tell the sender and fail the probe.
                src_ip = host
                sock.sendto(_error(UNKNOWN_TID, "unexpected source address"), addr)
                return result(False, f"DATA from {host} but asked {server}: reply does not come from the VIP")
            if tid is None:
                tid = (host, sport)
                dest = (server, sport)
                src_ip = host
            elif sport != tid[1]:
                sock.sendto(_error(UNKNOWN_TID, "unknown transfer ID"), addr)
                continue
            if len(pkt) < 4:
                continue
            opcode, arg = struct.unpack("!HH", pkt[:4])
            if opcode == ERROR:
                msg = pkt[4:].split(b"\0", 1)[0].decode(errors="replace")
                return result(False, f"TFTP error {arg} from {host}: {msg}")
            if opcode != DATA:
                continue
            if arg == expect:
                data += pkt[4:]
                last = struct.pack("!HH", ACK, arg)
                sock.sendto(last, dest)
                retries = 0
                if len(pkt) - 4 < BLOCK:
                    return result(True, f"{len(data)} bytes in {expect} blocks from {host}")
                if len(data) > max_size:
                    return result(False, f"file larger than {max_size} bytes")
                expect = (expect + 1) & 0xFFFF
            elif arg == ((expect - 1) & 0xFFFF):
                sock.sendto(last, dest)  # our ACK was lost: the server resent, ACK again
    except OSError as exc:
        return result(False, f"{server}: {exc}")
    finally:
        sock.close()


def check_canary(server: str, filename: str, expected_bytes: bytes, timeout: float,
                 bind: str | None = None) -> ProbeResult:
    """fetch, and also require the content to be exactly the canary."""
    res = fetch(server, filename, timeout, bind)
    if res.ok and res.data != expected_bytes:
        return ProbeResult(False, res.src_ip, res.data, res.elapsed,
                           f"canary mismatch: got {len(res.data)} bytes, want {len(expected_bytes)}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hasvc.probes.tftp", description=__doc__.splitlines()[0])
    ap.add_argument("server")
    ap.add_argument("filename")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--bind")
    args = ap.parse_args(argv)
    res = fetch(args.server, args.filename, args.timeout, args.bind)
    print(f"ok={res.ok} src={res.src_ip} bytes={len(res.data)} elapsed={res.elapsed:.3f}s {res.detail}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
