"""Admin console use cases: operators, login with lockout, sessions, an order's timeline.

Passwords are hashed with argon2id (``argon2-cffi``); hashing runs in a thread, and never
inside a database transaction, so a login does not hold SQLite's write lock while it
thinks. After ``MAX_FAILURES`` wrong passwords in a row an account is locked for
``LOCK_FOR``; an unknown email costs the same hashing time as a wrong password.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tuition.clock import Clock
from tuition.domain.errors import AuthenticationFailed, Conflict, NotFound, ValidationFailed
from tuition.domain.ids import Prefix, new_id
from tuition.domain.ledger import JournalEntry, payment_source, refund_source
from tuition.store.admin import AdminRepository, AdminSession, AdminUser
from tuition.store.events import NotificationRecord, OutboxEvent
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentFilter, PaymentRecord, RefundRecord
from tuition.store.uow import UnitOfWork
from tuition.store.work import Attempt, Delivery

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,60}")
_hasher = PasswordHasher()


# Verified against when the email is unknown, so both answers take as long (the hash of a
# random password nobody kept, with the hasher's parameters).
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$89AOvr4hMOkWGFXsZ62Bgg"
    "$seWv0E5L6jv/QjZez8+KKEJy/6NvU4NjIi2fmJgU5i0"
)


class LoginRefused(AuthenticationFailed):
    """Wrong email or password (``login_failed``), or locked (``account_locked``)."""

    default_code = "login_failed"

    def __init__(self, message: str, *, code: str | None = None, until: datetime | None = None):
        super().__init__(message, code=code)
        self.until = until


def normalize_email(email: str) -> str:
    return email.strip().lower()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_admin_user(uow: UnitOfWork, email: str, password: str, clock: Clock) -> AdminUser:
    """Add an operator who can log in to ``/admin``; the password is stored as argon2id."""
    address = normalize_email(email)
    if _EMAIL.fullmatch(address) is None:
        raise ValidationFailed(f"{email!r} is not an email address", param="email")
    _check_password(password)
    user = AdminUser(
        id=new_id(Prefix.ADMIN),
        email=address,
        password_hash=await asyncio.to_thread(_hasher.hash, password),
        failed_logins=0,
        locked_until=None,
        last_login_at=None,
        created_at=clock.now(),
    )
    async with uow:
        if not await AdminRepository(uow.conn).add_user(user):
            raise Conflict(f"an operator {address} already exists", param="email")
        await uow.commit()
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
        await uow.commit()


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
    uow: UnitOfWork, email: str, password: str, *, clock: Clock, ttl: timedelta
) -> NewSession:
    """Check the password and open a session, or raise :class:`LoginRefused`."""
    async with uow:
        user = await AdminRepository(uow.conn).user_by_email(normalize_email(email))
    now = clock.now()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        raise LoginRefused("too many failed logins", code="account_locked", until=user.locked_until)
    stored = user.password_hash if user is not None else _DUMMY_HASH
    ok = await asyncio.to_thread(_verify, stored, password)
    if user is None or not ok:
        if user is not None:
            async with uow:
                failures = await AdminRepository(uow.conn).count_failure(
                    user.id, max_failures=MAX_FAILURES, locked_until=now + LOCK_FOR
                )
                await uow.commit()
            if failures >= MAX_FAILURES:
                raise LoginRefused(
                    "too many failed logins", code="account_locked", until=now + LOCK_FOR
                )
        raise LoginRefused("wrong email or password")
    rehash = _hasher.check_needs_rehash(user.password_hash)
    new_hash = await asyncio.to_thread(_hasher.hash, password) if rehash else None
    token = secrets.token_urlsafe(32)
    session = AdminSession(
        token_hash=token_hash(token),
        admin_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + ttl,
        revoked_at=None,
    )
    async with uow:
        repo = AdminRepository(uow.conn)
        if new_hash is not None:
            await repo.set_password(user.id, new_hash)
        await repo.record_login(user.id, at=now)
        await repo.add_session(session)
        await uow.commit()
    return NewSession(token, session, user)


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
        trails, entries, subjects = [], [], [order_id]
        for payment in sorted(found, key=lambda p: p.id):
            trail = PaymentTrail(
                payment,
                await uow.events.notifications_for(payment.id),
                await uow.payments.refunds_of(payment.id),
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
    return OrderTimeline(order, trails, entries, events)
