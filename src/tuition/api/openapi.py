"""The OpenAPI document states the whole contract, not only the happy path.

FastAPI derives paths and bodies from the routes; what it cannot see is added here, once,
for every route: the bearer scheme and which routes need it, the error envelope's schema
on every error answer, and the answers every route can give because of what runs before
it (400 for a NUL in the URL, 401 without a key, 403 beyond a restricted key's scopes,
408/413 for a request body that is late or too large). A client generator, or a fuzzer
checking for undocumented status codes, then sees every status the server can answer with.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message", "param"],
            "properties": {
                "type": {
                    "type": "string",
                    "examples": ["invalid_request_error"],
                    "description": "invalid_request_error, authentication_error, "
                    "conflict_error, idempotency_error, channel_error or api_error",
                },
                "code": {"type": "string", "examples": ["validation_failed"]},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"], "description": "The offending field"},
            },
        }
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key, `sk_test_…` or `sk_live_…`",
}
_COMMON = {400: "Bad request, e.g. malformed JSON or a NUL character in the URL"}
_AUTHENTICATED = {
    401: "Missing, unknown or revoked API key",
    403: "A restricted API key whose scopes do not cover this route (docs/api.md)",
}
_WITH_BODY = {
    408: "The request body did not arrive in time",
    413: "The request body is over the size limit",
}
_BODY_METHODS = frozenset({"post", "put", "patch"})
_NOTIFY = "/v1/notify/"


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            complete(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components.setdefault("securitySchemes", {})["bearer"] = _BEARER
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            _complete_operation(path, method, operation)


def _complete_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    extra = dict(_COMMON)
    if path.startswith("/v1/") and not path.startswith(_NOTIFY):
        operation["security"] = [{"bearer": []}]
        extra |= _AUTHENTICATED
    if method in _BODY_METHODS:
        extra |= _WITH_BODY
    for status, description in extra.items():
        responses.setdefault(str(status), {"description": description})
    if path.startswith(_NOTIFY):
        return  # answered in each channel's own ACK format, not the envelope
    for code, response in responses.items():
        if code[0] in "45":  # FastAPI's own 422 shape (HTTPValidationError) is not ours
            response["content"] = {"application/json": {"schema": _ERROR_REF}}
