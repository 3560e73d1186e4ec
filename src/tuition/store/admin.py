"""Admin console storage: operators, their sessions, and the console's read models.

A session row stores the SHA-256 of the cookie's random token, never the token: a copy of
the table opens no session. Sign-in attempts are counted by a conditional UPDATE before
the password is checked, so parallel guesses cannot slip past the throttle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.calendar import BusinessDays
from tuition.domain.channel_choice import FINISHED_STATUSES
from tuition.domain.orders import OrderStatus
from tuition.store.console_lists import (
    SORTS,
    Listing,
    by_date_and_amount,
    equals_lowered,
    found_by,
    normal_id,
    starts_with_lowered,
)
from tuition.store.db import insert_ignoring_conflicts
from tuition.store.orders import OrderRecord
from tuition.store.payments import PaymentRecord, _payment
from tuition.store.tables import (
    admin_login_throttles,
    admin_recovery_codes,
    admin_sessions,
    admin_users,
    console_settings,
    journal_entries,
    ledger_accounts,
    ledger_balances,
    orders,
    payments,
    postings,
    refunds,
    wallet_balances,
)


@dataclass(frozen=True, slots=True)
class AdminUser:
    id: str
    email: str
    password_hash: str
    failed_logins: int
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    role: str = "owner"
    totp_secret: str | None = None  # encrypted (services/two_factor.py)
    totp_enabled_at: datetime | None = None
    totp_last_step: int | None = None


@dataclass(frozen=True, slots=True)
class AdminSession:
    token_hash: str
    admin_id: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    second_factor_pending: bool = False


@dataclass(frozen=True, slots=True)
class OrderSearch:
    """Admin search. ``text`` finds an order by any of its ids, case-insensitive: the
    order's, one of its payments' or refunds', a gateway trade or refund number, the
    customer's id or the start of it. ``channel`` keeps orders with at least one payment
    attempt through that channel."""

    text: str | None = None
    status: OrderStatus | None = None
    channel: str | None = None
    customer_id: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentSearch:
    """``text`` finds a payment by its id, its order's, the gateway's trade number or a
    refund of it, in any case, or by the start of the customer's id."""

    text: str | None = None
    status: str | None = None
    channel: str | None = None
    customer_id: str | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None


@dataclass(frozen=True, slots=True)
class AccountBalance:
    key: str
    kind: str
    type: str
    currency: str
    qualifier: str
    balance: int


_USER_FIELDS = list(AdminUser.__dataclass_fields__)
_SESSION_FIELDS = list(AdminSession.__dataclass_fields__)


_ORDER_FIELDS = [f for f in OrderRecord.__dataclass_fields__ if f != "lines"]


def _order(m: Any) -> OrderRecord:
    values = {f: m[f] for f in _ORDER_FIELDS}
    values["status"] = OrderStatus(values["status"])
    return OrderRecord(**values)


_ORDER_SORTS = by_date_and_amount(orders.c.id, orders.c.total)
ORDER_SORTS = SORTS
_PAYMENT_SORTS = by_date_and_amount(payments.c.id, payments.c.amount)


def _orders_found(text: str, dialect: str) -> Select[Any]:
    """The ids of orders found by ``text`` in any of their ids, case-insensitive: each
    branch is answered by an index."""
    typed = text.strip()
    as_id = normal_id(typed)
    found: list[Select[Any]] = [
        select(orders.c.id).where(starts_with_lowered(orders.c.customer_id, typed, dialect)),
        select(payments.c.order_id).where(
            equals_lowered(payments.c.channel_trade_no, typed, dialect)
        ),
        select(refunds.c.order_id).where(
            equals_lowered(refunds.c.channel_refund_no, typed, dialect)
        ),
    ]
    if as_id is not None:
        found += [
            select(orders.c.id).where(orders.c.id == as_id),
            select(payments.c.order_id).where(payments.c.id == as_id),
            select(refunds.c.order_id).where(refunds.c.id == as_id),
        ]
    return found_by(*found)


def _payments_found(text: str, dialect: str) -> Select[Any]:
    typed = text.strip()
    as_id = normal_id(typed)
    found: list[Select[Any]] = [
        select(payments.c.id).where(starts_with_lowered(payments.c.customer_id, typed, dialect)),
        select(payments.c.id).where(equals_lowered(payments.c.channel_trade_no, typed, dialect)),
        select(refunds.c.payment_id).where(
            equals_lowered(refunds.c.channel_refund_no, typed, dialect)
        ),
    ]
    if as_id is not None:
        found += [
            select(payments.c.id).where(payments.c.id == as_id),
            select(payments.c.id).where(payments.c.order_id == as_id),
            select(refunds.c.payment_id).where(refunds.c.id == as_id),
        ]
    return found_by(*found)


