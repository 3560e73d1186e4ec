"""One Tuition API process on a shared port: ``python -m bench.api_server PORT``.

uvicorn serving ``tuition.app:app_from_env`` (settings from ``TUITION_*``), exactly what
``tuition serve`` runs, except that each process binds its own ``SO_REUSEPORT`` socket
(as ``gunicorn --reuse-port`` does) so the kernel spreads new connections evenly over
the processes. With ``tuition serve --workers N`` all workers accept from one shared
socket, and a few long-lived keep-alive connections all go to whichever worker woke
first (measured: one worker at 100 % CPU, the other idle; see docs/performance.md).
"""

from __future__ import annotations

import socket
import sys

import uvicorn


def main(port: int, host: str = "127.0.0.1") -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        "tuition.app:app_from_env",
        factory=True,
        access_log=False,
        log_level="info",  # "Application startup complete." tells the bench it is up
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(int(sys.argv[1]))
