"""Admin console use cases: operators, throttled login, sessions, an order's timeline, and
the read side of a customer's wallet page (and of a top-up's checkout page).

Passwords are hashed with argon2id (``argon2-cffi``); hashing runs in a thread, and never
inside a database transaction, so a login does not hold SQLite's write lock while it
thinks. Every attempt is counted per IP, per account and per (IP, account) before its
password is checked (services/admin_throttle.py): ``MAX_FAILURES`` attempts from one IP
lock that IP out of the account for ``LOCK_FOR``. Every refusal is the same
:class:`LoginRefused`, and an unknown email costs the same hashing time as a wrong
password, so no answer tells which accounts exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from tuition.clock import Clock
from tuition.domain.catalog import ProductKind
from tuition.domain.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.ledger import JournalEntry, payment_source, refund_source
from tuition.domain.money import coin_unit
from tuition.domain.operators import Role
from tuition.domain.wallet import TransactionCause
from tuition.logs import get_logger
from tuition.services import audit
from tuition.services.admin_throttle import (
    DEFAULT_THROTTLE,
    AttemptKeys,
    SignInThrottle,
    attempt_keys,
    subject_of,
)
from tuition.services.audit import Actor
from tuition.store import tables
from tuition.store.admin import AdminRepository, AdminSession, AdminUser
from tuition.store.events import NotificationRecord, OutboxEvent
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentFilter, PaymentRecord
from tuition.store.refunds import RefundRecord
from tuition.store.uow import UnitOfWork
from tuition.store.wallet import WalletTransaction
from tuition.store.work import Attempt, Delivery

MAX_FAILURES = DEFAULT_THROTTLE.per_ip_and_account
LOCK_FOR = DEFAULT_THROTTLE.lock_for
# Throttle rows whose window ended this long ago are deleted as logins go by.
_THROTTLE_KEPT = timedelta(days=1)
MIN_PASSWORD_LENGTH = 10
# The console setting an owner turns on to require two-factor of every operator.
TWO_FACTOR_REQUIRED = "two_factor_required"
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,60}")
_hasher = PasswordHasher()
log = get_logger(__name__)


# Verified against when the email is unknown, so both answers take as long (the hash of a
# random password nobody kept, with the hasher's parameters).
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$89AOvr4hMOkWGFXsZ62Bgg"
    "$seWv0E5L6jv/QjZez8+KKEJy/6NvU4NjIi2fmJgU5i0"
)


class LoginRefused(AuthenticationFailed):
    """Any refused sign-in: wrong email, wrong password or throttled look alike."""

    default_code = "login_failed"

    def __init__(self) -> None:
        super().__init__("wrong email or password, or too many attempts")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_admin_user(
    uow: UnitOfWork,
    email: str,
    password: str,
    clock: Clock,
    *,
    role: str = Role.OWNER,
    actor: Actor = audit.SYSTEM,
) -> AdminUser:
    """Add an operator who can log in to ``/admin``; the password is stored as argon2id."""
    address = normalize_email(email)
    if _EMAIL.fullmatch(address) is None:
        raise ValidationFailed(f"{email!r} is not an email address", param="email")
    chosen = parse_role(role)
    _check_password(password)
    user = AdminUser(
        id=new_id(Prefix.ADMIN),
        email=address,
        password_hash=await asyncio.to_thread(_hasher.hash, password),
        failed_logins=0,
        locked_until=None,
        last_login_at=None,
        created_at=clock.now(),
        role=chosen.value,
    )
    async with uow:
        if not await AdminRepository(uow.conn).add_user(user):
            raise Conflict(f"an operator {address} already exists", param="email")
        await audit.record(
            uow.conn, actor, "operator.created", address, clock=clock, after={"role": user.role}
        )
        await uow.commit()
    await audit.seal(uow)
    return user


async def set_admin_password(uow: UnitOfWork, email: str, password: str) -> None:
    """Give an operator a new password; this also lifts a lockout."""
    _check_password(password)
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    async with uow:
        repo = AdminRepository(uow.conn)
        user = await repo.user_by_email(normalize_email(email))
        if user is None:
            raise NotFound(f"no operator {email!r}", param="email")
        await repo.set_password(user.id, password_hash)
        await repo.clear_subject(subject_of(user.email))
        await uow.commit()


def parse_role(role: str) -> Role:
    try:
        return Role(role.strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise ValidationFailed(
            f"{role!r} is not a role; one of {known}", code="role_unknown", param="role"
        ) from None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters", param="password"
        )


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # for the cookie; only its hash is stored
    session: AdminSession
    user: AdminUser


async def login(
    uow: UnitOfWork,
    email: str,
    password: str,
    *,
    clock: Clock,
    ttl: timedelta,
    client_ip: str | None = None,
    throttle: SignInThrottle = DEFAULT_THROTTLE,
) -> NewSession:
    """Check the password and open a session, or raise :class:`LoginRefused`.

    The attempt is counted first, in a transaction of its own; only an attempt that got
    a slot has its password checked, so no number of concurrent attempts checks more
    passwords than the throttle allows.
    """
    address = normalize_email(email)
    keys = attempt_keys(address, client_ip)
    now = clock.now()
    async with uow:
        repo = AdminRepository(uow.conn)
        allowed = await _claim(repo, keys, throttle, now)
        user = await repo.user_by_email(address) if allowed else None
        if allowed:
            await repo.purge_throttles(before=now - _THROTTLE_KEPT)
            await uow.commit()
    if not allowed:
        log.warning("admin_login_throttled")
        raise LoginRefused()
    stored = user.password_hash if user is not None else _DUMMY_HASH
    ok = await asyncio.to_thread(_verify, stored, password)
    if user is None or not ok:
        log.info("admin_login_failed")
        raise LoginRefused()
    rehash = _hasher.check_needs_rehash(user.password_hash)
    new_hash = await asyncio.to_thread(_hasher.hash, password) if rehash else None
    token = secrets.token_urlsafe(32)
    async with uow:
        repo = AdminRepository(uow.conn)
        required = await repo.console_setting(TWO_FACTOR_REQUIRED) == "true"
        session = AdminSession(
            token_hash=token_hash(token),
            admin_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + ttl,
            revoked_at=None,
            # The password was right; the second factor (or its enrolment) is still due.
            second_factor_pending=user.totp_enabled_at is not None or required,
        )
        if new_hash is not None:
            await repo.set_password(user.id, new_hash)
        await repo.record_login(user.id, at=now)
        await repo.release_attempt(keys.ip)
        await repo.clear_throttles(keys.pair, keys.account)
        await repo.add_session(session)
        await uow.commit()
    return NewSession(token, session, user)


async def _claim(
    repo: AdminRepository, keys: AttemptKeys, throttle: SignInThrottle, now: datetime
) -> bool:
    """Count the attempt on all three counters, or on none (the caller then does not
    commit). Always in this order, so concurrent claims never deadlock."""
    for key, subject, limit in (
        (keys.pair, keys.subject, throttle.per_ip_and_account),
        (keys.ip, None, throttle.per_ip),
        (keys.account, keys.subject, throttle.per_account),
    ):
        claimed = await repo.claim_attempt(
            key,
            subject=subject,
            limit=limit,
            window=throttle.window,
            lock_for=throttle.lock_for,
            now=now,
        )
        if not claimed:
            return False
    return True


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def current_session(
    uow: UnitOfWork, token: str, *, clock: Clock
) -> tuple[AdminSession, AdminUser] | None:
    async with uow:
        return await AdminRepository(uow.conn).active_session(token_hash(token), now=clock.now())


async def logout(uow: UnitOfWork, token: str, *, clock: Clock) -> None:
    async with uow:
        await AdminRepository(uow.conn).revoke_session(token_hash(token), at=clock.now())
        await uow.commit()


# --- an order's timeline ----------------------------------------------------------------


@dataclass(slots=True)
class PaymentTrail:
    payment: PaymentRecord
    notifications: list[NotificationRecord] = field(default_factory=list)
    refunds: list[RefundRecord] = field(default_factory=list)


@dataclass(slots=True)
class EventTrail:
    event: OutboxEvent
    deliveries: list[tuple[Delivery, list[Attempt]]] = field(default_factory=list)


@dataclass(slots=True)
class OrderTimeline:
    """Everything that happened to one order, for the console's order page."""

    order: OrderRecord
    payments: list[PaymentTrail]
    entries: list[JournalEntry]
    events: list[EventTrail]
    refunds: list[RefundRecord] = field(default_factory=list)  # newest first, with lines

    @property
    def double_charges(self) -> list[PaymentTrail]:
        """Payments that came after the order was paid (or closed) and were refunded
        automatically: the buyer was charged twice."""
        return [t for t in self.payments if t.payment.duplicate_of is not None]


