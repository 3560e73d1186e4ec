"""Top-ups that versions before the wallet booked as sales are corrected by a new entry
(never an UPDATE), once, with the buyer's lot credited beside it."""

from __future__ import annotations

import httpx

from tests.integration.shop import order_body, post
from tuition.clock import FrozenClock
from tuition.domain.ledger import AccountKind, AccountRef, Posting, build_entry
from tuition.domain.payments import PaymentStatus
from tuition.services.earnings import payee_problems
from tuition.services.ledger import verify_ledger
from tuition.services.orders import mark_order_paid
from tuition.services.topup_corrections import correct_topups, wrong_topups
from tuition.services.wallet import wallet_problems
from tuition.simulator.app import Simulator
from tuition.store.payments import new_attempt
from tuition.store.uow import UnitOfWork


async def _paid_the_old_way(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> str:
    """A 10.00 top-up paid and booked as the old versions did: a sale at 70 %."""
    order = await post(client, "/v1/orders", order_body(shop, "coins"))
    now = clock.now()
    async with uow:
        payment = new_attempt(
            payment_id="pay_old_topup",
            order_id=order["id"],
            customer_id="u_1",
            channel="sandbox",
            method="page",
            app_id="sandbox",
            amount=1000,
            currency="CNY",
            at=now,
        )
        await uow.payments.add(payment)
        assert await uow.payments.set_status(
            payment.id, expected=(PaymentStatus.CREATED,), target=PaymentStatus.SUCCEEDED, at=now
        )
        assert await mark_order_paid(uow, order["id"], at=now)
        clearing = AccountRef(AccountKind.CHANNEL_CLEARING, "CNY", "sandbox")
        await uow.ledger.post(
            build_entry(
                f"payment:{payment.id}",
                "payment succeeded via sandbox",
                [
                    Posting(clearing, 1000),
                    Posting(AccountRef(AccountKind.CHANNEL_FEES, "CNY"), 6),
                    Posting(clearing, -6),
                    Posting(AccountRef(AccountKind.CREATOR_PAYABLE, "CNY", shop["creator"]), -700),
                    Posting(AccountRef(AccountKind.PLATFORM_REVENUE, "CNY"), -300),
                ],
                now,
            ),
            at=now,
        )
        # As migration 0012 found such shares: available to the creator.
        await uow.earnings.ensure_creator_payees([shop["creator"]], now)
        await uow.payouts.add_available(shop["creator"], "CNY", 700, now)
        await uow.commit()
    return str(order["id"])


async def test_a_top_up_booked_as_a_sale_is_corrected_once(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, clock: FrozenClock
) -> None:
    order_id = await _paid_the_old_way(client, shop, uow, clock)
    found = await wrong_topups(uow)
    assert [(f.order_id, f.credit, f.creator_share) for f in found] == [(order_id, 1000, 700)]
    assert [f.order_id for f in await correct_topups(uow, clock=clock)] == [order_id]
    assert await correct_topups(uow, clock=clock) == []  # a second run posts nothing
    async with uow:
        balances = {k: v for k, v in (await uow.ledger.balances()).items() if v}
        correction = await uow.ledger.entry_by_source(f"topup_correction:{order_id}:0")
    assert correction is not None
    assert balances == {
        "channel_clearing:CNY:sandbox": 994,
        "channel_fees:CNY": 6,
        "customer_wallet:CNY:u_1": -1000,  # owed to the buyer, as this version books it
    }
    wallet = (await client.get("/v1/customers/u_1/wallet")).json()
    assert [(b["currency"], b["balance"]) for b in wallet["balances"]] == [("CNY", 1000)]
    report = await verify_ledger(uow)
    assert report.ok, report.problems
    assert await wallet_problems(uow) == []
    assert await payee_problems(uow) == []
    balance = (await client.get(f"/v1/payees/{shop['creator']}/balance")).json()
    assert balance["balances"][0]["available"] == 0, balance


async def test_a_top_up_booked_by_this_version_needs_no_correction(
    client: httpx.AsyncClient, shop: dict[str, str], uow: UnitOfWork, gateway: Simulator
) -> None:
    order = await post(client, "/v1/orders", order_body(shop, "coins"))
    payment = await post(
        client, f"/v1/orders/{order['id']}/payments", {"channel": "sandbox", "method": "page"}
    )
    await gateway.pay(payment["id"])
    await gateway.drain()
    assert await wrong_topups(uow) == []
