"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tuition.container import Modes

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
    report: dict[str, str] = {"status": "ok"}
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
    return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)
