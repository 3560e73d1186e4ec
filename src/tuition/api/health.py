"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tuition.api.deps import ContainerDep
from tuition.services.channel_choice import breaker_states

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The process can serve: the database answers",
    responses={503: {"description": "The database does not answer"}},
)
async def readyz(container: ContainerDep) -> JSONResponse:
    try:
        async with container.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means "not ready", reported, not raised
        return JSONResponse(
            {"status": "unavailable", "database": f"{type(exc).__name__}: {exc}"[:300]},
            status_code=503,
        )
    # Channel circuit breakers: an open one is skipped by channel choice, not a failure
    # of this process, so it is detail, never a 503.
    breakers = await breaker_states(container.uow(), now=container.clock.now())
    return JSONResponse({"status": "ok", "database": "ok", "channels": breakers})
