"""Lease file parser: dhcpd 4.4 semantics, incremental tailing, and a differential oracle."""

from __future__ import annotations

import datetime
import io
import json
import os
from pathlib import Path

import pytest

from hasvc.leases import synth
from hasvc.leases.cli import show_main
from hasvc.leases.parser import (
    LeaseTail,
    TailPosition,
    format_time,
    parse_file,
    parse_text,
    parse_time,
    quote,
    unquote,
)

DATA = Path(__file__).parent / "data" / "leases"
V4 = DATA / "dhcpd4.leases"
V4_EPOCH = DATA / "dhcpd4-epoch.leases"
V6 = DATA / "dhcpd6.leases"
ALL_FILES = [V4, V4_EPOCH, V6]


def ts(text: str) -> int:
    t = parse_time(text)
    assert t is not None
    return t


# ---------------------------------------------------------------- v4

def test_v4_last_block_wins_including_free_over_active() -> None:
    r = parse_file(str(V4))
    assert r.errors == []
    got = {a: lease.state for a, lease in r.leases.items()}
    assert got == {
        "192.0.2.10": "active",  # renewed: second active block
        "192.0.2.11": "released",  # later released block beats earlier active one
        "192.0.2.12": "free",  # expired and freed
        "192.0.2.13": "backup",  # failover pool share, no client
        "192.0.2.14": "abandoned",
        "198.51.100.20": "active",
        "203.0.113.5": "active",
    }
    renewed = r.leases["192.0.2.10"]
    assert renewed.ends == ts("0 2026/11/22 17:10:00")
    assert renewed.hardware == "ethernet 52:54:00:5a:01:10"
    assert renewed.uid == b"\x01RT\x00Z\x01\x10"
    assert renewed.hostname == "pxe-a10"
    assert r.leases["192.0.2.13"].hardware is None
    assert r.leases["203.0.113.5"].ends is None  # `ends never;`
    assert r.byte_order == "little-endian"
    assert r.failover == {"pxe-failover": {
        "my_state": "normal", "my_at": "0 2026/11/22 04:50:03",
        "partner_state": "normal", "partner_at": "0 2026/11/22 04:50:05", "mclt": "3600"}}


def test_v4_octal_escapes_and_relay_options() -> None:
    relay = parse_file(str(V4)).leases["198.51.100.20"]
    # MAC 52:54:00:7b:3b:7d: dhcpd writes 0x7b 0x3b 0x7d raw as "{;}" inside the string.
    assert relay.uid == b"\x01RT\x00{;}"
    assert relay.hostname == "relay-client"
    assert 'option agent.circuit-id "ge-0/0/1.100";' in relay.text
    assert 'set ddns-fwd-name = "relay-client.example.net";' in relay.text


def test_epoch_time_format() -> None:
    r = parse_file(str(V4_EPOCH))
    assert r.errors == []
    assert r.leases["192.0.2.40"].state == "expired"
    assert r.leases["192.0.2.40"].ends == 1795324500
    assert r.leases["192.0.2.41"].ends is None
    assert r.leases["192.0.2.41"].uid is None


def test_time_forms_round_trip() -> None:
    assert parse_time("0 2026/11/22 12:00:00") == 1795348800
    assert parse_time("epoch 1795348800") == 1795348800
    assert parse_time("never") is None
    assert format_time(1795348800) == "0 2026/11/22 12:00:00"  # a Sunday: dhcpd's weekday 0


def test_quote_unquote_dhcpd_style() -> None:
    raw = b'\x01RT\x00\x12"4\\V\n'
    q = quote(raw)
    assert q == '"\\001RT\\000\\022\\"4\\\\V\\012"'
    assert unquote(q) == raw
    # dhcpd's lexer: an unknown escape stands for the character itself.
    assert unquote('"a\\qb"') == b"aqb"


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_fast_path_agrees_with_general_path(path: Path) -> None:
    fast, slow = parse_file(str(path)), parse_file(str(path), fast=False)
    assert fast.leases == slow.leases
    assert [r.details() for r in fast.leases.values()] == [r.details() for r in slow.leases.values()]


def test_fast_path_agrees_on_synthetic_file_with_updates() -> None:
    text = synth.v4_file(300, updates=3)
    fast, slow = parse_text(text), parse_text(text, fast=False)
    assert len(fast.leases) == 300 and fast.leases == slow.leases
    assert {r.state for r in fast.leases.values()} == {"free"}
    pairs = zip(fast.leases.values(), slow.leases.values(), strict=True)
    assert all(a.details() == b.details() for a, b in pairs)


