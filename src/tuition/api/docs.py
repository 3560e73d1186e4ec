"""The API's own documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc),
served with everything they load from this deployment: they render offline.

The Swagger UI and ReDoc bundles come from the ``fastapi-offline`` package, which ships
them (Swagger UI: Apache-2.0; ReDoc: MIT; the package: MIT); we serve its files under
``/docs/assets/`` and its favicon as ``/favicon.ico``, and build the pages with
FastAPI's own helpers pointed at them (no Google Fonts, no CDN).
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

STATIC = Path(fastapi_offline.__file__).parent / "static"
ASSETS = "/docs/assets"
_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
_CACHE = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}


def install(app: FastAPI) -> None:
    """Add the pages to ``app``, which was made with ``docs_url=None, redoc_url=None``."""
    router = APIRouter(include_in_schema=False)
    title = app.title

    @router.get("/docs")
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}/favicon.ico",
        )

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}/favicon.ico",
            with_google_fonts=False,
        )

    @router.get(ASSETS + "/{name}")
    async def asset(name: str) -> Response:
        media_type = _TYPES.get(name)
        if media_type is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(STATIC / name, media_type=media_type, headers=_CACHE)

    @router.get("/favicon.ico")
    async def favicon() -> Response:
        return FileResponse(STATIC / "favicon.png", media_type="image/png", headers=_CACHE)

    app.include_router(router)
