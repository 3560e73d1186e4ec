"""Admin console storage: operators, their sessions, and the console's read models.

A session row stores the SHA-256 of the cookie's random token, never the token: a copy of
the table opens no session. Sign-in attempts are counted by a conditional UPDATE before
the password is checked, so parallel guesses cannot slip past the throttle.
"""

from __future__ import annotations

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
from tuition.domain.orders import OrderStatus
from tuition.store.db import insert_ignoring_conflicts
from tuition.store.orders import OrderRecord
from tuition.store.tables import (
    admin_login_throttles,
    admin_sessions,
    admin_users,
    journal_entries,
    ledger_accounts,
    ledger_balances,
    orders,
    payments,
    postings,
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


@dataclass(frozen=True, slots=True)
class AdminSession:
    token_hash: str
    admin_id: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class OrderSearch:
    """Admin search: ``text`` matches an order id or a customer id exactly; ``channel``
    keeps orders with at least one payment attempt through that channel."""

    text: str | None = None
    status: OrderStatus | None = None
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


def _within(column: Any, days: BusinessDays) -> list[ColumnElement[bool]]:
    return [column >= days.since, column < days.until]


def _user(m: Any) -> AdminUser:
    return AdminUser(**{f: m[f] for f in _USER_FIELDS})


class AdminRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

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

    async def set_password(self, user_id: str, password_hash: str) -> None:
        await self.conn.execute(
            update(admin_users)
            .where(admin_users.c.id == user_id)
            .values(password_hash=password_hash, failed_logins=0, locked_until=None)
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

    async def clear_subject(self, subject: str) -> None:
        """Lift every lock on one account (from any IP)."""
        t = admin_login_throttles
        await self.conn.execute(delete(t).where(t.c.subject == subject))

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

    async def search_orders(
        self, where: OrderSearch, *, limit: int, starting_after: str | None
    ) -> tuple[list[OrderRecord], bool]:
        """Newest first, without lines (a list page shows totals only)."""
        query: Select[Any] = select(orders)
        if where.text:
            query = query.where(or_(orders.c.id == where.text, orders.c.customer_id == where.text))
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
        if starting_after is not None:
            query = query.where(orders.c.id < starting_after)
        rows = (await self.conn.execute(query.order_by(orders.c.id.desc()).limit(limit + 1))).all()
        return [_order(r._mapping) for r in rows[:limit]], len(rows) > limit

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
        """``(channel, currency, attempts, succeeded, fees)`` of payments created since."""
        succeeded = func.sum(case((payments.c.status == "succeeded", 1), else_=0))
        fees = func.coalesce(func.sum(payments.c.fee), 0)
        rows = await self.conn.execute(
            select(payments.c.channel, payments.c.currency, func.count(), succeeded, fees)
            .where(payments.c.created_at >= since)
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
