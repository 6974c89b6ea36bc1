"""A FreeBSD rc.d service driven through service(8).

`one*` verbs run it whether or not rc.conf enables it: hasvc, not the boot
sequence, decides when an HA service runs, so its `_enable` stays NO.
"""

from __future__ import annotations

from hasvc.config import Config, Policy, render
from hasvc.facade import System
from hasvc.kinds import Outcome, run_steps, timed


class RcService:
    def __init__(self, policy: Policy, cfg: Config, system: System) -> None:
        self.policy, self.cfg, self.system = policy, cfg, system

    def _verb(self, verb: str, timeout: float) -> Outcome:
        return run_steps(self.system, [[self.cfg.service_cmd, self.policy.service, verb]], timeout)

    def pid(self) -> int | None:
        return None

    def running(self) -> bool:
        return self._verb("onestatus", self.policy.timeout_stop).ok

    def _render(self) -> str:
        try:
            for dest, text, mode in render(self.policy, self.cfg):
                self.system.write_file(dest, text, mode)
        except OSError as exc:
            return f"template: {exc}"
        return ""

    @timed
    def start(self) -> Outcome:
        if err := self._render():
            return Outcome(False, err)
        return self._verb("onestart", self.policy.timeout_start)

    @timed
    def stop(self) -> Outcome:
        return self._verb("onestop", self.policy.timeout_stop)

    @timed
    def reload(self) -> Outcome:
        if err := self._render():
            return Outcome(False, err)
        return self._verb("onereload", self.policy.timeout_reload)

    def adopt(self) -> int | None:
        return None
