"""Refunds in the console: the refund form of an order page, its confirmation step,
retrying a failed refund, and the list of refunds (searched, filtered, sorted, paged
with a total and exported as filtered, as the orders list is).

Finance and owners may refund any amount, support operators up to
``TUITION_SUPPORT_REFUND_LIMIT`` at once, viewers not at all (domain/operators.py); a
refund is recorded as asked by ``admin:<operator email>``, and so is an override of the
refund rules. Nothing is
refunded on a GET: the order page's form posts to a confirmation page, whose button posts
the refund; both check the session's CSRF token. A refused refund writes nothing and
shows the order page with the rule's code and message; a refund made redirects to the
order page, which reads the refund's status from the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from tuition.api.deps import get_container
from tuition.api.refunds import refund_deps
from tuition.domain.errors import NotFound, PermissionDenied, TuitionError, ValidationFailed
from tuition.domain.money import format_amount, get_currency, parse_decimal_amount
from tuition.domain.operators import Permission, refund_within_limit
from tuition.domain.payments import RefundStatus
from tuition.domain.refunds import LineRequest, RefundReason
from tuition.services import admin as admin_service
from tuition.services import audit
from tuition.services import refunds as refund_service
from tuition.store.admin_lists import AdminLists, RefundSearch, Window
from tuition.store.console_lists import SORTS
from tuition.store.refunds import RefundRecord
from tuition.web.admin_dashboard import page
from tuition.web.admin_filters import (
    PAGE,
    Day,
    Offset,
    Text,
    UntilDay,
    checked_choice,
    checked_days,
    checked_sort,
    csv_refused,
    csv_response,
    local_time,
    paging,
)
from tuition.web.admin_order import REFUNDABLE, Problem, RefundLine, order_page, refund_lines
from tuition.web.admin_roles import requires
from tuition.web.admin_session import Operator, OperatorDep, actor, csrf_ok, refused
from tuition.web.pages import render, secure

router = APIRouter(tags=["admin console"], include_in_schema=False)

MODES = ("all", "amount", "lines")
ObjectId = Annotated[str, Path(max_length=40)]
_FIELD = 40  # longest form value kept for re-filling the form


@dataclass(frozen=True, slots=True)
class RefundForm:
    """The refund form as asked: everything still refundable, an amount, or lines."""

    mode: str
    amount: int | None
    lines: tuple[LineRequest, ...]
    reason: RefundReason
    override: bool

    def hidden_fields(self, currency: str) -> list[tuple[str, str]]:
        """The form again, as the confirmation page posts it."""
        cur = get_currency(currency)
        fields = [("mode", self.mode), ("reason", self.reason.value)]
        if self.amount is not None:
            fields.append(("amount", format_amount(self.amount, cur)))
        for line in self.lines:
            fields.append(("line", str(line.index)))
            if line.amount is not None:
                fields.append((f"line_amount_{line.index}", format_amount(line.amount, cur)))
        if self.override:
            fields.append(("override", "1"))
        return fields


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip()[:200] if isinstance(value, str) else ""


def parse_form(form: FormData, currency: str, line_count: int) -> RefundForm:
    """The refund form, checked; ValidationFailed names the field that is wrong. Amounts
    are typed in major units (``12.50``) and become minor units."""
    cur = get_currency(currency)
    mode = _text(form, "mode") or "all"
    if mode not in MODES:
        raise ValidationFailed("choose what to refund", param="mode")
    try:
        reason = RefundReason(_text(form, "reason") or RefundReason.REQUESTED_BY_CUSTOMER.value)
    except ValueError:
        raise ValidationFailed("choose a reason from the list", param="reason") from None
    amount, lines = None, []
    if mode == "amount":
        amount = _positive(_text(form, "amount"), cur, param="amount")
        if amount is None:
            raise ValidationFailed("enter the amount to refund", param="amount")
    elif mode == "lines":
        chosen: list[int] = []
        for value in form.getlist("line"):
            text = value if isinstance(value, str) else ""
            if not (text.isdigit() and int(text) < line_count):
                raise ValidationFailed(f"the order has no line {text[:10]!r}", param="line")
            if int(text) not in chosen:
                chosen.append(int(text))
        if not chosen:
            raise ValidationFailed("choose at least one line to refund", param="line")
        for index in sorted(chosen):
            param = f"line_amount_{index}"
            lines.append(LineRequest(index, _positive(_text(form, param), cur, param=param)))
    override = _text(form, "override") in ("1", "on", "true")
    return RefundForm(mode, amount, tuple(lines), reason, override)


def _positive(text: str, cur: Any, *, param: str) -> int | None:
    if not text:
        return None
    amount = parse_decimal_amount(text, cur, param=param)
    if amount <= 0:
        raise ValidationFailed("an amount to refund must be more than zero", param=param)
    return amount


def form_values(form: FormData) -> dict[str, Any]:
    """What the operator typed, to fill the form again after a refusal (escaped when
    shown, like everything on the pages)."""
    values: dict[str, Any] = {
        name: _text(form, name)[:_FIELD] for name in ("mode", "amount", "reason", "override")
    }
    values["lines"] = {v for v in form.getlist("line") if isinstance(v, str) and v.isdigit()}
    values["line_amounts"] = {
        key.removeprefix("line_amount_"): _text(form, key)[:_FIELD]
        for key in form
        if key.startswith("line_amount_")
    }
    return values


@dataclass(frozen=True, slots=True)
class Estimate:
    """What the confirmation page says will be refunded, from the preview of the rules."""

    total: int
    rows: list[tuple[RefundLine, int]]  # each line and what it gives back
    blocked: list[RefundLine]  # lines the rules refuse, without an override
    over: bool  # more than the rules allow now


def estimate(refund: RefundForm, lines: list[RefundLine]) -> Estimate:
    def allowed(line: RefundLine) -> int:
        return line.with_override if refund.override else line.refundable

    def blocked(line: RefundLine) -> bool:
        return not refund.override and line.refused_by is not None

    if refund.mode == "lines":
        by_index = {line.index: line for line in lines}
        rows = [
            (by_index[r.index], allowed(by_index[r.index]) if r.amount is None else r.amount)
            for r in refund.lines
            if r.index in by_index
        ]
        over = any(amount > allowed(line) or amount == 0 for line, amount in rows)
        total = sum(amount for _, amount in rows)
        return Estimate(total, rows, [line for line, _ in rows if blocked(line)], over)
    available = sum(allowed(line) for line in lines)
    total = available if refund.amount is None else refund.amount
    # An amount is spread over the lines when it is made; only "everything" lists them.
    rows = (
        [(line, allowed(line)) for line in lines if allowed(line)] if refund.amount is None else []
    )
    stuck = [line for line in lines if blocked(line)] if available == 0 else []
    return Estimate(total, rows, stuck, total > available or total == 0)


class RefundOverLimit(PermissionDenied):
    """More than the operator's role may refund at once."""

    default_code = "refund_over_role_limit"


