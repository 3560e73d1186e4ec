"""``/v1/risk``: rules as data, the review queue, the decision log and blocked attempts.

Amount thresholds are major-unit strings per currency (``{"CNY": "5000.00"}``), kept
exactly; scores and coefficients are decimal strings. See docs/risk.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from tuition.api.deps import ActorDep, Container, ContainerDep
from tuition.api.fields import NoNul
from tuition.api.listing import Page, page_of
from tuition.api.routing import v1_router
from tuition.domain.ids import Prefix
from tuition.domain.refunds import RefundReason
from tuition.domain.risk import Rule, params_out
from tuition.services import refunds as refund_service
from tuition.services import risk as risk_service
from tuition.store.risk import AttemptRecord, DecisionRecord, ReviewRecord

router = v1_router(tags=["risk"])

RuleId = Annotated[str, Path(max_length=40, description="A rule id, rsk_…")]
ReviewId = Annotated[str, Path(max_length=40, description="A review id, rrv_…")]


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200), NoNul]
    kind: Literal[
        "amount_threshold",
        "velocity",
        "new_customer_amount",
        "blocklist",
        "coupon_guessing",
        "amount_score",
    ]
    params: dict[str, Any] = Field(description="How the kind is configured (docs/risk.md)")
    stages: list[str] | None = Field(
        default=None, max_length=3, description="order, payment, refund; default every stage"
    )
    score: str | None = Field(default=None, description='Added when triggered, e.g. "30"')
    action: Literal["review", "block"] | None = Field(
        default=None, description="The least decision when triggered; null: the score decides"
    )
    active: StrictBool = True


class RuleOut(BaseModel):
    id: str
    object: str = "risk_rule"
    name: str
    kind: str
    params: dict[str, Any]
    stages: list[str]
    score: str
    action: str | None
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, rule: Rule) -> RuleOut:
        return cls(
            id=rule.id,
            name=rule.name,
            kind=rule.kind.value,
            params=params_out(rule.kind, rule.params),
            stages=[s.value for s in rule.stages],
            score=str(rule.score),
            action=None if rule.action is None else rule.action.value,
            active=rule.active,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


class RuleList(BaseModel):
    data: list[RuleOut]
    has_more: bool


class ReviewOut(BaseModel):
    id: str
    object: str = "risk_review"
    order_id: str
    customer_id: str
    stage: str
    status: str
    reasons: list[dict[str, Any]]
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    refund_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, review: ReviewRecord) -> ReviewOut:
        return cls(
            id=review.id,
            order_id=review.order_id,
            customer_id=review.customer_id,
            stage=review.stage.value,
            status=review.status,
            reasons=review.reasons,
            decided_by=review.decided_by,
            decided_at=review.decided_at,
            note=review.note,
            refund_id=review.refund_id,
            created_at=review.created_at,
        )


class ReviewList(BaseModel):
    data: list[ReviewOut]
    has_more: bool


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(max_length=500), NoNul] | None = None


class DecisionOut(BaseModel):
    id: str
    object: str = "risk_decision"
    stage: str
    order_id: str
    payment_id: str | None
    customer_id: str
    amount: int
    currency: str
    risk: dict[str, Any]
    client: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, d: DecisionRecord) -> DecisionOut:
        return cls(
            id=d.id,
            stage=d.stage.value,
            order_id=d.order_id,
            payment_id=d.payment_id,
            customer_id=d.customer_id,
            amount=d.amount,
            currency=d.currency,
            risk=d.risk(),
            client=d.client,
            created_at=d.created_at,
        )


class AttemptOut(BaseModel):
    id: str
    object: str = "risk_attempt"
    stage: str
    customer_id: str
    order_id: str | None
    amount: int | None
    currency: str | None
    risk: dict[str, Any]
    client: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, a: AttemptRecord) -> AttemptOut:
        return cls(
            id=a.id,
            stage=a.stage.value,
            customer_id=a.customer_id,
            order_id=a.order_id,
            amount=a.amount,
            currency=a.currency,
            risk={"score": str(a.score), "decision": "block", "reasons": a.reasons},
            client=a.client,
            created_at=a.created_at,
        )


def _command(body: RuleIn) -> risk_service.RuleInput:
    return risk_service.RuleInput(
        name=body.name,
        kind=body.kind,
        params=body.params,
        stages=body.stages,
        score=body.score,
        action=body.action,
        active=body.active,
    )


@router.post("/risk/rules", status_code=201, summary="Create a risk rule")
async def create_rule(body: RuleIn, container: ContainerDep, actor: ActorDep) -> RuleOut:
    rule = await risk_service.create_rule(
        _command(body), container.uow(), clock=container.clock, actor=actor
    )
    return RuleOut.of(rule)


@router.get("/risk/rules", summary="List risk rules", description="Oldest first, one page.")
async def list_rules(container: ContainerDep) -> RuleList:
    rules = await risk_service.list_rules(container.uow())
    return RuleList(data=[RuleOut.of(r) for r in rules], has_more=False)


@router.get("/risk/rules/{rule_id}", summary="Get a risk rule")
async def get_rule(rule_id: RuleId, container: ContainerDep) -> RuleOut:
    return RuleOut.of(await risk_service.get_rule(container.uow(), rule_id))


@router.put(
    "/risk/rules/{rule_id}",
    summary="Replace a risk rule",
    description="Every field as in create; `active: false` turns the rule off.",
)
async def replace_rule(
    rule_id: RuleId, body: RuleIn, container: ContainerDep, actor: ActorDep
) -> RuleOut:
    rule = await risk_service.replace_rule(
        rule_id, _command(body), container.uow(), clock=container.clock, actor=actor
    )
    return RuleOut.of(rule)


@router.get("/risk/reviews", summary="The review queue", description="Newest first.")
async def list_reviews(
    container: ContainerDep,
    page: Annotated[Page, page_of(Prefix.RISK_REVIEW)],
    status: Annotated[Literal["open", "approved", "rejected"] | None, Query()] = None,
) -> ReviewList:
    items, has_more = await risk_service.list_reviews(
        container.uow(), status=status, limit=page.limit, starting_after=page.starting_after
    )
    return ReviewList(data=[ReviewOut.of(r) for r in items], has_more=has_more)


@router.get("/risk/reviews/{review_id}", summary="Get a review")
async def get_review(review_id: ReviewId, container: ContainerDep) -> ReviewOut:
    return ReviewOut.of(await risk_service.get_review(container.uow(), review_id))


@router.post(
    "/risk/reviews/{review_id}/approve",
    summary="Approve a review",
    description="The order may then be paid; 409 `risk_review_decided` if already decided.",
)
async def approve_review(
    review_id: ReviewId, body: ReviewDecision, container: ContainerDep, actor: ActorDep
) -> ReviewOut:
    review = await risk_service.approve_review(
        container.uow(), review_id, note=body.note, clock=container.clock, actor=actor
    )
    return ReviewOut.of(review)


@router.post(
    "/risk/reviews/{review_id}/reject",
    summary="Reject a review",
    description="An unpaid order is cancelled; a paid one is refunded in full through the "
    "refunds service (`refund_id`).",
)
async def reject_review(
    review_id: ReviewId, body: ReviewDecision, container: ContainerDep, actor: ActorDep
) -> ReviewOut:
    review = await risk_service.reject_review(
        container.uow(),
        review_id,
        note=body.note,
        clock=container.clock,
        refund=refunder(container, risk_service.decided_by(actor)),
        actor=actor,
    )
    return ReviewOut.of(review)


def refunder(container: Container, by: str) -> Any:
    """The full refund a rejected paid order gets, through the refunds service."""

    async def refund(order_id: str) -> str:
        cmd = refund_service.CreateRefund(
            order_id=order_id,
            reason=RefundReason.FRAUDULENT,
            override=True,
            requested_by=by,
            metadata={"risk": "review_rejected"},
        )
        made = await refund_service.create_refund(
            cmd, container.uow(), deps=container.refund_deps()
        )
        return made.id

    return refund


@router.get("/risk/decisions", summary="The decision log", description="Newest first.")
async def list_decisions(
    container: ContainerDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    items = await risk_service.decision_log(container.uow(), limit=limit)
    return {"data": [DecisionOut.of(d) for d in items], "has_more": False}


@router.get("/risk/attempts", summary="Blocked attempts", description="Newest first, for audit.")
async def list_attempts(
    container: ContainerDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    items = await risk_service.blocked_attempts(container.uow(), limit=limit)
    return {"data": [AttemptOut.of(a) for a in items], "has_more": False}


routers: list[APIRouter] = [router]
