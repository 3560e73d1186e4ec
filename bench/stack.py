"""Tuition deployed as in production, on this machine: simulator, API workers, one worker.

* the gateway simulator in its own uvicorn process (:mod:`bench.simulator_app`);
* ``tuition serve --workers N`` (uvicorn, uvloop, httptools) with the embedded worker off;
* one ``tuition worker`` process relaying the outbox and sealing the ledger.

They share the merchant id/secret and the simulator's RSA key file through the usual
``TUITION_*`` settings; nothing else in the environment's ``TUITION_*`` leaks in.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.processes import Proc, start, wait_for_http, wait_for_listeners

HOST = "127.0.0.1"
APP_ID = "bench_app"
REPO = Path(__file__).resolve().parent.parent


def tuition_bin() -> str:
    return str(Path(sys.executable).parent / "tuition")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def write_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class Stack:
    workdir: Path
    env: dict[str, str]
    api_port: int
    sim_port: int
    key_file: Path
    procs: list[Proc] = field(default_factory=list)
    api_key: str = ""

    @property
    def api(self) -> list[Proc]:
        return [p for p in self.procs if p.name.startswith("api")]

    @property
    def worker(self) -> Proc | None:
        """The first ``tuition worker`` process; None when the API process runs the worker
        (or no worker has been started)."""
        return next(iter(self.workers), None)

    @property
    def workers(self) -> list[Proc]:
        """Every ``tuition worker`` process (``worker``, ``worker-2``, ...)."""
        return [p for p in self.procs if p.name == "worker" or p.name.startswith("worker-")]

    @property
    def simulator(self) -> Proc:
        return self._named("simulator")

    def _named(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def api_workers(self) -> list[int]:
        """The API processes serving requests (not a supervisor or multiprocessing helpers)."""
        pids = []
        for pid in [pid for proc in self.api for pid in proc.workers()]:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                pids.append(pid)
        return pids

    def tuition(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(  # noqa: S603 - our own argv
            [tuition_bin(), *args],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"tuition {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def make_stack(
    workdir: Path, database_url: str, *, pool_size: int | None, embedded_worker: bool = False
) -> Stack:
    """``embedded_worker``: the API process runs the worker (SQLite's default), and no
    ``tuition worker`` process is started."""
    api_port, sim_port = free_port(), free_port()
    key_file = workdir / "simulator-key.pem"
    write_key(key_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUITION_", "BENCH_SIM"))}
    env.update(
        TUITION_DATABASE_URL=database_url,
        TUITION_HOST=HOST,
        TUITION_PORT=str(api_port),
        TUITION_SECRET_KEY=secrets.token_urlsafe(32),
        TUITION_SIMULATOR="false",
        TUITION_SANDBOX_URL=f"http://{HOST}:{sim_port}",
        TUITION_SIMULATOR_KEY_FILE=str(key_file),
        TUITION_SANDBOX_APP_ID=APP_ID,
        TUITION_SANDBOX_SECRET=secrets.token_urlsafe(24),
        TUITION_EMBEDDED_WORKER="true" if embedded_worker else "false",
        # The bench's webhook receiver (bench/receiver.py) listens on this machine.
        TUITION_WEBHOOK_ALLOWED_HOSTS=f'["{HOST}"]',
        BENCH_SIMULATOR_URL=f"http://{HOST}:{sim_port}",
    )
    if pool_size is not None:
        env["TUITION_DB_POOL_SIZE"] = str(pool_size)
    return Stack(workdir, env, api_port, sim_port, key_file)


async def deploy(stack: Stack, *, api_workers: int, workers: int = 1) -> None:
    """Migrate, create an API key, and start the three programs; waits until they answer
    and every API worker listens (else the first connections would all go to one).
    ``workers``: how many ``tuition worker`` processes (0: start them later with
    :func:`start_workers`); none when the API process runs the worker."""
    stack.tuition("migrate")
    # A test key: the load pays through the sandbox, test mode's only (docs/api.md); its
    # data is in the tuition_test schema, where the checks read it.
    created = stack.tuition("keys", "create", "--name", "bench", "--mode", "test")
    stack.api_key = next(
        line.strip() for line in reversed(created.splitlines()) if line.startswith("sk_")
    )
    # bench/ must be importable; a PYTHONPATH given to the bench (e.g. another src tree
    # to measure) comes first.
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p)
    sim_env = {**stack.env, "PYTHONPATH": path}
    stack.procs.append(
        start(
            "simulator",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.simulator_app:app",
                "--factory",
                "--host",
                HOST,
                "--port",
                str(stack.sim_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=sim_env,
            cwd=stack.workdir,
        )
    )
    argv = [tuition_bin(), "serve", "--workers", str(api_workers), "--port", str(stack.api_port)]
    stack.procs.append(start("api", argv, env=stack.env, cwd=stack.workdir))
    if stack.env["TUITION_EMBEDDED_WORKER"] == "false":
        start_workers(stack, workers)
    await wait_for_http(stack.simulator, HOST, stack.sim_port, "/v1/public-key", 30)
    await wait_for_http(stack.api[0], HOST, stack.api_port, "/readyz", 60)
    await wait_for_listeners(stack.api[0], stack.api_workers, stack.api_port, api_workers, 60)
    for worker in stack.workers:
        if not worker.alive():
            raise RuntimeError(f"{worker.name} exited:\n{worker.tail()}")


def start_workers(stack: Stack, count: int) -> list[Proc]:
    """Start ``count`` more ``tuition worker`` processes (they share the work through
    ``FOR UPDATE SKIP LOCKED`` claims, src/tuition/worker/runner.py)."""
    started = []
    for _ in range(count):
        n = len(stack.workers) + 1
        name = "worker" if n == 1 else f"worker-{n}"
        proc = start(name, [tuition_bin(), "worker"], env=stack.env, cwd=stack.workdir)
        stack.procs.append(proc)
        started.append(proc)
    return started