def check_limit(request: Request, operator: Operator, amount: int, currency: str) -> None:
    """Raise :class:`RefundOverLimit` when ``amount`` is beyond the operator's role."""
    limits = get_container(request).settings.support_refund_limit
    if refund_within_limit(operator.role, amount, currency, limits):
        return
    limit = limits.get(currency, 0)
    raise RefundOverLimit(
        f"the {operator.role} role may refund at most "
        f"{format_amount(limit, get_currency(currency))} {currency} at once",
        param="amount",
    )


async def _order_or_404(request: Request, operator: Operator, order_id: str) -> Any:
    async with get_container(request).uow() as uow:
        order = await uow.orders.get(order_id)
    if order is None:
        return None, render(
            request,
            "admin/not_found.html",
            {"operator": operator, "csrf_token": operator.csrf_token, "section": "orders"},
            status_code=404,
        )
    return order, None


@router.post("/admin/orders/{order_id}/refunds/confirm")
@requires(Permission.REFUND)
async def confirm(request: Request, operator: OperatorDep, order_id: ObjectId) -> Response:
    """The confirmation step: what will be refunded, and the button that does it."""
    form = await request.form()
    if not csrf_ok(operator.csrf_token, _text(form, "csrf_token")):
        return refused(request)
    order, missing = await _order_or_404(request, operator, order_id)
    if missing is not None:
        return missing  # type: ignore[no-any-return]
    try:
        asked = parse_form(form, order.currency, len(order.lines))
    except TuitionError as exc:
        return await _problem(request, operator, order_id, exc, form)
    container = get_container(request)
    timeline = await admin_service.order_timeline(container.uow(), order_id)
    lines = await refund_lines(container, timeline) if order.status in REFUNDABLE else []
    planned = estimate(asked, lines)
    try:
        check_limit(request, operator, planned.total, order.currency)
    except TuitionError as exc:
        return await _problem(request, operator, order_id, exc, form)
    return page(
        request,
        "admin/refund_confirm.html",
        operator,
        "orders",
        order=order,
        asked=asked,
        estimate=planned,
        hidden=asked.hidden_fields(order.currency),
        paying=next(
            (
                t.payment
                for t in timeline.payments
                if t.payment.duplicate_of is None and t.payment.succeeded_at is not None
            ),
            None,
        ),
    )


