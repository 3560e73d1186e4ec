"""Router factory for the authenticated, idempotent ``/v1`` API."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tuition.api.deps import current_api_key
from tuition.api.idempotency import IdempotentRoute

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"description": "Bad request: the envelope names the field in `param`"},
    401: {"description": "Missing, unknown or revoked API key"},
    404: {"description": "No such resource"},
    409: {"description": "Conflicts with the resource's state"},
    422: {"description": "A field is invalid, or the Idempotency-Key was reused"},
}


def v1_router(*, tags: list[str]) -> APIRouter:
    """A ``/v1`` router: every route needs an API key, every POST honours Idempotency-Key."""
    return APIRouter(
        prefix="/v1",
        tags=list(tags),
        route_class=IdempotentRoute,
        dependencies=[Depends(current_api_key)],
        responses=ERROR_RESPONSES,
    )
