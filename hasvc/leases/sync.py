"""Carry each node's lease files to the other node over TCP.

Each node runs one LeaseSync. It connects to the peer and ships its own
lease files (sender side), and accepts the peer's connection and keeps the
peer's leases in a LeaseStore under state_dir (receiver side). The receiver
never touches a lease file dhcpd is running on; putting the copy into place
is LeaseStore.install(), for a node whose dhcpd is stopped.

Wire format, one frame per message:

    u32 big-endian length of the rest | HMAC-SHA256(key, body) (32 bytes) | body
    body = JSON header, b"\\n", payload (dhcpd lease-file text, latin-1)

Every header has `from` (node id), `epoch` (random per sender process),
`session` (the nonce the receiving side handed out when the connection was
made, so frames recorded on an earlier connection are useless) and `seq`
(strictly increasing per sender epoch). The receiver refuses, with one log
line, any frame that is oversize, truncated, fails the HMAC, is malformed, is
from another epoch or session, or repeats or goes back in seq; it then drops
the connection, the sender reconnects and starts over with a full snapshot.
A seq that skips ahead means a message was lost: the receiver asks for a
full resync and ignores deltas until it has it.

Messages: server->client `challenge` {nonce}, `ack` {ack}, `resync` {file};
client->server `hello` {nonce}, `snap` {file, part, last}, `delta` {file},
`ping`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import stat
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from hasvc.facade import System

from .config import LeaseFileConfig, SyncConfig
from .parser import Lease, LeaseTail, ParseResult, parse_into
from .store import Applied, LeaseStore, LeaseStoreError, SnapshotWriter, render_leases

PROTO = 1
_LEN = struct.Struct(">I")
_MAC_LEN = 32


class KeyFileError(RuntimeError):
    pass


class FrameError(Exception):
    """Bad input from the peer; the text is the one log line explaining it."""


class _Closed(Exception):
    """The peer closed the connection cleanly between frames."""


def load_key(path: str) -> bytes:
    """The shared secret; refused unless only its owner can read it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise KeyFileError(f"lease sync key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"lease sync key file {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise KeyFileError(f"lease sync key file {path} has mode {mode:04o}; it must not be readable by "
                           f"group or others (chmod 0600 {path})")
    with open(path, "rb") as fh:
        key = fh.read().strip()
    if len(key) < 16:
        raise KeyFileError(f"lease sync key file {path} holds {len(key)} bytes; use at least 16 "
                           f"(e.g. openssl rand -hex 32 > {path})")
    return key


# ---------------------------------------------------------------- framing

def encode_frame(key: bytes, header: dict[str, Any], payload: bytes = b"") -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return _LEN.pack(len(body) + _MAC_LEN) + mac + body


def read_frame(sock: socket.socket, key: bytes, max_frame: int) -> tuple[dict[str, Any], bytes]:
    """Next frame, verified. Raises _Closed on a clean EOF, FrameError on bad input."""
    head = _recv_exact(sock, _LEN.size, at_start=True)
    (length,) = _LEN.unpack(head)
    if length > max_frame:
        raise FrameError(f"oversize frame: {length} bytes, limit {max_frame}")
    if length < _MAC_LEN + 2:
        raise FrameError(f"runt frame: {length} bytes")
    data = _recv_exact(sock, length)
    digest = hmac.new(key, memoryview(data)[_MAC_LEN:], hashlib.sha256).digest()
    if not hmac.compare_digest(bytes(data[:_MAC_LEN]), digest):
        raise FrameError("bad HMAC (corrupt frame or wrong key)")
    nl = data.find(b"\n", _MAC_LEN)
    try:
        header = json.loads(data[_MAC_LEN:nl]) if nl > _MAC_LEN else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("seq"), int) or "type" not in header:
        raise FrameError("malformed frame header")
    return header, bytes(data[nl + 1:])


def _recv_exact(sock: socket.socket, n: int, at_start: bool = False) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:])
        except TimeoutError:
            raise FrameError("peer silent too long" if at_start and got == 0
                             else f"truncated frame: stalled after {got} of {n} bytes") from None
        except OSError as exc:
            if at_start and got == 0:
                raise _Closed(str(exc)) from None
            raise FrameError(f"truncated frame: {exc.strerror or exc} after {got} of {n} bytes") from None
        if k == 0:
            if at_start and got == 0:
                raise _Closed("eof")
            raise FrameError(f"truncated frame: connection closed after {got} of {n} bytes")
        got += k
    return buf


