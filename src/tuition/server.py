"""The API server processes behind ``tuition serve``.

One worker is plain uvicorn. Several workers each bind their own ``SO_REUSEPORT``
socket on the same address, so the kernel spreads new connections over them (what
``gunicorn --reuse-port`` does). uvicorn's own ``--workers`` has every worker accept
from one shared socket instead, and long-lived keep-alive connections (a load
balancer's) then pile onto whichever worker woke first: measured, one worker at 100 %
CPU beside an idle one (docs/performance.md). Where the platform has no
``SO_REUSEPORT``, uvicorn's supervisor is used as before.

The supervisor here starts the workers, restarts one that dies, and on SIGTERM or
SIGINT passes the signal on and waits for every worker's graceful shutdown.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog
import uvicorn

APP = "tuition.app:app_from_env"
# How long a stopping worker may take to finish its requests before it is killed.
SHUTDOWN_GRACE_SECONDS = 30.0
# A worker that dies sooner than this after starting is not restarted in a loop.
MIN_LIFETIME_SECONDS = 5.0
_POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1

log = structlog.get_logger("tuition.server")


def serve(host: str, port: int, workers: int) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes; returns when stopped."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if workers == 1:
        uvicorn.Server(_config(host, port)).run()
    elif not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(
            APP,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
        )
    else:
        Supervisor(host, port, workers).run()


class Supervisor:
    """``workers`` processes, each serving on its own ``SO_REUSEPORT`` socket."""

    def __init__(self, host: str, port: int, workers: int) -> None:
        self.host, self.port, self.workers = host, port, workers
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[tuple[BaseProcess, float]] = []
        self._stopping = False

    def run(self) -> None:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._processes = [self._start() for _ in range(self.workers)]
            log.info("serving", host=self.host, port=self.port, workers=self.workers)
            while not self._stopping:
                time.sleep(_POLL_SECONDS)
                self._replace_dead_workers()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _start(self) -> tuple[BaseProcess, float]:
        process = self._context.Process(
            target=_serve_one,
            args=(self.host, self.port, os.getpid()),
            name="tuition-api",
            daemon=False,
        )
        process.start()
        return process, time.monotonic()

    def _replace_dead_workers(self) -> None:
        for n, (process, started) in enumerate(self._processes):
            if process.is_alive() or self._stopping:
                continue
            lived = time.monotonic() - started
            log.error("api worker exited", pid=process.pid, exitcode=process.exitcode)
            if lived < MIN_LIFETIME_SECONDS:
                # Dying at start (a bad setting, the port taken by something else) would
                # only die again: stop the whole server and let its exit code tell.
                log.error("api worker died at start; stopping", lived_seconds=round(lived, 1))
                self._stopping = True
                raise SystemExit(1)
            self._processes[n] = self._start()

    def _stop_all(self) -> None:
        for process, _ in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes in-flight requests
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for process, _ in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("api worker did not stop in time; killing it", pid=process.pid)
                process.kill()
                process.join()


def _serve_one(host: str, port: int, supervisor_pid: int) -> None:
    """One worker process: uvicorn on its own ``SO_REUSEPORT`` socket."""
    if sys.platform == "linux":
        # A worker whose supervisor was killed outright stops too (gracefully).
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != supervisor_pid:  # it died before prctl took effect
            return
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    uvicorn.Server(_config(host, port)).run(sockets=[sock])


def _config(host: str, port: int) -> uvicorn.Config:
    # Tuition logs each request itself (api/middleware.py), so uvicorn's access log is off.
    return uvicorn.Config(
        APP, factory=True, host=host, port=port, access_log=False, log_level="warning"
    )
