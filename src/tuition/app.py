"""Composition root: builds the engine, services and the FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.api import errors, health
from tuition.api.deps import Container
from tuition.api.middleware import RequestContextMiddleware
from tuition.channels.registry import ChannelRegistry
from tuition.clock import Clock, SystemClock
from tuition.config import Settings
from tuition.store.db import create_engine

API_DESCRIPTION = """
Tuition takes payments, bills and shares revenue for knowledge-paid platforms.

Authenticate with `Authorization: Bearer sk_test_…`. Send `Idempotency-Key` on every
POST so that a retry never charges or creates twice. Errors always come as
`{"error": {"type", "code", "message", "param"}}`.
"""


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
    registry: ChannelRegistry | None = None,
) -> FastAPI:
    owns_engine = engine is None
    engine = engine or create_engine(settings.database_url, pool_size=settings.db_pool_size)
    container = Container(
        settings=settings,
        engine=engine,
        clock=clock or SystemClock(),
        registry=registry if registry is not None else ChannelRegistry(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            await engine.dispose()

    app = FastAPI(
        title="Tuition",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.container = container
    errors.install(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    for router in _feature_routers():
        app.include_router(router)
    return app


def _feature_routers() -> list[APIRouter]:
    from tuition.api import catalog, orders, payments, webhooks

    return [*catalog.routers, *orders.routers, *payments.routers, *webhooks.routers]


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    from tuition.config import get_settings
    from tuition.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)
