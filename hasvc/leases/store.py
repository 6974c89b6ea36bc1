"""The peer's leases, kept under our own state directory.

One file per lease file name, `<state_dir>/<name>.leases`, which is itself a
valid dhcpd lease file (so `dhcpd -T` and `hasvc leases show` read it as is):

* a full resync rewrites it whole, atomically (temp file, fsync, rename,
  through System.write_file);
* a delta is appended (then fsync), exactly as dhcpd grows its own file, and
  followed by a `# hasvc-applied {...}` line carrying the sequence numbers.
  A crash mid-append leaves a tail without that line; load() cuts it off. A
  failed append (ENOSPC, EIO) is truncated back at once, so the file and the
  in-memory copy both stay at the previous delta;
* when the appended part outgrows the last full write, the next delta is
  written as a full rewrite instead, which keeps the file from growing
  without bound (dhcpd's hourly rewrite, for the same reason).

Rewriting the whole file per delta would cost O(store) per update; with 100k
leases that is 40 MB per renewal, hence the append.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from hasvc.facade import System

from .parser import Lease, ParseResult, parse_into, parse_text, quote

MARKER = "# hasvc-applied "
HEADER = (
    "# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
    "# This lease file was written by hasvc from a peer's copy.\n"
    "\n"
    "# authoring-byte-order entry is generated, DO NOT DELETE\n"
    "authoring-byte-order {order};\n"
    "\n"
)
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# dhcpd's parse_warn() prefixes every lease file complaint with
# "<path> line N:"; the other markers are its summary lines.
_ERROR_WORDS = ("parse error", "expecting", "corrupt", "unexpected end of file", "not a valid")


class LeaseStoreError(RuntimeError):
    """Writing the store failed; the store on disk and in memory is as before."""


@dataclass(frozen=True)
class Applied:
    """Which message of which sender the store reflects."""

    sender: str
    epoch: str
    seq: int


@dataclass
class _Entry:
    family: int
    records: dict[str, Lease]
    applied: Applied | None
    server_duid: bytes | None
    byte_order: str
    size_full: int  # bytes of the last full write
    size: int  # current size of the file


def render_leases(records: Iterable[Lease], family: int, server_duid: bytes | None = None,
                  byte_order: str | None = None, header: bool = True) -> str:
    """A dhcpd lease file (v4 or v6) holding exactly these records."""
    parts: list[str] = []
    if header:
        parts.append(HEADER.format(order=byte_order or f"{sys.byteorder}-endian"))
        if family == 6 and server_duid is not None:
            parts.append(f"server-duid {quote(server_duid)};\n\n")
    if family == 4:
        parts.extend(r.text for r in records if r.family == 4)
        return "".join(parts)
    # v6 records are per address; dhcpd wants them inside their IA, one
    # block per IA (a second block for the same IA would replace the first).
    groups: dict[str, list[Lease]] = {}
    for r in records:
        if r.family == 6 and r.ia:
            groups.setdefault(r.ia, []).append(r)
    for ia, recs in groups.items():
        parts.append(f"{ia} {{\n")
        cltt = max((r.cltt for r in recs if r.cltt), key=_cltt_key, default=None)
        if cltt:
            parts.append(f"  cltt {cltt};\n")
        parts.extend(r.text for r in recs)
        parts.append("}\n")
    return "".join(parts)


def _cltt_key(text: str) -> str:
    # `W YYYY/MM/DD HH:MM:SS` sorts by its date part; `epoch N` by N.
    w = text.split()
    return w[1].rjust(20) if w[0] == "epoch" else " ".join(w[1:])


class LeaseStore:
    """In-memory copy of the peer's leases per file name, persisted under state_dir."""

    def __init__(self, state_dir: str, system: System | None = None) -> None:
        self.state_dir = state_dir
        self.system = system or System()
        self._entries: dict[str, _Entry] = {}
        os.makedirs(state_dir, mode=0o700, exist_ok=True)

    # ------------------------------------------------------------ reading

    def path(self, name: str) -> str:
        if not _NAME_OK.fullmatch(name):
            raise ValueError(f"bad lease file name {name!r} (letters, digits, . _ - only)")
        return os.path.join(self.state_dir, f"{name}.leases")

    def load(self, name: str, family: int) -> None:
        """Read the persisted copy, dropping a torn last delta."""
        path = self.path(name)
        try:
            with open(path, "rb") as fh:
                text = fh.read().decode("latin-1")
        except FileNotFoundError:
            self._entries[name] = _Entry(family, {}, None, None, f"{sys.byteorder}-endian", 0, 0)
            return
        cut = text.rfind("\n" + MARKER)
        applied = None
        if cut >= 0:
            eol = text.find("\n", cut + 1)
            if eol >= 0:
                try:
                    applied = Applied(**json.loads(text[cut + 1 + len(MARKER):eol]))
                except (ValueError, TypeError):
                    applied = None
                text = text[:eol + 1]
        result = parse_text(text)
        size = len(text)
        if size != os.path.getsize(path):
            os.truncate(path, size)  # a torn append from a crash
        self._entries[name] = _Entry(family, result.leases, applied, result.server_duid,
                                     result.byte_order or f"{sys.byteorder}-endian", size, size)

    def _entry(self, name: str) -> _Entry:
        entry = self._entries.get(name)
        if entry is None:
            raise KeyError(f"lease store has no file named {name!r} (load it first)")
        return entry

    def names(self) -> list[str]:
        return list(self._entries)

    def records(self, name: str) -> dict[str, Lease]:
        """The current records; callers must not modify the dict."""
        return self._entry(name).records

    def get(self, name: str, address: str) -> Lease | None:
        entry = self._entries.get(name)
        return entry.records.get(address) if entry else None

    def applied(self, name: str) -> Applied | None:
        return self._entry(name).applied

    def counts(self, name: str) -> dict[str, int]:
        return dict(Counter(r.state for r in self._entry(name).records.values()))

    def render(self, name: str) -> str:
        e = self._entry(name)
        return render_leases(e.records.values(), e.family, e.server_duid, e.byte_order)

    # ------------------------------------------------------------ writing

    def replace(self, name: str, family: int, parsed: ParseResult, applied: Applied) -> None:
        """Full resync: the store for `name` becomes exactly `parsed`, atomically."""
        order = parsed.byte_order or f"{sys.byteorder}-endian"
        text = render_leases(parsed.leases.values(), family, parsed.server_duid, order)
        text += _marker(applied)
        try:
            self.system.write_file(self.path(name), text.encode("latin-1"), mode=0o600)
        except OSError as exc:
            raise LeaseStoreError(f"lease store {self.path(name)}: full write failed "
                                  f"({os.strerror(exc.errno or errno.EIO)}); kept the previous copy") from exc
        self._entries[name] = _Entry(family, parsed.leases, applied, parsed.server_duid, order,
                                     len(text), len(text))

    def apply(self, name: str, changed: Iterable[Lease], applied: Applied) -> None:
        """Delta: records replace those with the same address."""
        e = self._entry(name)
        recs = list(changed)
        if e.size == 0 or e.size - e.size_full > max(e.size_full, 1 << 20):
            merged = dict(e.records)
            for r in recs:
                merged[r.address] = r
            self.replace(name, e.family, ParseResult(leases=merged, server_duid=e.server_duid,
                                                     byte_order=e.byte_order), applied)
            return
        data = (render_leases(recs, e.family, header=False) + _marker(applied)).encode("latin-1")
        path = self.path(name)
        try:
            _append_bytes(path, data, e.size)
        except OSError as exc:
            raise LeaseStoreError(f"lease store {path}: append failed "
                                  f"({os.strerror(exc.errno or errno.EIO)}); kept the previous copy") from exc
        for r in recs:
            e.records[r.address] = r
        e.applied = applied
        e.size += len(data)

    def begin_replace(self, name: str, family: int) -> SnapshotWriter:
        """Full resync arriving in parts: parse and write each part as it comes,
        so a 100k-lease snapshot never sits in memory as text."""
        return SnapshotWriter(self, name, family)

    # ------------------------------------------------------------ install

    def install(self, name: str, dest_path: str, system: System | None = None, conf_path: str | None = None,
                dhcpd: str = "/usr/sbin/dhcpd") -> None:
        """Validate the rendered copy with dhcpd, then rename it over dest_path.

        For a node that comes back with an empty or stale lease file: call
        this BEFORE starting dhcpd there; dhcpd must not be running on
        dest_path (it would keep writing to the old inode).
        """
        system = system or self.system
        e = self._entry(name)
        text = self.render(name)
        problems = validate(text, e.family, system, conf_path, dhcpd)
        if problems:
            raise LeaseStoreError(f"rendered {name} leases rejected by dhcpd -T: " + "; ".join(problems[:3]))
        system.write_file(dest_path, text.encode("latin-1"), mode=0o644)


