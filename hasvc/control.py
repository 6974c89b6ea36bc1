"""The control socket: one JSON request, one JSON answer, per connection.

The socket is created mode 0600 under a umask, so only root (the daemon's
user) can connect; on Linux the peer's uid is checked as well.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from hasvc import notify

MAX_REQUEST = 64 * 1024

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlError(Exception):
    pass


class Server:
    def __init__(self, path: str, handler: Handler, log: Callable[[str], None]) -> None:
        self.path, self.handler, self.log = path, handler, log
        self.sock: socket.socket | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()

    def check_free(self) -> None:
        """Refuse to run beside a live daemon; remove the socket of a dead one."""
        if os.path.exists(self.path):
            if answers(self.path):
                raise ControlError(f"{self.path}: another hasvc daemon is running")
            os.unlink(self.path)

    def start(self) -> None:
        self.check_free()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(self.path)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        sock.settimeout(0.2)
        self.sock = sock
        self.thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=2)
        if self.sock:
            self.sock.close()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def _serve(self) -> None:
        assert self.sock is not None
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                try:
                    self._one(conn)
                except (OSError, ValueError) as exc:
                    self.log(f"control: bad request: {exc}")

    def _one(self, conn: socket.socket) -> None:
        uid = _peer_uid(conn)
        if uid is not None and uid not in (0, os.geteuid()):
            _send(conn, {"ok": False, "error": "permission denied"})
            return
        request = json.loads(notify.read_line(conn, MAX_REQUEST))
        if not isinstance(request, dict):
            raise ValueError("request must be a JSON object")
        try:
            reply = self.handler(request)
        except Exception as exc:  # a bad request must never take the daemon down
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _send(conn, reply)


def request(path: str, payload: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Ask the daemon; ControlError when it is not there."""
    try:
        return notify.ask(path, payload, timeout)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ControlError(f"no hasvc daemon at {path}") from exc
    except PermissionError as exc:
        raise ControlError(f"{path}: permission denied (root only)") from exc
    except ValueError as exc:
        raise ControlError(f"{path}: {exc}") from exc


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall(json.dumps(obj).encode() + b"\n")


def answers(path: str) -> bool:
    try:
        request(path, {"cmd": "ping"}, timeout=1.0)
        return True
    except (ControlError, OSError, ValueError):
        return False


def _peer_uid(conn: socket.socket) -> int | None:
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None  # FreeBSD: the 0600 mode is the guard
    data = conn.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", data)
    return uid