async def order_timeline(uow: UnitOfWork, order_id: str) -> OrderTimeline:
    """Pricing, payment attempts with every notification and its verdict, refunds, ledger
    entries, and the events sent to the platform with their webhook deliveries."""
    async with uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found", param="order_id")
        found, _ = await uow.payments.find(
            PaymentFilter(order_id=order_id), limit=100, starting_after=None
        )
        refunds = await uow.refunds.of_order(order_id)
        trails, entries, subjects = [], [], [order_id]
        for payment in sorted(found, key=lambda p: p.id):
            trail = PaymentTrail(
                payment,
                await uow.events.notifications_for(payment.id),
                [r for r in refunds if r.payment_id == payment.id],
            )
            trails.append(trail)
            subjects.append(payment.id)
            sources = [payment_source(payment.id)] + [refund_source(r.id) for r in trail.refunds]
            subjects += [r.id for r in trail.refunds]
            for source in sources:
                entry = await uow.ledger.entry_by_source(source)
                if entry is not None:
                    entries.append(entry)
        events = []
        for subject in subjects:
            for event in await uow.events.events_for(subject):
                events.append(EventTrail(event, await uow.work.deliveries_of(event.id)))
    events.sort(key=lambda e: (e.event.created_at, e.event.id))
    return OrderTimeline(order, trails, entries, events, sorted(refunds, key=lambda r: r.id)[::-1])


