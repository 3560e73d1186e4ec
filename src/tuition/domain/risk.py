"""Risk rules as data, and how their findings become a decision. Pure, no I/O.

A rule has a ``kind`` (how its ``params`` are read), the ``stages`` it runs at (order,
payment, refund), a ``score`` it adds when triggered and an optional ``action`` it forces
at least (review or block). The decision is the strongest of the triggered rules'
actions and of the score thresholds (a setting): ``allow < review < block``.

Amount thresholds are written in major units as operators think (``"5000.00"`` CNY) and
kept exactly as minor units; rates and coefficients are Decimal strings. The seed's model
is the ``amount_score`` kind: score = amount (major units) x coefficient, triggered above
its threshold (500.00 x 0.2 = 100 > 90).

The old ``risk_score`` / ``exceeds_risk_threshold`` helpers of domain/payments.py are this
kind's arithmetic; :func:`amount_score` replaces them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from tuition.domain.errors import TuitionError, ValidationFailed
from tuition.domain.money import format_amount, get_currency, parse_decimal_amount, parse_rate

MAX_WINDOW = timedelta(days=31)
MAX_LIST = 1000
MAX_SCORE = Decimal(10**9)
ATTEMPTS = "attempts"  # a velocity rule counts the attempts at its stages ...
FAILED_PAYMENTS = "failed_payments"  # ... or the customer's failed payments


class Stage(StrEnum):
    ORDER = "order"
    PAYMENT = "payment"
    REFUND = "refund"


class Decision(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Decision.ALLOW: 0, Decision.REVIEW: 1, Decision.BLOCK: 2}


class RuleKind(StrEnum):
    AMOUNT_THRESHOLD = "amount_threshold"  # amount at or above a per-currency limit
    VELOCITY = "velocity"  # more than ``max`` attempts per key within a window
    NEW_CUSTOMER_AMOUNT = "new_customer_amount"  # no paid order yet, amount at/above limit
    BLOCKLIST = "blocklist"  # customer, IP, device or payer account on a list
    COUPON_GUESSING = "coupon_guessing"  # at least ``max`` unknown coupon codes per window
    AMOUNT_SCORE = "amount_score"  # the seed's model: amount x coefficient > threshold


class Key(StrEnum):
    CUSTOMER = "customer"
    IP = "ip"
    DEVICE = "device"
    PAYER_ACCOUNT = "payer_account"


_STAGES_OF = {
    RuleKind.AMOUNT_THRESHOLD: frozenset(Stage),
    RuleKind.VELOCITY: frozenset(Stage),
    RuleKind.NEW_CUSTOMER_AMOUNT: frozenset({Stage.ORDER, Stage.PAYMENT}),
    RuleKind.BLOCKLIST: frozenset(Stage),
    RuleKind.COUPON_GUESSING: frozenset({Stage.ORDER}),
    RuleKind.AMOUNT_SCORE: frozenset(Stage),
}


class RiskBlocked(TuitionError):
    """A rule blocked the attempt: 403 ``risk_blocked``; the attempt is kept for audit."""

    status = 403
    type = "risk_error"
    default_code = "risk_blocked"

    def __init__(self, message: str, *, attempt: Attempt) -> None:
        super().__init__(message)
        self.attempt = attempt


@dataclass(frozen=True, slots=True)
class Client:
    """What the platform says about the buyer's client (``client`` on an order)."""

    ip: str | None = None
    device_id: str | None = None
    user_agent: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"ip": self.ip, "device_id": self.device_id, "user_agent": self.user_agent}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Client:
        data = data or {}
        return cls(data.get("ip"), data.get("device_id"), data.get("user_agent"))


@dataclass(frozen=True, slots=True)
class Subject:
    """What is being assessed: an order, a payment of it, or a refund of it."""

    stage: Stage
    customer_id: str
    amount: int
    currency: str
    client: Client = field(default_factory=Client)
    order_id: str | None = None
    payment_id: str | None = None
    payer_account: str | None = None

    def key_value(self, key: Key) -> str | None:
        if key is Key.CUSTOMER:
            return self.customer_id
        if key is Key.IP:
            return self.client.ip
        if key is Key.DEVICE:
            return self.client.device_id
        return self.payer_account


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    name: str
    kind: RuleKind
    stages: tuple[Stage, ...]
    params: Mapping[str, Any]  # as stored: amounts in minor units
    score: Decimal
    action: Decision | None
    active: bool
    created_at: datetime
    updated_at: datetime

    def runs_at(self, stage: Stage) -> bool:
        return self.active and stage in self.stages

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=int(self.params["window_seconds"]))

    @property
    def key(self) -> Key:
        return Key(self.params["key"])


@dataclass(frozen=True, slots=True)
class Reason:
    rule_id: str
    kind: RuleKind
    name: str
    detail: str
    score: Decimal
    action: Decision | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "kind": self.kind.value,
            "name": self.name,
            "detail": self.detail,
            "score": str(self.score),
            "action": None if self.action is None else self.action.value,
        }


