"""Failover drills in the namespace lab, repeated: p50/p99 of the figures as one JSON object.

    sudo python3 bench/drill.py --json [--runs N]

Each run: the master dies (a), then comes back and preempts (b). Targets: supervisor
reaction p50 <= 150 ms and p99 <= 300 ms; DHCP and TFTP outage minus CARP detection
<= 200 ms; every client keeps its address; no duplicate address.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hasvc.lab import drill
from hasvc.lab.netns import Lab


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    # Nearest rank: with few runs p99 is the worst one, never an interpolation below it.
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.4999)))
    return round(ordered[rank - 1], 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "min": round(min(values), 1) if values else None, "max": round(max(values), 1) if values else None,
            "mean": round(statistics.fmean(values), 1) if values else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    samples: dict[str, list[float]] = {k: [] for k in (
        "carp_detection_ms", "reaction_ms", "dhcp_outage_ms", "tftp_outage_ms",
        "dhcp_outage_minus_detection_ms", "tftp_outage_minus_detection_ms")}
    kept = total = dups = 0
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    with Lab("hvb", clients=3) as lab:
        cluster = drill.Cluster(lab)
        cluster.start()
        for i in range(args.runs):
            for name, fn in (("master_dies", drill.master_dies), ("master_returns", drill.master_returns)):
                res, _ = fn(cluster)
                det = res["carp_detection_ms"]
                row = {"run": i, "drill": name, **{k: res[k] for k in (
                    "carp_detection_ms", "reaction_ms", "dhcp_outage_ms", "tftp_outage_ms")},
                       "lost": sorted(c for c, kept in res["address_kept"].items() if not kept)}
                runs.append(row)
                for key in ("carp_detection_ms", "reaction_ms", "dhcp_outage_ms", "tftp_outage_ms"):
                    if res[key] is not None:
                        samples[key].append(res[key])
                for key in ("dhcp_outage_ms", "tftp_outage_ms"):
                    if res[key] is not None and det is not None:
                        samples[key.replace("_ms", "_minus_detection_ms")].append(res[key] - det)
                kept += sum(res["address_kept"].values())
                total += len(res["address_kept"])
                dups += len(res["duplicates"])
            print(f"run {i + 1}/{args.runs} done", file=sys.stderr, flush=True)
    out = {
        "runs": args.runs, "drills_per_run": 2, "clients": 3, "seconds": round(time.monotonic() - started, 1),
        **{k: summary(v) for k, v in samples.items()},
        "address_kept": f"{kept}/{total}", "duplicates": dups,
        "targets": {"reaction_p50_ms": 150, "reaction_p99_ms": 300, "outage_minus_detection_ms": 200},
        "per_drill": runs,
    }
    print(json.dumps(out, indent=2 if not args.json else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
