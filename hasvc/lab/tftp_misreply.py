"""A deliberately wrong TFTP server: receives on one address, sends DATA from another.

Usage: python -m hasvc.lab.tftp_misreply LISTEN_ADDR REPLY_ADDR ROOT
Serves octet-mode RRQs from ROOT, one at a time, until killed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys

BLOCK = 512


def _family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def serve_one(reply: socket.socket, client: tuple[str, int], content: bytes) -> None:
    reply.settimeout(1.0)
    block = 1
    for offset in range(0, len(content) + 1, BLOCK):
        pkt = struct.pack("!HH", 3, block & 0xFFFF) + content[offset:offset + BLOCK]
        for _ in range(3):  # bounded retransmits; the probe is expected to refuse anyway
            reply.sendto(pkt, client)
            try:
                ack, _ = reply.recvfrom(516)
            except TimeoutError:
                continue
            if ack[:2] == b"\0\x04":
                break
            return  # an ERROR: the client rejected us
        else:
            return
        block += 1


def main(argv: list[str]) -> int:
    listen, reply_from, root = argv
    server = socket.socket(_family(listen), socket.SOCK_DGRAM)
    server.bind((listen, 69))
    while True:
        req, client = server.recvfrom(1024)
        if req[:2] != b"\0\x01":
            continue
        name = req[2:].split(b"\0", 1)[0].decode(errors="replace")
        path = os.path.join(root, os.path.basename(name))
        try:
            with open(path, "rb") as fh:
                content = fh.read()
        except OSError:
            continue
        reply = socket.socket(_family(reply_from), socket.SOCK_DGRAM)
        try:
            reply.bind((reply_from, 0))
            serve_one(reply, client, content)
        finally:
            reply.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
