"""Browser tests: Playwright driving Debian's Chromium against real servers.

Playwright's sync API runs an event loop on the test thread while a browser is open, so
the browser (and the server) live per module and these modules hold sync tests only.
Without Chromium (``/usr/bin/chromium``) or the ``playwright`` package these tests are
skipped with the reason; with ``CI=true`` they fail instead, so CI cannot pass them by
accident. Screenshots land in ``tests/e2e/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.server import Servers, start

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install 'playwright>=1.45')"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium fonts-wqy-microhei)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires the browser tests to run, but {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def servers(browser: Any) -> Iterator[Servers]:
    running = start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def catalog(servers: Servers) -> dict[str, str]:
    """A creator, two courses and coupons, made through the API."""
    with servers.api() as api:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = api.post(path, json=body)
            assert response.status_code in (200, 201), response.text
            return response.json()  # type: ignore[no-any-return]

        creator = post("/v1/creators", {"name": "李老师", "default_revenue_share": "0.7"})
        ids = {"creator": creator["id"]}
        for name, title, price in [
            ("python", "Python 数据分析实战", 19900),
            ("writing", "高效写作 30 讲", 9900),
            ("design", "Design Systems in Practice", 29900),
        ]:
            body = {
                "creator_id": creator["id"],
                "title": title,
                "kind": "course",
                "prices": {"CNY": price},
            }
            ids[name] = post("/v1/products", body)["id"]
        post("/v1/coupons", {"code": "WELCOME20", "percent_off": "0.2"})
        hook = f"{servers.base_url}/e2e/platform-webhooks"
        post("/v1/webhook_endpoints", {"url": hook, "events": ["*"], "description": "the platform"})
        post("/v1/coupons", {"code": "TENOFF", "amount_off": {"CNY": 1000}})
    return ids


class Browsing:
    """One browser context with its pages; records every request's origin and every
    console error, so a test can prove nothing came from the network or broke."""

    def __init__(
        self,
        browser: Any,
        servers: Servers,
        *,
        locale: str,
        viewport: dict[str, int],
        user_agent: str | None = None,
    ):
        extra = {} if user_agent is None else {"user_agent": user_agent}
        self.context = browser.new_context(locale=locale, viewport=viewport, **extra)
        self.context.set_default_timeout(10_000)
        self.allowed = {urlsplit(servers.base_url).netloc}
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", self._request)

    def _request(self, request: Any) -> None:
        if request.url.startswith(("data:", "about:")):
            return
        if urlsplit(request.url).netloc not in self.allowed:
            self.foreign.append(request.url)

    def _console(self, message: Any) -> None:
        # A 401 or 404 page is expected in some tests; CSP refusals and script errors never.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def page(self) -> Any:
        page = self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        return page

    def close(self) -> None:
        self.context.close()
        assert self.foreign == [], f"requests left the machine: {self.foreign}"
        assert self.errors == [], f"errors in the page console: {self.errors}"


@pytest.fixture
def browsing(browser: Any, servers: Servers) -> Iterator[Any]:
    opened: list[Browsing] = []

    def open_(
        locale: str = "en-US", viewport: dict[str, int] = DESKTOP, user_agent: str | None = None
    ) -> Browsing:
        b = Browsing(browser, servers, locale=locale, viewport=viewport, user_agent=user_agent)
        opened.append(b)
        return b

    yield open_
    for b in opened:
        b.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