def validate(text: str, family: int, system: System, conf_path: str | None = None,
             dhcpd: str = "/usr/sbin/dhcpd") -> list[str]:
    """Run `dhcpd -t -T` on text; return its complaints (empty list: clean).

    Measured with dhcpd 4.4.3 (Debian): `dhcpd -t -T` exits 0 even for a
    lease file with `binding state activ e;` ("expecting a binding state",
    "possibly corrupt lease file", "Corrupt lease file - possible data
    loss!"), a file cut mid-block ("unexpected end of file") or a bad v6
    `preferred-life;` ("; is not a valid preferred time"): all with rc 0.
    Every such complaint is printed as "<lease file> line N: ...", so that
    prefix, plus the summary words above, is what we look for. It also
    writes a scratch copy next to the lease file, hence the private temp dir.
    """
    with tempfile.TemporaryDirectory(prefix="hasvc-lf-") as tmp:
        lf = os.path.join(tmp, "check.leases")
        with open(lf, "w", encoding="latin-1") as fh:
            fh.write(text)
        if conf_path is None:
            # An empty config parses lease syntax all the same; leases then
            # only draw "no subnet"/"No pool found", which we do not count.
            conf_path = os.path.join(tmp, "empty.conf")
            open(conf_path, "w").close()
        # No -q: with -q, dhcpd 4.4.3 prints none of these complaints at all.
        res = system.run([dhcpd, f"-{family}", "-t", "-T", "-cf", conf_path, "-lf", lf,
                          "-pf", os.path.join(tmp, "dhcpd.pid")], timeout=60)
        out = res.stdout + res.stderr
    problems = []
    for line in out.splitlines():
        low = line.lower()
        if line.startswith(lf + " line ") or any(w in low for w in _ERROR_WORDS):
            problems.append(line.replace(lf, "<leases>").strip())
    if res.rc != 0 and not problems:
        problems.append(f"dhcpd exited {res.rc}: {out.strip()[-200:]}")
    return problems


