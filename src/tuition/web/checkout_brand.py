"""The merchant's branding on the checkout page: name, logo, accent colour, support.

Set by ``TUITION_MERCHANT_NAME``, ``TUITION_MERCHANT_LOGO_FILE``,
``TUITION_MERCHANT_ACCENT_COLOUR`` and ``TUITION_MERCHANT_SUPPORT``. The logo and the
colour are served from this deployment (``/assets/brand/logo``, ``/assets/brand/style.css``),
so the page's Content-Security-Policy stays ``'self'`` only and nothing loads from the
network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tuition.api.deps import get_container
from tuition.config import Settings

router = APIRouter(include_in_schema=False)

LOGO_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".svg": "image/svg+xml",
}
_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True, slots=True)
class Brand:
    name: str
    support: str | None
    logo_url: str | None
    css_url: str | None

    @property
    def support_href(self) -> str | None:
        """A link for the support contact when it is an address, a URL or a number."""
        contact = self.support or ""
        if contact.startswith(("https://", "http://")):
            return contact
        if "@" in contact and " " not in contact:
            return f"mailto:{contact}"
        digits = contact.replace(" ", "").replace("-", "")
        if digits.lstrip("+").isdigit():
            return f"tel:{digits}"
        return None


def brand_of(settings: Settings) -> Brand:
    logo = _logo(settings)
    colour = settings.merchant_accent_colour
    return Brand(
        name=settings.merchant_name,
        support=settings.merchant_support or None,
        logo_url=None if logo is None else f"/assets/brand/logo?v={_digest(logo[1])}",
        css_url=None if not colour else f"/assets/brand/style.css?v={colour.lstrip('#').lower()}",
    )


@router.get("/assets/brand/style.css")
async def brand_css(request: Request) -> Response:
    colour = get_container(request).settings.merchant_accent_colour
    css = f":root {{ --brand: {colour}; --brand-dark: {colour}; }}\n" if colour else ""
    return Response(css, media_type="text/css; charset=utf-8", headers=_HEADERS)


@router.get("/assets/brand/logo")
async def brand_logo(request: Request) -> Response:
    logo = _logo(get_container(request).settings)
    if logo is None:
        return Response("not found", status_code=404, media_type="text/plain")
    media_type, content = logo
    return Response(content, media_type=media_type, headers=_HEADERS)


def _logo(settings: Settings) -> tuple[str, bytes] | None:
    name = settings.merchant_logo_file
    media_type = LOGO_TYPES.get(Path(name).suffix.lower()) if name else None
    if media_type is None:
        return None
    try:
        return media_type, Path(name).read_bytes()
    except OSError:
        return None


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:12]
