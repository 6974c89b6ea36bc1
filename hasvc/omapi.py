"""A small OMAPI client: read and set an ISC dhcpd's failover state.

OMAPI is dhcpd's control protocol (omapi-port in dhcpd.conf). hasvc uses
two things from it: the `failover-state` object's local and partner state
(shown in `hasvc status`, and a returning node holds back its preemption
until its dhcpd reports `normal`), and setting `local-state` to
partner-down when the peer is confirmed dead.

Wire format (all integers network order): a startup exchange of (version
100, header size 24); then messages of authid, authlen, opcode, handle,
tid, rid, a message dict and an object dict (each entry: 16-bit name
length, name, 32-bit value length, value; ended by a zero name length),
then `authlen` bytes of signature. With a key, the first exchange opens an
`authenticator` object whose handle becomes the authid, and every later
message is signed with HMAC-MD5 (the only algorithm dhcpd's OMAPI offers).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import socket
import struct

OPEN, REFRESH, UPDATE, NOTIFY, STATUS, DELETE = 1, 2, 3, 4, 5, 6
ALGORITHM = b"hmac-md5.SIG-ALG.REG.INT."
MAX_MESSAGE = 65536

# enum failover_state in ISC dhcpd's failover.h
STATES = {
    0: "unknown", 1: "startup", 2: "normal", 3: "communications-interrupted", 4: "partner-down",
    5: "potential-conflict", 6: "recover", 7: "paused", 8: "shutdown", 9: "recover-done",
    10: "resolution-interrupted", 11: "conflict-done", 254: "recover-wait",
}
PARTNER_DOWN = 4


class OmapiError(Exception):
    pass


class Key:
    def __init__(self, name: str, secret_b64: str) -> None:
        self.name = name.encode()
        self.secret = base64.b64decode(secret_b64)
        self.authid = 0

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self.secret, data, "md5").digest()


def read_key_file(path: str) -> Key:
    """A dhcpd-style key clause: `key NAME { algorithm hmac-md5; secret "BASE64"; };`.

    The same file is included by dhcpd.conf, so dhcpd and hasvc cannot disagree.
    """
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    m = re.search(r'key\s+"?([\w.-]+)"?\s*\{(.*?)\}', text, re.S)
    if not m:
        raise OmapiError(f"{path}: no `key NAME {{ ... }}` clause")
    secret = re.search(r'secret\s+"?([A-Za-z0-9+/=]+)"?\s*;', m.group(2))
    algorithm = re.search(r"algorithm\s+([\w.-]+)\s*;", m.group(2))
    if not secret or not algorithm or algorithm.group(1).lower() != "hmac-md5":
        raise OmapiError(f"{path}: key {m.group(1)} needs `algorithm hmac-md5;` and a base64 secret")
    return Key(m.group(1), secret.group(1))


def _dict(items: list[tuple[bytes, bytes]]) -> bytes:
    out = b"".join(struct.pack("!H", len(k)) + k + struct.pack("!L", len(v)) + v for k, v in items)
    return out + b"\0\0"


class Message:
    def __init__(self, opcode: int, handle: int = 0, message: list[tuple[bytes, bytes]] | None = None,
                 obj: list[tuple[bytes, bytes]] | None = None, tid: int | None = None, rid: int = 0,
                 authid: int = 0, signature: bytes = b"") -> None:
        self.opcode, self.handle, self.rid, self.authid = opcode, handle, rid, authid
        self.tid = secrets.randbelow(1 << 32) if tid is None else tid
        self.message, self.obj, self.signature = message or [], obj or [], signature

    def body(self, authlen: int) -> bytes:
        """What is signed: everything but authid and the signature itself."""
        return (struct.pack("!LLLLL", authlen, self.opcode, self.handle, self.tid, self.rid)
                + _dict(self.message) + _dict(self.obj))

    def encode(self, key: Key | None) -> bytes:
        if key is None or key.authid == 0:
            return struct.pack("!L", 0) + self.body(0)
        body = self.body(16)
        return struct.pack("!L", key.authid) + body + key.sign(body)

    def value(self, name: str) -> bytes | None:
        for k, v in self.obj:
            if k == name.encode():
                return v
        return None


class Client:
    def __init__(self, host: str, port: int = 7911, key: Key | None = None, timeout: float = 2.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock.sendall(struct.pack("!LL", 100, 24))
            version, header = struct.unpack("!LL", self._read(8))
            if (version, header) != (100, 24):
                raise OmapiError(f"unsupported OMAPI protocol {version}/{header}")
            self.key = None
            if key is not None:
                reply = self.call(Message(OPEN, message=[(b"type", b"authenticator")],
                                          obj=[(b"name", key.name), (b"algorithm", ALGORITHM)]))
                if reply.opcode != UPDATE or not reply.handle:
                    raise OmapiError("authentication refused (unknown key name?)")
                key.authid = reply.handle
                self.key = key
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise OmapiError("connection closed by dhcpd")
            buf += chunk
        return buf

    def _read_dict(self) -> list[tuple[bytes, bytes]]:
        items = []
        total = 0
        while True:
            (klen,) = struct.unpack("!H", self._read(2))
            if klen == 0:
                return items
            name = self._read(klen)
            (vlen,) = struct.unpack("!L", self._read(4))
            total += klen + vlen
            if total > MAX_MESSAGE:
                raise OmapiError("message too large")
            items.append((name, self._read(vlen)))

    def receive(self) -> Message:
        authid, authlen, opcode, handle, tid, rid = struct.unpack("!LLLLLL", self._read(24))
        msg = Message(opcode, handle, self._read_dict(), self._read_dict(), tid, rid, authid)
        msg.signature = self._read(authlen) if authlen else b""
        signed = self.key is not None and authlen
        if signed and not hmac.compare_digest(self.key.sign(msg.body(authlen)), msg.signature):  # type: ignore[union-attr]
            raise OmapiError("reply signature does not verify")
        return msg

    def call(self, msg: Message) -> Message:
        self.sock.sendall(msg.encode(self.key))
        for _ in range(8):  # dhcpd may interleave notifications; bounded
            reply = self.receive()
            if reply.rid == msg.tid:
                return reply
        raise OmapiError("no reply to our request")

    def failover_state(self, peer: str) -> dict[str, object]:
        reply = self.call(Message(OPEN, message=[(b"type", b"failover-state")], obj=[(b"name", peer.encode())]))
        if reply.opcode != UPDATE:
            raise OmapiError(f"failover peer {peer!r}: {_status(reply)}")
        out: dict[str, object] = {"handle": reply.handle}
        for field in ("local-state", "partner-state"):
            raw = reply.value(field)
            code = struct.unpack("!L", raw)[0] if raw and len(raw) == 4 else 0
            out[field.replace("-", "_")] = STATES.get(code, f"state-{code}")
        return out

    def set_partner_down(self, peer: str) -> None:
        handle = int(self.failover_state(peer)["handle"])  # type: ignore[call-overload]
        reply = self.call(Message(UPDATE, handle=handle, obj=[(b"local-state", struct.pack("!L", PARTNER_DOWN))]))
        if reply.opcode not in (UPDATE, STATUS) or (reply.opcode == STATUS and _status_code(reply)):
            raise OmapiError(f"setting partner-down refused: {_status(reply)}")


def _status_code(msg: Message) -> int:
    raw = next((v for k, v in msg.message if k == b"result"), None)
    return struct.unpack("!L", raw)[0] if raw and len(raw) == 4 else 0


def _status(msg: Message) -> str:
    text = next((v for k, v in msg.message if k == b"message"), b"")
    # dhcpd answers an unsigned or badly signed request with a bare status.
    return text.decode(errors="replace") or f"refused (result {_status_code(msg)}; wrong or missing key?)"
