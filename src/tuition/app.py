"""Composition root: builds the engine, channels, simulator, worker and the FastAPI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.api import errors, health, openapi
from tuition.api.middleware import RequestContextMiddleware
from tuition.channels.registry import ChannelRegistry
from tuition.channels.setup import build_registry, simulator_key
from tuition.clock import Clock, SystemClock
from tuition.config import Settings
from tuition.container import Container
from tuition.domain.money import register_virtual_unit
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.store.db import create_engine

API_DESCRIPTION = """
Tuition takes payments, bills and shares revenue for knowledge-paid platforms.

Authenticate with `Authorization: Bearer sk_test_…`. Send `Idempotency-Key` on every
POST so that a retry never charges or creates twice. Errors always come as
`{"error": {"type", "code", "message", "param"}}`.
"""


@dataclass
class Runtime:
    """What a process runs on: the container, and the simulator in demo mode."""

    container: Container
    simulator: Simulator | None = None
    owns_engine: bool = True

    async def aclose(self) -> None:
        for channel in self.container.registry:
            close = getattr(channel, "aclose", None)
            if close is not None:
                await close()
        if self.simulator is not None:
            await self.simulator.aclose()
        if self.owns_engine:
            await self.container.engine.dispose()


def build_runtime(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
    registry: ChannelRegistry | None = None,
    host_simulator: bool = True,
) -> Runtime:
    """``host_simulator=False`` (a worker process) reaches the simulator over HTTP."""
    register_coins(settings)
    clock = clock or SystemClock()
    simulator = None
    if settings.simulator and host_simulator and registry is None:
        simulator = create_simulator(
            SimulatorConfig(
                merchants={settings.sandbox_app_id: settings.sandbox_secret},
                public_base_url=f"{settings.base_url}/simulator",
                private_key_pem=simulator_key(settings),
                clock=clock,
            )
        )
    container = Container(
        settings=settings,
        engine=engine or create_engine(settings.database_url, pool_size=settings.db_pool_size),
        clock=clock,
        registry=registry
        if registry is not None
        else build_registry(settings, clock=clock, simulator=simulator),
    )
    return Runtime(container, simulator, owns_engine=engine is None)


def register_coins(settings: Settings) -> None:
    """Make the configured coin code a unit prices, orders and wallets accept."""
    coin = settings.coin_unit()
    if coin is not None:
        register_virtual_unit(coin.unit)


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
    registry: ChannelRegistry | None = None,
    run_worker: bool | None = None,
) -> FastAPI:
    runtime = build_runtime(settings, engine=engine, clock=clock, registry=registry)
    worker_wanted = settings.runs_embedded_worker if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if worker_wanted:
            from tuition.worker.runner import Worker

            worker = Worker(runtime.container)
            task = asyncio.create_task(worker.run(stop))
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                await task
                await worker.close()
            await runtime.aclose()

    app = FastAPI(
        title="Tuition",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.container = runtime.container
    app.state.runtime = runtime
    errors.install(app)
    from tuition import web

    web.install(app)
    openapi.install(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    for router in _feature_routers():
        app.include_router(router)
    if runtime.simulator is not None:
        app.mount("/simulator", runtime.simulator.app)
    return app


def _feature_routers() -> list[APIRouter]:
    from tuition import web
    from tuition.api import (
        catalog,
        history,
        invoices,
        orders,
        payees,
        payments,
        payouts,
        receipts,
        reconciliations,
        refunds,
        subscriptions,
        wallet,
        webhooks,
    )
    from tuition.web import admin_invoices
    from tuition.web import receipts as receipt_pages

    return [
        *catalog.routers,
        *history.routers,
        *invoices.routers,
        *orders.routers,
        *payees.routers,
        *payments.routers,
        *payouts.routers,
        *receipts.routers,
        *reconciliations.routers,
        *refunds.routers,
        *subscriptions.routers,
        *wallet.routers,
        *webhooks.routers,
        *web.routers,
        *receipt_pages.routers,
        *admin_invoices.routers,
    ]


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    from tuition.config import get_settings
    from tuition.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)
