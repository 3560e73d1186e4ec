"""What buyers and operators see: the hosted checkout page and the admin console.

``routers`` are plain FastAPI routers; :func:`mount` includes them once into an app.
Both load the pages' modules on first use, so importing ``tuition.web.links`` (the API
does, for ``checkout_url``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

_MARKER = "/pay/{order_id}/status"


def _routers() -> list[APIRouter]:
    from tuition.web import admin, assets, checkout, checkout_agreement

    return [assets.router, checkout.router, checkout_agreement.router, *admin.routers]


def __getattr__(name: str) -> list[APIRouter]:
    if name == "routers":
        return _routers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install(app: FastAPI) -> None:
    """The console's own answers: a refused role is a 403 page, not a JSON envelope."""
    from tuition.web.admin_roles import OperatorRefused, refused_page

    app.add_exception_handler(OperatorRefused, refused_page)


def mount(app: FastAPI) -> None:
    """Include the web routers into ``app``; a second call changes nothing."""
    install(app)
    ours = _routers()
    for route in app.router.routes:
        # Included by hand or by an earlier call: FastAPI keeps either the routes
        # themselves or (newer versions) a wrapper holding the original router.
        if getattr(route, "path", None) == _MARKER or any(
            getattr(route, "original_router", None) is router for router in ours
        ):
            return
    for router in ours:
        app.include_router(router)
