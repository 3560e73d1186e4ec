"""``python -m bench``: the end-to-end payment flow benchmark (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from bench.report import markdown, to_json
from bench.run import Options, run


def _options(argv: list[str]) -> tuple[Options, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=int, default=5, help="seconds before measuring")
    parser.add_argument("--users", type=int, default=32, help="concurrent simulated platforms")
    parser.add_argument("--api-workers", type=int, default=2, help="tuition serve --workers")
    parser.add_argument("--creators", type=int, default=20, help="creators (one course each)")
    parser.add_argument("--pool-size", type=int, default=None, help="TUITION_DB_POOL_SIZE")
    parser.add_argument("--pgbench-seconds", type=int, default=15, help="0 skips pgbench")
    parser.add_argument("--pgbench-scale", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="py-spy one API worker")
    parser.add_argument(
        "--engine",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="sqlite: the embedded default, one process running the worker, no PostgreSQL",
    )
    parser.add_argument(
        "--wait-idle",
        type=int,
        default=0,
        metavar="SECONDS",
        help="first wait up to this long for the 1-minute load average to drop below 1",
    )
    parser.add_argument("--workers", type=int, default=1, help="tuition worker processes")
    parser.add_argument(
        "--no-webhooks",
        action="store_true",
        help="no webhook endpoint (and so no delivery lag) during the load",
    )
    parser.add_argument(
        "--lost-every",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="one checkout whose notification is lost this often under load; 0: none",
    )
    parser.add_argument(
        "--recover-after",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="TUITION_RECOVER_AFTER_SECONDS for the run (when the recovery job queries)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="logs and key (default: tmp)")
    parser.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    args = parser.parse_args(argv)
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        users=args.users,
        api_workers=args.api_workers,
        creators=args.creators,
        pool_size=args.pool_size,
        pgbench_seconds=args.pgbench_seconds,
        pgbench_scale=args.pgbench_scale,
        profile=args.profile,
        wait_idle=args.wait_idle,
        workdir=args.workdir,
        engine=args.engine,
        workers=args.workers,
        webhooks=not args.no_webhooks,
        lost_every=args.lost_every,
        recover_after=args.recover_after,
    )
    return options, args.json


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # Unwind through the finally blocks that stop the servers (SIGTERM would skip them).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    options, json_path = _options(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(options))
    else:
        result = uvloop.run(run(options))
    print()
    print(markdown(result))
    if json_path is not None:
        json_path.write_text(to_json(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
