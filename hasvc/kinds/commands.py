"""Ordered commands per action, e.g. a HAST/ZFS switch (seed 003).

There is no process to watch, so "running" is what `commands.check` says
when given, else whether the last `start` steps succeeded (kept in
state_dir so a restarted daemon knows).
"""

from __future__ import annotations

import os

from hasvc.config import Config, Policy, expand
from hasvc.facade import System
from hasvc.kinds import Outcome, run_steps, timed


class Commands:
    def __init__(self, policy: Policy, cfg: Config, system: System) -> None:
        self.policy, self.cfg, self.system = policy, cfg, system
        self.marker = os.path.join(cfg.state_dir, "run", f"{policy.name}.active")

    def _steps(self, action: str) -> list[list[str]]:
        return [expand(step, self.policy, self.cfg) for step in self.policy.commands.get(action, ())]

    def pid(self) -> int | None:
        return None

    def running(self) -> bool:
        check = self._steps("check")
        if check:
            return run_steps(self.system, check, self.policy.timeout_stop).ok
        return self.system.read_file(self.marker) is not None

    @timed
    def start(self) -> Outcome:
        out = run_steps(self.system, self._steps("start"), self.policy.timeout_start)
        if out.ok:
            os.makedirs(os.path.dirname(self.marker), exist_ok=True)
            self.system.write_file(self.marker, "active\n")
        return out

    @timed
    def stop(self) -> Outcome:
        out = run_steps(self.system, self._steps("stop"), self.policy.timeout_stop)
        if out.ok:
            self.system.remove_file(self.marker)
        return out

    @timed
    def reload(self) -> Outcome:
        return run_steps(self.system, self._steps("reload"), self.policy.timeout_reload)

    def adopt(self) -> int | None:
        return None