async def automatic_refunds(
    uow: UnitOfWork, payments: list[PaymentRecord]
) -> dict[str, RefundRecord | None]:
    """For each double charge among ``payments`` (a payment with ``duplicate_of`` set),
    its newest refund: the automatic one, or the retry of it if that failed."""
    found: dict[str, RefundRecord | None] = {}
    async with uow:
        for payment in payments:
            if payment.duplicate_of is not None:
                refunds = await uow.refunds.of_payment(payment.id)
                found[payment.id] = refunds[-1] if refunds else None
    return found


# --- a customer's wallet ----------------------------------------------------------------


async def wallet_cause_orders(
    uow: UnitOfWork, transactions: Sequence[WalletTransaction]
) -> dict[str, str]:
    """For each wallet transaction with an order behind it, that order's id: a top-up's
    order, the order a payment from balance paid, the order a refund gave back. An
    adjustment has none. Two queries whatever the page size."""
    found: dict[str, str] = {}
    by_payment: dict[str, list[str]] = {}
    by_refund: dict[str, list[str]] = {}
    for tx in transactions:
        if tx.cause == TransactionCause.TOPUP:
            found[tx.id] = tx.cause_id.partition(":")[0]  # "<order id>:<line index>"
        elif tx.cause == TransactionCause.ORDER:
            by_payment.setdefault(tx.cause_id, []).append(tx.id)
        elif tx.cause == TransactionCause.REFUND:
            by_refund.setdefault(tx.cause_id, []).append(tx.id)
    async with uow:
        for table, wanted in ((tables.payments, by_payment), (tables.refunds, by_refund)):
            if not wanted:
                continue
            rows = await uow.conn.execute(
                select(table.c.id, table.c.order_id).where(table.c.id.in_(list(wanted)))
            )
            for row in rows:
                for tx_id in wanted[row.id]:
                    found[tx_id] = row.order_id
    return found


@dataclass(frozen=True, slots=True)
class Credit:
    """What a top-up order credits: ``amount`` of ``currency`` (a coin pack: coins, of
    which ``bonus`` are bonus coins)."""

    amount: int
    currency: str
    bonus: int = 0


async def topup_credit(uow: UnitOfWork, order: OrderRecord) -> Credit | None:
    """What a top-up order credits to the buyer's balance (None when the order has no
    top-up line): once paid, what was credited; before, what the packs say they credit."""
    lines = [line for line in order.lines if line.kind == ProductKind.TOPUP.value]
    if not lines:
        return None
    txs = tables.wallet_transactions
    async with uow:
        if order.paid_at is not None:
            ids = [f"{order.id}:{line.line_index}" for line in lines]
            rows = await uow.conn.execute(
                select(txs.c.currency, txs.c.cause_id, txs.c.amount).where(
                    txs.c.cause == TransactionCause.TOPUP.value,
                    txs.c.cause_id.in_(ids + [f"{i}:bonus" for i in ids]),
                )
            )
            credited = list(rows)
            if credited:
                return Credit(
                    sum(int(r.amount) for r in credited),
                    credited[0].currency,
                    sum(int(r.amount) for r in credited if r.cause_id.endswith(":bonus")),
                )
        catalog = await uow.catalog.products_by_ids([line.product_id for line in lines])
    packs = [(catalog.get(line.product_id), line.quantity) for line in lines]
    coin = coin_unit()
    coins = sum((p.topup_coins or 0) * n for p, n in packs if p is not None)
    if coins and coin is not None:
        bonus = sum((p.topup_bonus_coins or 0) * n for p, n in packs if p is not None)
        return Credit(coins + bonus, coin.code, bonus)
    money = sum((p.topup_credit or 0) * n for p, n in packs if p is not None)
    return Credit(money, order.currency) if money else None
