"""Notification audit log, notification de-duplication, and the transactional outbox."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.ids import new_id
from tuition.store.direct import Direct
from tuition.store.staged import StagedWrites
from tuition.store.tables import notification_effects, notifications, outbox_events


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    id: str
    channel: str
    received_at: datetime
    headers: dict[str, str]
    body: str
    verdict: str
    reason: str | None
    payment_id: str | None
    refund_id: str | None
    event: str | None
    trade_no: str | None


@dataclass(frozen=True, slots=True)
class NotificationFilter:
    """The notifications log's filters; ``received_lt`` is exclusive."""

    channel: str | None = None
    verdict: str | None = None
    payment_id: str | None = None
    received_gte: datetime | None = None
    received_lt: datetime | None = None


def _notification(r: Any) -> NotificationRecord:
    return NotificationRecord(**{f: r._mapping[f] for f in NotificationRecord.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: str
    type: str
    object_id: str
    data: dict[str, Any]
    created_at: datetime


class EventRepository:
    def __init__(self, conn: AsyncConnection, staged: StagedWrites) -> None:
        self.conn, self.staged = conn, staged

    async def record_notification(self, record: NotificationRecord) -> None:
        self.staged.insert(
            notifications,
            {f: getattr(record, f) for f in NotificationRecord.__dataclass_fields__},
        )

    async def claim_effect(
        self, *, channel: str, trade_no: str, event: str, notification_id: str
    ) -> bool:
        """True for the first notification with this key; a copy gets False (UNIQUE)."""
        claimed = await _CLAIM_EFFECT.rowcount(
            self.conn,
            {
                "channel": channel,
                "trade_no": trade_no,
                "event": event,
                "notification_id": notification_id,
            },
        )
        return claimed == 1

    async def notifications_for(self, payment_id: str) -> list[NotificationRecord]:
        rows = await self.conn.execute(
            select(notifications)
            .where(notifications.c.payment_id == payment_id)
            .order_by(notifications.c.id)
        )
        return [
            NotificationRecord(
                **{f: r._mapping[f] for f in NotificationRecord.__dataclass_fields__}
            )
            for r in rows
        ]

    async def notification(self, notification_id: str) -> NotificationRecord | None:
        row = (
            await self.conn.execute(
                select(notifications).where(notifications.c.id == notification_id)
            )
        ).first()
        return None if row is None else _notification(row)

    async def notifications_page(
        self, where: NotificationFilter, *, limit: int, offset: int
    ) -> tuple[list[NotificationRecord], int]:
        """Notifications as received, newest first, and how many match ``where``."""
        conditions: list[ColumnElement[bool]] = []
        if where.channel is not None:
            conditions.append(notifications.c.channel == where.channel)
        if where.verdict is not None:
            conditions.append(notifications.c.verdict == where.verdict)
        if where.payment_id is not None:
            conditions.append(notifications.c.payment_id == where.payment_id)
        if where.received_gte is not None:
            conditions.append(notifications.c.received_at >= where.received_gte)
        if where.received_lt is not None:
            conditions.append(notifications.c.received_at < where.received_lt)
        total = await self.conn.scalar(
            select(func.count()).select_from(notifications).where(*conditions)
        )
        rows = await self.conn.execute(
            select(notifications)
            .where(*conditions)
            .order_by(notifications.c.received_at.desc(), notifications.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_notification(r) for r in rows], int(total or 0)

    async def emit(
        self, type_: str, object_id: str, data: Mapping[str, Any], *, at: datetime
    ) -> str:
        """Write an event in the caller's transaction (staged: it goes out with the
        commit); the worker delivers it later."""
        event_id = new_id("evt")
        self.staged.insert(
            outbox_events,
            {
                "id": event_id,
                "type": type_,
                "object_id": object_id,
                "data": dict(data),
                "created_at": at,
            },
        )
        return event_id

    async def events_for(self, object_id: str) -> list[OutboxEvent]:
        rows = await self.conn.execute(
            select(outbox_events)
            .where(outbox_events.c.object_id == object_id)
            .order_by(outbox_events.c.id)
        )
        return [OutboxEvent(r.id, r.type, r.object_id, r.data, r.created_at) for r in rows]


_CLAIM_EFFECT = Direct(
    postgresql.insert(notification_effects).on_conflict_do_nothing(),
    sqlite=sqlite.insert(notification_effects).on_conflict_do_nothing(),
)