def test_client_text_cannot_forge_statements() -> None:
    # dhcpd escapes the newline, so a hostile hostname stays inside its line.
    block = synth.lease4_block("192.0.2.50", 50, hostname="x\\012  binding state free;")
    r = parse_text(block)
    assert r.leases["192.0.2.50"].state == "active"
    assert r.leases["192.0.2.50"].hostname == "x\n  binding state free;"


def test_non_canonical_layout_uses_dhcpd_rules() -> None:
    text = (
        "lease 192.0.2.60 { starts 0 2026/11/22 05:00:00; binding state active;\n"
        "\thardware ethernet 52:54:00:00:00:60; binding state free; }\n"
        "lease 192.0.2.61 {\n  binding state active;\n  binding state backup;\n}\n"
        "lease 192.0.2.62 {\n  abandoned;\n}\n"
        "lease 192.0.2.63 {\n}\n"
    )
    r = parse_text(text)
    assert r.errors == []
    assert r.leases["192.0.2.60"].state == "free"  # last statement in a block wins too
    assert r.leases["192.0.2.60"].hardware == "ethernet 52:54:00:00:00:60"
    assert r.leases["192.0.2.61"].state == "backup"
    assert r.leases["192.0.2.62"].state == "abandoned"
    assert r.leases["192.0.2.63"].state == "free"


def test_corrupt_block_is_skipped_and_reported() -> None:
    good = synth.lease4_block("192.0.2.70", 70)
    bad = good.replace("192.0.2.70", "192.0.2.71").replace("binding state active;", "binding state activ;")
    r = parse_text(bad + good)
    assert list(r.leases) == ["192.0.2.70"]
    assert len(r.errors) == 1 and "unknown binding state 'activ'" in r.errors[0]


