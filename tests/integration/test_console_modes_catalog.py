"""The console's new catalog and developers pages act on the mode the operator chose, on
both engines: in test mode a creator, a coupon and a webhook endpoint made from the
console land in the test store (with their audit rows, in the same transaction) and the
live pages and live API never see them; back in live mode the same pages show live data."""

from __future__ import annotations

import re

from tests.integration.test_modes import Deployment, deployment  # noqa: F401 - the fixture
from tuition.clock import FrozenClock
from tuition.domain.operators import Role
from tuition.services import admin as admin_service
from tuition.store.uow import UnitOfWork

PASSWORD = "a-long-enough-password"


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_catalog_and_endpoint_changes_in_test_mode_stay_in_the_test_store(
    deployment: Deployment,  # noqa: F811 - the imported fixture
    clock: FrozenClock,
) -> None:
    await admin_service.create_admin_user(
        UnitOfWork(deployment.live_engine), "o@example.com", PASSWORD, clock, role=Role.OWNER
    )
    console = deployment.anon
    console.headers["Accept-Language"] = "en"
    form = await console.get("/admin/login")
    signed = await console.post(
        "/admin/login",
        data={"email": "o@example.com", "password": PASSWORD, "csrf_token": _token(form.text)},
    )
    assert signed.status_code == 303
    csrf = _token((await console.get("/admin")).text)
    switched = await console.post("/admin/mode", data={"to": "test", "csrf_token": csrf})
    assert switched.status_code == 303

    made = await console.post(
        "/admin/catalog/creators",
        data={"name": "Sandbox Ada", "default_revenue_share": "20", "csrf_token": csrf},
    )
    assert made.status_code in (200, 303), made.text
    coupon = await console.post(
        "/admin/catalog/coupons",
        data={"code": "SANDBOX10", "kind": "percent", "percent_off": "10", "csrf_token": csrf},
    )
    assert coupon.status_code in (200, 303), coupon.text
    endpoint = await console.post(
        "/admin/developers/webhooks",
        data={
            "url": "https://hooks.example.com/sandbox",
            "event": "order.paid",
            "description": "sandbox hook",
            "csrf_token": csrf,
        },
    )
    assert endpoint.status_code == 201, endpoint.text  # the page showing its secret once

    test_creators = (await deployment.test.get("/v1/creators")).json()["data"]
    assert [c["name"] for c in test_creators] == ["Sandbox Ada"]
    assert (await deployment.test.get("/v1/coupons/SANDBOX10")).status_code == 200
    hooks = (await deployment.test.get("/v1/webhook_endpoints")).json()["data"]
    assert [h["description"] for h in hooks] == ["sandbox hook"]
    assert (await deployment.live.get("/v1/creators")).json()["data"] == []
    assert (await deployment.live.get("/v1/coupons/SANDBOX10")).status_code == 404
    assert (await deployment.live.get("/v1/webhook_endpoints")).json()["data"] == []
    assert "Sandbox Ada" in (await console.get("/admin/catalog/creators")).text
    trail = (await console.get("/admin/audit")).text
    for action in ("creator.created", "coupon.created", "webhook_endpoint.created"):
        assert action in trail, action

    await console.post("/admin/mode", data={"to": "live", "csrf_token": csrf})
    assert "Sandbox Ada" not in (await console.get("/admin/catalog/creators")).text
    assert "SANDBOX10" not in (await console.get("/admin/catalog/coupons")).text
    assert "sandbox hook" not in (await console.get("/admin/developers/webhooks")).text
    live_trail = (await console.get("/admin/audit")).text
    assert "webhook_endpoint.created" not in live_trail
