"""Run as ``python -m tests.integration.secret_probe DATABASE_URL``: makes database
statements fail while secrets are bound parameters, logging each failure the way the
server and the worker do. test_log_secrets.py scans what it printed."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import replace

import httpx
from sqlalchemy import text

from tuition.app import create_app
from tuition.channels.registry import ChannelRegistry
from tuition.clock import SystemClock
from tuition.config import load_settings
from tuition.logs import configure_logging, get_logger
from tuition.services import api_keys, webhooks
from tuition.services.api_keys import hash_key
from tuition.store import schema
from tuition.store.db import create_engine
from tuition.store.uow import UnitOfWork

# Canaries that look like nothing the log masking knows, so only the database layer
# (hide_parameters, scrubbed driver errors) keeps them out of the logs ...
PLAIN_CANARY = "canary4c1f9e"
# ... and real-looking secrets, which must not appear even partly.
TOKEN = "Zq8wLeakCanaryToken0123456789abcdefABCDEF"
WEBHOOK_SECRET = f"whsec_{TOKEN}"
API_KEY = f"sk_test_{TOKEN}"

log = get_logger("tuition.probe")


async def main(url: str) -> None:
    configure_logging("info", json=True)
    engine = create_engine(url)
    await schema.upgrade(engine)
    postgres = engine.dialect.name == "postgresql"
    clock = SystemClock()
    webhooks.secrets.token_urlsafe = lambda _n=32: TOKEN  # type: ignore[assignment]
    api_keys.secrets.token_urlsafe = lambda _n=32: TOKEN  # type: ignore[assignment]

    # 1. The API: create a key and an endpoint, then make the next endpoint insert fail.
    key = await api_keys.create_key(UnitOfWork(engine), name="probe", mode="test", clock=clock)
    assert key.secret == API_KEY
    app = create_app(
        load_settings(database_url=url),
        engine=engine,
        test_engine=engine,
        registry=ChannelRegistry(),
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        body = {"url": "https://platform.example/hooks", "events": ["*"]}
        assert (await c.post("/v1/webhook_endpoints", json=body)).status_code == 201
        async with engine.begin() as conn:
            if postgres:  # DETAIL: Failing row contains (…, whsec_…, …)
                await conn.execute(
                    text(
                        "ALTER TABLE webhook_endpoints ADD CONSTRAINT sabotage "
                        "CHECK (secret NOT LIKE 'whsec_%') NOT VALID"
                    )
                )
            else:
                await conn.execute(
                    text(
                        "CREATE TRIGGER sabotage BEFORE INSERT ON webhook_endpoints "
                        "BEGIN SELECT RAISE(ABORT, 'sabotaged'); END"
                    )
                )
        failed = await c.post("/v1/webhook_endpoints", json=body)
        assert failed.status_code == 500, failed.text
        print("api answered", failed.status_code, file=sys.stderr)

    # 2. A unique violation with the secret bound (the worker logs failures like this).
    uow = UnitOfWork(engine)
    async with uow:
        [existing] = await uow.work.endpoints()
    try:
        async with uow:
            await uow.work.add_endpoint(replace(existing, secret=f"whsec_{PLAIN_CANARY}"))
            await uow.commit()
    except Exception:
        log.exception("worker_iteration_failed")

    # 3. Statement errors with secrets bound, logged through structlog and through the
    #    standard library (as uvicorn and asyncio log what escapes them).
    for value in (PLAIN_CANARY, WEBHOOK_SECRET, hash_key(API_KEY)):
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT CAST(:v AS INTEGER) + 1"), {"v": value})
                await conn.execute(text("INSERT INTO api_keys (id) VALUES (:v)"), {"v": value})
        except Exception:
            log.exception("unhandled_error")
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(sys.argv[1]))
