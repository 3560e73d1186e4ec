"""Child processes of a bench run, and what they cost: CPU seconds and peak RSS from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTime:
    """CPU seconds: ``user`` in the process's own code, ``system`` in the kernel for it."""

    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.system

    def __add__(self, other: CpuTime) -> CpuTime:
        return CpuTime(self.user + other.user, self.system + other.system)

    def since(self, earlier: CpuTime) -> CpuTime:
        return CpuTime(max(0.0, self.user - earlier.user), max(0.0, self.system - earlier.system))


def cpu_seconds(pid: int) -> CpuTime:
    """User and system CPU seconds of ``pid`` so far (zero once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return CpuTime()
    # The command name may hold spaces and parentheses: fields start after the last ")".
    fields = stat.rsplit(")", 1)[1].split()
    return CpuTime(int(fields[11]) / _TICKS, int(fields[12]) / _TICKS)


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak resident set) of ``pid`` in KiB."""
    out: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (uvicorn's worker processes under its supervisor)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time, already counted in user
    return float(total - idle), float(total)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def load_1min() -> float:
    return float(loadavg().split()[0])


@dataclass
class Proc:
    """One started program, its log file, and its worker processes if it forks them."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    _log_file: object = field(repr=False, default=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def workers(self) -> list[int]:
        """The processes doing the work: the children, or the process itself."""
        return children(self.pid) or [self.pid]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        close = getattr(self._log_file, "close", None)
        if close is not None:
            close()


def _die_with_parent() -> None:
    # Linux: SIGTERM this child when the bench dies, however it dies (even SIGKILL).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def start(name: str, argv: list[str], *, env: Mapping[str, str], cwd: Path) -> Proc:
    log = cwd / f"{name}.log"
    log_file = log.open("wb")
    popen = subprocess.Popen(  # noqa: S603 - our own argv, no shell
        argv,
        env=dict(env),
        cwd=cwd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,  # no threads yet at this point
    )
    return Proc(name, popen, log, log_file)


async def wait_for_http(proc: Proc, host: str, port: int, path: str, within: float) -> None:
    """Wait until ``GET path`` answers 200, or fail with the program's log."""
    deadline = time.monotonic() + within
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {path} within {within} s:\n{proc.tail()}")


def listening(pid: int, port: int) -> bool:
    """Whether ``pid`` holds a socket listening on TCP ``port`` (read from /proc)."""
    listeners = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    listeners.add(f"socket:[{fields[9]}]")
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in listeners:
                    return True
    return False


async def wait_for_listeners(
    proc: Proc, pids: Callable[[], list[int]], port: int, count: int, within: float
) -> None:
    """Wait until ``count`` of the processes ``pids()`` listen on ``port``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        if sum(listening(pid, port) for pid in pids()) >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} {proc.name} workers did not listen within {within} s")


@dataclass(frozen=True)
class CpuSample:
    at: float
    by_pid: dict[int, CpuTime]


def sample(pids: Iterable[int]) -> CpuSample:
    return CpuSample(time.monotonic(), {pid: cpu_seconds(pid) for pid in pids})


def cpu_between(first: CpuSample, last: CpuSample) -> CpuTime:
    """CPU time spent between two samples by the processes present in the first."""
    spent = CpuTime()
    for pid, before in first.by_pid.items():
        spent += last.by_pid.get(pid, before).since(before)
    return spent
