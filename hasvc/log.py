"""Logging to syslog when the host has one, else to stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import stat
import sys

SYSLOG_SOCKETS = ("/var/run/log", "/dev/log")  # FreeBSD, then Linux

log = logging.getLogger("hasvc")


def setup(debug: bool = False, stderr: bool = False) -> logging.Logger:
    log.handlers.clear()
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    sock = next((p for p in SYSLOG_SOCKETS if _listening(p)), None)
    if sock and not stderr:
        handler: logging.Handler = logging.handlers.SysLogHandler(
            address=sock, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("hasvc[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s hasvc: %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    return log


def _listening(path: str) -> bool:
    """A syslog socket that is really there: Linux has /var/run/log directories, and dead sockets."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
        return True
    except OSError:
        return False
