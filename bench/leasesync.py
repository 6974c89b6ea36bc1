"""Lease sync and lease parser figures, all from one run.

    python bench/leasesync.py [--json] [--samples 600] [--leases 100000]

Prints one JSON object (with --json) holding:
  lag_ms           p50/p99/max from a block appended to node A's lease file to
                   the record applied in node B's store (127.0.0.1, >= 500 samples)
  updates_per_s    sustained rate: blocks appended in bursts on A until B has them all
  resync_100k      full resync of N leases into a receiver running in a child
                   process: seconds, its peak RSS and its RSS growth
  parse            N leases, and N leases with 3 appended updates each: our parser
                   and isc-dhcp-leases side by side, each in its own child process
                   (seconds and peak RSS of that child; `baseline` is a child that
                   only imports both libraries)
Addresses are from 198.18.0.0/15 (RFC 2544 benchmarking range). All files
live in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hasvc.facade import System  # noqa: E402
from hasvc.leases import synth  # noqa: E402
from hasvc.leases.config import LeaseFileConfig, SyncConfig  # noqa: E402
from hasvc.leases.sync import LeaseSync  # noqa: E402

KEY = b"bench-key-0123456789abcdef-0123456789"
NAME = "dhcpd4"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_cfg(root: Path, node: str, lease_file: Path, listen: int, peer: int) -> SyncConfig:
    key = root / "sync.key"
    if not key.exists():
        key.write_bytes(KEY)
        os.chmod(key, 0o600)
    return SyncConfig(node=node, listen=("127.0.0.1", listen), peer=("127.0.0.1", peer), key_file=str(key),
                      state_dir=str(root / node / "state"), files=[LeaseFileConfig(NAME, str(lease_file), 4)])


def wait_for(cond: Any, timeout: float, what: str, step: float = 0.0002) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(step)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# ---------------------------------------------------------------- lag and throughput

def bench_link(root: Path, samples: int, burst_total: int) -> dict[str, Any]:
    lf_a, lf_b = root / "A.leases", root / "B.leases"
    lf_a.write_text(synth.HEADER)
    lf_b.write_text(synth.HEADER)
    pa, pb = free_port(), free_port()
    logs: list[str] = []
    a = LeaseSync(make_cfg(root, "A", lf_a, pa, pb), System(), logs.append)
    b = LeaseSync(make_cfg(root, "B", lf_b, pb, pa), System(), logs.append)
    a.start()
    b.start()
    try:
        wait_for(lambda: a.status()["connected"] and b.status()["connected"], 10, "link up", 0.01)
        store = b.store
        lags: list[float] = []
        with open(lf_a, "a", encoding="latin-1") as fh:
            for i in range(samples):
                addr = synth.bench_address(i % 200)
                state = "active" if (i // 200) % 2 == 0 else "free"
                text = synth.lease4_block(addr, i % 200, state, synth.BASE_TIME + i)
                t0 = time.perf_counter()
                fh.write(text)
                fh.flush()

                def applied(addr: str = addr, text: str = text) -> bool:
                    rec = store.get(NAME, addr)
                    return rec is not None and rec.text == text

                wait_for(applied, 5, "delta on B")
                lags.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.001)
            # Sustained rate: bursts of 1000 blocks, as fast as they can be written.
            blocks = [synth.lease4_block(synth.bench_address(1000 + i), 1000 + i) for i in range(burst_total)]
            last = blocks[-1]
            t0 = time.perf_counter()
            for k in range(0, burst_total, 1000):
                fh.write("".join(blocks[k:k + 1000]))
                fh.flush()

            def all_applied() -> bool:
                rec = store.get(NAME, synth.bench_address(1000 + burst_total - 1))
                return rec is not None and rec.text == last

            wait_for(all_applied, 60, "burst on B", 0.001)
            burst_s = time.perf_counter() - t0
        missing = [synth.bench_address(1000 + i) for i in range(burst_total)
                   if store.get(NAME, synth.bench_address(1000 + i)) is None]
        return {
            "lag_ms": {"samples": len(lags), "p50": round(statistics.median(lags), 3),
                       "p99": round(pct(lags, 99), 3), "max": round(max(lags), 3)},
            "updates_per_s": {"updates": burst_total, "seconds": round(burst_s, 3),
                              "rate": round(burst_total / burst_s), "missing": len(missing)},
            "refused": len([m for m in logs if "refused frame" in m]),
        }
    finally:
        a.stop()
        b.stop()


# ---------------------------------------------------------------- full resync

# Peak RSS of a child, measured inside it. Not getrusage().ru_maxrss: Linux
# carries the parent's high-water mark into a forked child across exec
# (exec_mmap() folds the old mm's peak into signal->maxrss), so every child
# of this big process would report the parent's peak. VmHWM belongs to the
# child's own address space.
_PEAK = textwrap.dedent("""
    def peak_rss_mb():
        import resource
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
""")

_RECEIVER = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    from hasvc.facade import System
    from hasvc.leases.config import LeaseFileConfig, SyncConfig
    from hasvc.leases.sync import LeaseSync
    d = json.loads(sys.argv[2])
    d["files"] = [LeaseFileConfig(**f) for f in d["files"]]
    d["listen"], d["peer"] = tuple(d["listen"]), tuple(d["peer"])
    want, name = int(sys.argv[3]), sys.argv[4]
    b = LeaseSync(SyncConfig(**d), System(), lambda m: None)
    b.start()
    base = peak_rss_mb()
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        e = b.store._entries.get(name)
        if e is not None and len(e.records) == want:
            break
        time.sleep(0.002)
    done = time.time()
    peak = peak_rss_mb()
    b.stop()
    print(json.dumps({"applied_at": done, "count": len(b.store.records(name)),
                      "peak_rss_mb": peak, "baseline_rss_mb": base}))
""")


