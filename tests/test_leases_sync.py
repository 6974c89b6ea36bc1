"""Lease sync between two LeaseSync instances over real TCP on 127.0.0.1.

Bad input is injected by a hand-driven peer (RawPeer) that speaks the wire
format directly, against a receiver whose own peer address is 127.0.0.1.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hasvc.facade import System
from hasvc.leases import store as store_mod
from hasvc.leases import synth
from hasvc.leases.cli import status_main
from hasvc.leases.config import LeaseFileConfig, SyncConfig
from hasvc.leases.parser import parse_file, parse_text
from hasvc.leases.sync import KeyFileError, LeaseSync, divergence, encode_frame, read_frame

KEY = b"0123456789abcdef0123456789abcdef"
DATA = Path(__file__).parent / "data" / "leases"


def wait_for(cond: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def dead_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Node:
    def __init__(self, root: Path, name: str, key: bytes = KEY, key_mode: int = 0o600,
                 peer_port: int | None = None) -> None:
        self.dir = root / name
        (self.dir / "db").mkdir(parents=True, exist_ok=True)
        self.lf4 = self.dir / "db" / "dhcpd.leases"
        self.lf6 = self.dir / "db" / "dhcpd6.leases"
        for lf in (self.lf4, self.lf6):
            if not lf.exists():
                lf.write_text(synth.HEADER)
        self.key_file = self.dir / "sync.key"
        self.key_file.write_bytes(key)
        os.chmod(self.key_file, key_mode)
        self.logs: list[str] = []
        self.cfg = SyncConfig(
            node=name, listen=("127.0.0.1", 0), peer=("127.0.0.1", peer_port or dead_port()),
            key_file=str(self.key_file), state_dir=str(self.dir / "state"),
            files=[LeaseFileConfig("dhcpd4", str(self.lf4), 4), LeaseFileConfig("dhcpd6", str(self.lf6), 6)],
            heartbeat=0.2, dead_after=2.0, reconnect=0.05, max_frame=1 << 20,
        )
        self.sync = LeaseSync(self.cfg, System(), self.logs.append)

    def append(self, text: str, path: Path | None = None) -> None:
        with open(path or self.lf4, "a", encoding="latin-1") as fh:
            fh.write(text)

    def refused(self) -> list[str]:
        return [m for m in self.logs if "refused frame" in m or "refused connection" in m]

    def state(self, addr: str, name: str = "dhcpd4") -> str | None:
        rec = self.sync.store.get(name, addr)
        return rec.state if rec else None


def stop_all(*nodes: Node) -> None:
    t0 = time.monotonic()
    for n in nodes:
        n.sync.stop()
    assert time.monotonic() - t0 < 1.5 * len(nodes)
    lingering = [t.name for t in threading.enumerate() if t.name.startswith("lease-sync")]
    assert not lingering, lingering


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    a, b = Node(tmp_path, "A"), Node(tmp_path, "B")
    a.sync.start()
    b.sync.start()
    a.cfg.peer = ("127.0.0.1", b.sync.port)
    b.cfg.peer = ("127.0.0.1", a.sync.port)
    wait_for(lambda: a.sync.status()["connected"] and b.sync.status()["connected"], what="link up")
    yield a, b
    stop_all(a, b)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Node]:
    """B alone: its own sender has nowhere to go, its receiver waits for RawPeer."""
    b = Node(tmp_path, "B")
    b.sync.start()
    yield b
    stop_all(b)


class RawPeer:
    """Plays node A by hand, to send exactly the bytes a test needs."""

    def __init__(self, port: int, key: bytes = KEY, epoch: str = "feedface") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.key, self.epoch, self.seq = key, epoch, 0
        length = int.from_bytes(self._recv(4), "big")
        body = self._recv(length)[32:]  # the challenge, read without checking its MAC
        self.session = json.loads(body[:body.index(b"\n")])["nonce"]
        self.send(self.frame("hello", nonce="n0"))

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def frame(self, kind: str, payload: str = "", seq: int | None = None, session: str | None = None,
              key: bytes | None = None, **extra: Any) -> bytes:
        if seq is None:
            self.seq += 1
            seq = self.seq
        header = {"v": 1, "type": kind, "from": "A", "epoch": self.epoch,
                  "session": self.session if session is None else session, "seq": seq, **extra}
        return encode_frame(key or self.key, header, payload.encode("latin-1"))

    def delta(self, text: str, **kw: Any) -> bytes:
        return self.frame("delta", text, file="dhcpd4", **kw)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> dict[str, Any]:
        header, _ = read_frame(self.sock, self.key, 1 << 20)
        return header

    def dropped(self, timeout: float = 3.0) -> bool:
        """True once the receiver has closed the connection (acks are skipped)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self) -> None:
        self.sock.close()


