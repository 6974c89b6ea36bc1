"""Service kinds: one module each, all with the same interface.

A kind knows how to start, stop and reload one service and whether it is
running; the daemon decides when. Every side effect goes through System.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from hasvc.config import Config, Policy
from hasvc.facade import System


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str = ""
    pid: int | None = None
    elapsed: float = 0.0


class Kind(Protocol):
    policy: Policy

    def running(self) -> bool: ...

    def pid(self) -> int | None: ...

    def start(self) -> Outcome: ...

    def stop(self) -> Outcome: ...

    def reload(self) -> Outcome: ...

    def adopt(self) -> int | None:
        """Take over an instance already running as policy describes (after a daemon restart)."""
        ...


def make(policy: Policy, cfg: Config, system: System) -> Kind:
    from hasvc.kinds import address, commands, process, rc

    factory = {"process": process.Process, "rc": rc.RcService,
               "commands": commands.Commands, "address": address.Address}[policy.kind]
    return factory(policy, cfg, system)


def timed(fn):  # type: ignore[no-untyped-def]
    """Stamp an Outcome with how long the action took."""

    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        out: Outcome = fn(self, *args, **kwargs)
        return Outcome(out.ok, out.detail, out.pid, time.monotonic() - t0)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def run_steps(system: System, steps: list[list[str]], timeout: float) -> Outcome:
    """Run argv lists in order; stop at the first failure, which names the step."""
    for i, argv in enumerate(steps):
        res = system.run(argv, timeout)
        if not res.ok:
            err = (res.stderr or res.stdout).strip().splitlines()
            last = err[-1] if err else ""
            return Outcome(False, f"step {i + 1} {argv[0]} exited {res.rc}: {last}".rstrip(": "))
    return Outcome(True, f"{len(steps)} step(s) ok")
