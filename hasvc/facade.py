"""The one door to the outside world.

Every side effect hasvc has (exec, signals, file writes, reading commands'
output) goes through a System object, so tests can swap it for a recorder
and the decision code never touches the OS directly.
"""

from __future__ import annotations

import os
import signal as signals
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class System:
    """Real side effects. Subclass or replace in tests."""

    def run(self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None) -> Result:
        """Run argv (never through a shell) and wait at most `timeout` seconds."""
        if isinstance(argv, str):
            raise TypeError("argv must be a list, not a shell string")
        try:
            proc = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout,
                env=None if env is None else {**os.environ, **env}, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            return Result(124, _text(exc.stdout), f"timed out after {timeout:g}s")
        except OSError as exc:
            return Result(127, "", str(exc))
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def spawn(self, argv: Sequence[str], *, log_path: str | None = None,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> int:
        """Start a long-running process in its own session; return its pid."""
        if isinstance(argv, str):
            raise TypeError("argv must be a list, not a shell string")
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, cwd=cwd,
                env=None if env is None else {**os.environ, **env},
            )
        finally:
            if log_path:
                out.close()
        _CHILDREN[proc.pid] = proc
        return proc.pid

    def signal(self, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False

    def alive(self, pid: int) -> bool:
        child = _CHILDREN.get(pid)
        if child is not None:
            # Reap our own children so a dead one does not linger as a zombie.
            if child.poll() is not None:
                _CHILDREN.pop(pid, None)
                return False
            return True
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive(pid):
                return True
            time.sleep(0.01)
        return not self.alive(pid)

    def stop_pid(self, pid: int, sig: int = signals.SIGTERM, timeout: float = 5.0) -> str:
        """Signal, wait, then SIGKILL. Returns how it ended: exited | killed | gone."""
        if not self.signal(pid, sig):
            return "gone"
        if self.wait_exit(pid, timeout):
            return "exited"
        self.signal(pid, signals.SIGKILL)
        self.wait_exit(pid, 2.0)
        return "killed"

    def write_file(self, path: str, data: bytes | str, mode: int = 0o644) -> None:
        """Atomic replace: a reader sees the old file or the new one, never half."""
        if isinstance(data, str):
            data = data.encode()
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".hasvc-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def read_file(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def remove_file(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def now(self) -> float:
        return time.time()


_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
