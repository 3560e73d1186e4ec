"""``/docs`` and ``/redoc`` load nothing from the network: every script, stylesheet and
icon they name is served by Tuition itself."""

from __future__ import annotations

import re

import httpx
import pytest


@pytest.mark.parametrize(
    ("page", "bundle"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
async def test_the_api_docs_name_only_local_assets_and_serve_them(
    anon_client: httpx.AsyncClient, page: str, bundle: str
) -> None:
    html = await anon_client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://", html.text.replace("http://tuition.test", "")), html.text
    assert "fonts.googleapis" not in html.text
    urls = re.findall(r'(?:src|href)="([^"]+)"', html.text)
    assert f"/docs/assets/{bundle}" in urls
    for url in urls:
        served = await anon_client.get(url)
        assert served.status_code == 200, url
        assert len(served.content) > 1000, url
    assert (await anon_client.get("/openapi.json")).json()["info"]["title"] == "Tuition"


async def test_the_favicon_is_served(anon_client: httpx.AsyncClient) -> None:
    icon = await anon_client.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/png"
    assert icon.content.startswith(b"\x89PNG")
    assert (await anon_client.get("/docs/assets/nothing.js")).status_code == 404
