"""The load generator: complete payment flows over HTTP, one keep-alive connection per user.

A flow is what a platform and a gateway do for one sale::

    POST /v1/orders                      (platform, API key, Idempotency-Key)
    POST /v1/orders/{id}/payments        (platform; Tuition calls the simulator process)
    POST /v1/notify/test/sandbox         (the gateway's signed notification: order paid)

The notification is built and signed exactly as the simulator's notifier would
(:func:`tuition.simulator.notifier.notification_body`, compact JSON, RSA PKCS#1 v1.5 with
the simulator's key file), with the gateway trade number the simulator assigned (the
last segment of the payment's ``next_action.url``). Tuition answers it only after the
transaction that marks the order paid has committed, so a 200 ``SUCCESS`` ends the flow.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.http import Connection, HttpError
from bench.stats import Recorder
from tuition.simulator.notifier import notification_body
from tuition.simulator.records import PaymentWireStatus, SimPayment, wire_time
from tuition.simulator.signing import NotificationSigner
from tuition.simulator.state import GatewayEvent

STEPS = ("create_order", "create_payment", "notify")


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    api_key: str
    app_id: str
    key_file: Path


def load_signer(key_file: Path) -> NotificationSigner:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return NotificationSigner(key)


async def seed_catalog(target: Target, *, creators: int) -> list[str]:
    """One creator per course: sales spread over creators as on a real platform."""
    conn = Connection(target.host, target.port)
    headers = _auth(target)
    products = []
    try:
        for n in range(creators):
            creator = await _post(
                conn, "/v1/creators", {"name": f"Bench creator {n}"}, headers, expect=201
            )
            product = await _post(
                conn,
                "/v1/products",
                {
                    "creator_id": creator["id"],
                    "kind": "course",
                    "title": f"Bench course {n}",
                    "prices": {"CNY": 9900 + 100 * n},
                },
                headers,
                expect=201,
            )
            products.append(product["id"])
    finally:
        conn.close()
    return products


@dataclass
class LoadGenerator:
    target: Target
    products: list[str]
    recorder: Recorder
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    paid_orders: list[str] = field(default_factory=list)
    flows_started: int = 0

    def __post_init__(self) -> None:
        self._signer = load_signer(self.target.key_file)
        self._headers = {**_auth(self.target), "Content-Type": "application/json"}
        self._rng = random.Random()  # noqa: S311 - picks products, not secrets

    async def run(self, users: int, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._user(n, stop) for n in range(users)))

    async def _user(self, user: int, stop: asyncio.Event) -> None:
        conn = Connection(self.target.host, self.target.port)
        n = 0
        try:
            while not stop.is_set():
                n += 1
                if not await self._flow(conn, user, n):
                    await asyncio.sleep(0.05)  # no hot loop against a failing server
        finally:
            conn.close()

    async def _flow(self, conn: Connection, user: int, n: int) -> bool:
        self.flows_started += 1
        ref = f"{self.run_id}-{user}-{n}"
        started = time.perf_counter()
        order = await self._step(
            conn,
            "create_order",
            "/v1/orders",
            {
                "customer_id": f"cus_{ref}",
                "currency": "CNY",
                "items": [{"product_id": self._rng.choice(self.products)}],
            },
            {**self._headers, "Idempotency-Key": f"{ref}-o"},
        )
        if order is None:
            return False
        payment = await self._step(
            conn,
            "create_payment",
            f"/v1/orders/{order['id']}/payments",
            {"channel": "sandbox", "method": "page"},
            {**self._headers, "Idempotency-Key": f"{ref}-p"},
        )
        if payment is None:
            return False
        if not await self._notify(conn, payment):
            return False
        self.recorder.add("flow", time.perf_counter() - started)
        if self.recorder.measuring:
            self.recorder.flows_measured += 1
        self.paid_orders.append(order["id"])
        return True

    async def _step(
        self, conn: Connection, step: str, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        try:
            response = await conn.request("POST", path, json.dumps(body).encode(), headers)
        except HttpError as exc:
            self.recorder.error(step, str(exc))
            return None
        self.recorder.add(step, time.perf_counter() - t0)
        if response.status != 201:
            self.recorder.error(step, f"HTTP {response.status} {response.body[:200]!r}")
            return None
        result: dict[str, Any] = json.loads(response.body)
        return result

    async def _notify(self, conn: Connection, payment: dict[str, Any]) -> bool:
        body = self._notification(payment)
        headers = self._signer.headers(body, int(time.time()))
        headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            response = await conn.request("POST", "/v1/notify/test/sandbox", body, headers)
        except HttpError as exc:
            self.recorder.error("notify", str(exc))
            return False
        self.recorder.add("notify", time.perf_counter() - t0)
        if response.status != 200 or b"SUCCESS" not in response.body:
            self.recorder.error("notify", f"HTTP {response.status} {response.body[:200]!r}")
            return False
        return True

    def _notification(self, payment: dict[str, Any]) -> bytes:
        """The simulator's ``payment.paid`` body for this payment, byte for byte."""
        now = datetime.now(UTC)
        url = payment["next_action"]["url"]
        sim = SimPayment(
            app_id=self.target.app_id,
            out_trade_no=payment["id"],
            trade_no=url.rsplit("/", 1)[1],
            amount=payment["amount"],
            currency=payment["currency"],
            subject="",
            method=payment["method"],
            notify_url="",
            return_url=None,
            expires_at=now + timedelta(minutes=15),
            created_at=now,
            pay_url=url,
            status=PaymentWireStatus.PAID,
            paid_at=now,
        )
        fields = notification_body(
            GatewayEvent("payment.paid", sim), f"N{secrets.token_hex(12).upper()}", wire_time(now)
        )
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def _auth(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"}


async def _post(
    conn: Connection, path: str, body: dict[str, Any], headers: dict[str, str], *, expect: int
) -> dict[str, Any]:
    response = await conn.request(
        "POST", path, json.dumps(body).encode(), {**headers, "Content-Type": "application/json"}
    )
    if response.status != expect:
        raise RuntimeError(f"POST {path}: HTTP {response.status} {response.body[:300]!r}")
    result: dict[str, Any] = json.loads(response.body)
    return result
