"""A customer's wallet over REST: balances and lots, transactions, operator adjustments."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from tuition.api.deps import ActorDep, ApiKeyDep, ContainerDep, audited
from tuition.api.fields import CustomerIdPath, NoNul
from tuition.api.listing import Page, page_of
from tuition.api.payments import payment_deps
from tuition.api.routing import v1_router
from tuition.domain.ids import Prefix
from tuition.domain.money import MAX_AMOUNT
from tuition.services import wallet as wallet_service
from tuition.store.wallet import WalletTransaction

router = v1_router(tags=["wallet"])


class BalanceOut(BaseModel):
    currency: str = Field(description="An ISO 4217 code, or the platform's coin code")
    kind: str = Field(description="money or coins")
    balance: int = Field(description="Minor units (coins: coin units) the customer may spend")
    paid: int = Field(description="Of it, paid for: top-ups, refunds and adjustments")
    bonus: int = Field(description="Of it, bonus coins (promotional, worth nothing)")


class CoinsOut(BaseModel):
    code: str
    name: str
    symbol: str
    decimals: int
    balance: int
    paid: int
    bonus: int
    value: int = Field(description="What the coins left are worth, in value_currency")
    value_currency: str


class LotOut(BaseModel):
    id: str
    currency: str
    kind: str = Field(description="topup, bonus, refund or adjustment")
    source: str
    amount: int
    remaining: int
    value: int | None = Field(default=None, description="Coin lots: their money value")
    value_remaining: int | None = Field(
        default=None, description="Coin lots: the value of the coins left, not yet revenue"
    )
    value_currency: str | None = None
    created_at: datetime


class ShortfallOut(BaseModel):
    currency: str
    amount: int = Field(description="Coins or minor units owed")
    value_currency: str
    value: int = Field(description="Their money value, as the ledger owes it")
    cause_id: str = Field(description="<refund id>:<order line>")
    created_at: datetime


class WalletOut(BaseModel):
    object: str = "wallet"
    customer_id: str
    balances: list[BalanceOut] = Field(description="Every currency held, and the coins")
    coins: CoinsOut | None = Field(
        default=None, description="The coin balance (null when coins are off)"
    )
    lots: list[LotOut] = Field(description="Credits with something left, oldest first")
    shortfalls: list[ShortfallOut] = Field(
        default_factory=list,
        description="Flagged: what the customer owes after a refund that could not be "
        "refused (Apple's) took back a top-up whose coins or money were spent; the "
        "balance less these is below zero",
    )


class TransactionOut(BaseModel):
    id: str
    object: str = "wallet_transaction"
    customer_id: str
    currency: str
    amount: int = Field(description="Credit positive, debit negative")
    balance_after: int
    cause: str = Field(description="topup, order, refund, adjustment or release")
    cause_id: str
    description: str
    lots: list[dict[str, Any]]
    created_by: str
    created_at: datetime


class TransactionList(BaseModel):
    data: list[TransactionOut]
    has_more: bool


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    currency: str = Field(min_length=3, max_length=3)
    amount: StrictInt = Field(
        ge=-MAX_AMOUNT, le=MAX_AMOUNT, description="Minor units: credit positive, debit negative"
    )
    reason: Annotated[str, Field(min_length=1, max_length=300), NoNul]


def _tx_out(tx: WalletTransaction) -> TransactionOut:
    return TransactionOut(
        id=tx.id,
        customer_id=tx.customer_id,
        currency=tx.currency,
        amount=tx.amount,
        balance_after=tx.balance_after,
        cause=tx.cause,
        cause_id=tx.cause_id,
        description=tx.description,
        lots=tx.lots,
        created_by=tx.created_by,
        created_at=tx.created_at,
    )


@router.get(
    "/customers/{customer_id}/wallet",
    response_model=WalletOut,
    summary="A customer's wallet: balances per currency and the lots they are made of",
)
async def get_wallet(customer_id: CustomerIdPath, container: ContainerDep) -> WalletOut:
    wallet = await wallet_service.wallet_of(container.uow(), customer_id)
    coin = container.settings.coin_unit()
    open_lots = [lot for lot in wallet.lots if lot.remaining > 0]
    balances = []
    for currency, balance in wallet.balances.items():
        bonus = sum(lot.remaining for lot in open_lots if lot.currency == currency and lot.bonus)
        kind = "coins" if coin is not None and currency == coin.code else "money"
        balances.append(
            BalanceOut(
                currency=currency, kind=kind, balance=balance, paid=balance - bonus, bonus=bonus
            )
        )
    coins = None
    if coin is not None:
        mine = [lot for lot in open_lots if lot.currency == coin.code]
        held = wallet.balances.get(coin.code, 0)
        bonus = sum(lot.remaining for lot in mine if lot.bonus)
        coins = CoinsOut(
            code=coin.code,
            name=coin.name,
            symbol=coin.symbol,
            decimals=coin.decimals,
            balance=held,
            paid=held - bonus,
            bonus=bonus,
            value=sum(lot.value_remaining or 0 for lot in mine),
            value_currency=coin.currency,
        )
    return WalletOut(
        customer_id=customer_id,
        balances=balances,
        coins=coins,
        lots=[
            LotOut(
                id=lot.id,
                currency=lot.currency,
                kind=lot.kind,
                source=lot.source,
                amount=lot.amount,
                remaining=lot.remaining,
                value=lot.value,
                value_remaining=lot.value_remaining,
                value_currency=lot.value_currency,
                created_at=lot.created_at,
            )
            for lot in open_lots
        ],
        shortfalls=[
            ShortfallOut(
                currency=short.currency,
                amount=short.amount,
                value_currency=short.value_currency,
                value=short.value,
                cause_id=short.cause_id,
                created_at=short.created_at,
            )
            for short in wallet.shortfalls
        ],
    )


@router.get(
    "/customers/{customer_id}/wallet/transactions",
    response_model=TransactionList,
    summary="Every credit and debit of a wallet, newest first, with the balance after it",
)
async def list_transactions(
    customer_id: CustomerIdPath,
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.WALLET_TRANSACTION)],
) -> TransactionList:
    items, has_more = await wallet_service.transactions_of(
        container.uow(), customer_id, limit=page.limit, starting_after=page.starting_after
    )
    return TransactionList(data=[_tx_out(t) for t in items], has_more=has_more)


@router.post(
    "/customers/{customer_id}/wallet/adjustments",
    status_code=201,
    response_model=TransactionOut,
    summary="Credit or debit a wallet by hand, with a reason",
    description="Recorded with the API key that asked and posted against "
    "`wallet_adjustments`. A debit never takes the balance below zero (409 "
    "`insufficient_balance`).",
)
async def adjust_wallet(
    customer_id: CustomerIdPath,
    body: AdjustmentIn,
    container: ContainerDep,
    key: ApiKeyDep,
    actor: ActorDep,
) -> TransactionOut:
    tx = await wallet_service.adjust(
        wallet_service.Adjustment(
            customer_id=customer_id,
            currency=body.currency,
            amount=body.amount,
            reason=body.reason,
            created_by=f"api_key:{key.id}",
        ),
        audited(
            container,
            actor,
            "wallet.adjusted",
            customer_id,
            currency=body.currency,
            amount=body.amount,
            reason=body.reason,
        ),
        deps=payment_deps(container),
    )
    return _tx_out(tx)


routers: list[APIRouter] = [router]