def block(addr: str, i: int, state: str = "active") -> str:
    return synth.lease4_block(addr, i, state)


# ---------------------------------------------------------------- happy path

def test_block_appended_on_a_shows_up_in_b(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.append(block("192.0.2.20", 20))
    wait_for(lambda: b.state("192.0.2.20") == "active", what="delta applied on B")
    a.append(block("192.0.2.20", 20, "released"))
    wait_for(lambda: b.state("192.0.2.20") == "released", what="release applied on B")
    # persisted, not just in memory
    assert parse_file(b.sync.store.path("dhcpd4")).leases["192.0.2.20"].state == "released"
    # the receiver never writes its own dhcpd's lease file
    assert b.lf4.read_text() == synth.HEADER
    wait_for(lambda: a.sync.status()["last_seq_acked"] == a.sync.status()["last_seq_sent"], what="acks")
    st = a.sync.status()
    assert st["connected"] and st["last_seq_sent"] >= 3 and st["lag_ms"] is not None
    assert st["files"]["dhcpd4"]["local"] == {"released": 1}
    bs = b.sync.status()
    assert bs["files"]["dhcpd4"]["peer"] == {"released": 1}
    assert bs["last_seq_received"] >= 3 and bs["peer_node"] == "A"
    assert a.refused() == [] and b.refused() == []


def test_v6_leases_sync_and_render(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.append((DATA / "dhcpd6.leases").read_text().split("authoring-byte-order little-endian;\n", 1)[1], a.lf6)
    wait_for(lambda: len(b.sync.store.records("dhcpd6")) == 4, what="v6 leases on B")
    assert b.state("2001:db8:0:1::105", "dhcpd6") == "released"
    assert b.state("2001:db8:100::/56", "dhcpd6") == "active"
    rendered = parse_text(b.sync.store.render("dhcpd6"))
    assert rendered.leases == parse_file(str(a.lf6)).leases


def test_status_and_divergence_helpers(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.append(block("192.0.2.30", 30) + block("192.0.2.31", 31) + block("192.0.2.33", 34, "free")
             + block("192.0.2.34", 35, "expired"))
    b.append(block("192.0.2.30", 30) + block("192.0.2.31", 32) + block("192.0.2.32", 33, "free")
             + block("192.0.2.33", 34, "backup") + block("192.0.2.34", 35))
    wait_for(lambda: b.state("192.0.2.34") and a.state("192.0.2.34"), what="both directions")
    diff = a.sync.diverged("dhcpd4")
    # .31: another client; .34: in use on one node only. Not .32 (free, only
    # one side knows it) nor .33 (free/backup: failover's normal pool split).
    assert [d["address"] for d in diff] == ["192.0.2.31", "192.0.2.34"]
    assert diff[0]["local_client"] != diff[0]["peer_client"]
    assert LeaseSync.divergence is divergence
    import io
    out = io.StringIO()
    assert status_main(a.sync.status(), False, out) == 0
    assert "connected" in out.getvalue() and "dhcpd4" in out.getvalue()
    out = io.StringIO()
    assert status_main(a.sync.status(), True, out) == 0
    assert json.loads(out.getvalue())["node"] == "A"


# ---------------------------------------------------------------- bad input

def test_corrupt_frame_refused(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    p.send(p.delta(block("192.0.2.40", 40)))
    wait_for(lambda: receiver.state("192.0.2.40") == "active")
    before = receiver.sync.store.records("dhcpd4").copy()
    frame = bytearray(p.delta(block("192.0.2.40", 40, "free")))
    frame[-30] ^= 0x01  # one bit flipped in transit
    p.send(bytes(frame))
    assert p.dropped()
    wait_for(lambda: receiver.refused(), what="refusal log")
    assert len(receiver.refused()) == 1 and "bad HMAC" in receiver.refused()[0]
    assert receiver.sync.store.records("dhcpd4") == before


def test_truncated_frame_refused(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    frame = p.delta(block("192.0.2.41", 41))
    p.send(frame[: len(frame) // 2])
    p.close()
    wait_for(lambda: receiver.refused(), what="refusal log")
    assert len(receiver.refused()) == 1 and "truncated frame" in receiver.refused()[0]
    assert receiver.state("192.0.2.41") is None


def test_wrong_key_refused(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port, key=b"not-the-right-key-at-all-0000000")
    assert p.dropped()  # the hello itself fails
    wait_for(lambda: receiver.refused(), what="refusal log")
    assert len(receiver.refused()) == 1 and "bad HMAC (corrupt frame or wrong key)" in receiver.refused()[0]
    assert receiver.sync.status()["in_connected"] is False


def test_oversize_frame_refused(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    p.send((64 << 20).to_bytes(4, "big") + b"x" * 64)
    assert p.dropped()
    wait_for(lambda: receiver.refused(), what="refusal log")
    assert len(receiver.refused()) == 1 and "oversize frame" in receiver.refused()[0]


def test_replayed_sequence_refused(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    first = p.delta(block("192.0.2.42", 42))
    p.send(first)
    p.send(p.delta(block("192.0.2.42", 42, "released")))
    wait_for(lambda: receiver.state("192.0.2.42") == "released")
    p.send(first)  # an attacker replays the old "active"
    assert p.dropped()
    wait_for(lambda: receiver.refused(), what="refusal log")
    assert len(receiver.refused()) == 1 and "replayed or reordered seq 2" in receiver.refused()[0]
    assert receiver.state("192.0.2.42") == "released"


def test_frames_from_another_connection_refused(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    recorded = p.delta(block("192.0.2.43", 43))
    p.close()
    q = RawPeer(receiver.sync.port)
    q.send(recorded)
    assert q.dropped()
    wait_for(lambda: receiver.refused(), what="refusal log")
    assert "wrong session" in receiver.refused()[0] and receiver.state("192.0.2.43") is None


def test_epoch_change_mid_connection_refused(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    p.send(p.delta(block("192.0.2.48", 48)))
    wait_for(lambda: receiver.state("192.0.2.48") == "active")
    p.epoch = "0ther-epoch"
    p.send(p.delta(block("192.0.2.48", 48, "free")))
    assert p.dropped()
    wait_for(lambda: receiver.refused(), what="refusal log")
    assert len(receiver.refused()) == 1 and "epoch changed" in receiver.refused()[0]
    assert receiver.state("192.0.2.48") == "active"


def test_connection_from_other_address_refused(tmp_path: Path) -> None:
    b = Node(tmp_path, "B")
    b.cfg.peer = ("127.0.0.2", dead_port())
    b.sync.start()
    try:
        with socket.create_connection(("127.0.0.1", b.sync.port), timeout=3) as s:
            s.settimeout(3)
            assert s.recv(1) == b""  # closed before any challenge
        assert len(b.refused()) == 1 and "refused connection from 127.0.0.1" in b.refused()[0]
    finally:
        stop_all(b)


def test_unknown_file_name_is_ignored_not_fatal(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    p.send(p.frame("delta", block("192.0.2.49", 49), file="tftp-nope"))
    assert p.read()["type"] == "ack"
    p.send(p.delta(block("192.0.2.49", 49)))
    assert p.read()["type"] == "ack"
    assert receiver.state("192.0.2.49") == "active" and receiver.refused() == []
    assert sum("'tftp-nope'" in m for m in receiver.logs) == 1


def test_gap_asks_for_full_resync(receiver: Node) -> None:
    p = RawPeer(receiver.sync.port)
    p.send(p.delta(block("192.0.2.44", 44)))
    assert p.read()["type"] == "ack"
    p.seq += 1  # seq 3 gets lost
    p.send(p.delta(block("192.0.2.45", 45)))
    assert p.read()["type"] == "resync"
    assert receiver.state("192.0.2.45") is None  # not applied on top of a gap
    p.send(p.delta(block("192.0.2.46", 46)))  # still ignored until the snapshot
    p.send(p.frame("snap", synth.HEADER + block("192.0.2.45", 45), file="dhcpd4", part=0, last=True))
    wait_for(lambda: receiver.state("192.0.2.45") == "active", what="snapshot applied")
    assert receiver.state("192.0.2.44") is None  # a snapshot replaces the store
    assert receiver.state("192.0.2.46") is None
    assert receiver.refused() == []


def test_gap_between_real_nodes_resyncs(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.sync._client_seq()  # lose one seq number on A's side
    a.append(block("192.0.2.47", 47))
    wait_for(lambda: b.state("192.0.2.47") == "active", what="resync after gap")
    assert b.sync.status()["resyncs_sent"] == 1 and a.sync.status()["resyncs_received"] == 1


def test_lease_file_truncated_mid_block(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.append(block("192.0.2.50", 50))
    wait_for(lambda: b.state("192.0.2.50") == "active")
    half = block("192.0.2.51", 51)
    a.append(half[:60])  # dhcpd is mid-write
    time.sleep(0.3)
    assert b.state("192.0.2.51") is None
    a.append(half[60:])
    wait_for(lambda: b.state("192.0.2.51") == "active", what="completed block")
    # the file cut back into the middle of .51's block: .51 is gone for good
    size = len(synth.HEADER) + len(block("192.0.2.50", 50)) + 40
    with open(a.lf4, "r+b") as fh:
        fh.truncate(size)
    wait_for(lambda: b.state("192.0.2.51") is None, what="resync after truncation")
    assert b.state("192.0.2.50") == "active"
    assert b.refused() == []


def test_disk_full_on_receiver(pair: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pair
    a.append(block("192.0.2.60", 60))
    wait_for(lambda: b.state("192.0.2.60") == "active")
    path = Path(b.sync.store.path("dhcpd4"))
    on_disk = path.read_bytes()
    in_mem = b.sync.store.records("dhcpd4").copy()

    def enospc(*_a: object, **_k: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod, "_write", enospc)
    monkeypatch.setattr(b.sync.system, "write_file", enospc)
    a.append(block("192.0.2.60", 60, "free"))
    wait_for(lambda: any("No space left on device" in m for m in b.logs), what="disk full logged")
    time.sleep(0.2)  # let the reconnect's snapshot fail the same way
    assert path.read_bytes() == on_disk
    assert b.sync.store.records("dhcpd4") == in_mem
    assert "No space left on device" in (b.sync.status()["last_error"] or "")
    monkeypatch.undo()
    wait_for(lambda: b.state("192.0.2.60") == "free", timeout=8, what="recovery once space is back")


def test_key_file_with_loose_mode_refused(tmp_path: Path) -> None:
    n = Node(tmp_path, "A", key_mode=0o644)
    with pytest.raises(KeyFileError, match="mode 0644"):
        n.sync.start()
    assert len(n.logs) == 1 and "chmod 0600" in n.logs[0]


def test_short_key_refused(tmp_path: Path) -> None:
    n = Node(tmp_path, "A", key=b"short")
    with pytest.raises(KeyFileError, match="at least 16"):
        n.sync.start()


# ---------------------------------------------------------------- reconnects

def test_resync_after_reconnect(tmp_path: Path) -> None:
    a, b = Node(tmp_path, "A"), Node(tmp_path, "B")
    a.sync.start()
    b.sync.start()
    a.cfg.peer, b.cfg.peer = ("127.0.0.1", b.sync.port), ("127.0.0.1", a.sync.port)
    started = [a, b]
    try:
        a.append(block("192.0.2.70", 70))
        wait_for(lambda: b.state("192.0.2.70") == "active")
        b.sync.stop()
        # while B is away: one change, and dhcpd rewrites its file without .70
        a.append(block("192.0.2.71", 71))
        fresh = a.lf4.with_suffix(".new")
        fresh.write_text(synth.HEADER + block("192.0.2.71", 71) + block("192.0.2.72", 72))
        os.rename(fresh, a.lf4)
        b2 = Node(tmp_path, "B")  # same state dir: starts from what it had persisted
        started.append(b2)
        b2.sync.start()
        assert b2.state("192.0.2.70") == "active"
        a.cfg.peer, b2.cfg.peer = ("127.0.0.1", b2.sync.port), ("127.0.0.1", a.sync.port)
        wait_for(lambda: b2.state("192.0.2.72") == "active", what="snapshot after reconnect")
        assert set(b2.sync.store.records("dhcpd4")) == {"192.0.2.71", "192.0.2.72"}
        assert b2.refused() == []
        stop_all(a, b2)
    finally:
        for n in started:
            n.sync.stop()


def test_peer_comes_back_with_empty_file(pair: tuple[Node, Node]) -> None:
    a, b = pair
    a.append("".join(block(f"198.51.100.{i}", i) for i in range(1, 5)))
    wait_for(lambda: len(b.sync.store.records("dhcpd4")) == 4, what="four leases on B")
    fresh = a.lf4.with_suffix(".new")
    fresh.write_text(synth.HEADER)  # A's disk was replaced: dhcpd starts from nothing
    os.rename(fresh, a.lf4)
    wait_for(lambda: len(b.sync.store.records("dhcpd4")) == 0, what="empty snapshot applied")
    # B's copy of what A had is not lost: it is kept aside for an install
    prev = parse_file(b.sync.store.path("dhcpd4") + ".prev").leases
    assert len(prev) == 4 and prev["198.51.100.1"].state == "active"


def test_peer_connection_dropped_is_reestablished(pair: tuple[Node, Node]) -> None:
    a, b = pair
    inbound = b.sync._inbound
    assert inbound is not None
    inbound.sock.shutdown(socket.SHUT_RDWR)  # the link breaks
    a.append(block("192.0.2.80", 80))
    wait_for(lambda: b.state("192.0.2.80") == "active", what="delivery after reconnect")
    wait_for(lambda: a.sync.status()["connected"], what="link back up")


def test_frame_corrupted_in_flight_between_real_nodes(pair: tuple[Node, Node],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: B refuses the frame with one line, the link drops, A
    reconnects and its snapshot brings B up to date."""
    from hasvc.leases import sync as sync_mod

    a, b = pair
    real = sync_mod.encode_frame
    hit = []

    def corrupt_once(key: bytes, header: dict[str, Any], payload: bytes = b"") -> bytes:
        frame = real(key, header, payload)
        if header["type"] == "delta" and not hit:
            hit.append(header["seq"])
            return frame[:-5] + bytes([frame[-5] ^ 0x20]) + frame[-4:]
        return frame

    monkeypatch.setattr(sync_mod, "encode_frame", corrupt_once)
    a.append(block("192.0.2.90", 90))
    wait_for(lambda: b.state("192.0.2.90") == "active", what="delivery after the refusal")
    assert hit and len(b.refused()) == 1 and "bad HMAC" in b.refused()[0]


def test_sync_config_from_yaml_mapping() -> None:
    from hasvc.leases.config import sync_config_from_dict

    cfg = sync_config_from_dict({
        "listen": "198.51.100.11", "peer": "[2001:db8::12]:7000", "port": 6471, "key_file": "/k",
        "files": [{"name": "dhcpd4", "path": "/var/db/dhcpd.leases", "family": 4},
                  {"name": "dhcpd6", "path": "/var/db/dhcpd6.leases", "family": 6}],
    }, node="dhcp01", state_dir="/var/db/hasvc/leases")
    assert cfg.listen == ("198.51.100.11", 6471) and cfg.peer == ("2001:db8::12", 7000)
    assert cfg.node == "dhcp01" and [f.family for f in cfg.files] == [4, 6]
    expect = "lease_sync.files[0]: lease file 'x': family must be 4 or 6"
    with pytest.raises(ValueError, match=re.escape(expect)):
        sync_config_from_dict({"listen": "a", "peer": "b", "key_file": "k",
                               "files": [{"name": "x", "path": "/p", "family": 5}]}, node="n")
    with pytest.raises(ValueError, match=re.escape("lease_sync.prot: unknown key")):
        sync_config_from_dict({"listen": "a", "peer": "b", "key_file": "k", "prot": 1}, node="n")
