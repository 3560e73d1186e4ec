"""`tuition serve --workers N`: every worker gets connections; one that dies is replaced;
SIGTERM stops them all. Linux only (it reads /proc to see who holds which socket)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

WORKERS = 2
CONNECTIONS = 24  # all on one worker by chance: 2 in 2**24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tuition(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tuition.cli", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _sockets(port: int) -> dict[int, str]:
    """Socket inode -> TCP state ('0A' listening, '01' established) for local ``port``."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    found[int(fields[9])] = fields[3]
    return found


def _held_by(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _workers(supervisor: int, port: int) -> dict[int, list[str]]:
    """Each API worker (a child listening on ``port``) with the states of its sockets."""
    sockets = _sockets(port)
    out = {}
    for child in _children(supervisor):
        states = [sockets[i] for i in _held_by(child) if i in sockets]
        if "0A" in states:
            out[child] = states
    return out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = _free_port()
    env = {
        **os.environ,
        "TUITION_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "TUITION_CHANNELS": "[]",
        "TUITION_EMBEDDED_WORKER": "false",
        "TUITION_LOG_LEVEL": "warning",
    }
    migrate = _tuition("migrate", env=env, cwd=tmp_path)
    assert migrate.wait(60) == 0, migrate.stderr.read() if migrate.stderr else ""
    proc = _tuition("serve", "--workers", str(WORKERS), "--port", str(port), env=env, cwd=tmp_path)
    try:
        _wait(lambda: len(_workers(proc.pid, port)) == WORKERS, "the workers to listen")
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_every_worker_gets_connections_and_sigterm_stops_them_all(
    served: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = served
    connections = []
    for _ in range(CONNECTIONS):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        connections.append(conn)  # kept open: keep-alive, as a load balancer's

    established = {pid: s.count("01") for pid, s in _workers(proc.pid, port).items()}
    assert len(established) == WORKERS
    assert sum(established.values()) == CONNECTIONS
    assert all(n > 0 for n in established.values()), established
    for conn in connections:
        conn.close()

    workers = list(established)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(40) == 0, proc.stderr.read() if proc.stderr else ""
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_a_worker_that_dies_is_replaced(served: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, port = served
    before = set(_workers(proc.pid, port))
    time.sleep(5.5)  # older than MIN_LIFETIME_SECONDS: a crash, not a failure to start
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    _wait(
        lambda: len(_workers(proc.pid, port)) == WORKERS and victim not in _workers(proc.pid, port),
        "a replacement worker",
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    assert proc.poll() is None
