"""``/assets/{name}``: the pages' stylesheet and script, from this package (no CDN)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from tuition.web.pages import STATIC

router = APIRouter(include_in_schema=False)

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_FILES = {p.name: p for p in STATIC.iterdir() if p.suffix in _TYPES}


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    path = _FILES.get(name)
    if path is None:
        return Response("not found", status_code=404, media_type="text/plain")
    # URLs carry ?v=<content hash>, so a changed file has a new URL: cache for long.
    return FileResponse(
        path,
        media_type=_TYPES[path.suffix],
        headers={
            "Cache-Control": "public, max-age=31536000, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )
