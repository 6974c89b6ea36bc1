"""Shared helpers for the namespace tests (imported explicitly; not a pytest conftest)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hasvc.lab.netns import Lab, cleanup_stale, require

PREFIX = "hv"
VIP4 = "192.0.2.4"
VIP6 = "2001:db8:1:2::4"


@contextmanager
def built_lab(*tools: str, clients: int = 1) -> Iterator[Lab]:
    """A lab that is always torn down, then checked to have left nothing behind."""
    # Missing tools fail the test by name; the suite never skips.
    require("ip", *tools)
    cleanup_stale(PREFIX)
    lab = Lab(PREFIX, clients=clients)
    names = [lab.ns(n) for n in lab.nodes]
    try:
        with lab:
            yield lab
    finally:
        lab.teardown()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        left = [n for n in names if n in listed.split()]
        assert not left, f"namespaces left behind: {left}"
        assert not os.path.exists(lab.work_dir), f"work dir left behind: {lab.work_dir}"


def hook_recorder(path: str) -> list[str]:
    """A hook command line that appends its arguments to `path`, standing in for `hasvc notify`."""
    return ["sh", "-c", 'echo "$*" >> "$0"', path]


def wait_last_line(path: str, want: str, timeout: float = 3.0) -> None:
    """Scripts add the VIP before they call the hook: poll (bounded) for the hook's record."""
    deadline = time.monotonic() + timeout
    while True:
        lines = read_lines(path)
        if lines and lines[-1] == want:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"hook record {want!r} not last in {path} after {timeout:g}s: {lines}")
        time.sleep(0.02)


def read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.strip() for line in fh if line.strip()]
    except FileNotFoundError:
        return []
