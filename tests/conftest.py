from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.databases import PostgresDatabases, SqliteDatabases
from tuition.app import create_app
from tuition.channels.registry import ChannelRegistry
from tuition.clock import FrozenClock
from tuition.config import load_settings
from tuition.services.api_keys import create_key
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def sqlite_databases() -> Iterator[SqliteDatabases]:
    dbs = SqliteDatabases()
    yield dbs
    dbs.close()


@pytest.fixture(scope="session")
def postgresql_databases() -> Iterator[PostgresDatabases]:
    dbs = PostgresDatabases()
    yield dbs
    dbs.close()


@pytest.fixture(params=ENGINES)
def backend(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("postgres_only")
    if marker and request.param != "postgresql":
        pytest.skip("PostgreSQL-only test (real row-level concurrency)")
    return str(request.param)


@pytest.fixture
async def db_url(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    dbs = request.getfixturevalue(f"{backend}_databases")
    async with dbs.fresh() as url:
        yield url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWork:
    return UnitOfWork(engine)


@pytest.fixture
def settings(db_url: str):  # type: ignore[no-untyped-def]
    return load_settings(database_url=db_url)


@pytest.fixture
def app(settings, engine: AsyncEngine, clock: FrozenClock):  # type: ignore[no-untyped-def]
    # Channels are added per test (see tests/integration/gateway.py), never from settings.
    # Both modes share the test's store (tests of their separation build two stores).
    return create_app(
        settings, engine=engine, test_engine=engine, clock=clock, registry=ChannelRegistry()
    )


@pytest.fixture
async def api_key(engine: AsyncEngine, clock: FrozenClock) -> str:
    created = await create_key(UnitOfWork(engine), name="tests", mode="test", clock=clock)
    return created.secret


@pytest.fixture
async def client(app, api_key: str) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://tuition.test",
        headers={"Authorization": f"Bearer {api_key}"},
    ) as c:
        yield c


@pytest.fixture
async def anon_client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tuition.test") as c:
        yield c
