"""Refunds on request: the refund rules, what each order line may still give back, and how
a refund is split over lines and over the parties the payment paid.

Pure logic, no I/O. Amounts are ``int`` minor units; progress and time shares are
``Decimal`` fractions in ``[0, 1]``; each rule rounds once, half-up, through
:func:`tuition.domain.money.apply_rate`.

Refund rules (per product, with a platform default)::

    window_days      a refund may be asked for within this many days of payment
    consumption      "limit":   no refund once progress is above max_progress
                     "prorate": refundable = line amount x (1 - progress)
    revoke_on_partial  a partial refund also ends access (default: only a full one does)

A membership refunds its unused time, pro rata to the second: refundable = line amount x
(time left / period length). Every rule is checked against what the line can still give
back: ``cap - reserved``, where ``reserved`` is what pending and succeeded refunds hold.
The store applies the cap with a conditional UPDATE, so concurrent refunds never pass it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from tuition.domain.catalog import ProductKind
from tuition.domain.errors import Conflict, InvalidRequest, ValidationFailed
from tuition.domain.money import Rounding, allocate, apply_rate

MAX_WINDOW_DAYS = 3650


class RefundReason(StrEnum):
    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    CONTENT_ISSUE = "content_issue"
    OTHER = "other"


class RefundDestination(StrEnum):
    ORIGINAL = "original"
    WALLET = "wallet"


class ConsumptionMode(StrEnum):
    LIMIT = "limit"  # no refund above max_progress
    PRORATE = "prorate"  # refund the unconsumed share


class RefundRefused(Conflict):
    """A refund the rules do not allow; ``code`` names the rule."""

    default_code = "refund_not_allowed"


@dataclass(frozen=True, slots=True)
class RefundPolicy:
    window_days: int | None = 7
    consumption: ConsumptionMode | None = None
    max_progress: Decimal | None = None
    revoke_on_partial: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_days": self.window_days,
            "consumption": None if self.consumption is None else self.consumption.value,
            "max_progress": None if self.max_progress is None else str(self.max_progress),
            "revoke_on_partial": self.revoke_on_partial,
        }


def parse_policy(
    data: Mapping[str, Any],
    *,
    base: RefundPolicy | None = None,
    param: str = "refund_policy",
) -> RefundPolicy:
    """A policy from its JSON form, checked; ValidationFailed names the offending field.

    A field left out takes its value from ``base`` (a product's policy is read over the
    platform's default, so a product may set only its window)."""
    base = base or RefundPolicy()
    known = {"window_days", "consumption", "max_progress", "revoke_on_partial"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValidationFailed(
            f"{param} has no field {unknown[0]!r}", param=f"{param}.{unknown[0]}"
        )
    window = data.get("window_days", base.window_days)
    if window is not None and (type(window) is not int or not 0 <= window <= MAX_WINDOW_DAYS):
        raise ValidationFailed(
            f"{param}.window_days must be null or an integer 0..{MAX_WINDOW_DAYS}",
            param=f"{param}.window_days",
        )
    mode_text = data.get(
        "consumption", None if base.consumption is None else base.consumption.value
    )
    try:
        mode = None if mode_text is None else ConsumptionMode(mode_text)
    except ValueError:
        raise ValidationFailed(
            f"{param}.consumption must be 'limit', 'prorate' or null",
            param=f"{param}.consumption",
        ) from None
    max_text = data.get(
        "max_progress", None if base.max_progress is None else str(base.max_progress)
    )
    max_progress = None
    if max_text is not None:
        max_progress = parse_progress(max_text, param=f"{param}.max_progress")
    if mode is ConsumptionMode.LIMIT and max_progress is None:
        raise ValidationFailed(
            f"{param}.max_progress is needed with consumption 'limit'",
            param=f"{param}.max_progress",
        )
    if mode is not ConsumptionMode.LIMIT and max_progress is not None:
        raise ValidationFailed(
            f"{param}.max_progress goes with consumption 'limit' only",
            param=f"{param}.max_progress",
        )
    revoke = data.get("revoke_on_partial", base.revoke_on_partial)
    if type(revoke) is not bool:
        raise ValidationFailed(
            f"{param}.revoke_on_partial must be true or false", param=f"{param}.revoke_on_partial"
        )
    return RefundPolicy(window, mode, max_progress, revoke)


def parse_progress(value: object, *, param: str = "progress") -> Decimal:
    """A decimal string in [0, 1] such as ``"0.35"``."""
    if not isinstance(value, str) or len(value) > 20:
        raise ValidationFailed(f"{param} must be a decimal string such as '0.35'", param=param)
    try:
        progress = Decimal(value)
    except InvalidOperation:
        raise ValidationFailed(
            f"{param} must be a decimal string such as '0.35'", param=param
        ) from None
    if not progress.is_finite() or not Decimal(0) <= progress <= Decimal(1):
        raise ValidationFailed(f"{param} must be between 0 and 1", param=param)
    return progress


def lessons_progress(consumed: int, total: int) -> Decimal:
    """Progress as lessons consumed / total, exact to 12 places (rounded down)."""
    if type(total) is not int or total < 1:
        raise ValidationFailed("lessons_total must be a positive integer", param="lessons_total")
    if type(consumed) is not int or not 0 <= consumed <= total:
        raise ValidationFailed(
            "lessons_consumed must be an integer from 0 to lessons_total",
            param="lessons_consumed",
        )
    return (Decimal(consumed) / Decimal(total)).quantize(
        Decimal("0.000000000001"), rounding="ROUND_DOWN"
    )


@dataclass(frozen=True, slots=True)
class LineFacts:
    """What the rules need to know about one paid order line, read by the service."""

    index: int
    kind: ProductKind
    total: int
    tax: int
    creator_id: str
    creator_share: int  # the creator's part of this line as posted at payment
    reserved: int  # held by pending and succeeded refunds
    policy: RefundPolicy
    progress: Decimal | None = None  # consumption reported by the platform
    # For a membership line: when its access started and ends.
    access_start: datetime | None = None
    access_end: datetime | None = None
    # For a top-up line: what it credited to the wallet, and whether none of it is spent.
    wallet_credit: int = 0
    topup_unspent: bool = False


@dataclass(frozen=True, slots=True)
class LineAllowance:
    """What one line may give back now, and why not more."""

    index: int
    cap: int  # the most the line may have refunded in all, under the rules
    refundable: int  # cap - reserved, never negative
    refused_by: str | None = None  # the rule that allows nothing, if any
    message: str | None = None


def line_allowance(
    line: LineFacts, *, paid_at: datetime, now: datetime, override: bool
) -> LineAllowance:
    """Apply the line's rules at ``now``. ``override`` lifts the window and consumption
    rules, never the amount paid, a membership's used time or a spent top-up."""
    if line.kind is ProductKind.TOPUP and not line.topup_unspent:
        # Spent credit was delivered as value: no override gives it back.
        return _refused(
            line,
            "topup_spent",
            f"line {line.index} is a top-up whose credit has been spent (in part or whole)",
        )
    cap = line.total
    if line.kind is ProductKind.MEMBERSHIP and line.access_start and line.access_end:
        # The time left, which no override lifts: used time was delivered.
        length = (line.access_end - line.access_start).total_seconds()
        left = max(0.0, (line.access_end - max(now, line.access_start)).total_seconds())
        # Whole seconds keep the share exact; a period is never shorter than a second.
        unused = Decimal(int(left)) / Decimal(max(1, int(length)))
        cap = apply_rate(line.total, min(Decimal(1), unused), Rounding.HALF_UP)
    if override:
        return _allowance(line, cap)
    policy = line.policy
    if policy.window_days is not None and now > paid_at + timedelta(days=policy.window_days):
        return _refused(
            line,
            "refund_window_closed",
            f"line {line.index}: the {policy.window_days}-day refund window closed at "
            f"{(paid_at + timedelta(days=policy.window_days)).isoformat()}",
        )
    progress = line.progress or Decimal(0)
    match policy.consumption:
        case ConsumptionMode.LIMIT:
            assert policy.max_progress is not None
            if progress > policy.max_progress:
                return _refused(
                    line,
                    "consumption_limit_exceeded",
                    f"line {line.index}: {progress} consumed, above the limit of "
                    f"{policy.max_progress} for a refund",
                )
        case ConsumptionMode.PRORATE:
            cap = min(cap, apply_rate(line.total, Decimal(1) - progress, Rounding.HALF_UP))
        case None:
            pass
    return _allowance(line, cap)


def _allowance(line: LineFacts, cap: int) -> LineAllowance:
    return LineAllowance(line.index, cap, max(0, cap - line.reserved))


def _refused(line: LineFacts, code: str, message: str) -> LineAllowance:
    return LineAllowance(line.index, line.reserved, 0, code, message)


@dataclass(frozen=True, slots=True)
class LineRequest:
    index: int
    amount: int | None = None  # None: everything the line may still give back


@dataclass(frozen=True, slots=True)
class LinePart:
    """One line's share of a refund, split over the parties the payment paid."""

    index: int
    amount: int
    creator_id: str
    creator_amount: int
    tax_amount: int
    platform_amount: int
    revokes_access: bool
    wallet_amount: int = 0


def plan_refund(
    lines: Sequence[LineFacts],
    allowances: Sequence[LineAllowance],
    *,
    amount: int | None,
    requested: Sequence[LineRequest] | None,
) -> dict[int, tuple[int, int]]:
    """How much each line gives back, with the cap its hold must stay within.

    - ``requested`` lines: each its own amount, or all it may still give back;
    - else ``amount``: spread over the lines in proportion to what each may give back
      (largest remainder);
    - else everything every line may still give back.

    Raises RefundRefused with the rule's code when the rules allow nothing, and
    ``refund_exceeds_refundable`` when more is asked than they allow.
    """
    allowed = {a.index: a for a in allowances}
    if len(allowed) != len(lines):
        raise ValueError("one allowance per line is required")
    wanted: dict[int, int] = {}
    if requested:
        for n, request in enumerate(requested):
            allowance = allowed.get(request.index)
            if allowance is None:
                raise InvalidRequest(
                    f"the order has no line {request.index}",
                    code="line_not_found",
                    param=f"lines[{n}].line_id",
                )
            if request.index in wanted:
                raise ValidationFailed(
                    f"line {request.index} is listed twice", param=f"lines[{n}].line_id"
                )
            _refuse_if_blocked([allowance])
            want = allowance.refundable if request.amount is None else request.amount
            if want > allowance.refundable or want <= 0:
                raise RefundRefused(
                    f"line {request.index} can give back {allowance.refundable} now; "
                    f"{want} was asked",
                    code="refund_exceeds_refundable",
                    param=f"lines[{n}].amount",
                )
            wanted[request.index] = want
            _whole_topup(lines, request.index, want, allowance)
    else:
        indexes = [a.index for a in allowances]
        available = [allowed[i].refundable for i in indexes]
        total_available = sum(available)
        if total_available == 0:
            _refuse_if_blocked(allowances)
            raise RefundRefused(
                "nothing is left to refund on this order", code="refund_exceeds_refundable"
            )
        want_total = total_available if amount is None else amount
        if want_total > total_available:
            raise RefundRefused(
                f"at most {total_available} can be refunded now; {want_total} was asked",
                code="refund_exceeds_refundable",
                param="amount",
            )
        wanted = {
            i: part
            for i, part in zip(indexes, allocate(want_total, available), strict=True)
            if part
        }
        for i, part in wanted.items():
            _whole_topup(lines, i, part, allowed[i])
    return {i: (part, allowed[i].cap) for i, part in sorted(wanted.items())}


def _whole_topup(
    lines: Sequence[LineFacts], index: int, amount: int, allowance: LineAllowance
) -> None:
    """A top-up line is refunded whole or not at all: its lot goes back in one piece."""
    line = next(f for f in lines if f.index == index)
    if line.kind is ProductKind.TOPUP and amount != allowance.refundable:
        raise RefundRefused(
            f"line {index} is a top-up: refund it whole ({allowance.refundable}), by its line",
            code="topup_refund_whole_only",
        )


def _refuse_if_blocked(allowances: Sequence[LineAllowance]) -> None:
    for allowance in allowances:
        if allowance.refused_by is not None:
            raise RefundRefused(allowance.message or "refused", code=allowance.refused_by)


def split_line(
    line: LineFacts,
    amount: int,
    *,
    cap: int,
    reserved_after: int,
    taken: tuple[int, int, int, int],
) -> LinePart:
    """Split ``amount`` over what the line's creator, tax and platform parts still hold
    (``taken`` is what earlier pending or succeeded refunds took from each), by largest
    remainder: no sequence of refunds takes a party below zero, and refunding the whole
    line returns each party's part exactly.

    The refund ends access when the line is then refunded in full, when a membership
    gives back all its unused time (``reserved_after`` reaches the rules' ``cap``), or
    when the policy says a partial refund does.
    """
    platform_share = line.total - line.creator_share - line.tax - line.wallet_credit
    remaining = [
        line.creator_share - taken[0],
        line.tax - taken[1],
        platform_share - taken[2],
        line.wallet_credit - taken[3],
    ]
    if any(r < 0 for r in remaining[:2] + remaining[3:]) or not 0 < amount <= sum(remaining):
        raise AssertionError(f"line {line.index}: refunds exceed the line")
    if line.kind is ProductKind.TOPUP:
        # Whole, always: each part exactly, even a platform part below zero (a pack that
        # credited more than it cost).
        creator, tax, platform, wallet = remaining
    else:
        creator, tax, platform, wallet = allocate(amount, remaining)
    revokes = (
        reserved_after >= line.total
        or (line.kind is ProductKind.MEMBERSHIP and reserved_after >= cap)
        or line.policy.revoke_on_partial
    )
    return LinePart(
        index=line.index,
        amount=amount,
        creator_id=line.creator_id,
        creator_amount=creator,
        tax_amount=tax,
        platform_amount=platform,
        wallet_amount=wallet,
        revokes_access=revokes,
    )
