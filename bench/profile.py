"""Where the API workers' CPU goes: py-spy samples, grouped by the layer of the leaf frame.

Optional (``--profile``): needs ``py-spy`` (``pip install py-spy``, ptrace allowed). It
samples every API worker during the measured window without pausing them
(``--nonblocking``). Idle samples (the event loop waiting in epoll) are left out; on a
saturated machine a runnable process waiting for a core still counts as busy, so read
the shares as shares of the workers' busy time, not of exact CPU seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# First match wins; patterns are searched in the frame's file path.
LAYERS: list[tuple[str, str]] = [
    (
        "structlog / logging (incl. access-log middleware)",
        r"^(structlog|logging)/|tuition/logs\.py|api/middleware\.py",
    ),
    ("asyncpg driver", r"^asyncpg/"),
    ("SQLAlchemy", r"^sqlalchemy/"),
    ("pydantic", r"^pydantic(_core)?/"),
    ("FastAPI / Starlette", r"^(fastapi|starlette)/"),
    ("uvicorn / httptools", r"^(uvicorn|httptools)/"),
    ("httpx / httpcore (call to gateway)", r"^(httpx|httpcore|h11)/"),
    ("anyio / threads (sync dependencies)", r"^anyio/|^threading\.py|^concurrent/"),
    ("cryptography (RSA verify)", r"^cryptography/"),
    ("json", r"^json/"),
    ("asyncio / uvloop (incl. the loop's C code)", r"^(asyncio|uvloop)/|^selectors\.py"),
    ("tuition api", r"tuition/api/"),
    ("tuition services / domain", r"tuition/(services|domain|channels|simulator)/"),
    ("tuition store", r"tuition/store/"),
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*)\)$")
# Leaves that mean "waiting", which py-spy's nonblocking mode sometimes counts as busy.
_IDLE_LEAVES = ("Condition.wait (threading.py)", "Queue.get (queue.py)")


@dataclass(frozen=True)
class Profile:
    samples: int
    by_layer: list[tuple[str, float]]  # self time share per layer
    inclusive: list[tuple[str, float]]  # inclusive share of tuition functions
    raw_paths: list[Path]


def available() -> str | None:
    return shutil.which("py-spy") or _venv_py_spy()


def _venv_py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else None


async def record(pid: int, seconds: int, out: Path) -> asyncio.subprocess.Process:
    binary = available()
    assert binary is not None
    return await asyncio.create_subprocess_exec(
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "200",
        "--nonblocking",
        "--nolineno",
        "--format",
        "raw",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def pin(api: list[int], others: list[int]) -> None:
    """API workers on core 0, everything else (PostgreSQL, load generator, ...) on core 1.

    py-spy counts a runnable thread as busy. Unpinned, a worker that wakes PostgreSQL
    over loopback is often preempted by it on the same core while still runnable, and
    the time PostgreSQL runs is charged to whatever the worker's stack shows then (the
    asyncpg call). Pinned, a busy sample of a worker is a sample of its own CPU time;
    with more than one API worker they still share core 0, so profile with one.
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    for pid in api:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, {cores[0]})
    for pid in [*others, os.getpid()]:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, set(cores[1:]))


def _layer(file: str) -> str:
    for name, pattern in LAYERS:
        if re.search(pattern, file):
            return name
    return "other (stdlib, C)"


def _lines(raws: list[Path]) -> list[str]:
    return [line for raw in raws if raw.exists() for line in raw.read_text().splitlines()]


def summarize(raws: list[Path], top: int = 25) -> Profile:
    """Collapsed stacks (``a;b;c count``) to self-time by layer and inclusive by function."""
    by_layer: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in _lines(raws):
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if _FRAME.match(f)]
        if not frames or frames[-1] in _IDLE_LEAVES:
            continue
        total += count
        leaf = _FRAME.match(frames[-1])
        assert leaf is not None
        by_layer[_layer(leaf["file"])] += count
        seen = set()
        for frame in frames:
            match = _FRAME.match(frame)
            assert match is not None
            if match["file"].startswith("tuition/"):
                name = f"{match['func']} ({_short(match['file'])})"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] += count
    share = 100.0 / total if total else 0.0
    return Profile(
        samples=total,
        by_layer=[(k, v * share) for k, v in by_layer.most_common()],
        inclusive=[(k, v * share) for k, v in inclusive.most_common(top)],
        raw_paths=raws,
    )


def _short(path: str) -> str:
    for marker in ("tuition/", "site-packages/"):
        if marker in path:
            return path[path.index(marker) :]
    return path
