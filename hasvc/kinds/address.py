"""A floating address on another interface, following a vhid (seed 004).

FreeBSD uses ifconfig alias/-alias, Linux `ip addr`; both paths come from
the config so the FreeBSD commands can be exercised anywhere.
"""

from __future__ import annotations

from hasvc.config import Config, Policy, substitute
from hasvc.facade import System
from hasvc.kinds import Outcome, run_steps, timed


class Address:
    def __init__(self, policy: Policy, cfg: Config, system: System) -> None:
        self.policy, self.cfg, self.system = policy, cfg, system
        values = cfg.values(policy)
        self.ifname = substitute(policy.address_interface, values)
        self.addrs = [(4, substitute(policy.address4, values)), (6, substitute(policy.address6, values))]
        self.addrs = [(fam, a if "/" in a else f"{a}/{32 if fam == 4 else 128}") for fam, a in self.addrs if a]

    def _argv(self, family: int, addr: str, add: bool) -> list[str]:
        if self.cfg.platform == "freebsd":
            inet = "inet" if family == 4 else "inet6"
            return [self.cfg.ifconfig, self.ifname, inet, addr, "alias" if add else "-alias"]
        return [self.cfg.ip_cmd, f"-{family}", "addr", "add" if add else "del", addr, "dev", self.ifname]

    def _present(self) -> set[str]:
        argv = ([self.cfg.ifconfig, self.ifname] if self.cfg.platform == "freebsd"
                else [self.cfg.ip_cmd, "-o", "addr", "show", "dev", self.ifname])
        res = self.system.run(argv, self.policy.timeout_stop)
        words = set(res.stdout.replace("/", " ").replace("%", " ").split()) if res.ok else set()
        return {a for _, a in self.addrs if a.split("/")[0] in words}

    def pid(self) -> int | None:
        return None

    def running(self) -> bool:
        return len(self._present()) == len(self.addrs)

    @timed
    def start(self) -> Outcome:
        have = self._present()
        steps = [self._argv(f, a, True) for f, a in self.addrs if a not in have]
        return run_steps(self.system, steps, self.policy.timeout_start)

    @timed
    def stop(self) -> Outcome:
        have = self._present()
        steps = [self._argv(f, a, False) for f, a in self.addrs if a in have]
        return run_steps(self.system, steps, self.policy.timeout_stop)

    @timed
    def reload(self) -> Outcome:
        return Outcome(True, "nothing to reload")

    def adopt(self) -> int | None:
        return None