@router.post("/admin/orders/{order_id}/refunds")
@requires(Permission.REFUND)
async def create(request: Request, operator: OperatorDep, order_id: ObjectId) -> Response:
    form = await request.form()
    if not csrf_ok(operator.csrf_token, _text(form, "csrf_token")):
        return refused(request)
    order, missing = await _order_or_404(request, operator, order_id)
    if missing is not None:
        return missing  # type: ignore[no-any-return]
    container = get_container(request)
    try:
        asked = parse_form(form, order.currency, len(order.lines))
        if not operator.may(Permission.REFUND_ANY_AMOUNT):
            # What "everything" or the lines come to, as the confirmation page showed.
            timeline = await admin_service.order_timeline(container.uow(), order_id)
            lines = await refund_lines(container, timeline) if order.status in REFUNDABLE else []
            check_limit(request, operator, estimate(asked, lines).total, order.currency)
        refund = await refund_service.create_refund(
            refund_service.CreateRefund(
                order_id=order_id,
                amount=asked.amount,
                lines=asked.lines or None,
                reason=asked.reason,
                override=asked.override,
                requested_by=f"admin:{operator.user.email}",
            ),
            audit.AuditedUnitOfWork(
                container.engine,
                actor=actor(request, operator),
                action="refund.created",
                subject=order_id,
                clock=container.clock,
            ),
            deps=refund_deps(container),
        )
        await audit.seal(container.uow())
    except TuitionError as exc:
        return await _problem(request, operator, order_id, exc, form)
    return _to_order(order_id, refund.id)


