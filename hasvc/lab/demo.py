"""`hasvc demo`: the two-node lab of examples/lab/ and one failover drill, with a timeline.

Linux and root only. Everything it starts lives in its own network namespaces and work
directory and is torn down at the end, on failure and on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import sys
import time

from hasvc.lab.netns import Lab, LabError, MissingTool


def main(as_json: bool = False, keep: bool = False) -> int:
    if not sys.platform.startswith("linux"):
        print("hasvc demo: the lab needs Linux network namespaces", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("hasvc demo: run as root (network namespaces, raw sockets)", file=sys.stderr)
        return 2
    from hasvc.lab import drill

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if as_json else (lambda msg: print(msg, flush=True))
    started = time.monotonic()
    try:
        with Lab("hvd", keep=keep, clients=3) as lab:
            cluster = drill.Cluster(lab)
            say(f"lab {lab.tag}: n1 192.0.2.2 (dhcp01, failover primary), n2 192.0.2.3 (dhcp02, secondary), "
                f"clients {', '.join(lab.clients)}; VIPs 192.0.2.4 (ucarp vhid 1), 2001:db8:1:2::4 "
                f"(keepalived vhid 2); work dir {lab.work_dir}")
            try:
                cluster.start()
                leases = cluster.leases()
                say("ready in {:.1f}s: n1 MASTER; leases {}".format(
                    time.monotonic() - started, ", ".join(f"{c}={a}" for c, a in leases.items())))
                res, timeline = drill.master_dies(cluster)
            except Exception:
                say(drill.describe_failure(cluster))
                raise
            figures = {k: res[k] for k in ("old_master", "new_master", "carp_detection_ms", "reaction_ms",
                                           "answer_ms", "dhcp_outage_ms", "dhcp_renewals_ms", "tftp_outage_ms",
                                           "address_kept", "duplicates", "vip_moved", "ipv6_moved")}
            if as_json:
                print(json.dumps(figures, indent=2))
            else:
                say("\nfailover drill: the master dies")
                for line in timeline.lines():
                    say("  " + line)
                say("\nfigures:")
                say(f"  CARP detection (kill -> backup's ucarp hook):      {figures['carp_detection_ms']} ms")
                say(f"  supervisor reaction (hook -> all answer from VIP): {figures['reaction_ms']} ms")
                say(f"  TFTP outage (kill -> fetch from VIP):              {figures['tftp_outage_ms']} ms")
                say(f"  DHCP outage (kill -> first renewal answered):      {figures['dhcp_outage_ms']} ms")
                kept = sum(figures["address_kept"].values())
                say(f"  addresses kept: {kept}/{len(figures['address_kept'])}; "
                    f"duplicates: {len(figures['duplicates'])} {figures['duplicates'] or ''}")
                if keep:
                    say(f"  logs kept in {lab.work_dir}")
            ok = (figures["vip_moved"] and figures["reaction_ms"] is not None and not figures["duplicates"]
                  and all(figures["address_kept"].values()))
    except (MissingTool, LabError) as exc:
        print(f"hasvc demo: {exc}", file=sys.stderr)
        return 2
    say(f"done in {time.monotonic() - started:.1f}s, lab torn down")
    return 0 if ok else 1
