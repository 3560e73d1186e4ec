"""Webhook URLs over the API on both engines: bad ones are 422 naming ``url``, never 500,
internal targets are refused at registration and again at delivery, answers are capped."""

from __future__ import annotations

import ipaddress
import random
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.shop import post
from tuition.clock import FrozenClock
from tuition.config import Settings, load_settings
from tuition.services.webhook_targets import IPAddress
from tuition.store.uow import UnitOfWork
from tuition.worker.runner import Worker, WorkerConfig

ALLOWED = "hooks.dev.test"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return load_settings(database_url=db_url, webhook_allowed_hosts=[ALLOWED, "127.0.0.1"])


BAD_URLS: list[tuple[str, str | None]] = [
    ("https://platform.example/\x00", None),  # any 422 naming url: NUL is refused everywhere
    ("https://platform.example/hooks\r\nX-Evil: 1", "url_invalid"),
    ("https://plat\x7fform.example/", "url_invalid"),
    ("https://user:secret@platform.example/hooks", "url_invalid"),
    ("http://169.254.169.254/latest/meta-data/iam/", "url_forbidden"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "url_forbidden"),
    ("http://10.1.2.3:9200/_search", "url_forbidden"),
    ("http://localhost:5432/", "url_forbidden"),
    ("http://100.100.100.200/latest/meta-data/", "url_forbidden"),
]


@pytest.mark.parametrize(("url", "code"), BAD_URLS)
async def test_a_bad_or_internal_webhook_url_is_a_422_naming_url_on_create_and_update(
    client: httpx.AsyncClient, url: str, code: str | None
) -> None:
    created = await client.post("/v1/webhook_endpoints", json={"url": url, "events": ["*"]})
    assert created.status_code == 422, created.text
    assert created.json()["error"]["param"] == "url"
    assert code is None or created.json()["error"]["code"] == code
    assert (await client.get("/v1/webhook_endpoints")).json()["data"] == []

    good = await post(
        client, "/v1/webhook_endpoints", {"url": "https://platform.example/h", "events": ["*"]}
    )
    patched = await client.patch(f"/v1/webhook_endpoints/{good['id']}", json={"url": url})
    assert patched.status_code == 422, patched.text
    assert patched.json()["error"]["param"] == "url"
    [kept] = (await client.get("/v1/webhook_endpoints")).json()["data"]
    assert kept["url"] == "https://platform.example/h"


async def test_hosts_in_the_allow_list_may_be_local(client: httpx.AsyncClient) -> None:
    for url in (f"http://{ALLOWED}:8080/hooks", "http://127.0.0.1:9000/hooks"):
        await post(client, "/v1/webhook_endpoints", {"url": url, "events": ["*"]})


def _resolving(address: str):  # type: ignore[no-untyped-def]
    async def resolve(_host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address)]

    return resolve


async def _deliver_once(
    app: FastAPI, uow: UnitOfWork, clock: FrozenClock, answer: str, resolved_to: str
) -> tuple[list[httpx.Request], dict[str, object]]:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500, text=answer)

    async with uow:
        event_id = await uow.events.emit("order.paid", "ord_1", {"n": 1}, at=clock.now())
        await uow.commit()
    worker = Worker(
        app.state.modes.live,
        WorkerConfig(sweep_interval=timedelta(0)),
        transport=httpx.MockTransport(handle),
        rng=random.Random(1),
        resolver=_resolving(resolved_to),
    )
    try:
        await worker.run_once()
    finally:
        await worker.close()
    return sent, {"event_id": event_id}


async def test_a_host_that_resolves_to_an_internal_address_is_never_sent_to(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await post(
        client, "/v1/webhook_endpoints", {"url": "https://rebind.example/h", "events": ["*"]}
    )
    sent, ids = await _deliver_once(app, uow, clock, "secret internal data", "169.254.169.254")
    assert sent == []
    event = (await client.get(f"/v1/events/{ids['event_id']}")).json()
    [attempt] = event["deliveries"][0]["history"]
    assert attempt["status_code"] is None
    assert attempt["response_excerpt"] is None
    assert attempt["error"].startswith("RefusedTarget: rebind.example resolves to a non-public")
    assert event["deliveries"][0]["status"] == "pending"  # retried: DNS may be fixed


async def test_only_the_first_200_characters_of_an_answer_are_kept(
    app: FastAPI, client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    await post(
        client, "/v1/webhook_endpoints", {"url": "https://platform.example/h", "events": ["*"]}
    )
    sent, ids = await _deliver_once(app, uow, clock, "x" * 199 + "yz" + "!" * 100_000, "8.8.8.8")
    assert [r.url.host for r in sent] == ["8.8.8.8"]
    event = (await client.get(f"/v1/events/{ids['event_id']}")).json()
    [attempt] = event["deliveries"][0]["history"]
    assert attempt["status_code"] == 500
    assert attempt["response_excerpt"] == "x" * 199 + "y"