@dataclass(frozen=True, slots=True)
class Assessment:
    score: Decimal
    decision: Decision
    reasons: tuple[Reason, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": str(self.score),
            "decision": self.decision.value,
            "reasons": [r.to_dict() for r in self.reasons],
        }


@dataclass(frozen=True, slots=True)
class Attempt:
    """A blocked attempt, as audited."""

    subject: Subject
    assessment: Assessment
    at: datetime


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """The settings: score thresholds (at or above ``review`` reviews, ``block`` blocks)
    and what a review holds: the ``payment`` (not started until approved) or the paid
    order's ``entitlements`` (granted when approved)."""

    review: Decimal | None = None
    block: Decimal | None = None
    hold: str = "payment"

    NONE: ClassVar[RiskPolicy]


RiskPolicy.NONE = RiskPolicy()


def decide(reasons: Sequence[Reason], thresholds: RiskPolicy) -> Assessment:
    """The score is the sum of the triggered rules' scores; the decision the strongest of
    their actions and of the thresholds the score reaches."""
    score = sum((r.score for r in reasons), Decimal(0))
    decision = Decision.ALLOW
    for reason in reasons:
        if reason.action is not None and reason.action.rank > decision.rank:
            decision = reason.action
    if thresholds.block is not None and score >= thresholds.block:
        decision = Decision.BLOCK
    elif thresholds.review is not None and score >= thresholds.review:
        decision = max(decision, Decision.REVIEW, key=lambda d: d.rank)
    return Assessment(score, decision, tuple(reasons))


def amount_score(amount: int, currency: str, coefficient: Decimal) -> Decimal:
    """The seed's score: the amount in major units times the coefficient, exactly."""
    exponent = get_currency(currency).exponent
    return Decimal(amount).scaleb(-exponent) * coefficient


def reason(rule: Rule, detail: str, score: Decimal | None = None) -> Reason:
    return Reason(
        rule.id, rule.kind, rule.name, detail, rule.score if score is None else score, rule.action
    )


def static_reason(rule: Rule, subject: Subject, *, new_customer: bool) -> Reason | None:
    """The finding of a rule that needs no counter, or None if it is not triggered."""
    params = rule.params
    if rule.kind is RuleKind.AMOUNT_THRESHOLD or rule.kind is RuleKind.NEW_CUSTOMER_AMOUNT:
        limit = params["amounts"].get(subject.currency)
        if limit is None or subject.amount < limit:
            return None
        if rule.kind is RuleKind.NEW_CUSTOMER_AMOUNT and not new_customer:
            return None
        shown = format_amount(limit, get_currency(subject.currency))
        who = "a new customer's " if rule.kind is RuleKind.NEW_CUSTOMER_AMOUNT else ""
        return reason(rule, f"{who}amount at or above {shown} {subject.currency}")
    if rule.kind is RuleKind.BLOCKLIST:
        key = Key(params["field"])
        value = subject.key_value(key)
        if value is None or value not in params["values"]:
            return None
        return reason(rule, f"{key.value} {value} is on the blocklist")
    if rule.kind is RuleKind.AMOUNT_SCORE:
        coefficient = Decimal(params["coefficient"])
        threshold = Decimal(params["threshold"])
        score = amount_score(subject.amount, subject.currency, coefficient)
        if score <= threshold:
            return None
        shown = format_amount(subject.amount, get_currency(subject.currency))
        return reason(
            rule, f"amount {shown} x {coefficient} = {score.normalize():f} > {threshold}", score
        )
    return None


def counted_reason(rule: Rule, subject: Subject, count: int) -> Reason | None:
    """A velocity or coupon-guessing finding from its exact count in the window."""
    limit = int(rule.params["max"])
    seconds = int(rule.params["window_seconds"])
    value = subject.key_value(rule.key)
    if rule.kind is RuleKind.VELOCITY and rule.params.get("event") == FAILED_PAYMENTS:
        if count <= limit:
            return None
        return reason(
            rule, f"{count} failed payments by customer {value} in {seconds}s (max {limit})"
        )
    if rule.kind is RuleKind.VELOCITY and count > limit:
        return reason(
            rule,
            f"{count} {subject.stage.value}s by {rule.key.value} {value} in {seconds}s "
            f"(max {limit})",
        )
    if rule.kind is RuleKind.COUPON_GUESSING and count >= limit:
        return reason(
            rule, f"{count} unknown coupon codes by {rule.key.value} {value} in {seconds}s"
        )
    return None


def window_start(at: datetime, window: timedelta) -> datetime:
    """The start of the fixed window holding ``at`` (windows are aligned to the epoch)."""
    seconds = int(window.total_seconds())
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=at.tzinfo)


# --- parsing rules as operators write them ----------------------------------------------


def _fail(message: str, param: str, code: str = "validation_failed") -> ValidationFailed:
    return ValidationFailed(message, code=code, param=param)


