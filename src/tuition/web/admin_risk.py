"""Risk control in the console: the rules editor, the review queue and the decision log
(with blocked attempts and the channels' circuit breakers).

Every change is a CSRF-checked POST through the same use cases as the API; a refused one
shows the page again with the error's code and message. The operator is recorded as
``admin:<email>``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from tuition.api.deps import get_container
from tuition.api.risk import refunder
from tuition.domain.errors import NotFound, TuitionError, ValidationFailed
from tuition.domain.ids import Prefix
from tuition.domain.risk import RuleKind, Stage, params_out
from tuition.services import risk as risk_service
from tuition.services.channel_choice import breaker_states
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import PAGE, Text, next_url
from tuition.web.admin_session import Operator, OperatorDep, actor, csrf_ok, refused
from tuition.web.pages import render

router = APIRouter(tags=["admin console"], include_in_schema=False)

Id = Annotated[str, Path(max_length=40)]
_STATUSES = ("open", "approved", "rejected")


async def _rules_page(
    request: Request,
    operator: Operator,
    *,
    problem: TuitionError | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    container = get_container(request)
    rules = await risk_service.list_rules(container.uow())
    breakers = await breaker_states(container.uow(), now=container.clock.now())
    return page(
        request,
        "admin/risk_rules.html",
        operator,
        "risk",
        status_code=200 if problem is None else problem.status,
        rules=[(r, json.dumps(params_out(r.kind, r.params), ensure_ascii=False)) for r in rules],
        kinds=[k.value for k in RuleKind],
        stages=[s.value for s in Stage],
        breakers=breakers,
        problem=problem,
        form=form or {},
    )


@router.get("/admin/risk")
async def rules(request: Request, operator: OperatorDep) -> Response:
    return await _rules_page(request, operator)


def _command(form: Any) -> risk_service.RuleInput:
    text = _field(form.get("params"), 20_000)
    try:
        params = json.loads(text or "{}")
    except ValueError:
        raise ValidationFailed("params must be a JSON object", param="params") from None
    if not isinstance(params, dict):
        raise ValidationFailed("params must be a JSON object", param="params")
    stages = [s for s in form.getlist("stages") if isinstance(s, str)]
    return risk_service.RuleInput(
        name=_field(form.get("name"), 200) or "rule",
        kind=_field(form.get("kind"), 40),
        params=params,
        stages=stages or None,
        score=_field(form.get("score"), 40) or None,
        action=_field(form.get("action"), 10) or None,
        active=form.get("active") == "on",
    )


@router.post("/admin/risk/rules")
async def create_rule(request: Request, operator: OperatorDep) -> Response:
    form = await request.form(max_files=0, max_fields=20)
    if not csrf_ok(operator.csrf_token, _field(form.get("csrf_token"))):
        return refused(request)
    container = get_container(request)
    try:
        await risk_service.create_rule(
            _command(form), container.uow(), clock=container.clock, actor=actor(request, operator)
        )
    except TuitionError as exc:
        return await _rules_page(request, operator, problem=exc, form=dict(form))
    return RedirectResponse("/admin/risk", status_code=303)


@router.post("/admin/risk/rules/{rule_id}")
async def replace_rule(request: Request, operator: OperatorDep, rule_id: Id) -> Response:
    form = await request.form(max_files=0, max_fields=20)
    if not csrf_ok(operator.csrf_token, _field(form.get("csrf_token"))):
        return refused(request)
    container = get_container(request)
    try:
        await risk_service.replace_rule(
            rule_id,
            _command(form),
            container.uow(),
            clock=container.clock,
            actor=actor(request, operator),
        )
    except NotFound:
        return render(request, "admin/not_found.html", {}, status_code=404)
    except TuitionError as exc:
        return await _rules_page(request, operator, problem=exc)
    return RedirectResponse("/admin/risk", status_code=303)


@router.get("/admin/risk/reviews")
async def reviews(
    request: Request, operator: OperatorDep, status: Text = "open", after: Text = ""
) -> Response:
    return await _reviews_page(request, operator, status=status, after=after)


async def _reviews_page(
    request: Request,
    operator: Operator,
    *,
    status: str = "open",
    after: str = "",
    problem: TuitionError | None = None,
) -> Response:
    container = get_container(request)
    cursor = after if after.startswith(f"{Prefix.RISK_REVIEW.value}_") else None
    found, more = await risk_service.list_reviews(
        container.uow(),
        status=status if status in _STATUSES else None,
        limit=PAGE,
        starting_after=cursor,
    )
    return page(
        request,
        "admin/risk_reviews.html",
        operator,
        "risk",
        status_code=200 if problem is None else problem.status,
        reviews=found,
        statuses=_STATUSES,
        filters={"status": status},
        problem=problem,
        next_url=next_url(request, found[-1].id) if more and found else None,
    )


@router.post("/admin/risk/reviews/{review_id}/{verdict}")
async def decide(request: Request, operator: OperatorDep, review_id: Id, verdict: Id) -> Response:
    form = await request.form(max_files=0, max_fields=5)
    if not csrf_ok(operator.csrf_token, _field(form.get("csrf_token"))):
        return refused(request)
    if verdict not in ("approve", "reject"):
        return render(request, "admin/not_found.html", {}, status_code=404)
    container = get_container(request)
    by = f"admin:{operator.user.email}"
    note = _field(form.get("note"), 500) or None
    try:
        if verdict == "approve":
            await risk_service.approve_review(
                container.uow(),
                review_id,
                by=by,
                note=note,
                clock=container.clock,
                actor=actor(request, operator),
            )
        else:
            await risk_service.reject_review(
                container.uow(),
                review_id,
                by=by,
                note=note,
                clock=container.clock,
                refund=refunder(container, by),
                actor=actor(request, operator),
            )
    except NotFound:
        return render(request, "admin/not_found.html", {}, status_code=404)
    except TuitionError as exc:
        return await _reviews_page(request, operator, status="", problem=exc)
    return RedirectResponse("/admin/risk/reviews", status_code=303)


@router.get("/admin/risk/decisions")
async def decisions(request: Request, operator: OperatorDep) -> Response:
    container = get_container(request)
    return page(
        request,
        "admin/risk_decisions.html",
        operator,
        "risk",
        decisions=await risk_service.decision_log(container.uow(), limit=PAGE),
        attempts=await risk_service.blocked_attempts(container.uow(), limit=PAGE),
    )


def _field(value: object, limit: int = 600) -> str:
    return value[:limit] if isinstance(value, str) else ""


routers: list[APIRouter] = [router]
