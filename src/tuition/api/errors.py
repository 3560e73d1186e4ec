"""One error envelope, ``{"error": {type, code, message, param}}``, for every 4xx/5xx."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tuition.domain.errors import TuitionError

_HTTP_CODES = {
    404: ("invalid_request_error", "route_not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
}


def envelope(
    status: int, type_: str, code: str, message: str, param: str | None = None
) -> JSONResponse:
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status)


def _param(loc: tuple[int | str, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or None


async def _tuition_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TuitionError)
    return envelope(exc.status, exc.type, exc.code, exc.message, exc.param)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return envelope(
            400,
            "invalid_request_error",
            "malformed_json",
            "the request body is not valid JSON: "
            f"{first.get('ctx', {}).get('error', 'parse error')}",
        )
    param = _param(tuple(first.get("loc", ())))
    message = first.get("msg", "invalid value")
    if param:
        message = f"{param}: {message}"
    return envelope(422, "invalid_request_error", "validation_failed", message, param)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    type_, code = _HTTP_CODES.get(exc.status_code, ("invalid_request_error", "http_error"))
    response = envelope(exc.status_code, type_, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install(app: FastAPI) -> None:
    app.add_exception_handler(TuitionError, _tuition_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
