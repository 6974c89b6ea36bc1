"""Giving up the shared address when a service the MASTER must provide is broken.

FreeBSD: `sysctl net.inet.carp.demotion=N` ADDS N to a counter the kernel
shares with its own demotions, so hasvc keeps its own absolute share (in
state_dir, to survive restarts) and only ever adds the difference.
Linux: keepalived lowers its priority by what a track_file holds (times its
weight), and a command pair covers anything else (e.g. stopping ucarp).
"""

from __future__ import annotations

import os
import threading

from hasvc.config import Config
from hasvc.facade import System


class Demoter:
    def __init__(self, cfg: Config, system: System) -> None:
        self.cfg, self.system = cfg, system
        self.dem = cfg.demotion
        self.share_file = os.path.join(cfg.state_dir, "demotion")
        self.share = self._saved_share()
        self.reason = ""
        self.error = ""
        # Every vhid's worker asks; one demote/undemote at a time, each exactly once.
        self.lock = threading.Lock()

    def _saved_share(self) -> int:
        text = self.system.read_file(self.share_file) or "0"
        return int(text.strip()) if text.strip().isdigit() else 0

    @property
    def demoted(self) -> bool:
        return self.share > 0

    def set(self, demote: bool, reason: str) -> str | None:
        """Reach the wanted state; returns a log line when something changed."""
        with self.lock:
            return self._set(demote, reason)

    def _set(self, demote: bool, reason: str) -> str | None:
        want = self.dem.amount if demote else 0
        if want == self.share and not self.error:
            self.reason = reason if demote else ""
            return None
        ok, detail = self._apply(want)
        if not ok:
            self.error = detail
            return f"demotion: failed to set {want}: {detail}"
        self.error = ""
        self.share, self.reason = want, (reason if demote else "")
        os.makedirs(os.path.dirname(self.share_file), exist_ok=True)
        self.system.write_file(self.share_file, f"{want}\n")
        return f"demotion: {'demoted' if demote else 'restored'} ({reason or 'healthy'})"

    def _apply(self, want: int) -> tuple[bool, str]:
        method = self.dem.method
        if method == "sysctl":
            delta = want - self.share
            res = self.system.run([self.dem.sysctl, f"net.inet.carp.demotion={delta}"], 5.0)
            return res.ok, res.stderr.strip() or f"added {delta}"
        if method == "track_file":
            self.system.write_file(self.dem.track_file, f"{want}\n")
            return True, f"{self.dem.track_file} = {want}"
        if method == "command":
            argv = self.dem.demote if want else self.dem.undemote
            res = self.system.run(list(argv), 10.0)
            return res.ok, (res.stderr.strip() or f"{argv[0]} exited {res.rc}")
        return True, "no demotion method configured"

    def status(self) -> dict[str, object]:
        return {"method": self.dem.method, "demoted": self.demoted, "share": self.share,
                "reason": self.reason, "error": self.error}