def _within(column: Any, days: BusinessDays) -> list[ColumnElement[bool]]:
    return [column >= days.since, column < days.until]


def _user(m: Any) -> AdminUser:
    return AdminUser(**{f: m[f] for f in _USER_FIELDS})


class AdminRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self._dialect = conn.dialect.name

    # --- operators ----------------------------------------------------------------------

    async def add_user(self, user: AdminUser) -> bool:
        """Insert an operator; False if the email is taken (the UNIQUE constraint decides)."""
        result = await self.conn.execute(
            insert_ignoring_conflicts(self.conn, admin_users).values(
                {f: getattr(user, f) for f in _USER_FIELDS}
            )
        )
        return result.rowcount == 1

    async def user_by_email(self, email: str) -> AdminUser | None:
        row = (
            await self.conn.execute(select(admin_users).where(admin_users.c.email == email))
        ).first()
        return None if row is None else _user(row._mapping)

    async def users(self) -> list[AdminUser]:
        rows = await self.conn.execute(select(admin_users).order_by(admin_users.c.email))
        return [_user(r._mapping) for r in rows]

    async def set_role(self, user_id: str, role: str, *, was: str) -> bool:
        """Compare-and-set: False when the role is no longer ``was``."""
        result = await self.conn.execute(
            update(admin_users)
            .where(admin_users.c.id == user_id, admin_users.c.role == was)
            .values(role=role)
        )
        return result.rowcount == 1

    async def count_owners(self) -> int:
        return int(
            (
                await self.conn.execute(select(func.count()).where(admin_users.c.role == "owner"))
            ).scalar_one()
        )

    async def revoke_sessions_of(self, user_id: str, *, at: datetime) -> int:
        """Sign an operator out everywhere: every open session ends now."""
        result = await self.conn.execute(
            update(admin_sessions)
            .where(admin_sessions.c.admin_id == user_id, admin_sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return int(result.rowcount)

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self.conn.execute(
            update(admin_users)
            .where(admin_users.c.id == user_id)
            .values(password_hash=password_hash, failed_logins=0, locked_until=None)
        )

    # --- two-factor ----------------------------------------------------------------------

    async def user_by_id(self, user_id: str) -> AdminUser | None:
        row = (
            await self.conn.execute(select(admin_users).where(admin_users.c.id == user_id))
        ).first()
        return None if row is None else _user(row._mapping)

    async def set_pending_totp(self, user_id: str, sealed: str) -> bool:
        """Keep a new, not yet confirmed secret; False once two-factor is on."""
        result = await self.conn.execute(
            update(admin_users)
            .where(admin_users.c.id == user_id, admin_users.c.totp_enabled_at.is_(None))
            .values(totp_secret=sealed, totp_last_step=None)
        )
        return result.rowcount == 1

    async def enable_totp(self, user_id: str, sealed: str, *, step: int, at: datetime) -> bool:
        """Turn two-factor on with the secret the code was checked against (compare-and-
        set: not when already on, nor when the secret was replaced meanwhile)."""
        u = admin_users
        result = await self.conn.execute(
            update(u)
            .where(u.c.id == user_id, u.c.totp_enabled_at.is_(None), u.c.totp_secret == sealed)
            .values(totp_enabled_at=at, totp_last_step=step)
        )
        return result.rowcount == 1

    async def accept_totp_step(self, user_id: str, step: int) -> bool:
        """Move the last accepted step forward to ``step``; False for a code already used
        (or an older one)."""
        u = admin_users
        result = await self.conn.execute(
            update(u)
            .where(
                u.c.id == user_id,
                u.c.totp_enabled_at.is_not(None),
                or_(u.c.totp_last_step.is_(None), u.c.totp_last_step < step),
            )
            .values(totp_last_step=step)
        )
        return result.rowcount == 1

    async def clear_totp(self, user_id: str) -> None:
        await self.conn.execute(
            update(admin_users)
            .where(admin_users.c.id == user_id)
            .values(totp_secret=None, totp_enabled_at=None, totp_last_step=None)
        )
        await self.conn.execute(
            delete(admin_recovery_codes).where(admin_recovery_codes.c.admin_id == user_id)
        )

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: list[str], *, at: datetime
    ) -> None:
        r = admin_recovery_codes
        await self.conn.execute(delete(r).where(r.c.admin_id == user_id))
        await self.conn.execute(
            insert(r),
            [
                {"admin_id": user_id, "code_hash": h, "created_at": at, "used_at": None}
                for h in code_hashes
            ],
        )

    async def spend_recovery_code(self, user_id: str, code_hash: str, *, at: datetime) -> bool:
        """Use a recovery code once (compare-and-set on ``used_at``)."""
        r = admin_recovery_codes
        result = await self.conn.execute(
            update(r)
            .where(r.c.admin_id == user_id, r.c.code_hash == code_hash, r.c.used_at.is_(None))
            .values(used_at=at)
        )
        return result.rowcount == 1

    async def recovery_codes_left(self, user_id: str) -> int:
        r = admin_recovery_codes
        query = select(func.count()).where(r.c.admin_id == user_id, r.c.used_at.is_(None))
        return int((await self.conn.execute(query)).scalar_one())

    async def complete_second_factor(self, token_hash: str) -> bool:
        result = await self.conn.execute(
            update(admin_sessions)
            .where(
                admin_sessions.c.token_hash == token_hash,
                admin_sessions.c.second_factor_pending.is_(True),
            )
            .values(second_factor_pending=False)
        )
        return result.rowcount == 1

    # --- console settings ------------------------------------------------------------------

    async def console_setting(self, key: str) -> str | None:
        row = (
            await self.conn.execute(
                select(console_settings.c.value).where(console_settings.c.key == key)
            )
        ).first()
        return None if row is None else str(row.value)

    async def put_console_setting(self, key: str, value: str, *, by: str, at: datetime) -> None:
        c = console_settings
        row = {"key": key, "value": value, "updated_by": by, "updated_at": at}
        await self.conn.execute(insert_ignoring_conflicts(self.conn, c), row)
        await self.conn.execute(
            update(c).where(c.c.key == key).values(value=value, updated_by=by, updated_at=at)
        )

    # --- sign-in throttles ---------------------------------------------------------------

    async def claim_attempt(
        self,
        key: str,
        *,
        subject: str | None,
        limit: int,
        window: timedelta,
        lock_for: timedelta,
        now: datetime,
    ) -> bool:
        """Count one attempt against ``key``; False (nothing counted) when ``limit``
        attempts were already made in its window. The ``limit``-th attempt extends the
        window to ``lock_for`` from now. One conditional UPDATE decides, so concurrent
        attempts can never claim more than ``limit`` slots between them."""
        t = admin_login_throttles
        await self.conn.execute(
            insert_ignoring_conflicts(self.conn, t),
            {"key": key, "subject": subject, "attempts": 0, "window_ends": now + window},
        )
        expired = t.c.window_ends <= now
        fresh_window_ends = now + (lock_for if limit <= 1 else window)
        result = await self.conn.execute(
            update(t)
            .where(t.c.key == key, or_(expired, t.c.attempts < limit))
            .values(
                attempts=case((expired, 1), else_=t.c.attempts + 1),
                window_ends=case(
                    (expired, fresh_window_ends),
                    (t.c.attempts + 1 >= limit, now + lock_for),
                    else_=t.c.window_ends,
                ),
            )
        )
        return result.rowcount == 1

    async def release_attempt(self, key: str) -> None:
        """Give back one counted attempt (it turned out to be a successful sign-in)."""
        t = admin_login_throttles
        await self.conn.execute(
            update(t).where(t.c.key == key, t.c.attempts > 0).values(attempts=t.c.attempts - 1)
        )

    async def clear_throttles(self, *keys: str) -> None:
        t = admin_login_throttles
        await self.conn.execute(delete(t).where(t.c.key.in_(keys)))

    async def clear_subject(self, subject: str) -> int:
        """Lift every lock on one account (from any IP); how many counters were cleared."""
        t = admin_login_throttles
        result = await self.conn.execute(delete(t).where(t.c.subject == subject))
        return int(result.rowcount)

    async def purge_throttles(self, *, before: datetime) -> None:
        t = admin_login_throttles
        await self.conn.execute(delete(t).where(t.c.window_ends < before))

    async def record_login(self, user_id: str, *, at: datetime) -> None:
        await self.conn.execute(
            update(admin_users)
            .where(admin_users.c.id == user_id)
            .values(failed_logins=0, locked_until=None, last_login_at=at)
        )

    # --- sessions -----------------------------------------------------------------------

    async def add_session(self, session: AdminSession) -> None:
        await self.conn.execute(
            insert(admin_sessions).values({f: getattr(session, f) for f in _SESSION_FIELDS})
        )

    async def active_session(
        self, token_hash: str, *, now: datetime
    ) -> tuple[AdminSession, AdminUser] | None:
        row = (
            await self.conn.execute(
                select(admin_sessions, admin_users)
                .join(admin_users, admin_users.c.id == admin_sessions.c.admin_id)
                .where(
                    admin_sessions.c.token_hash == token_hash,
                    admin_sessions.c.revoked_at.is_(None),
                    admin_sessions.c.expires_at > now,
                )
            )
        ).first()
        if row is None:
            return None
        m = row._mapping
        session = AdminSession(**{f: m[admin_sessions.c[f]] for f in _SESSION_FIELDS})
        user = AdminUser(**{f: m[admin_users.c[f]] for f in _USER_FIELDS})
        return session, user

    async def revoke_session(self, token_hash: str, *, at: datetime) -> None:
        await self.conn.execute(
            update(admin_sessions)
            .where(admin_sessions.c.token_hash == token_hash, admin_sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )

    # --- read models for the console ----------------------------------------------------

    def _orders_query(self, where: OrderSearch) -> Select[Any]:
        query: Select[Any] = select(orders)
        if where.text:
            query = query.where(orders.c.id.in_(_orders_found(where.text, self._dialect)))
        if where.customer_id:
            query = query.where(orders.c.customer_id == where.customer_id)
        if where.status is not None:
            query = query.where(orders.c.status == where.status.value)
        if where.channel:
            query = query.where(
                select(payments.c.id)
                .where(payments.c.order_id == orders.c.id, payments.c.channel == where.channel)
                .exists()
            )
        if where.created_gte is not None:
            query = query.where(orders.c.created_at >= where.created_gte)
        if where.created_lt is not None:
            query = query.where(orders.c.created_at < where.created_lt)
        return query

    async def search_orders(
        self, where: OrderSearch, *, limit: int, starting_after: str | None
    ) -> tuple[list[OrderRecord], bool]:
        """Newest first, without lines (a list page shows totals only)."""
        query = self._orders_query(where)
        if starting_after is not None:
            query = query.where(orders.c.id < starting_after)
        rows = (await self.conn.execute(query.order_by(orders.c.id.desc()).limit(limit + 1))).all()
        return [_order(r._mapping) for r in rows[:limit]], len(rows) > limit

    async def orders_page(
        self, where: OrderSearch, *, sort: str, limit: int, offset: int
    ) -> tuple[list[OrderRecord], int]:
        """One page of orders (``sort``: ``newest``, ``oldest``, ``amount``, ``-amount``)
        and how many match in all."""
        listing = Listing(self._orders_query(where), orders.c.id, _ORDER_SORTS)
        rows, total = await listing.page(self.conn, sort=sort, limit=limit, offset=offset)
        return [_order(r) for r in rows], total

    async def stream_orders(
        self, where: OrderSearch, *, batch: int = 1000
    ) -> AsyncIterator[OrderRecord]:
        """Every matching order, newest first, read ``batch`` at a time by keyset (an
        export of any size never sits in memory)."""
        listing = Listing(self._orders_query(where), orders.c.id, _ORDER_SORTS)
        async for row in listing.stream(self.conn, batch=batch):
            yield _order(row)

    def _payments_query(self, where: PaymentSearch) -> Select[Any]:
        query: Select[Any] = select(payments)
        if where.text:
            query = query.where(payments.c.id.in_(_payments_found(where.text, self._dialect)))
        for column, value in (
            (payments.c.customer_id, where.customer_id),
            (payments.c.status, where.status),
            (payments.c.channel, where.channel),
        ):
            if value is not None:
                query = query.where(column == value)
        if where.created_gte is not None:
            query = query.where(payments.c.created_at >= where.created_gte)
        if where.created_lt is not None:
            query = query.where(payments.c.created_at < where.created_lt)
        return query

    async def payments_page(
        self, where: PaymentSearch, *, sort: str, limit: int, offset: int
    ) -> tuple[list[PaymentRecord], int]:
        listing = Listing(self._payments_query(where), payments.c.id, _PAYMENT_SORTS)
        rows, total = await listing.page(self.conn, sort=sort, limit=limit, offset=offset)
        return [_payment(r) for r in rows], total

    async def stream_payments(
        self, where: PaymentSearch, *, batch: int = 1000
    ) -> AsyncIterator[PaymentRecord]:
        listing = Listing(self._payments_query(where), payments.c.id, _PAYMENT_SORTS)
        async for row in listing.stream(self.conn, batch=batch):
            yield _payment(row)

    async def customers_starting(self, prefix: str, *, limit: int) -> list[str]:
        """Customer ids (from orders and wallets) starting with ``prefix``, any case."""
        rows = await self.conn.execute(self.customers_query(prefix, limit=limit))
        return [str(r.customer_id) for r in rows]

    def customers_query(self, prefix: str, *, limit: int) -> Select[Any]:
        d = self._dialect
        ids = (
            select(orders.c.customer_id.label("customer_id"))
            .where(starts_with_lowered(orders.c.customer_id, prefix, d))
            .union(
                select(wallet_balances.c.customer_id).where(
                    starts_with_lowered(wallet_balances.c.customer_id, prefix, d)
                )
            )
            .subquery()
        )
        return select(ids.c.customer_id).order_by(ids.c.customer_id).limit(limit)

    async def account_balances(self) -> list[AccountBalance]:
        """Every ledger account with its stored balance (the sum of its shards)."""
        total = func.coalesce(func.sum(ledger_balances.c.balance), 0)
        rows = await self.conn.execute(
            select(ledger_accounts, total.label("balance"))
            .outerjoin(ledger_balances, ledger_balances.c.account_key == ledger_accounts.c.key)
            .group_by(*ledger_accounts.c)
            .order_by(ledger_accounts.c.currency, ledger_accounts.c.kind, ledger_accounts.c.key)
        )
        return [
            AccountBalance(r.key, r.kind, r.type, r.currency, r.qualifier, int(r.balance))
            for r in rows
        ]

    async def paid_orders_per_day(self, days: BusinessDays) -> list[tuple[str, str, int, int]]:
        """``(day, currency, orders, gross)`` of orders paid within ``days``, by the days'
        own (local) calendar."""
        day = self._day(orders.c.paid_at, days)
        rows = await self.conn.execute(
            select(day.label("day"), orders.c.currency, func.count(), func.sum(orders.c.total))
            .where(orders.c.paid_at.is_not(None), *_within(orders.c.paid_at, days))
            .group_by(day, orders.c.currency)
            .order_by(day)
        )
        return [(str(d), c, int(n), int(s)) for d, c, n, s in rows]

    async def payments_per_channel(self, since: datetime) -> list[tuple[str, str, int, int, int]]:
        """``(channel, currency, finished, succeeded, fees)`` of payments created since:
        finished attempts only (succeeded, failed, closed), as channel choice counts
        them; one still open is neither a success nor a failure yet."""
        succeeded = func.sum(case((payments.c.status == "succeeded", 1), else_=0))
        fees = func.coalesce(func.sum(payments.c.fee), 0)
        rows = await self.conn.execute(
            select(payments.c.channel, payments.c.currency, func.count(), succeeded, fees)
            .where(payments.c.created_at >= since, payments.c.status.in_(FINISHED_STATUSES))
            .group_by(payments.c.channel, payments.c.currency)
            .order_by(payments.c.channel, payments.c.currency)
        )
        return [(ch, cur, int(n), int(ok or 0), int(fee)) for ch, cur, n, ok, fee in rows]

    async def postings_per_day(
        self, days: BusinessDays, kinds: list[str]
    ) -> list[tuple[str, str, str, int]]:
        """``(day, currency, kind, sum of postings)`` to accounts of ``kinds`` within
        ``days``."""
        day = self._day(journal_entries.c.occurred_at, days)
        rows = await self.conn.execute(
            select(
                day, ledger_accounts.c.currency, ledger_accounts.c.kind, func.sum(postings.c.amount)
            )
            .select_from(
                postings.join(journal_entries, journal_entries.c.seq == postings.c.entry_seq).join(
                    ledger_accounts, ledger_accounts.c.key == postings.c.account_key
                )
            )
            .where(*_within(journal_entries.c.occurred_at, days), ledger_accounts.c.kind.in_(kinds))
            .group_by(day, ledger_accounts.c.currency, ledger_accounts.c.kind)
            .order_by(day)
        )
        return [(str(d), cur, kind, int(total)) for d, cur, kind, total in rows]

    @staticmethod
    def _day(column: Any, days: BusinessDays) -> Any:
        """A column's business day as ``YYYY-MM-DD`` text: which of ``days`` its instant
        falls in. The days' bounds are computed in Python from the time zone (so DST and
        half-hour zones cut right) and compared as instants, the same on either engine."""
        bounds = days.starts[1:]
        names = [d.isoformat() for d in days.days]
        if not bounds:
            return literal(names[0])
        return case(
            *[(column < bound, name) for bound, name in zip(bounds, names, strict=False)],
            else_=names[-1],
        )
