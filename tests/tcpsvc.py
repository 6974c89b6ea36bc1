"""A trivial service for tests and benchmarks: answers "ok" on ADDR:PORT over TCP.

Started with `python -S` so it is up in a few milliseconds; SIGTERM ends it.
"""

import signal
import socket
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
signal.signal(signal.SIGHUP, lambda *_: None)
addr, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(16)
while True:
    conn, _ = srv.accept()
    try:
        conn.sendall(b"ok\n")
    finally:
        conn.close()