def test_truncated_last_block_is_not_applied() -> None:
    block = synth.lease4_block("192.0.2.80", 80)
    for cut in (10, len(block) // 2, len(block) - 2):
        r = parse_text(synth.HEADER + block[:cut])
        assert r.leases == {} and r.errors == []


# ---------------------------------------------------------------- v6

def test_v6_ia_na_ta_pd() -> None:
    r = parse_file(str(V6))
    assert r.errors == []
    got = {a: (lease.state, lease.ia.split()[0] if lease.ia else None) for a, lease in r.leases.items()}
    assert got == {
        "2001:db8:0:1::105": ("released", "ia-na"),  # renewed, then released: last block wins
        "2001:db8:0:1::106": ("active", "ia-na"),
        "2001:db8:0:1::8a3c": ("active", "ia-ta"),
        "2001:db8:100::/56": ("active", "ia-pd"),
    }
    a106 = r.leases["2001:db8:0:1::106"]
    assert a106.uid is not None and a106.uid[:4] == (0x0C0FFEE).to_bytes(4, "little")
    assert a106.duid == bytes.fromhex("000100012e9b1d00525400a10106")
    assert a106.ends == ts("0 2026/11/22 05:10:30")
    assert a106.cltt == "0 2026/11/22 05:00:30"
    assert "preferred-life 375;" in a106.text
    assert r.server_duid == bytes.fromhex("000100012e9b1c40525400abcdef")


# ---------------------------------------------------------------- incremental tail

def write(path: Path, text: str, mode: str = "a") -> None:
    with open(path, mode, encoding="latin-1") as fh:
        fh.write(text)


def test_tail_reads_only_appended_blocks(tmp_path: Path) -> None:
    lf = tmp_path / "dhcpd.leases"
    write(lf, synth.HEADER + synth.lease4_block("192.0.2.1", 1), "w")
    tail = LeaseTail(str(lf))
    first = tail.poll()
    assert first.reset and list(first.changed) == ["192.0.2.1"]
    assert tail.poll().changed == {}  # nothing new
    write(lf, synth.lease4_block("192.0.2.2", 2) + synth.lease4_block("192.0.2.1", 1, "free"))
    up = tail.poll()
    assert not up.reset
    assert {a: r.state for a, r in up.changed.items()} == {"192.0.2.2": "active", "192.0.2.1": "free"}
    assert tail.leases["192.0.2.1"].state == "free"


def test_tail_keeps_partial_block_pending(tmp_path: Path) -> None:
    lf = tmp_path / "dhcpd.leases"
    write(lf, synth.HEADER, "w")
    tail = LeaseTail(str(lf))
    tail.poll()
    block = synth.lease4_block("192.0.2.3", 3)
    write(lf, block[:37])
    assert tail.poll().changed == {}
    write(lf, block[37:-2])  # everything but the closing brace
    assert tail.poll().changed == {}
    write(lf, block[-2:])
    assert list(tail.poll().changed) == ["192.0.2.3"]
    assert tail.pending == ""


def test_tail_rotation_by_rename(tmp_path: Path) -> None:
    lf = tmp_path / "dhcpd.leases"
    write(lf, synth.HEADER + synth.lease4_block("192.0.2.4", 4) + synth.lease4_block("192.0.2.5", 5), "w")
    tail = LeaseTail(str(lf))
    tail.poll()
    # dhcpd's rewrite: a fresh file (here without .5) renamed over the old one.
    fresh = tmp_path / "dhcpd.leases.new"
    write(fresh, synth.HEADER + synth.lease4_block("192.0.2.4", 4) + synth.lease4_block("192.0.2.6", 6), "w")
    os.rename(fresh, lf)
    up = tail.poll()
    assert up.reset
    assert set(up.changed) == {"192.0.2.6"}  # .4 is identical, so not a change
    assert up.removed == ["192.0.2.5"]
    assert set(tail.leases) == {"192.0.2.4", "192.0.2.6"}


def test_tail_truncation_rereads(tmp_path: Path) -> None:
    lf = tmp_path / "dhcpd.leases"
    write(lf, synth.HEADER + synth.lease4_block("192.0.2.7", 7) + synth.lease4_block("192.0.2.8", 8), "w")
    tail = LeaseTail(str(lf))
    tail.poll()
    inode = os.stat(lf).st_ino
    with open(lf, "r+b") as fh:
        fh.truncate(len(synth.HEADER) + len(synth.lease4_block("192.0.2.7", 7)) + 20)  # mid-block
    assert os.stat(lf).st_ino == inode
    up = tail.poll()
    assert up.reset and up.removed == ["192.0.2.8"]
    assert set(tail.leases) == {"192.0.2.7"}
    assert tail.pending  # the torn block waits, unapplied


def test_tail_notices_rewrite_in_place(tmp_path: Path) -> None:
    lf = tmp_path / "dhcpd.leases"
    write(lf, synth.HEADER + synth.lease4_block("192.0.2.12", 12), "w")
    tail = LeaseTail(str(lf))
    tail.poll()
    # truncated and refilled before we looked again: same inode, longer file
    with open(lf, "r+", encoding="latin-1") as fh:
        fh.truncate(0)
        fh.write(synth.HEADER + synth.lease4_block("192.0.2.13", 13) + synth.lease4_block("192.0.2.14", 14))
    up = tail.poll()
    assert up.reset and up.removed == ["192.0.2.12"]
    assert set(tail.leases) == {"192.0.2.13", "192.0.2.14"}


def test_tail_position_save_and_restore(tmp_path: Path) -> None:
    lf = tmp_path / "dhcpd.leases"
    block9 = synth.lease4_block("192.0.2.9", 9)
    write(lf, synth.HEADER + block9 + synth.lease4_block("192.0.2.10", 10)[:50], "w")
    tail = LeaseTail(str(lf))
    tail.poll()
    pos = tail.position()
    assert pos is not None and pos.offset == len(synth.HEADER) + len(block9)  # the torn block is not consumed
    saved = json.dumps(pos.to_dict())
    known = dict(tail.leases)
    write(lf, synth.lease4_block("192.0.2.10", 10)[50:] + synth.lease4_block("192.0.2.11", 11))
    # "restart": a new tail resumes at the saved position, reading only what follows
    resumed = LeaseTail(str(lf), TailPosition.from_dict(json.loads(saved)), known)
    up = resumed.poll()
    assert not up.reset and list(up.changed) == ["192.0.2.10", "192.0.2.11"]
    assert set(resumed.leases) == {"192.0.2.9", "192.0.2.10", "192.0.2.11"}
    # a saved position for another inode (file replaced meanwhile) means a full read
    stale = LeaseTail(str(lf), TailPosition(pos.inode + 1, pos.offset), known)
    assert stale.poll().reset


# ---------------------------------------------------------------- oracle

def isc_last_wins(path: Path) -> dict[str, object]:
    import isc_dhcp_leases

    now = datetime.datetime(2026, 11, 22, 5, 8, tzinfo=datetime.UTC)
    return {x.ip: x for x in isc_dhcp_leases.IscDhcpLeases(str(path), now=now).get(include_backups=True)}


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_isc_dhcp_leases_as_oracle(path: Path) -> None:
    """isc-dhcp-leases' get() lists every block in file order; applying
    "last block wins" over that list must give our records."""
    ours = parse_file(str(path)).leases
    theirs = isc_last_wins(path)
    assert set(ours) == set(theirs)
    for addr, lease in ours.items():
        other = theirs[addr]
        assert lease.state == other.binding_state, addr  # type: ignore[attr-defined]
        end = other.end  # type: ignore[attr-defined]
        assert lease.ends == (None if end is None else int(end.timestamp())), addr
        if lease.family == 4:
            assert (lease.hardware or "").removeprefix("ethernet ") == (other.ethernet or ""), addr  # type: ignore[attr-defined]
            assert (lease.hostname or "") == (other.hostname or ""), addr  # type: ignore[attr-defined]
            uid = other.data.get("uid")  # type: ignore[attr-defined]
            assert lease.uid == (unquote(uid) if uid else None), addr
        else:
            assert lease.uid is not None and lease.uid.hex() == other.host_identifier_string  # type: ignore[attr-defined]


def test_isc_dhcp_leases_get_current_is_stale() -> None:
    """Where the oracle is wrong, measured with isc-dhcp-leases 0.10:
    get_current() keys by MAC (v4) or IA (v6) and keeps the last *active*
    block, skipping later non-active ones, so an address released or freed
    by a later block is still reported active until its old `ends` passes
    (192.0.2.11, 192.0.2.12, and 2001:db8:0:1::105 here). get() also drops
    blocks without `hardware` (failover `backup` leases) unless
    include_backups=True. We give the later block precedence, as dhcpd does.
    """
    import isc_dhcp_leases

    now = datetime.datetime(2026, 11, 22, 5, 8, tzinfo=datetime.UTC)
    cur4 = isc_dhcp_leases.IscDhcpLeases(str(V4), now=now).get_current()
    assert cur4["52:54:00:5a:01:11"].binding_state == "active"  # wrong: released later
    assert cur4["52:54:00:5a:01:12"].binding_state == "active"  # wrong: freed later
    assert "192.0.2.13" not in {x.ip for x in isc_dhcp_leases.IscDhcpLeases(str(V4), now=now).get()}
    ours = parse_file(str(V4)).leases
    assert ours["192.0.2.11"].state == "released" and ours["192.0.2.12"].state == "free"
    cur6 = isc_dhcp_leases.IscDhcpLeases(str(V6), now=now).get_current()
    stale = [x for x in cur6.values() if x.ip == "2001:db8:0:1::105"]
    assert stale and stale[0].binding_state == "active"  # wrong: released later
    assert parse_file(str(V6)).leases["2001:db8:0:1::105"].state == "released"


# ---------------------------------------------------------------- cli

def test_show_main_text_and_json() -> None:
    out = io.StringIO()
    assert show_main(str(V4), False, out) == 0
    text = out.getvalue()
    assert "192.0.2.11" in text and "released" in text and "52:54:00:5a:01:10" in text
    assert "failover pxe-failover: my state normal" in text
    out = io.StringIO()
    assert show_main(str(V6), True, out) == 0
    doc = json.loads(out.getvalue())
    rows = {row["address"]: row for row in doc["leases"]}
    assert rows["2001:db8:100::/56"]["ia"] == "ia-pd"
    assert rows["2001:db8:0:1::106"]["duid"] == "000100012e9b1d00525400a10106"
    assert show_main(str(DATA / "missing.leases"), False, io.StringIO()) == 1


def test_fast_path_agrees_on_randomised_blocks() -> None:
    """Client-controlled bytes (uid, hostname) and odd-but-legal layouts:
    whatever the fast path accepts must read exactly as the general path."""
    import random

    rng = random.Random(1795323600)
    specials = [b";", b"#", b"{", b"}", b'"', b"\\", b"\n", b" ", b"binding state free;"]
    parts = [synth.HEADER]
    for i in range(400):
        addr = f"203.0.113.{i % 50}"
        uid = bytes(rng.randrange(256) for _ in range(7)) + rng.choice(specials)
        host = b"h" + rng.choice(specials) + b"x"
        text = synth.lease4_block(addr, i, rng.choice(["active", "free", "backup"]))
        text = text.replace(text.split("uid ", 1)[1].split(";\n", 1)[0], quote(uid), 1)
        text = text.replace(f'"pxe-{i:06d}"', quote(host))
        roll = rng.random()
        if roll < 0.1:
            text = text.replace(";\n  binding", "; # comment\n  binding", 1)
        elif roll < 0.2:
            text = text.replace("  cltt", "  on commit {\n    set x = 1;\n  }\n  cltt", 1)
        elif roll < 0.3:
            text = text.replace("}\n", "  binding state released;\n}\n")
        elif roll < 0.35:
            text = text.replace("\n  ", "\n\t", 2)
        parts.append(text)
    text = "".join(parts)
    fast, slow = parse_text(text), parse_text(text, fast=False)
    assert fast.errors == slow.errors == []
    assert fast.leases == slow.leases
    for addr, rec in fast.leases.items():
        assert rec.details() == slow.leases[addr].details(), addr