class _Seq:
    """Checks one peer's sender id, epoch, session and seq on one connection."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.sender: str | None = None
        self.epoch: str | None = None
        self.last = -1

    def check(self, h: dict[str, Any]) -> bool:
        """True if in order; False for a gap (accepted, caller resyncs)."""
        if h.get("session") != self.session:
            raise FrameError(f"wrong session in {h.get('type')} seq {h['seq']} (replayed from another "
                             "connection?)")
        if self.sender is None:
            self.sender, self.epoch, self.last = str(h.get("from")), str(h.get("epoch")), h["seq"]
            return True
        if h.get("from") != self.sender or h.get("epoch") != self.epoch:
            raise FrameError(f"sender/epoch changed mid-connection: {h.get('from')}/{h.get('epoch')}")
        seq = h["seq"]
        if seq <= self.last:
            raise FrameError(f"replayed or reordered seq {seq} (last was {self.last})")
        gap = seq != self.last + 1
        self.last = seq
        return not gap


# ---------------------------------------------------------------- helpers

# States in which an address is not in use. In ISC failover one peer holds
# a free address as `free` and the other as `backup` (the pool is split
# between them), so these are one class when comparing nodes.
IDLE_STATES = frozenset({"free", "backup", "expired", "released", "reset"})


def divergence(local_records: dict[str, Lease], peer_records: dict[str, Lease]) -> list[dict[str, Any]]:
    """Addresses on which the two nodes disagree about binding state or client.

    Disagreeing means: one side has the address in use and the other not
    (or does not know it), or both have it in use but in different states
    or for different clients (hardware address, else client-id/DUID).
    """
    out = []
    for addr in sorted(set(local_records) | set(peer_records)):
        a, b = local_records.get(addr), peer_records.get(addr)
        a_idle = a is None or a.state in IDLE_STATES
        b_idle = b is None or b.state in IDLE_STATES
        if a_idle and b_idle:
            continue
        if a is not None and b is not None and a.state == b.state and a.client == b.client:
            continue
        out.append({
            "address": addr,
            "local_state": a.state if a else None, "peer_state": b.state if b else None,
            "local_client": a.client if a else None, "peer_client": b.client if b else None,
        })
    return out


def _chunks(records: list[Lease], family: int, size: int, parsed: ParseResult | None = None) -> Iterator[str]:
    """Lease text in parts of about `size` records, never splitting a v6 IA.

    With `parsed` (a snapshot), the first part carries the file header. A
    generator, so the first part is on the wire while the rest is rendered.
    """
    if family == 6:
        groups: dict[str, list[Lease]] = {}
        for r in records:
            groups.setdefault(r.ia or "", []).append(r)
        units = list(groups.values())
    else:
        units = [[r] for r in records]
    head = "" if parsed is None else render_leases([], family, parsed.server_duid, parsed.byte_order)
    batch: list[Lease] = []
    for unit in units:
        batch.extend(unit)
        if len(batch) >= size:
            yield head + render_leases(batch, family, header=False)
            head = ""
            batch = []
    if batch or head:
        yield head + render_leases(batch, family, header=False)


@dataclass
class _Conn:
    sock: socket.socket
    seq_out: Callable[[], int]
    seq_in: _Seq
    wlock: threading.Lock = field(default_factory=threading.Lock)
    alive: bool = True


def _counter(start: int = 0) -> Callable[[], int]:
    lock = threading.Lock()
    value = start

    def nxt() -> int:
        nonlocal value
        with lock:
            value += 1
            return value
    return nxt


# ---------------------------------------------------------------- the service

class LeaseSync:
    def __init__(self, cfg: SyncConfig, system: System, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.system = system
        self.log = log
        self.files: dict[str, LeaseFileConfig] = {f.name: f for f in cfg.files}
        self.store = LeaseStore(cfg.state_dir, system)
        self.tails = {f.name: LeaseTail(f.path) for f in cfg.files}
        self.epoch = secrets.token_hex(8)
        self._key = b""
        # Seq of what we send as a client; it keeps growing across
        # reconnections for this epoch. Replies (acks) count per connection.
        self._client_seq = _counter()
        self._peer_ips: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # store and tails vs. status()
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._observer: Any = None
        self._inbound: _Conn | None = None
        self._awaiting_snapshot: set[str] = set()  # receiver: deltas ignored until a snapshot
        # receiver: full copies applied since start, per file (a node that comes back is
        # not up to date before its first one)
        self.snapshots_received: dict[str, int] = {}
        self._want_resync: set[str] = set()  # sender: the peer asked for these
        self._want_lock = threading.Lock()
        self._last_logged: str | None = None
        self._unacked: dict[int, float] = {}  # seq -> when the change was seen
        self._ack_lock = threading.Lock()
        self.stats: dict[str, Any] = {
            "out_connected": False, "in_connected": False, "last_seq_sent": 0, "last_seq_acked": 0,
            "last_seq_received": 0, "last_seq_acked_by_us": 0, "lag_ms": None, "last_error": None,
            "refused": 0, "resyncs_sent": 0, "resyncs_received": 0, "peer_node": None,
        }

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        try:
            self._key = load_key(self.cfg.key_file)
        except KeyFileError as exc:
            self.log(f"lease sync not started: {exc}")
            raise
        for f in self.cfg.files:
            self.store.load(f.name, f.family)
        self._peer_ips = {str(ai[4][0]) for ai in socket.getaddrinfo(self.cfg.peer[0], None)}
        lst = socket.create_server(self.cfg.listen, family=_family(self.cfg.listen[0]), reuse_port=False)
        lst.settimeout(0.2)
        self._listener = lst
        self._start_watch()
        for target, name in ((self._accept_loop, "lease-sync-accept"), (self._send_loop, "lease-sync-send")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for s in list(self._conns):
            _shutdown(s)
        if self._observer is not None:
            self._observer.stop()
        deadline = time.monotonic() + 1.0
        for t in list(self._threads):
            t.join(max(0.05, deadline - time.monotonic()))
        if self._observer is not None:
            self._observer.join(max(0.05, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()

    def _start_watch(self) -> None:
        paths = {os.path.abspath(f.path) for f in self.cfg.files}
        wake = self._wake

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.src_path in paths or getattr(event, "dest_path", None) in paths:
                    wake.set()

        obs = Observer()
        handler = Handler()
        for d in {os.path.dirname(p) for p in paths}:
            if os.path.isdir(d):
                obs.schedule(handler, d, recursive=False)
        obs.daemon = True
        obs.start()
        self._observer = obs

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        return t

    def _error(self, text: str, repeat: bool = True) -> None:
        """Log a failure; `repeat=False` for retry loops, so one cause logs once."""
        self.stats["last_error"] = text
        if repeat or text != self._last_logged:
            self.log(text)
        self._last_logged = text

    def _send(self, conn: _Conn, session: str, kind: str, payload: bytes = b"", **extra: Any) -> int:
        with conn.wlock:
            seq = conn.seq_out()
            header = {"v": PROTO, "type": kind, "from": self.cfg.node, "epoch": self.epoch,
                      "session": session, "seq": seq, **extra}
            conn.sock.sendall(encode_frame(self._key, header, payload))
        return seq

    # ------------------------------------------------------------ receiver side

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if addr[0] not in self._peer_ips and not self._stop.is_set():
                self._error(f"lease sync: refused connection from {addr[0]} "
                            f"(expected peer {self.cfg.peer[0]})")
                sock.close()
                continue
            sock.settimeout(self.cfg.dead_after)
            self._conns.add(sock)
            self._spawn(self._serve, sock, addr, name="lease-sync-in")

    def _serve(self, sock: socket.socket, addr: tuple[Any, ...]) -> None:
        nonce = secrets.token_hex(16)
        conn = _Conn(sock, _counter(), _Seq(nonce))
        writers: dict[str, SnapshotWriter] = {}
        client_nonce = ""
        where = f"{addr[0]}:{addr[1]}"
        try:
            self._send(conn, "", "challenge", nonce=nonce)
            header, _ = read_frame(sock, self._key, self.cfg.max_frame)
            if header.get("type") != "hello":
                raise FrameError(f"expected hello, got {header.get('type')!r}")
            conn.seq_in.check(header)
            client_nonce = str(header.get("nonce", ""))
            old, self._inbound = self._inbound, conn
            if old is not None:
                _shutdown(old.sock)  # the peer reconnected: its old link is dead
            self.stats.update(in_connected=True, peer_node=header.get("from"),
                              last_seq_received=header["seq"])
            while not self._stop.is_set():
                header, payload = read_frame(sock, self._key, self.cfg.max_frame)
                in_order = conn.seq_in.check(header)
                self.stats["last_seq_received"] = header["seq"]
                self._receive(conn, client_nonce, header, payload, in_order, writers)
        except _Closed:
            if not self._stop.is_set():
                self.log(f"lease sync: peer {where} disconnected")
        except FrameError as exc:
            if not self._stop.is_set():
                self.stats["refused"] += 1
                self._error(f"lease sync: refused frame from {where}: {exc}; dropping connection")
        except LeaseStoreError as exc:
            self._error(f"lease sync: {exc}; dropping connection", repeat=False)
        except OSError as exc:
            if not self._stop.is_set():
                self._error(f"lease sync: connection from {where} failed: {exc}")
        finally:
            for w in writers.values():
                w.abort()
            if self._inbound is conn:
                self._inbound = None
                self.stats["in_connected"] = False
            self._conns.discard(sock)
            sock.close()

    def _receive(self, conn: _Conn, session: str, h: dict[str, Any], payload: bytes, in_order: bool,
                 writers: dict[str, SnapshotWriter]) -> None:
        kind = h["type"]
        name = h.get("file")
        if kind in ("snap", "delta"):
            if name not in self.files:
                # A config mismatch between the nodes, not bad input: say so
                # once, and keep the link for the files both sides know.
                self._error(f"lease sync: peer sends lease file {name!r}, which is not in our "
                            "lease_sync.files; ignoring it", repeat=False)
                self._ack(conn, session, h)
                return
        elif kind != "ping":
            raise FrameError(f"unexpected message type {kind!r}")
        if not in_order:
            # Something was lost in between: whatever we were building is suspect.
            for w in writers.values():
                w.abort()
            writers.clear()
            self._awaiting_snapshot.update(self.files)
            self.log(f"lease sync: gap before seq {h['seq']} from {h.get('from')}; asking for a full resync")
            self._send(conn, session, "resync", file="*")
            self.stats["resyncs_sent"] += 1
            if kind != "snap" or h.get("part") != 0:
                return
        if kind == "ping":
            self._ack(conn, session, h)
            return
        assert isinstance(name, str)
        fcfg = self.files[name]
        text = payload.decode("latin-1")
        applied = Applied(str(h.get("from")), str(h.get("epoch")), h["seq"])
        if kind == "snap":
            part = h.get("part")
            if part == 0:
                old = writers.pop(name, None)
                if old is not None:
                    old.abort()
                writers[name] = self.store.begin_replace(name, fcfg.family)
            w = writers.get(name)
            if w is None:
                raise FrameError(f"snapshot part {part} of {name} without its start")
            try:
                w.add(text)
            except ValueError as exc:
                raise FrameError(f"bad snapshot part {part} of {name}: {exc}") from None
            if h.get("last"):
                del writers[name]
                with self._lock:
                    w.commit(applied)
                self._awaiting_snapshot.discard(name)
                self.snapshots_received[name] = self.snapshots_received.get(name, 0) + 1
                self._ack(conn, session, h)
            return
        # delta
        if name in self._awaiting_snapshot:
            return  # a full copy is on its way; a delta on top of a gap is meaningless
        parsed = ParseResult()
        stop = parse_into(text, parsed)
        if text[stop:].strip() or parsed.errors:
            why = parsed.errors[0] if parsed.errors else "truncated block"
            raise FrameError(f"bad delta for {name}: {why}")
        with self._lock:
            self.store.apply(name, parsed.leases.values(), applied)
        self._ack(conn, session, h)

    def _ack(self, conn: _Conn, session: str, h: dict[str, Any]) -> None:
        self._send(conn, session, "ack", ack=h["seq"])
        self.stats["last_seq_acked_by_us"] = h["seq"]

    # ------------------------------------------------------------ sender side

    def _send_loop(self) -> None:
        delay = self.cfg.reconnect
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(self.cfg.peer, timeout=1.0,
                                                source_address=(self.cfg.listen[0], 0))
            except OSError as exc:
                self._error(f"lease sync: cannot reach peer {_hp(self.cfg.peer)}: {exc}", repeat=False)
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)  # a returning peer is found within a second
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.cfg.dead_after)
            self._conns.add(sock)
            began = time.monotonic()
            try:
                # Back off unless the link held for a while: a receiver that
                # drops every snapshot (disk full) must not get one per 0.2 s.
                if self._session(sock) and time.monotonic() - began > 5.0:
                    delay = self.cfg.reconnect
            except Exception as exc:  # a bug must not end replication silently
                self._error(f"lease sync: sender failed: {exc!r}")
            finally:
                self._conns.discard(sock)
                _shutdown(sock)
                sock.close()
                self.stats["out_connected"] = False
            if not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)  # a returning peer is found within a second

    def _session(self, sock: socket.socket) -> bool:
        """One outgoing connection, from handshake to drop. True if it got going."""
        where = _hp(self.cfg.peer)
        mine = secrets.token_hex(16)
        conn = _Conn(sock, self._client_seq, _Seq(""))
        try:
            header, _ = read_frame(sock, self._key, self.cfg.max_frame)
            conn.seq_in.check(header)
            if header.get("type") != "challenge":
                raise FrameError(f"expected challenge, got {header.get('type')!r}")
            session = str(header.get("nonce", ""))
            conn.seq_in.session = mine  # everything after the challenge answers our nonce
            self._send(conn, session, "hello", nonce=mine)
        except (FrameError, _Closed, OSError) as exc:
            if not self._stop.is_set():
                self._error(f"lease sync: handshake with {where} failed: {exc}", repeat=False)
            return False
        self.stats["out_connected"] = True
        self._last_logged = None
        with self._ack_lock:
            self._unacked.clear()
        with self._want_lock:
            self._want_resync.clear()
        reader = self._spawn(self._read_acks, conn, where, name="lease-sync-acks")
        try:
            self._poll_tails()
            for name in self.files:
                self._send_snapshot(conn, session, name)
            last_sent = time.monotonic()
            while not self._stop.is_set() and conn.alive:
                self._wake.wait(min(self.cfg.heartbeat, self.cfg.poll_interval))
                self._wake.clear()
                if self._stop.is_set() or not conn.alive:
                    break
                seen = time.monotonic()
                updates = self._poll_tails()
                with self._want_lock:
                    wanted, self._want_resync = self._want_resync, set()
                for name, (changed, reset) in updates.items():
                    if reset or name in wanted:
                        continue
                    # A burst (or a long pause) can hold many changes: keep
                    # every frame well under max_frame, as for snapshots.
                    for part in _chunks(changed, self.files[name].family, self.cfg.snapshot_chunk):
                        seq = self._send(conn, session, "delta", part.encode("latin-1"), file=name)
                        with self._ack_lock:
                            self._unacked[seq] = seen
                        self.stats["last_seq_sent"] = seq
                        last_sent = time.monotonic()
                for name in self.files:
                    if name in wanted or updates.get(name, ([], False))[1]:
                        self._send_snapshot(conn, session, name)
                        last_sent = time.monotonic()
                if time.monotonic() - last_sent >= self.cfg.heartbeat:
                    self.stats["last_seq_sent"] = self._send(conn, session, "ping")
                    last_sent = time.monotonic()
        except OSError as exc:
            if not self._stop.is_set():
                self._error(f"lease sync: link to {where} failed: {exc}")
        finally:
            conn.alive = False
            _shutdown(sock)
            reader.join(1.0)
        return True

    def _read_acks(self, conn: _Conn, where: str) -> None:
        try:
            while not self._stop.is_set():
                header, _ = read_frame(conn.sock, self._key, self.cfg.max_frame)
                conn.seq_in.check(header)
                kind = header["type"]
                if kind == "ack":
                    ack = int(header.get("ack", 0))
                    self.stats["last_seq_acked"] = ack
                    with self._ack_lock:
                        seen = self._unacked.pop(ack, None)
                        for s in [s for s in self._unacked if s < ack]:
                            del self._unacked[s]
                    if seen is not None:
                        self.stats["lag_ms"] = round((time.monotonic() - seen) * 1000, 3)
                elif kind == "resync":
                    self.stats["resyncs_received"] += 1
                    with self._want_lock:
                        self._want_resync.update(self.files)
                    self._wake.set()
                else:
                    raise FrameError(f"unexpected message type {kind!r}")
        except _Closed:
            pass
        except FrameError as exc:
            if not self._stop.is_set() and conn.alive:
                self.stats["refused"] += 1
                self._error(f"lease sync: refused frame from {where}: {exc}; dropping connection")
        except OSError:
            pass
        finally:
            conn.alive = False
            _shutdown(conn.sock)
            self._wake.set()

    def _poll_tails(self) -> dict[str, tuple[list[Lease], bool]]:
        out: dict[str, tuple[list[Lease], bool]] = {}
        for name, tail in self.tails.items():
            with self._lock:
                up = tail.poll()
            if up.changed or up.reset:
                out[name] = (list(up.changed.values()), up.reset)
        return out

    def _send_snapshot(self, conn: _Conn, session: str, name: str) -> None:
        f = self.files[name]
        with self._lock:
            state = self.tails[name].state
            records = list(state.leases.values())
        seen = time.monotonic()
        parts = _chunks(records, f.family, self.cfg.snapshot_chunk, state)
        text = next(parts)
        i = 0
        while True:
            following = next(parts, None)  # one ahead, to mark the last part
            seq = self._send(conn, session, "snap", text.encode("latin-1"), file=name, part=i,
                             last=following is None)
            if following is None:
                break
            text, i = following, i + 1
        with self._ack_lock:
            self._unacked[seq] = seen
        self.stats["last_seq_sent"] = seq

    # ------------------------------------------------------------ status

    divergence = staticmethod(divergence)

    def diverged(self, name: str) -> list[dict[str, Any]]:
        """Where our own lease file and the peer's copy of the same file disagree."""
        with self._lock:
            local = dict(self.tails[name].leases)
            peer = dict(self.store.records(name))
        return divergence(local, peer)

    def status(self) -> dict[str, Any]:
        files = {}
        with self._lock:
            for name, f in self.files.items():
                tail = self.tails[name]
                try:
                    peer_counts = self.store.counts(name)
                    applied = self.store.applied(name)
                except KeyError:
                    peer_counts, applied = {}, None
                files[name] = {
                    "path": f.path, "family": f.family,
                    "local": dict(Counter(r.state for r in tail.leases.values())),
                    "peer": peer_counts,
                    "peer_applied_seq": applied.seq if applied else None,
                    "peer_applied_from": applied.sender if applied else None,
                }
        with self._ack_lock:
            oldest = min(self._unacked.values(), default=None)
        s = dict(self.stats)
        s.update(
            node=self.cfg.node, peer=_hp(self.cfg.peer),
            listen=_hp((self.cfg.listen[0], self.port)) if self._listener else _hp(self.cfg.listen),
            connected=bool(s["out_connected"] and s["in_connected"]),
            pending_ms=None if oldest is None else round((time.monotonic() - oldest) * 1000, 3),
            files=files,
        )
        return s


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _hp(hp: tuple[str, int]) -> str:
    host, port = hp
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
