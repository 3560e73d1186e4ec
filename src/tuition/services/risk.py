"""Risk control use cases: rules as data, assessing orders and payments, the review queue.

Orders and payments call the ``screen_*`` hooks inside their own unit of work. A block
raises :class:`RiskBlocked` (403 ``risk_blocked``); the caller's transaction rolls back,
and :func:`refusing` writes the attempt for audit in a transaction of its own, so a block
leaves that row and nothing else. A review at order time keeps the order with an open
review (payment refused until approved); at payment time it refuses the payment with
409 ``risk_review_pending`` and opens the review the same way (docs/risk.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from tuition.clock import Clock
from tuition.domain.errors import Conflict, InvalidRequest, NotFound, TuitionError
from tuition.domain.ids import Prefix, new_id
from tuition.domain.orders import OrderStatus
from tuition.domain.risk import (
    FAILED_PAYMENTS,
    Assessment,
    Attempt,
    Client,
    Decision,
    RiskBlocked,
    RiskPolicy,
    Rule,
    RuleKind,
    Stage,
    Subject,
    counted_reason,
    decide,
    params_out,
    parse_params,
    parse_score,
    parse_stages,
    static_reason,
    window_start,
)
from tuition.services import audit
from tuition.store.orders import OrderRecord
from tuition.store.risk import AttemptRecord, DecisionRecord, ReviewRecord, RiskRepository
from tuition.store.uow import UnitOfWork

T = TypeVar("T")

REVIEW_PENDING = "risk_review_pending"


class RiskReviewPending(Conflict):
    """The attempt waits for an operator's review: 409 ``risk_review_pending``."""

    default_code = REVIEW_PENDING

    def __init__(
        self,
        message: str,
        *,
        subject: Subject | None = None,
        assessment: Assessment | None = None,
        at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.subject, self.assessment, self.at = subject, assessment, at


def risk(uow: UnitOfWork) -> RiskRepository:
    """The risk repository on ``uow``'s open connection."""
    return RiskRepository(uow.conn)


RULES_CACHE_SECONDS = 5.0
"""How long the active rules are kept in a process without reading them again: a rule
changed through another process applies here within this many seconds; one changed
through this process, at once."""

_rules_cache: weakref.WeakKeyDictionary[Any, tuple[float, list[Rule]]] = weakref.WeakKeyDictionary()


def _cached_rules(uow: UnitOfWork) -> list[Rule] | None:
    hit = _rules_cache.get(uow.engine)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


async def active_rules(uow: UnitOfWork) -> list[Rule]:
    """Inside an open unit of work: the active rules, cached per database engine."""
    cached = _cached_rules(uow)
    if cached is not None:
        return cached
    rules = await risk(uow).rules(active_only=True)
    _rules_cache[uow.engine] = (time.monotonic() + RULES_CACHE_SECONDS, rules)
    return rules


def _forget_rules() -> None:
    _rules_cache.clear()


async def risk_is_on(uow: UnitOfWork, stage: Stage | None = None) -> bool:
    """Whether any active rule runs (at ``stage``): without one, risk control is off and
    costs no query (open reviews then hold nothing)."""
    rules = _cached_rules(uow)
    if rules is None:
        async with uow.autocommit() as single:
            rules = await active_rules(single)
    return any(stage is None or r.runs_at(stage) for r in rules)


# --- rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleInput:
    name: str
    kind: str
    params: Mapping[str, Any]
    stages: Sequence[str] | None = None
    score: str | None = None
    action: str | None = None
    active: bool = True


def _rule(cmd: RuleInput, rule_id: str, created_at: datetime, now: datetime) -> Rule:
    try:
        kind = RuleKind(cmd.kind)
    except ValueError:
        raise InvalidRequest(
            f"unknown rule kind {cmd.kind!r}; known: " + ", ".join(k.value for k in RuleKind),
            code="validation_failed",
            param="kind",
        ) from None
    action = None
    if cmd.action is not None:
        if cmd.action not in (Decision.REVIEW, Decision.BLOCK):
            raise InvalidRequest(
                "action must be review, block or null", code="validation_failed", param="action"
            )
        action = Decision(cmd.action)
    return Rule(
        id=rule_id,
        name=cmd.name,
        kind=kind,
        stages=parse_stages(kind, cmd.stages),
        params=parse_params(kind, cmd.params),
        score=parse_score(cmd.score),
        action=action,
        active=cmd.active,
        created_at=created_at,
        updated_at=now,
    )


def _audited_rule(rule: Rule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "kind": rule.kind.value,
        "params": params_out(rule.kind, rule.params),
        "stages": [s.value for s in rule.stages],
        "score": str(rule.score),
        "action": None if rule.action is None else rule.action.value,
        "active": rule.active,
    }


async def create_rule(
    cmd: RuleInput, uow: UnitOfWork, *, clock: Clock, actor: audit.Actor = audit.SYSTEM
) -> Rule:
    now = clock.now()
    rule = _rule(cmd, new_id(Prefix.RISK_RULE), now, now)
    async with uow:
        await risk(uow).add_rule(rule)
        await audit.record(
            uow.conn, actor, "risk_rule.created", rule.id, clock=clock, after=_audited_rule(rule)
        )
        uow.outcome(rule.id)
        await uow.commit()
    _forget_rules()
    return rule


async def replace_rule(
    rule_id: str,
    cmd: RuleInput,
    uow: UnitOfWork,
    *,
    clock: Clock,
    actor: audit.Actor = audit.SYSTEM,
) -> Rule:
    async with uow:
        found = await risk(uow).get_rule(rule_id)
        if found is None:
            raise NotFound(f"no risk rule {rule_id!r}", code="risk_rule_not_found")
        rule = _rule(cmd, rule_id, found.created_at, clock.now())
        await risk(uow).replace_rule(rule)
        await audit.record(
            uow.conn,
            actor,
            "risk_rule.replaced",
            rule.id,
            clock=clock,
            before=_audited_rule(found),
            after=_audited_rule(rule),
        )
        await uow.commit()
    _forget_rules()
    return rule


async def get_rule(uow: UnitOfWork, rule_id: str) -> Rule:
    async with uow:
        found = await risk(uow).get_rule(rule_id)
    if found is None:
        raise NotFound(f"no risk rule {rule_id!r}", code="risk_rule_not_found")
    return found


async def list_rules(uow: UnitOfWork) -> list[Rule]:
    async with uow:
        return await risk(uow).rules()


# --- assessing --------------------------------------------------------------------------


async def assess(
    uow: UnitOfWork, subject: Subject, *, at: datetime, thresholds: RiskPolicy
) -> Assessment:
    """Inside an open unit of work: run every active rule of ``subject.stage``.

    Velocity rules count this attempt by one UPSERT each (exact under concurrency; the
    count goes with the transaction if it rolls back); coupon guessing reads its count.
    """
    repo = risk(uow)
    rules = [r for r in await active_rules(uow) if r.runs_at(subject.stage)]
    new_customer: bool | None = None
    reasons = []
    for rule in rules:
        if rule.kind in (RuleKind.VELOCITY, RuleKind.COUPON_GUESSING):
            value = subject.key_value(rule.key)
            if value is None:
                continue
            key = f"{rule.key.value}:{value}"
            start = window_start(at, rule.window)
            if rule.params.get("event") == FAILED_PAYMENTS:  # facts, read over a rolling window
                count = await repo.failed_payments(subject.customer_id, since=at - rule.window)
            elif rule.kind is RuleKind.VELOCITY:
                count = await repo.bump(rule.id, key, start)
            else:
                count = await repo.count(rule.id, key, start)
            found = counted_reason(rule, subject, count)
        else:
            if rule.kind is RuleKind.NEW_CUSTOMER_AMOUNT and new_customer is None:
                new_customer = not await repo.has_paid_before(subject.customer_id)
            found = static_reason(rule, subject, new_customer=bool(new_customer))
        if found is not None:
            reasons.append(found)
    return decide(reasons, thresholds)


async def screen_order(
    uow: UnitOfWork, subject: Subject, *, at: datetime, thresholds: RiskPolicy
) -> Assessment:
    """Order hook, inside the order's unit of work, before the order is added: raises
    RiskBlocked on a block; records the decision (and opens a review) otherwise.

    With no active rule at the order stage nothing is assessed; the client the platform
    passed is still recorded (channel choice reads the buyer's device from it).
    """
    if not any(r.runs_at(Stage.ORDER) for r in await active_rules(uow)):
        assessment = decide([], thresholds)
        if subject.client != Client():
            await record_decision(uow, subject, assessment, at=at)
        return assessment
    assessment = await assess(uow, subject, at=at, thresholds=thresholds)
    if assessment.decision is Decision.BLOCK:
        raise RiskBlocked(
            "this order was refused by risk control", attempt=Attempt(subject, assessment, at)
        )
    await record_decision(uow, subject, assessment, at=at)
    return assessment


async def screen_payment(
    uow: UnitOfWork, subject: Subject, *, at: datetime, thresholds: RiskPolicy
) -> None:
    """Payment hook, inside the payment's unit of work, before the attempt is stored.

    When reviews hold the payment: an order under review cannot be paid (409), and a
    review now raises RiskReviewPending (the review is opened by :func:`refusing` after
    the attempt's transaction rolled back). When they hold entitlements, the payment
    goes ahead and a review is opened with it. An order approved by an operator is not
    assessed again; a block raises RiskBlocked.
    """
    assert subject.order_id is not None
    if not await active_rules(uow):
        return  # risk control is off
    repo = risk(uow)
    holds_payment = thresholds.hold == "payment"
    if await repo.open_review_of(subject.order_id) is not None:
        if holds_payment:
            raise RiskReviewPending(f"order {subject.order_id} is waiting for a risk review")
        return  # paid meanwhile; its entitlements wait for the review
    if await repo.approved_review_of(subject.order_id) is not None:
        return
    order_decision = await repo.decision_of(order_id=subject.order_id, stage=Stage.ORDER)
    if order_decision is not None:  # the order's client, where the payment says nothing
        known = Client.from_dict(order_decision.client)
        subject = replace(
            subject, client=Client(subject.client.ip or known.ip, known.device_id, known.user_agent)
        )
    assessment = await assess(uow, subject, at=at, thresholds=thresholds)
    if assessment.decision is Decision.BLOCK:
        raise RiskBlocked(
            "this payment was refused by risk control", attempt=Attempt(subject, assessment, at)
        )
    if assessment.decision is Decision.REVIEW and holds_payment:
        raise RiskReviewPending(
            f"order {subject.order_id} needs a risk review before it can be paid",
            subject=subject,
            assessment=assessment,
            at=at,
        )
    await record_decision(uow, subject, assessment, at=at)


async def screen_refund(
    uow: UnitOfWork, subject: Subject, *, at: datetime, thresholds: RiskPolicy
) -> None:
    """Refund hook, inside the refund's unit of work, before anything is held.

    A refund of an order under an open refund review waits (409); once an operator
    approved one, the order's refunds are not assessed again. A block raises
    RiskBlocked; a review RiskReviewPending (opened after the refund's transaction
    rolled back, by :func:`refusing`).
    """
    assert subject.order_id is not None
    if not await active_rules(uow):
        return  # risk control is off
    repo = risk(uow)
    if await repo.approved_review_of(subject.order_id, stage=Stage.REFUND) is not None:
        return
    open_review = await repo.open_review_of(subject.order_id)
    if open_review is not None and open_review.stage is Stage.REFUND:
        raise RiskReviewPending(f"a refund of order {subject.order_id} waits for a risk review")
    assessment = await assess(uow, subject, at=at, thresholds=thresholds)
    if assessment.decision is Decision.BLOCK:
        raise RiskBlocked(
            "this refund was refused by risk control", attempt=Attempt(subject, assessment, at)
        )
    if assessment.decision is Decision.REVIEW:
        raise RiskReviewPending(
            f"refunds of order {subject.order_id} need a risk review",
            subject=subject,
            assessment=assessment,
            at=at,
        )
    await record_decision(uow, subject, assessment, at=at)


async def record_decision(
    uow: UnitOfWork, subject: Subject, assessment: Assessment, *, at: datetime
) -> DecisionRecord:
    """Inside an open unit of work: store an allow or review decision; a review opens
    the order's review (one open review per order) and emits ``risk.review_opened``."""
    assert subject.order_id is not None
    record = DecisionRecord(
        id=new_id(Prefix.RISK_DECISION),
        stage=subject.stage,
        order_id=subject.order_id,
        payment_id=subject.payment_id,
        customer_id=subject.customer_id,
        amount=subject.amount,
        currency=subject.currency,
        decision=assessment.decision,
        score=assessment.score,
        reasons=[r.to_dict() for r in assessment.reasons],
        client=subject.client.to_dict(),
        created_at=at,
    )
    repo = risk(uow)
    await repo.add_decision(record)
    if assessment.decision is Decision.REVIEW:
        review = ReviewRecord(
            id=new_id(Prefix.RISK_REVIEW),
            order_id=subject.order_id,
            decision_id=record.id,
            stage=subject.stage,
            customer_id=subject.customer_id,
            status="open",
            reasons=record.reasons,
            decided_by=None,
            decided_at=None,
            note=None,
            refund_id=None,
            created_at=at,
            updated_at=at,
        )
        if await repo.open_review(review):
            await uow.events.emit(
                "risk.review_opened", review.id, _review_event(review, "open"), at=at
            )
    return record


async def refusing(uow: UnitOfWork, work: Awaitable[T]) -> T:
    """Run ``work``; when risk control refuses it, keep the refusal's own record.

    A block writes its attempt row; a review at payment time writes its decision and
    opens the review. Both are written after ``work``'s transaction rolled back, in a
    transaction of their own outside any Idempotency-Key claim (the refusal's 4xx answer
    is what a retry with the same key gets).
    """
    try:
        return await work
    except RiskBlocked as blocked:
        await _detached(_write_attempt(uow, blocked.attempt))
        raise
    except RiskReviewPending as held:
        if held.subject is not None and held.assessment is not None and held.at is not None:
            await _detached(_write_review(uow, held.subject, held.assessment, held.at))
        raise


def payment_subject(
    order: OrderRecord, payment_id: str, amount: int, *, ip: str | None, payer: str | None
) -> Subject:
    return Subject(
        stage=Stage.PAYMENT,
        customer_id=order.customer_id,
        amount=amount,
        currency=order.currency,
        client=Client(ip=ip),
        order_id=order.id,
        payment_id=payment_id,
        payer_account=payer,
    )


def refund_subject(order: OrderRecord, amount: int) -> Subject:
    return Subject(
        stage=Stage.REFUND,
        customer_id=order.customer_id,
        amount=amount,
        currency=order.currency,
        order_id=order.id,
    )


def order_subject(order: OrderRecord, client: Client) -> Subject:
    return Subject(
        stage=Stage.ORDER,
        customer_id=order.customer_id,
        amount=order.total,
        currency=order.currency,
        client=client,
        order_id=order.id,
    )


async def refusing_order(
    uow: UnitOfWork, customer_id: str, client: Client, at: datetime, work: Awaitable[T]
) -> T:
    """:func:`refusing` for an order, which also counts unknown coupon codes.

    Each ``coupon_unknown`` refusal is counted for every active coupon-guessing rule (in
    its own transaction, since the order's rolled back); once a rule's count reaches its
    ``max``, the next guess is blocked (403 ``risk_blocked``) instead.
    """
    try:
        return await refusing(uow, work)
    except InvalidRequest as exc:
        if exc.code != "coupon_unknown":
            raise
        subject = Subject(Stage.ORDER, customer_id, 0, "", client)  # not priced yet
        found: list[Any] = []
        await _detached(_count_guess(uow, subject, at, found))
        if not found:
            raise
        assessment = decide(found, RiskPolicy.NONE)
        if assessment.decision is not Decision.BLOCK:
            raise
        attempt = Attempt(subject, assessment, at)
        await _detached(_write_attempt(uow, attempt))
        raise RiskBlocked("too many unknown coupon codes", attempt=attempt) from None


async def _count_guess(uow: UnitOfWork, subject: Subject, at: datetime, found: list[Any]) -> None:
    async with uow.autocommit() as single:
        repo = risk(single)
        for rule in await active_rules(single):
            if rule.kind is not RuleKind.COUPON_GUESSING:
                continue
            value = subject.key_value(rule.key)
            if value is None:
                continue
            count = await repo.bump(
                rule.id, f"{rule.key.value}:{value}", window_start(at, rule.window)
            )
            reason = counted_reason(rule, subject, count - 1)  # guesses before this one
            if reason is not None:
                found.append(reason)
        await single.commit()


async def _detached(work: Awaitable[None]) -> None:
    async def run() -> None:
        await work

    # An empty context: no Idempotency-Key claim is bound to this transaction.
    await asyncio.create_task(run(), context=contextvars.Context())


async def _write_attempt(uow: UnitOfWork, attempt: Attempt) -> None:
    async with uow.autocommit() as single:
        await risk(single).add_attempt(new_id(Prefix.RISK_ATTEMPT), attempt)
        await single.commit()


async def _write_review(
    uow: UnitOfWork, subject: Subject, assessment: Assessment, at: datetime
) -> None:
    async with uow.autocommit() as fresh:
        await record_decision(fresh, subject, assessment, at=at)
        await fresh.commit()


async def holds_entitlements(uow: UnitOfWork, order_id: str) -> bool:
    """Inside an open unit of work: whether the order's entitlements wait for a review
    (never while risk control is off)."""
    if not await active_rules(uow):
        return False
    return await risk(uow).open_review_of(order_id) is not None


# --- reading ----------------------------------------------------------------------------


async def order_risk(
    uow: UnitOfWork, order_id: str, *, client: Client | None = None
) -> dict[str, Any] | None:
    """``risk: {score, decision, reasons}`` of an order (its order-time decision). Just
    after creation (``client`` given), no query is made when nothing was recorded."""
    if client == Client() and not await risk_is_on(uow, Stage.ORDER):
        return None
    async with uow.autocommit() as single:
        found = await risk(single).decision_of(order_id=order_id, stage=Stage.ORDER)
    return None if found is None else found.risk()


async def payment_risk(uow: UnitOfWork, order_id: str, payment_id: str) -> dict[str, Any] | None:
    if not await risk_is_on(uow, Stage.PAYMENT):
        return None
    async with uow.autocommit() as single:
        found = await risk(single).decision_of(
            order_id=order_id, stage=Stage.PAYMENT, payment_id=payment_id
        )
    return None if found is None else found.risk()


async def orders_risk(uow: UnitOfWork, order_ids: list[str]) -> dict[str, dict[str, Any]]:
    """``risk`` of each order of a list page (as :func:`order_risk`), in one query."""
    if not order_ids or not await risk_is_on(uow, Stage.ORDER):
        return {}
    async with uow.autocommit() as single:
        found = await risk(single).latest_decisions(Stage.ORDER, order_ids=order_ids)
    return {order_id: decision.risk() for order_id, decision in found.items()}


async def payments_risk(
    uow: UnitOfWork, payments: list[tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """``risk`` of each ``(order id, payment id)`` of a list page (as :func:`payment_risk`),
    keyed by payment id, in one query."""
    if not payments or not await risk_is_on(uow, Stage.PAYMENT):
        return {}
    async with uow.autocommit() as single:
        found = await risk(single).latest_decisions(
            Stage.PAYMENT, order_ids=[order_id for order_id, _ in payments], by_payment=True
        )
    wanted = {payment_id for _, payment_id in payments}
    return {key: d.risk() for key, d in found.items() if key in wanted}


async def list_reviews(
    uow: UnitOfWork, *, status: str | None, limit: int, starting_after: str | None
) -> tuple[list[ReviewRecord], bool]:
    async with uow:
        return await risk(uow).reviews(status=status, limit=limit, starting_after=starting_after)


async def get_review(uow: UnitOfWork, review_id: str) -> ReviewRecord:
    async with uow:
        found = await risk(uow).get_review(review_id)
    if found is None:
        raise NotFound(f"no risk review {review_id!r}", code="risk_review_not_found")
    return found


async def decision_log(uow: UnitOfWork, *, limit: int) -> list[DecisionRecord]:
    async with uow:
        return await risk(uow).decisions(limit=limit)


async def blocked_attempts(uow: UnitOfWork, *, limit: int) -> list[AttemptRecord]:
    async with uow:
        return await risk(uow).attempts(limit=limit)


# --- deciding reviews -------------------------------------------------------------------


def decided_by(actor: audit.Actor) -> str:
    """How a review names who decided it: ``api_key:key_…``, ``operator:email``, …"""
    return f"{actor.kind}:{actor.name}"


async def approve_review(
    uow: UnitOfWork,
    review_id: str,
    *,
    note: str | None,
    clock: Clock,
    actor: audit.Actor = audit.SYSTEM,
    by: str | None = None,
) -> ReviewRecord:
    """Approve an open review: the order may be paid (and is not assessed again); a paid
    order's held entitlements are granted. ``by`` (default: from ``actor``) is recorded on
    the review; the audit trail names ``actor``."""
    from tuition.services.entitlements import grant_for_order

    now = clock.now()
    async with uow:
        review = await _decide(
            uow, review_id, "approved", by=by or decided_by(actor), note=note, at=now
        )
        await _audit_decision(uow, actor, review, clock=clock)
        order = await uow.orders.get(review.order_id)
        assert order is not None
        if order.status is OrderStatus.PAID and order.paid_at is not None:
            await grant_for_order(uow, order, paid_at=order.paid_at)  # held until now
        await uow.events.emit(
            "risk.review_approved", review.id, _review_event(review, "approved"), at=now
        )
        await uow.commit()
    return await get_review(uow, review_id)


async def reject_review(
    uow: UnitOfWork,
    review_id: str,
    *,
    note: str | None,
    clock: Clock,
    refund: Any = None,
    actor: audit.Actor = audit.SYSTEM,
    by: str | None = None,
) -> ReviewRecord:
    """Reject an open review: an unpaid order is cancelled; a paid one is refunded in full
    through the refunds service (``refund(order_id)`` returns the refund's id). Rejecting
    a refund's review only refuses that refund."""
    from tuition.services.orders import cancel_order

    now = clock.now()
    async with uow:
        review = await _decide(
            uow, review_id, "rejected", by=by or decided_by(actor), note=note, at=now
        )
        await _audit_decision(uow, actor, review, clock=clock)
        order = await uow.orders.get(review.order_id, with_lines=False)
        assert order is not None
        await uow.events.emit(
            "risk.review_rejected", review.id, _review_event(review, "rejected"), at=now
        )
        await uow.commit()
    if review.stage is Stage.REFUND:  # the refund asked for is not made
        return await get_review(uow, review_id)
    if order.status is OrderStatus.PENDING_PAYMENT:
        with contextlib.suppress(TuitionError):  # paid or closed meanwhile: see below
            await cancel_order(uow, order.id, clock=clock)
        order = await _order(uow, order.id)
    if order.status in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED) and refund is not None:
        refund_id = await refund(order.id)
        async with uow:
            await risk(uow).set_review_refund(review_id, refund_id)
            await uow.commit()
    return await get_review(uow, review_id)


async def _order(uow: UnitOfWork, order_id: str) -> Any:
    async with uow:
        found = await uow.orders.get(order_id, with_lines=False)
    assert found is not None
    return found


async def _decide(
    uow: UnitOfWork, review_id: str, status: str, *, by: str, note: str | None, at: datetime
) -> ReviewRecord:
    repo = risk(uow)
    found = await repo.get_review(review_id)
    if found is None:
        raise NotFound(f"no risk review {review_id!r}", code="risk_review_not_found")
    if not await repo.decide_review(review_id, status=status, by=by, note=note, at=at):
        raise Conflict(f"review {review_id} is already {found.status}", code="risk_review_decided")
    return replace(found, status=status, decided_by=by, decided_at=at, note=note)


async def _audit_decision(
    uow: UnitOfWork, actor: audit.Actor, review: ReviewRecord, *, clock: Clock
) -> None:
    await audit.record(
        uow.conn,
        actor,
        f"risk_review.{review.status}",
        review.id,
        clock=clock,
        before={"status": "open"},
        after={
            "status": review.status,
            "order_id": review.order_id,
            "stage": review.stage.value,
            "decided_by": review.decided_by,
            "note": review.note,
        },
    )


def _review_event(review: ReviewRecord, status: str) -> dict[str, Any]:
    return {
        "id": review.id,
        "order_id": review.order_id,
        "customer_id": review.customer_id,
        "stage": review.stage.value,
        "status": status,
        "reasons": review.reasons,
    }
