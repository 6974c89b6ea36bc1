"""LeaseStore: persistence, failed writes, rendering and dhcpd validation."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from hasvc.facade import System
from hasvc.leases import store as store_mod
from hasvc.leases import synth
from hasvc.leases.parser import Lease, parse_file, parse_text
from hasvc.leases.store import Applied, LeaseStore, LeaseStoreError, render_leases, validate

DATA = Path(__file__).parent / "data" / "leases"
DHCPD = "/usr/sbin/dhcpd"


@pytest.fixture
def needs_dhcpd() -> None:
    """A missing dhcpd fails these tests loudly: validation against the real one is the point."""
    assert os.access(DHCPD, os.X_OK), f"ISC dhcpd not installed at {DHCPD}: run scripts/setup.sh"


def blocks(*addrs: str, state: str = "active") -> list[Lease]:
    text = "".join(synth.lease4_block(a, i, state) for i, a in enumerate(addrs))
    return list(parse_text(text).leases.values())


def test_apply_replace_and_reload(tmp_path: Path) -> None:
    st = LeaseStore(str(tmp_path))
    st.load("dhcpd4", 4)
    st.apply("dhcpd4", blocks("192.0.2.1", "192.0.2.2"), Applied("A", "e1", 5))
    st.apply("dhcpd4", blocks("192.0.2.1", state="free"), Applied("A", "e1", 6))
    again = LeaseStore(str(tmp_path))
    again.load("dhcpd4", 4)
    states = {a: r.state for a, r in again.records("dhcpd4").items()}
    assert states == {"192.0.2.1": "free", "192.0.2.2": "active"}
    assert again.applied("dhcpd4") == Applied("A", "e1", 6)
    assert again.counts("dhcpd4") == {"free": 1, "active": 1}


def test_torn_append_is_cut_on_load(tmp_path: Path) -> None:
    st = LeaseStore(str(tmp_path))
    st.load("dhcpd4", 4)
    st.apply("dhcpd4", blocks("192.0.2.1"), Applied("A", "e1", 1))
    good = Path(st.path("dhcpd4")).read_bytes()
    with open(st.path("dhcpd4"), "a") as fh:  # a crash halfway through the next delta
        fh.write(synth.lease4_block("192.0.2.9", 9))
    again = LeaseStore(str(tmp_path))
    again.load("dhcpd4", 4)
    assert list(again.records("dhcpd4")) == ["192.0.2.1"]
    assert Path(st.path("dhcpd4")).read_bytes() == good


def _enospc(*_a: object, **_k: object) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_leaves_store_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = LeaseStore(str(tmp_path))
    st.load("dhcpd4", 4)
    st.apply("dhcpd4", blocks("192.0.2.1"), Applied("A", "e1", 1))
    st.apply("dhcpd4", blocks("192.0.2.2"), Applied("A", "e1", 2))
    before = Path(st.path("dhcpd4")).read_bytes()
    mem = dict(st.records("dhcpd4"))
    monkeypatch.setattr(store_mod, "_write", _enospc)
    monkeypatch.setattr(st.system, "write_file", _enospc)
    with pytest.raises(LeaseStoreError, match="No space left on device"):
        st.apply("dhcpd4", blocks("192.0.2.1", state="free"), Applied("A", "e1", 3))
    with pytest.raises(LeaseStoreError, match="No space left on device"):
        st.replace("dhcpd4", 4, parse_text(""), Applied("A", "e1", 4))
    w = st.begin_replace("dhcpd4", 4)
    with pytest.raises(LeaseStoreError, match="No space left on device"):
        w.add(synth.HEADER)
    assert Path(st.path("dhcpd4")).read_bytes() == before
    assert st.records("dhcpd4") == mem and st.applied("dhcpd4") == Applied("A", "e1", 2)
    assert sorted(os.listdir(tmp_path)) == ["dhcpd4.leases"]  # no temp files left behind


def test_full_append_failure_midway_is_truncated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = LeaseStore(str(tmp_path))
    st.load("dhcpd4", 4)
    st.apply("dhcpd4", blocks("192.0.2.1"), Applied("A", "e1", 1))
    before = Path(st.path("dhcpd4")).read_bytes()
    calls = []

    def partial(fd: int, data: memoryview) -> int:
        calls.append(1)
        if len(calls) == 1:
            return os.write(fd, data[:10])  # a short write, then the disk fills up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_mod, "_write", partial)
    with pytest.raises(LeaseStoreError):
        st.apply("dhcpd4", blocks("192.0.2.5"), Applied("A", "e1", 2))
    assert Path(st.path("dhcpd4")).read_bytes() == before


def test_render_round_trips_v4_and_v6() -> None:
    for name, family in (("dhcpd4.leases", 4), ("dhcpd6.leases", 6)):
        src = parse_file(str(DATA / name))
        text = render_leases(src.leases.values(), family, src.server_duid, src.byte_order)
        back = parse_text(text)
        assert back.leases == src.leases
        assert back.server_duid == src.server_duid
        assert back.errors == []


@pytest.mark.usefixtures("needs_dhcpd")
def test_dhcpd_accepts_rendered_files_and_flags_corrupt_ones() -> None:
    system = System()
    for name, family in (("dhcpd4.leases", 4), ("dhcpd4-epoch.leases", 4), ("dhcpd6.leases", 6)):
        src = parse_file(str(DATA / name))
        text = render_leases(src.leases.values(), family, src.server_duid, src.byte_order)
        assert validate(text, family, system) == [], name
    good = render_leases(parse_file(str(DATA / "dhcpd4.leases")).leases.values(), 4)
    # dhcpd -T exits 0 for all of these; validate() must still see the problem.
    typo = good.replace("binding state free;", "binding state fre;")
    assert any("expecting" in p for p in validate(typo, 4, system))
    assert any("end of file" in p for p in validate(good[:-40], 4, system))
    v6 = (DATA / "dhcpd6.leases").read_text()
    assert validate(v6.replace("preferred-life 375;", "preferred-life;"), 6, system)


@pytest.mark.usefixtures("needs_dhcpd")
def test_install_validates_then_renames(tmp_path: Path) -> None:
    st = LeaseStore(str(tmp_path / "state"))
    st.load("dhcpd4", 4)
    st.replace("dhcpd4", 4, parse_file(str(DATA / "dhcpd4.leases")), Applied("A", "e1", 1))
    dest = tmp_path / "db" / "dhcpd.leases"
    dest.parent.mkdir()
    dest.write_text("# stale\n")
    st.install("dhcpd4", str(dest), System())
    assert parse_file(str(dest)).leases == st.records("dhcpd4")
    # a record dhcpd would reject: install refuses and leaves dest alone
    installed = dest.read_bytes()
    bad = parse_text(synth.lease4_block("192.0.2.99", 99).replace("hardware ethernet", "hardware ethernt"))
    st.apply("dhcpd4", bad.leases.values(), Applied("A", "e1", 2))
    with pytest.raises(LeaseStoreError, match="rejected by dhcpd"):
        st.install("dhcpd4", str(dest), System())
    assert dest.read_bytes() == installed


def test_install_uses_system_seams(tmp_path: Path) -> None:
    class Recorder(System):
        def __init__(self) -> None:
            self.argv: list[list[str]] = []
            self.writes: list[str] = []

        def run(self, argv, timeout, env=None):  # type: ignore[no-untyped-def]
            from hasvc.facade import Result
            self.argv.append(list(argv))
            return Result(0, "", "Wrote 1 leases to leases file.\n")

        def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
            self.writes.append(path)
            super().write_file(path, data, mode)

    rec = Recorder()
    st = LeaseStore(str(tmp_path / "state"), rec)
    st.load("dhcpd6", 6)
    st.replace("dhcpd6", 6, parse_file(str(DATA / "dhcpd6.leases")), Applied("A", "e1", 1))
    st.install("dhcpd6", str(tmp_path / "dhcpd6.leases"), rec, conf_path="/etc/dhcp/dhcpd6.conf")
    argv = rec.argv[-1]
    assert argv[:4] == ["/usr/sbin/dhcpd", "-6", "-t", "-T"] and "/etc/dhcp/dhcpd6.conf" in argv
    assert rec.writes[-1] == str(tmp_path / "dhcpd6.leases")


def test_bad_names_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LeaseStore(str(tmp_path)).path("../etc/passwd")
    shutil.rmtree(tmp_path)
