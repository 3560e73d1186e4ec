"""Risk control: rules, exact velocity counters, decisions, blocked attempts, reviews."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from tuition.domain.orders import OrderStatus
from tuition.domain.risk import Assessment, Attempt, Decision, Rule, RuleKind, Stage
from tuition.store.tables import (
    orders,
    payments,
    risk_attempts,
    risk_counters,
    risk_decisions,
    risk_reviews,
    risk_rules,
)

_PAID_ONCE = (
    OrderStatus.PAID.value,
    OrderStatus.PARTIALLY_REFUNDED.value,
    OrderStatus.REFUNDED.value,
)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    id: str
    stage: Stage
    order_id: str
    payment_id: str | None
    customer_id: str
    amount: int
    currency: str
    decision: Decision
    score: Decimal
    reasons: list[dict[str, Any]]
    client: dict[str, Any]
    created_at: datetime

    def risk(self) -> dict[str, Any]:
        """``risk: {score, decision, reasons}`` as the order and payment show it."""
        return {"score": str(self.score), "decision": self.decision.value, "reasons": self.reasons}


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: str
    stage: Stage
    customer_id: str
    order_id: str | None
    amount: int | None
    currency: str | None
    score: Decimal
    reasons: list[dict[str, Any]]
    client: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    id: str
    order_id: str
    decision_id: str
    stage: Stage
    customer_id: str
    status: str
    reasons: list[dict[str, Any]]
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    refund_id: str | None
    created_at: datetime
    updated_at: datetime


class RiskRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # --- rules ----------------------------------------------------------------------

    async def add_rule(self, rule: Rule) -> None:
        await self.conn.execute(insert(risk_rules).values(**_rule_values(rule)))

    async def replace_rule(self, rule: Rule) -> bool:
        values = _rule_values(rule)
        del values["id"], values["created_at"]
        result = await self.conn.execute(
            update(risk_rules).where(risk_rules.c.id == rule.id).values(**values)
        )
        return bool(result.rowcount)

    async def get_rule(self, rule_id: str) -> Rule | None:
        row = (
            (await self.conn.execute(select(risk_rules).where(risk_rules.c.id == rule_id)))
            .mappings()
            .first()
        )
        return None if row is None else _rule(row)

    async def rules(self, *, active_only: bool = False) -> list[Rule]:
        stmt = select(risk_rules).order_by(risk_rules.c.created_at, risk_rules.c.id)
        if active_only:
            stmt = stmt.where(risk_rules.c.active.is_(True))
        return [_rule(r) for r in (await self.conn.execute(stmt)).mappings()]

    # --- counters -------------------------------------------------------------------

    async def bump(self, rule_id: str, subject: str, window_start: datetime) -> int:
        """Count one more in the window and return the new count, in one statement.

        Concurrent callers queue on the row (the UPSERT locks it until commit), so each
        sees its own number; a rolled-back attempt's count goes away with it.
        """
        values = {"rule_id": rule_id, "subject": subject, "window_start": window_start, "count": 1}
        keys = [risk_counters.c.rule_id, risk_counters.c.subject, risk_counters.c.window_start]
        dialect: Any = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(risk_counters).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={"count": risk_counters.c.count + 1}
        ).returning(risk_counters.c.count)
        return int((await self.conn.execute(stmt)).scalar_one())

    async def count(self, rule_id: str, subject: str, window_start: datetime) -> int:
        found = await self.conn.execute(
            select(risk_counters.c.count).where(
                risk_counters.c.rule_id == rule_id,
                risk_counters.c.subject == subject,
                risk_counters.c.window_start == window_start,
            )
        )
        return int(found.scalar_one_or_none() or 0)

    # --- facts the rules read --------------------------------------------------------

    async def has_paid_before(self, customer_id: str) -> bool:
        stmt = select(
            exists().where(orders.c.customer_id == customer_id, orders.c.status.in_(_PAID_ONCE))
        )
        return bool((await self.conn.execute(stmt)).scalar_one())

    async def failed_payments(self, customer_id: str, *, since: datetime) -> int:
        """The customer's payments that failed since ``since`` (by when they ended)."""
        stmt = select(func.count()).where(
            payments.c.customer_id == customer_id,
            payments.c.status == "failed",
            payments.c.updated_at >= since,
        )
        return int((await self.conn.execute(stmt)).scalar_one())

    # --- decisions and attempts -------------------------------------------------------

    async def add_decision(self, record: DecisionRecord) -> None:
        await self.conn.execute(
            insert(risk_decisions).values(
                id=record.id,
                stage=record.stage.value,
                order_id=record.order_id,
                payment_id=record.payment_id,
                customer_id=record.customer_id,
                amount=record.amount,
                currency=record.currency,
                decision=record.decision.value,
                score=record.score,
                reasons=record.reasons,
                client=record.client,
                created_at=record.created_at,
            )
        )

    async def decision_of(
        self, *, order_id: str, stage: Stage, payment_id: str | None = None
    ) -> DecisionRecord | None:
        stmt = select(risk_decisions).where(
            risk_decisions.c.order_id == order_id, risk_decisions.c.stage == stage.value
        )
        if payment_id is not None:
            stmt = stmt.where(risk_decisions.c.payment_id == payment_id)
        stmt = stmt.order_by(risk_decisions.c.created_at.desc(), risk_decisions.c.id.desc())
        row = (await self.conn.execute(stmt.limit(1))).mappings().first()
        return None if row is None else _decision(row)

    async def latest_decisions(
        self, stage: Stage, *, order_ids: Collection[str], by_payment: bool = False
    ) -> dict[str, DecisionRecord]:
        """For a page of a list: the latest decision at ``stage`` of each of the orders,
        keyed by order id (or, ``by_payment``, by payment id), in one query."""
        if not order_ids:
            return {}
        stmt = (
            select(risk_decisions)
            .where(
                risk_decisions.c.order_id.in_(sorted(set(order_ids))),
                risk_decisions.c.stage == stage.value,
            )
            .order_by(risk_decisions.c.created_at, risk_decisions.c.id)
        )
        found: dict[str, DecisionRecord] = {}
        for row in (await self.conn.execute(stmt)).mappings():
            key = row["payment_id"] if by_payment else row["order_id"]
            if key is not None:
                found[key] = _decision(row)  # later rows win: the latest decision
        return found

    async def decisions(self, *, limit: int, before: str | None = None) -> list[DecisionRecord]:
        stmt = select(risk_decisions).order_by(risk_decisions.c.id.desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(risk_decisions.c.id < before)
        return [_decision(r) for r in (await self.conn.execute(stmt)).mappings()]

    async def add_attempt(self, attempt_id: str, attempt: Attempt) -> None:
        subject = attempt.subject
        await self.conn.execute(
            insert(risk_attempts).values(
                id=attempt_id,
                stage=subject.stage.value,
                customer_id=subject.customer_id,
                order_id=subject.order_id,
                amount=subject.amount if subject.currency else None,
                currency=subject.currency or None,
                score=attempt.assessment.score,
                reasons=[r.to_dict() for r in attempt.assessment.reasons],
                client=subject.client.to_dict(),
                created_at=attempt.at,
            )
        )

    async def attempts(self, *, limit: int, before: str | None = None) -> list[AttemptRecord]:
        stmt = select(risk_attempts).order_by(risk_attempts.c.id.desc()).limit(limit)
        if before is not None:
            stmt = stmt.where(risk_attempts.c.id < before)
        rows = (await self.conn.execute(stmt)).mappings()
        return [
            AttemptRecord(
                id=r["id"],
                stage=Stage(r["stage"]),
                customer_id=r["customer_id"],
                order_id=r["order_id"],
                amount=r["amount"],
                currency=r["currency"],
                score=r["score"],
                reasons=r["reasons"],
                client=r["client"],
                created_at=r["created_at"],
            )
            for r in rows
        ]

    # --- reviews --------------------------------------------------------------------

    async def open_review(self, record: ReviewRecord) -> bool:
        """Open a review; False if the order already has an open one (UNIQUE decides)."""
        dialect: Any = postgresql if self.conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(risk_reviews).values(
            id=record.id,
            order_id=record.order_id,
            open_order_id=record.order_id,
            decision_id=record.decision_id,
            stage=record.stage.value,
            customer_id=record.customer_id,
            status="open",
            reasons=record.reasons,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )
        result = await self.conn.execute(stmt.on_conflict_do_nothing())
        return bool(result.rowcount)

    async def open_review_of(self, order_id: str) -> ReviewRecord | None:
        row = (
            (
                await self.conn.execute(
                    select(risk_reviews).where(risk_reviews.c.open_order_id == order_id)
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else _review(row)

    async def approved_review_of(
        self, order_id: str, *, stage: Stage | None = None
    ) -> ReviewRecord | None:
        stmt = (
            select(risk_reviews)
            .where(risk_reviews.c.order_id == order_id, risk_reviews.c.status == "approved")
            .order_by(risk_reviews.c.id.desc())
            .limit(1)
        )
        if stage is not None:
            stmt = stmt.where(risk_reviews.c.stage == stage.value)
        row = (await self.conn.execute(stmt)).mappings().first()
        return None if row is None else _review(row)

    async def get_review(self, review_id: str) -> ReviewRecord | None:
        row = (
            (await self.conn.execute(select(risk_reviews).where(risk_reviews.c.id == review_id)))
            .mappings()
            .first()
        )
        return None if row is None else _review(row)

    async def reviews(
        self, *, status: str | None, limit: int, starting_after: str | None
    ) -> tuple[list[ReviewRecord], bool]:
        stmt = select(risk_reviews).order_by(risk_reviews.c.id.desc()).limit(limit + 1)
        if status is not None:
            stmt = stmt.where(risk_reviews.c.status == status)
        if starting_after is not None:
            stmt = stmt.where(risk_reviews.c.id < starting_after)
        rows = [_review(r) for r in (await self.conn.execute(stmt)).mappings()]
        return rows[:limit], len(rows) > limit

    async def decide_review(
        self, review_id: str, *, status: str, by: str, note: str | None, at: datetime
    ) -> bool:
        """Compare-and-set ``open`` → ``status``; False if it was decided meanwhile."""
        result = await self.conn.execute(
            update(risk_reviews)
            .where(risk_reviews.c.id == review_id, risk_reviews.c.status == "open")
            .values(
                status=status,
                open_order_id=None,
                decided_by=by,
                decided_at=at,
                note=note,
                updated_at=at,
            )
        )
        return bool(result.rowcount)

    async def set_review_refund(self, review_id: str, refund_id: str) -> None:
        await self.conn.execute(
            update(risk_reviews).where(risk_reviews.c.id == review_id).values(refund_id=refund_id)
        )

    async def open_review_count(self) -> int:
        stmt = select(func.count()).select_from(risk_reviews).where(risk_reviews.c.status == "open")
        return int((await self.conn.execute(stmt)).scalar_one())


def _rule_values(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind.value,
        "stages": [s.value for s in rule.stages],
        "params": dict(rule.params),
        "score": rule.score,
        "action": None if rule.action is None else rule.action.value,
        "active": rule.active,
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def _rule(row: Any) -> Rule:
    return Rule(
        id=row["id"],
        name=row["name"],
        kind=RuleKind(row["kind"]),
        stages=tuple(Stage(s) for s in row["stages"]),
        params=row["params"],
        score=row["score"],
        action=None if row["action"] is None else Decision(row["action"]),
        active=row["active"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _decision(row: Any) -> DecisionRecord:
    return DecisionRecord(
        id=row["id"],
        stage=Stage(row["stage"]),
        order_id=row["order_id"],
        payment_id=row["payment_id"],
        customer_id=row["customer_id"],
        amount=row["amount"],
        currency=row["currency"],
        decision=Decision(row["decision"]),
        score=row["score"],
        reasons=row["reasons"],
        client=row["client"],
        created_at=row["created_at"],
    )


def _review(row: Any) -> ReviewRecord:
    return ReviewRecord(
        id=row["id"],
        order_id=row["order_id"],
        decision_id=row["decision_id"],
        stage=Stage(row["stage"]),
        customer_id=row["customer_id"],
        status=row["status"],
        reasons=row["reasons"],
        decided_by=row["decided_by"],
        decided_at=row["decided_at"],
        note=row["note"],
        refund_id=row["refund_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def assessment_reasons(assessment: Assessment) -> list[dict[str, Any]]:
    return [r.to_dict() for r in assessment.reasons]
