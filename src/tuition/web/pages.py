"""Rendering HTML pages: one Jinja2 environment per language, and the headers every page
carries (no caching of pages with signed links or sessions, no referrer, a strict CSP:
scripts and styles come from /assets only, so nothing from the network is ever loaded)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from tuition.logs import mask
from tuition.web.i18n import (
    COOKIE,
    HTML_LANG,
    LANGUAGE_NAMES,
    LOCALES,
    Formatter,
    chosen_explicitly,
    negotiate,
    translations,
)

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/assets"

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Checkout links carry their signature: never hand them to the next site.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@lru_cache(maxsize=len(LOCALES))
def environment(locale: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_translations(translations(locale), newstyle=True)  # type: ignore[attr-defined]
    fmt = Formatter(locale)
    env.filters["money"] = fmt.money
    env.filters["number"] = fmt.number
    env.filters["percent"] = fmt.percent
    env.filters["when"] = _when(fmt)
    env.filters["mask"] = mask
    env.globals.update(
        locale=locale, html_lang=HTML_LANG[locale], assets=ASSETS_PATH, asset_version=_version()
    )
    return env


def _when(fmt: Formatter) -> Any:
    """The ``when`` filter: times in the platform's business time zone (the app's
    settings), UTC where a page is rendered without an app."""

    @pass_context
    def when(context: Context, moment: datetime | None, style: str = "medium") -> str:
        return fmt.when(moment, style, zone=page_zone(context.get("request")))

    return when


def page_zone(request: Request | None) -> tzinfo:
    modes = getattr(request.app.state, "modes", None) if request is not None else None
    return modes.live.settings.zone if modes is not None else UTC  # both modes share it


@lru_cache(maxsize=1)
def _version() -> str:
    """Changes whenever a static file does, so browsers may cache assets for long."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def language_links(request: Request, locale: str) -> list[dict[str, Any]]:
    return [
        {
            "locale": other,
            "lang": HTML_LANG[other],
            "name": LANGUAGE_NAMES[other],
            "url": str(request.url.include_query_params(lang=HTML_LANG[other])),
            "current": other == locale,
        }
        for other in LOCALES
    ]


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    locale: str | None = None,
) -> HTMLResponse:
    locale = locale or negotiate(request)
    html = (
        environment(locale)
        .get_template(template)
        .render(request=request, languages=language_links(request, locale), **context)
    )
    response = HTMLResponse(html, status_code=status_code)
    secure(response)
    remember_language(request, response)
    return response


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def remember_language(request: Request, response: Response) -> None:
    chosen = chosen_explicitly(request)
    if chosen is not None:
        response.set_cookie(
            COOKIE, chosen, max_age=365 * 24 * 3600, httponly=True, samesite="lax", path="/"
        )
