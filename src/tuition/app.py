"""Composition root: builds the engine, channels, simulator, worker and the FastAPI app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tuition.api import docs, errors, health, openapi
from tuition.api.middleware import RequestContextMiddleware
from tuition.channels.registry import ChannelRegistry
from tuition.channels.setup import build_registry, simulator_key
from tuition.clock import Clock, SystemClock
from tuition.config import Settings
from tuition.container import Container, Modes
from tuition.domain.modes import Mode
from tuition.domain.money import register_virtual_unit
from tuition.simulator.app import Simulator, create_simulator
from tuition.simulator.config import SimulatorConfig
from tuition.store.db import create_engine
from tuition.web.modes import page_mode

API_DESCRIPTION = """
Tuition takes payments, bills and shares revenue for knowledge-paid platforms.

Authenticate with `Authorization: Bearer sk_test_…`. Send `Idempotency-Key` on every
POST so that a retry never charges or creates twice. Errors always come as
`{"error": {"type", "code", "message", "param"}}`.
"""


@dataclass
class Runtime:
    """What a process runs on: a container per mode, and the simulator in demo mode."""

    modes: Modes
    simulator: Simulator | None = None
    owned_engines: tuple[AsyncEngine, ...] = ()

    @property
    def container(self) -> Container:
        """The live container (operators, console sessions and the CLI's default)."""
        return self.modes.live

    async def aclose(self) -> None:
        for container in self.modes.distinct():
            for channel in container.registry:
                close = getattr(channel, "aclose", None)
                if close is not None:
                    await close()
        if self.simulator is not None:
            await self.simulator.aclose()
        for engine in self.owned_engines:
            await engine.dispose()


def build_runtime(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    clock: Clock | None = None,
    registry: ChannelRegistry | None = None,
    test_engine: AsyncEngine | None = None,
    test_registry: ChannelRegistry | None = None,
    host_simulator: bool = True,
) -> Runtime:
    """A container per mode, each on its own store with its own channels.

    ``engine``/``registry`` are live mode's and ``test_engine``/``test_registry`` test
    mode's; what is not given is built from ``settings``. Given the same engine (and
    registry) for both, both modes share one container: most tests run that way, and
    tests of the separation give two. ``host_simulator=False`` (a worker process)
    reaches the simulator over HTTP.
    """
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
    owned: list[AsyncEngine] = []

    def store(mode: Mode, given: AsyncEngine | None) -> AsyncEngine:
        if given is not None:
            return given
        url, schema = settings.store_url(mode)
        made = create_engine(url, pool_size=settings.db_pool_size, schema=schema)
        owned.append(made)
        return made

    live_engine = store("live", engine)
    if test_engine is live_engine and test_registry in (None, registry):
        # One store for both modes (tests): test mode's channels, sandbox included.
        shared = Container(
            settings=settings,
            engine=live_engine,
            clock=clock,
            registry=registry
            if registry is not None
            else build_registry(settings, clock=clock, simulator=simulator, mode="test"),
        )
        return Runtime(Modes(shared, shared), simulator, tuple(owned))
    live = Container(
        settings=settings,
        engine=live_engine,
        clock=clock,
        registry=registry
        if registry is not None
        else build_registry(settings, clock=clock, simulator=simulator, mode="live"),
    )
    test = Container(
        settings=settings,
        engine=store("test", test_engine),
        clock=clock,
        registry=test_registry
        if test_registry is not None
        else build_registry(settings, clock=clock, simulator=simulator, mode="test"),
        mode="test",
    )
    return Runtime(Modes(live, test), simulator, tuple(owned))


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
    test_engine: AsyncEngine | None = None,
    test_registry: ChannelRegistry | None = None,
    run_worker: bool | None = None,
) -> FastAPI:
    runtime = build_runtime(
        settings,
        engine=engine,
        clock=clock,
        registry=registry,
        test_engine=test_engine,
        test_registry=test_registry,
    )
    worker_wanted = settings.runs_embedded_worker if run_worker is None else run_worker

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        workers = []
        if worker_wanted:
            from tuition.worker.runner import Worker

            workers = [Worker(container) for container in runtime.modes.distinct()]
        tasks = [asyncio.create_task(worker.run(stop)) for worker in workers]
        try:
            yield
        finally:
            stop.set()
            for task, worker in zip(tasks, workers, strict=True):
                await task
                await worker.close()
            await runtime.aclose()

    app = FastAPI(
        title="Tuition",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are served offline (api/docs.py)
        redoc_url=None,
    )
    app.state.modes = runtime.modes
    app.state.runtime = runtime
    errors.install(app)
    from tuition import web

    web.install(app)
    openapi.install(app)
    docs.install(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    for router in _feature_routers():
        app.include_router(router)
    for router in _page_routers():
        # A public page reads the store of the mode its order lives in (web/modes.py).
        app.include_router(router, dependencies=[Depends(page_mode)])
    if runtime.simulator is not None:
        app.mount("/simulator", runtime.simulator.app)
    return app


def _feature_routers() -> list[APIRouter]:
    from tuition.api import (
        apple,
        bank_transfers,
        catalog,
        fx_rates,
        history,
        invoices,
        orders,
        partners,
        payees,
        payments,
        payouts,
        promoters,
        receipts,
        reconciliations,
        refunds,
        risk,
        subscriptions,
        wallet,
        webhooks,
    )

    return [
        *apple.routers,  # before payments: /v1/notify/apple before /v1/notify/{channel}
        *bank_transfers.routers,
        *catalog.routers,
        *fx_rates.routers,
        *history.routers,
        *invoices.routers,
        *orders.routers,
        *partners.routers,
        *payees.routers,
        *payments.routers,
        *payouts.routers,
        *promoters.routers,
        *receipts.routers,
        *reconciliations.routers,
        *refunds.routers,
        *risk.routers,
        *subscriptions.routers,
        *wallet.routers,
        *webhooks.routers,
    ]


def _page_routers() -> list[APIRouter]:
    from tuition import web
    from tuition.web import admin_invoices, admin_risk
    from tuition.web import receipts as receipt_pages

    return [*web.routers, *receipt_pages.routers, *admin_invoices.routers, *admin_risk.routers]


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    from tuition.config import get_settings
    from tuition.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    return create_app(settings)
