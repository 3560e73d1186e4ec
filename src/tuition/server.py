"""The API server processes behind ``tuition serve``.

One worker is plain uvicorn. On Linux, several workers each bind their own
``SO_REUSEPORT`` socket on the same address, so the kernel spreads new connections over
them (what ``gunicorn --reuse-port`` does). uvicorn's own ``--workers`` has every worker
accept from one shared socket instead, and long-lived keep-alive connections (a load
balancer's) then pile onto whichever worker woke first: measured, one worker at 100 %
CPU beside an idle one (docs/performance.md). Elsewhere (macOS's ``SO_REUSEPORT`` does
not spread connections) uvicorn's supervisor is used.

The supervisor first makes sure nothing else serves the address (with ``SO_REUSEPORT``
a second server would otherwise quietly share the port) and keeps it claimed; then it
starts the workers, restarts one that dies (after a growing pause if it keeps dying
young), and on SIGTERM or SIGINT passes the signal on and waits for every worker's
graceful shutdown.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog
import uvicorn

APP = "tuition.app:app_from_env"
# How long a stopping worker may take to finish its requests before it is killed.
SHUTDOWN_GRACE_SECONDS = 30.0
# A worker that dies sooner than this after starting "died young": at the first start
# that stops the server (a bad setting would only fail again); later it delays the
# restart, doubling up to MAX_RESTART_DELAY_SECONDS while the worker keeps dying young.
MIN_LIFETIME_SECONDS = 5.0
MAX_RESTART_DELAY_SECONDS = 30.0
_POLL_SECONDS = 0.2
_PR_SET_PDEATHSIG = 1

log = structlog.get_logger("tuition.server")


class AddressInUse(Exception):
    """Something already serves the address ``tuition serve`` was asked to take."""


def serve(host: str, port: int, workers: int) -> None:
    """Serve the API on ``host:port`` with ``workers`` processes; returns when stopped."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if workers == 1:
        check_address_free(host, port)  # a clear error, not uvicorn's after start-up
        uvicorn.Server(_config(host, port)).run()
    elif sys.platform != "linux":
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


@dataclass
class _Slot:
    process: BaseProcess
    started: float
    first_start: bool = True
    young_deaths: int = 0  # consecutive
    restart_at: float | None = None


class Supervisor:
    """``workers`` processes, each serving on its own ``SO_REUSEPORT`` socket (Linux)."""

    def __init__(self, host: str, port: int, workers: int) -> None:
        self.host, self.port, self.workers = host, port, workers
        self._context = multiprocessing.get_context("spawn")
        self._slots: list[_Slot] = []
        self._stopping = False

    def run(self) -> None:
        claim = _claim_address(self.host, self.port)
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._slots = [_Slot(self._start(), time.monotonic()) for _ in range(self.workers)]
            log.info("serving", host=self.host, port=self.port, workers=self.workers)
            while not self._stopping:
                time.sleep(_POLL_SECONDS)
                self._tend(time.monotonic())
        finally:
            self._stop_all()
            claim.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def _start(self) -> BaseProcess:
        process = self._context.Process(
            target=_serve_one,
            args=(self.host, self.port, os.getpid()),
            name="tuition-api",
            daemon=False,
        )
        process.start()
        return process

    def _tend(self, now: float) -> None:
        """Notice workers that died, and restart them when their pause is over."""
        for slot in self._slots:
            if self._stopping:
                return
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    slot.process, slot.started, slot.restart_at = self._start(), now, None
                    slot.first_start = False
                continue
            if slot.process.is_alive():
                continue
            lived = now - slot.started
            log.error(
                "api worker exited",
                pid=slot.process.pid,
                exitcode=slot.process.exitcode,
                lived_seconds=round(lived, 1),
            )
            if lived >= MIN_LIFETIME_SECONDS:
                slot.young_deaths = 0
                slot.restart_at = now
            elif slot.first_start:
                log.error("api worker died at start; stopping the server")
                self._stopping = True
                raise SystemExit(1)
            else:
                slot.young_deaths += 1
                delay = min(2.0**slot.young_deaths, MAX_RESTART_DELAY_SECONDS)
                log.error("api worker keeps dying young", restart_in_seconds=delay)
                slot.restart_at = now + delay

    def _stop_all(self) -> None:
        running = [slot.process for slot in self._slots if slot.restart_at is None]
        for process in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes in-flight requests
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("api worker did not stop in time; killing it", pid=process.pid)
                process.kill()
                process.join()


def check_address_free(host: str, port: int) -> None:
    """Raise :class:`AddressInUse` if ``host:port`` cannot be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise AddressInUse(
                f"{host}:{port} is already in use ({exc.strerror}); "
                "is another tuition serve running?"
            ) from None


def _claim_address(host: str, port: int) -> socket.socket:
    """Refuse an address something already listens on, then hold it for the workers.

    A plain bind fails on an address in use, ``SO_REUSEPORT`` listeners included; the
    returned socket (``SO_REUSEPORT``, bound, never listening, so it gets no
    connections) makes another server's same check fail while this one runs.
    """
    check_address_free(host, port)
    claim = _reuseport_socket(host)
    claim.bind((host, port))
    return claim


def _reuseport_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _serve_one(host: str, port: int, supervisor_pid: int) -> None:
    """One worker process: uvicorn on its own ``SO_REUSEPORT`` socket."""
    # A worker whose supervisor was killed outright stops too (gracefully).
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:  # it died before prctl took effect
        return
    sock = _reuseport_socket(host)
    sock.bind((host, port))
    uvicorn.Server(_config(host, port)).run(sockets=[sock])


def _config(host: str, port: int) -> uvicorn.Config:
    # Tuition logs each request itself (api/middleware.py), so uvicorn's access log is off.
    return uvicorn.Config(
        APP, factory=True, host=host, port=port, access_log=False, log_level="warning"
    )