class SnapshotWriter:
    """A new copy of one file being received; nothing changes until commit()."""

    def __init__(self, store: LeaseStore, name: str, family: int) -> None:
        self.store = store
        self.name = name
        self.family = family
        self.result = ParseResult()
        self.size = 0
        self.path = store.path(name)
        self.fd, self.tmp = tempfile.mkstemp(dir=store.state_dir, prefix=f".{name}.")
        self.done = False

    def add(self, text: str) -> None:
        """One part: complete lease file statements (the first part has the header)."""
        stop = parse_into(text, self.result)
        if text[stop:].strip():
            raise ValueError("snapshot part ends inside a block")
        self._put(text.encode("latin-1"))

    def commit(self, applied: Applied) -> None:
        self._put(_marker(applied).encode("latin-1"))
        try:
            os.fsync(self.fd)
            os.fchmod(self.fd, 0o600)
            os.close(self.fd)
            self.fd = -1
            self._keep_previous()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from exc
        self.done = True
        r = self.result
        self.store._entries[self.name] = _Entry(self.family, r.leases, applied, r.server_duid,
                                                r.byte_order or f"{sys.byteorder}-endian",
                                                self.size, self.size)

    def _keep_previous(self) -> None:
        """A peer that comes back with an empty or cut-down lease file sends
        a snapshot that wipes most of our copy. That is the protocol (its
        file is what it has), but keep the copy it replaces as
        <name>.leases.prev, for an operator to install instead."""
        old = self.store._entries.get(self.name)
        if old is None or len(self.result.leases) * 2 >= len(old.records):
            return
        prev = self.path + ".prev"
        try:
            os.unlink(prev)
        except FileNotFoundError:
            pass
        try:
            os.link(self.path, prev)  # a link, so self.path never goes missing
        except FileNotFoundError:
            pass

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass

    def _put(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[_write(self.fd, view):]
        except OSError as exc:
            self.abort()
            raise self._error(exc) from exc
        self.size += len(data)

    def _error(self, exc: OSError) -> LeaseStoreError:
        return LeaseStoreError(f"lease store {self.path}: full write failed "
                               f"({os.strerror(exc.errno or errno.EIO)}); kept the previous copy")


def _marker(applied: Applied) -> str:
    return MARKER + json.dumps(asdict(applied), separators=(",", ":")) + "\n"


def _append_bytes(path: str, data: bytes, expected_size: int) -> None:
    """Append and fsync; on failure cut the file back so no torn delta stays."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                n = _write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, expected_size)
            except OSError:
                pass  # load() drops an unmarked tail anyway
            raise
    finally:
        os.close(fd)


def _write(fd: int, data: memoryview) -> int:
    # One seam for tests that simulate a full disk.
    return os.write(fd, data)