def bench_resync(root: Path, lease_file: Path, n: int) -> dict[str, Any]:
    pa, pb = free_port(), free_port()
    cfg_a = make_cfg(root, "RA", lease_file, pa, pb)
    empty = root / "RB.leases"
    empty.write_text(synth.HEADER)
    cfg_b = make_cfg(root, "RB", empty, pb, pa)
    child_cfg = {k: v for k, v in cfg_b.__dict__.items()}
    child_cfg["files"] = [f.__dict__ for f in cfg_b.files]
    argv = [sys.executable, "-c", _PEAK + _RECEIVER, str(ROOT), json.dumps(child_cfg), str(n), NAME]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    try:
        assert json.loads(child.stdout.readline())["ready"]
        a = LeaseSync(cfg_a, System(), lambda m: None)
        a.tails[NAME].poll()  # A has long since read its own file; only the transfer is timed
        t0 = time.time()
        a.start()
        try:
            line = child.stdout.readline()
        finally:
            a.stop()
        got = json.loads(line)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return {"leases": got["count"], "seconds": round(got["applied_at"] - t0, 3),
            "receiver_peak_rss_mb": got["peak_rss_mb"],
            "receiver_rss_growth_mb": round(got["peak_rss_mb"] - got["baseline_rss_mb"], 1)}


# ---------------------------------------------------------------- parsers

_PARSE = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    which, path = sys.argv[2], sys.argv[3]
    import isc_dhcp_leases
    from hasvc.leases.parser import parse_file
    t0 = time.perf_counter()
    if which == "ours":
        n = len(parse_file(path).leases)
    elif which == "isc":
        n = len({x.ip: x for x in isc_dhcp_leases.IscDhcpLeases(path).get(include_backups=True)})
    else:
        n = 0
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": round(dt, 3), "peak_rss_mb": peak_rss_mb(), "addresses": n}))
""")


def run_parser(which: str, path: Path) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _PEAK + _PARSE, str(ROOT), which, str(path)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--burst", type=int, default=50_000)
    ap.add_argument("--leases", type=int, default=100_000)
    args = ap.parse_args()
    started = time.perf_counter()
    result: dict[str, Any] = {"host": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                       "loadavg_1m": round(os.getloadavg()[0], 2)}}
    with tempfile.TemporaryDirectory(prefix="hasvc-bench-") as tmp:
        root = Path(tmp)
        for sub in ("link", "resync"):
            (root / sub).mkdir()
        result.update(bench_link(root / "link", args.samples, args.burst))
        big = root / "100k.leases"
        big.write_text(synth.v4_file(args.leases))
        result["resync_100k"] = bench_resync(root / "resync", big, args.leases)
        updated = root / "100k-3updates.leases"
        updated.write_text(synth.v4_file(args.leases, updates=3))
        result["parse"] = {
            "baseline": run_parser("none", big),
            "100k": {"file_mb": round(big.stat().st_size / 1e6, 1),
                     "ours": run_parser("ours", big), "isc_dhcp_leases": run_parser("isc", big)},
            "100k_3updates": {"file_mb": round(updated.stat().st_size / 1e6, 1),
                              "ours": run_parser("ours", updated),
                              "isc_dhcp_leases": run_parser("isc", updated)},
        }
    lag, ups, rs = result["lag_ms"], result["updates_per_s"], result["resync_100k"]
    result["targets"] = {
        "lag_p99_le_10ms": lag["p99"] <= 10,
        "updates_ge_20000_per_s": ups["rate"] >= 20_000,
        "resync_100k_le_1s": rs["seconds"] <= 1.0,
        "resync_100k_le_150mb": rs["receiver_peak_rss_mb"] <= 150,
    }
    result["bench_seconds"] = round(time.perf_counter() - started, 1)
    result["self_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {json.dumps(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