@router.post("/admin/refunds/{refund_id}/retry")
@requires(Permission.REFUND)
async def retry(
    request: Request,
    operator: OperatorDep,
    refund_id: ObjectId,
    csrf_token: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    if not csrf_ok(operator.csrf_token, csrf_token):
        return refused(request)
    container = get_container(request)
    try:
        failed = await refund_service.get_refund(container.uow(), refund_id)
    except NotFound:
        return render(
            request,
            "admin/not_found.html",
            {"operator": operator, "csrf_token": operator.csrf_token, "section": "refunds"},
            status_code=404,
        )
    try:
        check_limit(request, operator, failed.amount, failed.currency)
        again = await refund_service.retry_refund(
            audit.AuditedUnitOfWork(
                container.engine,
                actor=actor(request, operator),
                action="refund.retried",
                subject=refund_id,
                clock=container.clock,
            ),
            refund_id,
            requested_by=f"admin:{operator.user.email}",
            deps=refund_deps(container),
        )
        await audit.seal(container.uow())
    except TuitionError as exc:
        return await _problem(request, operator, failed.order_id, exc, None)
    return _to_order(failed.order_id, again.id)


def _to_order(order_id: str, refund_id: str) -> Response:
    url = f"/admin/orders/{order_id}?refund={refund_id}#refunds"
    return secure(RedirectResponse(url, status_code=303))


async def _problem(
    request: Request,
    operator: Operator,
    order_id: str,
    exc: TuitionError,
    form: FormData | None,
) -> Response:
    return await order_page(
        request,
        operator,
        order_id,
        problem=Problem(exc.code, exc.message),
        form=form_values(form) if form is not None else None,
        status_code=exc.status,
    )


def _refund_search(
    request: Request, q: str, status: str, order: str, customer: str, start: str, end: str
) -> tuple[RefundSearch, dict[str, str]]:
    errors: dict[str, str] = {}
    created_gte, created_lt = checked_days(start, end, get_container(request).settings.zone, errors)
    search = RefundSearch(
        text=q.strip() or None,
        status=checked_choice(RefundStatus, status, "status", errors),
        order_id=order.strip() or None,
        customer_id=customer.strip() or None,
        window=Window(created_gte, created_lt),
    )
    return search, errors


@router.get("/admin/refunds")
async def refunds(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    order: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
    sort: Text = "newest",
    offset: Offset = 0,
) -> Response:
    container = get_container(request)
    search, errors = _refund_search(request, q, status, order, customer, start, end)
    sort = checked_sort(sort, SORTS, errors)
    found: list[Any] = []
    total = 0
    if not errors:
        async with container.uow() as uow:
            found, total = await AdminLists(uow.conn).refunds_page(
                search, sort=sort, limit=PAGE, offset=offset
            )
    filters = {
        "q": q,
        "status": status,
        "order": order,
        "customer": customer,
        "from": start,
        "to": end,
        "sort": sort,
    }
    return page(
        request,
        "admin/refunds.html",
        operator,
        "refunds",
        status_code=422 if errors else 200,
        refunds=found,
        filters=filters,
        errors=errors,
        sorts=SORTS,
        statuses=list(RefundStatus),
        **paging(request, "/admin/refunds.csv", offset=offset, shown=len(found), total=total),
    )


REFUNDS_CSV = [
    "refund",
    "order",
    "payment",
    "customer",
    "status",
    "currency",
    "amount",
    "fee_returned",
    "reason",
    "destination",
    "refund_no",
    "requested_by",
    "created",
    "succeeded",
]


@router.get("/admin/refunds.csv")
@requires(Permission.EXPORT)
async def refunds_csv(
    request: Request,
    operator: OperatorDep,
    q: Text = "",
    status: Text = "",
    order: Text = "",
    customer: Text = "",
    start: Day = "",
    end: UntilDay = "",
) -> Response:
    """Every refund as filtered on the page, streamed; amounts in major units."""
    container = get_container(request)
    search, errors = _refund_search(request, q, status, order, customer, start, end)
    if errors:
        return csv_refused(errors)
    zone = container.settings.zone

    def row(r: RefundRecord) -> list[str]:
        unit = get_currency(r.currency)
        return [
            r.id,
            r.order_id,
            r.payment_id,
            r.customer_id,
            r.status.value,
            r.currency,
            format_amount(r.amount, unit),
            format_amount(r.fee_returned, unit) if r.fee_returned is not None else "",
            r.reason,
            r.destination,
            r.channel_refund_no or "",
            r.requested_by,
            local_time(r.created_at, zone),
            local_time(r.succeeded_at, zone),
        ]

    async def records() -> AsyncIterator[list[str]]:
        async with container.uow() as uow:
            async for refund in AdminLists(uow.conn).stream_refunds(search):
                yield row(refund)

    return csv_response("refunds.csv", REFUNDS_CSV, records())
