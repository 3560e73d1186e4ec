"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tuition.container import Modes
from tuition.services.channel_choice import breaker_states

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The process can serve: both modes' stores answer",
    responses={503: {"description": "A store does not answer"}},
)
async def readyz(request: Request) -> JSONResponse:
    modes: Modes = request.app.state.modes
    report: dict[str, object] = {"status": "ok"}
    for container in modes.distinct():
        name = "database" if container is modes.live else "test_mode_database"
        try:
            async with container.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not ready", reported, not raised
            report["status"] = "unavailable"
            report[name] = f"{type(exc).__name__}: {exc}"[:300]
        else:
            report[name] = "ok"
    if report["status"] != "ok":
        return JSONResponse(report, status_code=503)
    # Channel circuit breakers: an open one is skipped by channel choice, not a failure
    # of this process, so it is detail, never a 503 (live mode's, and test mode's apart).
    live = modes.live
    report["channels"] = await breaker_states(live.uow(), now=live.clock.now())
    if modes.test is not live:
        test = modes.test
        report["test_mode_channels"] = await breaker_states(test.uow(), now=test.clock.now())
    return JSONResponse(report)
