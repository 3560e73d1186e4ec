"""`tuition serve --workers N`: every worker gets connections; one that dies is replaced;
SIGTERM stops them all; a second server on the same port is refused. Linux only (it reads
/proc to see who holds which socket)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tuition.server import MIN_LIFETIME_SECONDS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

WORKERS = 2
CONNECTIONS = 24  # all on one worker by chance: 2 in 2**24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tuition(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Run the CLI; its output goes to ``cwd/<command>.log`` (a pipe nobody reads could
    fill up and stall it)."""
    with open(cwd / f"{args[0]}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tuition.cli", *args],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
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
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that ended while we looked
            continue
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


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    env: dict[str, str]
    cwd: Path

    def log(self) -> str:
        return (self.cwd / "serve.log").read_text(errors="replace")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = _free_port()
    env = {
        **os.environ,
        "TUITION_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}",
        "TUITION_CHANNELS": "[]",
        "TUITION_EMBEDDED_WORKER": "false",
        "TUITION_LOG_LEVEL": "warning",
    }
    migrate = _tuition("migrate", env=env, cwd=tmp_path)
    assert migrate.wait(60) == 0, (tmp_path / "migrate.log").read_text()
    proc = _tuition("serve", "--workers", str(WORKERS), "--port", str(port), env=env, cwd=tmp_path)
    try:
        _wait(lambda: len(_workers(proc.pid, port)) == WORKERS, "the workers to listen")
        yield Served(proc, port, env, tmp_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    finally:
        conn.close()


def test_every_worker_gets_connections_and_sigterm_stops_them_all(served: Served) -> None:
    proc, port = served.proc, served.port
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
    assert proc.wait(40) == 0, served.log()
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


def test_a_second_server_on_the_same_port_is_refused(served: Served) -> None:
    second = _tuition(
        "serve", "--workers", "2", "--port", str(served.port), env=served.env, cwd=served.cwd
    )
    assert second.wait(60) == 1
    assert "already in use" in served.log()
    assert _healthy(served.port)
    assert len(_workers(served.proc.pid, served.port)) == WORKERS


def test_a_worker_that_dies_is_replaced_and_all_stop_with_their_supervisor(
    served: Served,
) -> None:
    proc, port = served.proc, served.port
    before = set(_workers(proc.pid, port))
    time.sleep(MIN_LIFETIME_SECONDS + 0.5)  # a crash, not a failure to start
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    _wait(
        lambda: len(_workers(proc.pid, port)) == WORKERS and victim not in _workers(proc.pid, port),
        "a replacement worker",
    )
    assert _healthy(port)
    assert proc.poll() is None

    workers = list(_workers(proc.pid, port))
    proc.kill()  # no chance to stop them: the workers must notice on their own
    proc.wait()
    _wait(lambda: not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers to exit")