def parse_stages(kind: RuleKind, stages: Sequence[str] | None) -> tuple[Stage, ...]:
    allowed = _STAGES_OF[kind]
    if stages is None:
        return tuple(s for s in Stage if s in allowed)
    parsed: list[Stage] = []
    for n, text in enumerate(stages):
        try:
            stage = Stage(text)
        except ValueError:
            raise _fail(
                f"unknown stage {text!r}; known: order, payment, refund", f"stages[{n}]"
            ) from None
        if stage not in allowed:
            raise _fail(f"a {kind.value} rule does not run at {stage.value}", f"stages[{n}]")
        if stage not in parsed:
            parsed.append(stage)
    if not parsed:
        raise _fail("a rule runs at one stage at least", "stages")
    return tuple(parsed)


def parse_score(text: str | None) -> Decimal:
    if text is None:
        return Decimal(0)
    return parse_rate(text, param="score", maximum=MAX_SCORE)


def _int(params: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = params.get(name)
    if type(value) is not int or not low <= value <= high:
        raise _fail(f"params.{name} must be an integer in [{low}, {high}]", f"params.{name}")
    return value


def _key(params: Mapping[str, Any], allowed: Sequence[Key], name: str = "key") -> str:
    value = params.get(name)
    if value not in [k.value for k in allowed]:
        raise _fail(
            f"params.{name} must be one of {', '.join(k.value for k in allowed)}",
            f"params.{name}",
        )
    return str(value)


def _amounts(params: Mapping[str, Any]) -> dict[str, int]:
    given = params.get("amounts")
    if not isinstance(given, dict) or not given:
        raise _fail(
            'params.amounts maps currencies to major-unit strings, e.g. {"CNY": "5000.00"}',
            "params.amounts",
        )
    out: dict[str, int] = {}
    for code, text in given.items():
        where = f"params.amounts.{code}"
        currency = get_currency(code, param=where)
        amount = parse_decimal_amount(text, currency, param=where)
        if amount <= 0:
            raise _fail(f"{where} must be above zero", where)
        out[code] = amount
    return out


def parse_params(kind: RuleKind, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``params`` as written in the API; return them as stored.

    Amounts become exact minor units; everything else is kept as given.
    """
    if not isinstance(params, Mapping):
        raise _fail("params must be an object", "params")
    window = int(MAX_WINDOW.total_seconds())
    allowed: set[str]
    stored: dict[str, Any]
    if kind in (RuleKind.AMOUNT_THRESHOLD, RuleKind.NEW_CUSTOMER_AMOUNT):
        allowed, stored = {"amounts"}, {"amounts": _amounts(params)}
    elif kind is RuleKind.VELOCITY:
        allowed = {"key", "window_seconds", "max", "event"}
        event = params.get("event", ATTEMPTS)
        if event not in (ATTEMPTS, FAILED_PAYMENTS):
            raise _fail(f"params.event must be {ATTEMPTS} or {FAILED_PAYMENTS}", "params.event")
        keys = [Key.CUSTOMER] if event == FAILED_PAYMENTS else [Key.CUSTOMER, Key.IP, Key.DEVICE]
        stored = {
            "key": _key(params, keys),
            "window_seconds": _int(params, "window_seconds", 60, window),
            "max": _int(params, "max", 0, 1_000_000),
        }
        if event == FAILED_PAYMENTS:
            stored["event"] = FAILED_PAYMENTS
    elif kind is RuleKind.COUPON_GUESSING:
        allowed = {"key", "window_seconds", "max"}
        stored = {
            "key": _key(params, [Key.CUSTOMER, Key.IP]),
            "window_seconds": _int(params, "window_seconds", 60, window),
            "max": _int(params, "max", 1, 1_000_000),
        }
    elif kind is RuleKind.BLOCKLIST:
        allowed = {"field", "values"}
        values = params.get("values")
        if (
            not isinstance(values, list)
            or len(values) > MAX_LIST
            or not all(isinstance(v, str) and 1 <= len(v) <= 200 for v in values)
        ):
            raise _fail(
                f"params.values must be a list of up to {MAX_LIST} strings of 1 to 200 characters",
                "params.values",
            )
        stored = {"field": _key(params, list(Key), "field"), "values": sorted(set(values))}
    else:
        allowed = {"coefficient", "threshold"}
        for name in allowed:
            if not isinstance(params.get(name), str):
                raise _fail(f"params.{name} must be a decimal string", f"params.{name}")
        stored = {
            "coefficient": str(
                parse_rate(params["coefficient"], param="params.coefficient", maximum=MAX_SCORE)
            ),
            "threshold": str(
                parse_rate(params["threshold"], param="params.threshold", maximum=MAX_SCORE)
            ),
        }
    extra = sorted(set(params) - allowed)
    if extra:
        raise _fail(f"params.{extra[0]} is not a {kind.value} parameter", f"params.{extra[0]}")
    return stored


def params_out(kind: RuleKind, params: Mapping[str, Any]) -> dict[str, Any]:
    """Stored params as operators read them: amounts back in major units."""
    if kind in (RuleKind.AMOUNT_THRESHOLD, RuleKind.NEW_CUSTOMER_AMOUNT):
        return {
            "amounts": {
                code: format_amount(amount, get_currency(code))
                for code, amount in params["amounts"].items()
            }
        }
    return dict(params)
