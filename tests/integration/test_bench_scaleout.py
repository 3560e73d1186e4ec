"""The bench harness end to end at a tiny size, on PostgreSQL: the flow load with lost
notifications and webhooks measured under it, and the scale-out run (API processes and
worker processes), and POST /v1/orders alone. Only correctness is asserted, never a timing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bench import orders_profile, scaleout
from bench import run as run_mod
from bench.postgres import find_server

pytestmark = pytest.mark.postgres_only


@pytest.fixture
async def bench_pg(backend: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A database name for the bench on the tests' PostgreSQL, dropped afterwards."""
    url = os.environ.get("TUITION_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs TUITION_TEST_DATABASE_URL (PostgreSQL)")
    monkeypatch.setenv("BENCH_PG_URL", url)
    name = f"tuition_bench_t{os.getpid()}"
    yield name
    server = await find_server()
    try:
        await server.drop(name)
    finally:
        server.close()


async def test_the_flow_bench_recovers_lost_notifications_and_delivers_webhooks(
    bench_pg: str, tmp_path: Path
) -> None:
    result = await run_mod.run(
        run_mod.Options(
            duration=6,
            warmup=1,
            users=3,
            api_workers=1,
            creators=2,
            pgbench_seconds=0,
            lost_every=1.0,
            recover_after=1.0,
            workdir=tmp_path,
            database=bench_pg,
        )
    )
    failed = [f"{c.name}: {c.detail}" for c in result.checks if not c.ok]
    assert not failed
    assert result.recovery is not None
    assert result.recovery.probes >= 1
    assert result.recovery.recovered == result.recovery.probes
    assert result.webhook is not None
    assert result.webhook.events > 0
    assert result.webhook.delivered == result.webhook.events


async def test_the_scaleout_run_measures_each_process_count(bench_pg: None, tmp_path: Path) -> None:
    result = await scaleout.run(
        scaleout.Options(
            api=(1, 2),
            workers=(2,),
            duration=3,
            warmup=1,
            users=4,
            creators=2,
            backlog_flows=8,
            backlog_lost=4,
            backlog_users=2,
            limit_seconds=0,
            workdir=tmp_path,
            database=bench_pg,
        )
    )
    assert [(a.processes, a.ok, a.failed) for a in result.api] == [(1, True, []), (2, True, [])]
    assert all(a.flows_per_s > 0 for a in result.api)
    [w] = result.workers
    assert (w.processes, w.ok, w.failed) == (2, True, [])
    assert w.recovered == w.lost == 4
    assert w.delivered == w.events > 0
    assert "| 2 |" in scaleout.markdown(result)


async def test_the_orders_profile_loads_post_orders_alone(bench_pg: str, tmp_path: Path) -> None:
    result = await orders_profile.run(
        orders_profile.Options(
            duration=2,
            warmup=1,
            users=2,
            creators=2,
            profile=False,
            database=bench_pg,
            workdir=tmp_path,
        )
    )
    assert result.orders > 0
    assert result.errors == []
    assert "POST /v1/orders" in orders_profile.markdown(result)
