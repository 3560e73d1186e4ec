"""The API skeleton: auth, the error envelope, request ids and Idempotency-Key."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from tuition.api.routing import v1_router
from tuition.clock import FrozenClock
from tuition.services.api_keys import create_key, list_keys, revoke_key
from tuition.store.uow import UnitOfWork


class Echo(BaseModel):
    text: str
    count: int = 1


calls: list[str] = []


def _mount_probe(app: FastAPI, delay: float = 0.0) -> None:
    router = v1_router(tags=["probe"])

    @router.post("/probe", status_code=201)
    async def probe(body: Echo) -> dict[str, object]:
        calls.append(body.text)
        await asyncio.sleep(delay)
        if body.text == "crash":
            raise RuntimeError("boom")
        return {"text": body.text, "n": len(calls)}

    app.include_router(router)


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


async def test_healthz_and_readyz_answer_without_a_key(anon_client: httpx.AsyncClient) -> None:
    assert (await anon_client.get("/healthz")).json() == {"status": "ok"}
    ready = await anon_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


async def test_every_response_carries_a_request_id(anon_client: httpx.AsyncClient) -> None:
    response = await anon_client.get("/healthz")
    assert response.headers["request-id"].startswith("req_")
    echoed = await anon_client.get("/healthz", headers={"Request-Id": "abc-123"})
    assert echoed.headers["request-id"] == "abc-123"


async def test_openapi_docs_are_served(anon_client: httpx.AsyncClient) -> None:
    assert (await anon_client.get("/docs")).status_code == 200
    assert (await anon_client.get("/openapi.json")).json()["info"]["title"] == "Tuition"


async def test_missing_key_is_refused_with_401(
    app: FastAPI, anon_client: httpx.AsyncClient
) -> None:
    _mount_probe(app)
    response = await anon_client.post("/v1/probe", json={"text": "hi"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_missing"
    assert calls == []


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Bearer sk_test_nope", "invalid_api_key"),
        ("Bearer pk_live_x", "invalid_api_key"),
        ("Basic abc", "api_key_missing"),
        ("Bearer ", "api_key_missing"),
    ],
)
async def test_unknown_or_malformed_key_is_refused_with_401(
    app: FastAPI, anon_client: httpx.AsyncClient, header: str, code: str
) -> None:
    _mount_probe(app)
    response = await anon_client.post(
        "/v1/probe", json={"text": "hi"}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    body = response.json()["error"]
    assert body["type"] == "authentication_error"
    assert body["code"] == code
    assert calls == []


async def test_revoked_key_is_refused_with_401(
    app: FastAPI, anon_client: httpx.AsyncClient, uow: UnitOfWork, clock: FrozenClock
) -> None:
    _mount_probe(app)
    created = await create_key(uow, name="old", mode="live", clock=clock)
    assert created.secret.startswith("sk_live_")
    headers = {"Authorization": f"Bearer {created.secret}"}
    assert (
        await anon_client.post("/v1/probe", json={"text": "a"}, headers=headers)
    ).status_code == 201
    await revoke_key(uow, created.record.id, clock=clock)
    response = await anon_client.post("/v1/probe", json={"text": "b"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_revoked"


async def test_keys_are_stored_only_as_hashes(uow: UnitOfWork, clock: FrozenClock) -> None:
    created = await create_key(uow, name="ci", mode="test", clock=clock)
    async with uow:
        from sqlalchemy import select

        from tuition.store.tables import api_keys

        rows = (await uow.conn.execute(select(api_keys))).mappings().all()
    assert all(created.secret not in str(dict(row)) for row in rows)
    listed = await list_keys(uow)
    assert [k.id for k in listed if k.name == "ci"] == [created.record.id]


async def test_malformed_json_gets_the_error_envelope(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _mount_probe(app)
    response = await client.post(
        "/v1/probe", content=b'{"text": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
    assert response.headers["request-id"]


async def test_validation_error_names_the_field(app: FastAPI, client: httpx.AsyncClient) -> None:
    _mount_probe(app)
    response = await client.post("/v1/probe", json={"text": "x", "count": "many"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["param"] == "count"


async def test_unknown_route_gets_the_error_envelope(anon_client: httpx.AsyncClient) -> None:
    response = await anon_client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "route_not_found"


async def test_unhandled_error_is_a_500_envelope_with_request_id(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _mount_probe(app)
    response = await client.post("/v1/probe", json={"text": "crash"})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "api_error"
    assert response.headers["request-id"] in error["message"]


async def test_same_key_same_body_replays_without_running_again(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _mount_probe(app)
    headers = {"Idempotency-Key": "k-1"}
    first = await client.post("/v1/probe", json={"text": "a", "count": 1}, headers=headers)
    # Same JSON, different key order and spacing: still the same request.
    second = await client.post(
        "/v1/probe",
        content=b'{"count": 1,   "text": "a"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert calls == ["a"]


async def test_same_key_different_body_is_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    _mount_probe(app)
    headers = {"Idempotency-Key": "k-2"}
    await client.post("/v1/probe", json={"text": "a"}, headers=headers)
    response = await client.post("/v1/probe", json={"text": "b"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert calls == ["a"]


async def test_keys_are_scoped_per_api_key(
    app: FastAPI,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    uow: UnitOfWork,
    clock: FrozenClock,
) -> None:
    _mount_probe(app)
    other = await create_key(uow, name="other", mode="test", clock=clock)
    await client.post("/v1/probe", json={"text": "a"}, headers={"Idempotency-Key": "shared"})
    response = await anon_client.post(
        "/v1/probe",
        json={"text": "b"},
        headers={"Idempotency-Key": "shared", "Authorization": f"Bearer {other.secret}"},
    )
    assert response.status_code == 201
    assert calls == ["a", "b"]


async def test_a_crashed_request_releases_its_key_for_a_retry(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _mount_probe(app)
    headers = {"Idempotency-Key": "k-crash"}
    assert (
        await client.post("/v1/probe", json={"text": "crash"}, headers=headers)
    ).status_code == 500
    assert (
        await client.post("/v1/probe", json={"text": "crash"}, headers=headers)
    ).status_code == 500
    assert calls == ["crash", "crash"]


async def test_concurrent_requests_with_one_key_run_the_handler_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    _mount_probe(app, delay=0.3)
    headers = {"Idempotency-Key": "k-race"}
    responses = await asyncio.gather(
        *(client.post("/v1/probe", json={"text": "r"}, headers=headers) for _ in range(8))
    )
    assert calls == ["r"]
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}
    assert statuses.count(201) >= 1
    bodies = {r.text for r in responses if r.status_code == 201}
    assert len(bodies) == 1


async def test_keys_expire_after_their_ttl(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    _mount_probe(app)
    headers = {"Idempotency-Key": "k-ttl"}
    await client.post("/v1/probe", json={"text": "a"}, headers=headers)
    clock.advance(timedelta(hours=24, seconds=1))
    response = await client.post("/v1/probe", json={"text": "b"}, headers=headers)
    assert response.status_code == 201
    assert calls == ["a", "b"]


async def test_a_key_held_by_a_dead_request_can_be_taken_over_after_its_lease(
    app: FastAPI, client: httpx.AsyncClient, clock: FrozenClock, uow: UnitOfWork, api_key: str
) -> None:
    _mount_probe(app)
    from tuition.services.api_keys import authenticate

    record = await authenticate(uow, api_key)
    async with uow:
        await uow.idempotency.claim(
            api_key_id=record.id,
            key="k-dead",
            request_hash="x",
            method="POST",
            path="/v1/probe",
            now=clock.now(),
            locked_until=clock.now() + timedelta(seconds=60),
            expires_at=clock.now() + timedelta(hours=24),
        )
        await uow.commit()
    clock.advance(timedelta(seconds=61))
    response = await client.post(
        "/v1/probe", json={"text": "a"}, headers={"Idempotency-Key": "k-dead"}
    )
    assert response.status_code == 201


async def test_a_key_revoked_by_another_process_is_refused_once_the_cache_expires(
    app: FastAPI, anon_client: httpx.AsyncClient, engine: object, db_url: str, clock: FrozenClock
) -> None:
    from tuition.container import ApiKeyCache
    from tuition.store.db import create_engine

    _mount_probe(app)
    ticks = [0.0]
    app.state.modes.live.api_keys = ApiKeyCache(5.0, now=lambda: ticks[0])
    created = await create_key(UnitOfWork(engine), name="k", mode="test", clock=clock)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {created.secret}"}
    assert (
        await anon_client.post("/v1/probe", json={"text": "a"}, headers=headers)
    ).status_code == 201
    other_process = create_engine(db_url)  # not watched by this app's cache
    try:
        await revoke_key(UnitOfWork(other_process), created.record.id, clock=clock)
    finally:
        await other_process.dispose()
    ticks[0] = 4.0
    assert (
        await anon_client.post("/v1/probe", json={"text": "b"}, headers=headers)
    ).status_code == 201
    ticks[0] = 5.1
    refused = await anon_client.post("/v1/probe", json={"text": "c"}, headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "api_key_revoked"
