"""Reaction time: a CARP event written to the devd socket -> the service answering on its address.

Runs the real daemon (`hasvc run`) against a real SOCK_SEQPACKET socket
speaking devd's protocol and a recorded FreeBSD ifconfig, with a trivial TCP
service standing in on a loopback address. Each sample is MASTER (timed
until the service accepts and answers) followed by BACKUP (waited out, not
timed). Prints one JSON object.

    python bench/reaction.py --json [--runs 60]

Shipped defaults: taking over acts at once (debounce_master 0), leaving
MASTER waits 0.1 s (debounce); only the MASTER event is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import (
    DaemonProc,
    DevdServer,
    answers,
    fake_ifconfig,
    free_port,
    kill_pid,
    node_config,
    service_yaml,
    wait_until,
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--debounce", type=float, default=None,
                    help="override debounce (leaving MASTER); default: the shipped defaults")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hasvc-bench-") as tmpdir:
        tmp = Path(tmpdir)
        devd = DevdServer(tmp / "devd.pipe")
        ifconfig, _ = fake_ifconfig(tmp, "seed001_vtnet0_backup.txt")
        port = free_port()
        cfg = node_config(tmp, ifconfig, tmp / "devd.pipe", {"svc": service_yaml(port, 1)},
                          extra="" if args.debounce is None else f"debounce: {args.debounce}\n")
        daemon = DaemonProc(cfg, tmp / "hasvc.log")
        samples: list[float] = []
        try:
            daemon.start()
            devd.wait_client()
            for _ in range(args.runs):
                t0 = time.perf_counter()
                devd.carp(1, "vtnet0", "MASTER")
                wait_until(lambda: answers("127.0.0.41", port, timeout=0.2), 10, "service up", interval=0.001)
                samples.append((time.perf_counter() - t0) * 1000)
                devd.carp(1, "vtnet0", "BACKUP")
                wait_until(lambda: not answers("127.0.0.41", port, timeout=0.2), 10, "service down", interval=0.005)
        finally:
            daemon.stop()
            devd.close()
            run = tmp / "state" / "run"
            for pidfile in run.glob("*.pid") if run.exists() else []:
                text = pidfile.read_text().strip()
                kill_pid(int(text) if text.isdigit() else None)
    result = {
        "benchmark": "reaction",
        "what": "devd CARP MASTER event -> trivial TCP service answering on its address",
        "transitions": len(samples),
        "debounce_s": 0.1 if args.debounce is None else args.debounce,
        "debounce_master_s": 0.0,
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "mean_ms": round(statistics.fmean(samples), 2),
        "max_ms": round(max(samples), 2),
        "target": {"p50_ms": 50, "p99_ms": 100},
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
