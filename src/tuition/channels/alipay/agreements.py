"""Alipay periodic deduction (周期扣款, 商家扣款 "先签约后扣款"): sign, charge, query, unsign.

- **Sign**: ``alipay.user.agreement.page.sign`` is a page call like ``trade.page.pay``:
  the buyer's browser is sent to the gateway with the signed parameters. ``biz_content``
  carries ``personal_product_code=CYCLE_PAY_AUTH_P`` (the periodic-deduction personal
  product), ``product_code=CYCLE_PAY_AUTH``, a ``sign_scene``, our agreement id as
  ``external_agreement_no``, ``access_params.channel`` and the ``period_rule_params``
  Alipay enforces on every charge: ``period_type`` (``DAY``/``MONTH``), ``period``,
  ``execute_time`` (the first charge day, ``yyyy-MM-dd``; for ``MONTH`` a day of 1-28
  only, so later days are moved to the 28th) and ``single_amount`` (the most one charge
  may take). Alipay allows a charge from three days before each period's date.
- **Sign notification**: ``notify_type=dut_user_sign``, ``status=NORMAL``, with
  ``agreement_no`` (Alipay's), ``external_agreement_no`` (ours) and ``sign_time``, to the
  ``notify_url`` of the sign call.
- **Charge**: ``alipay.trade.pay`` with ``product_code=GENERAL_WITHHOLDING`` and
  ``agreement_params.agreement_no``; ``10000`` is paid at once, ``10003`` is still
  processing (the query decides), ``40004`` is a refusal (``ACQ.BUYER_BALANCE_NOT_ENOUGH``,
  ``ACQ.AGREEMENT_NOT_EXIST``, ``ACQ.AGREEMENT_STATUS_NOT_NORMAL``...), and
  ``ACQ.TRADE_HAS_SUCCESS`` means this out_trade_no was already paid (a repeat).
- **Query**: ``alipay.user.agreement.query`` by ``external_agreement_no``: ``status``
  ``TEMP`` (not signed), ``NORMAL``, ``STOP``.
- **Unsign**: ``alipay.user.agreement.unsign`` by ``agreement_no``; the buyer can also
  end it in the Alipay app, and either way Alipay sends ``notify_type=dut_user_unsign``,
  ``status=UNSIGN``, ``unsign_time``.

Sources: Alipay open platform, 周期扣款 product docs and the API references of
``alipay.user.agreement.page.sign`` / ``.query`` / ``.unsign`` and ``alipay.trade.pay``
(opendocs.alipay.com; period rules as in Alipay's support answer "周期扣款如何设置周期规则").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from tuition.channels.alipay import transformers
from tuition.channels.alipay.config import rsa_verify
from tuition.channels.alipay.notifications import parse_form, signed_content
from tuition.channels.alipay.transformers import JsonObject, UnknownWireStatus
from tuition.channels.base import (
    AgreementCharge,
    AgreementSignRequest,
    AgreementState,
    NotificationRejected,
    PaymentState,
    VerifiedAgreementNotification,
)
from tuition.domain.agreements import AgreementStatus
from tuition.domain.errors import ValidationFailed
from tuition.domain.payments import PaymentStatus

SIGN_METHOD = "alipay.user.agreement.page.sign"
PERSONAL_PRODUCT_CODE = "CYCLE_PAY_AUTH_P"
SIGN_PRODUCT_CODE = "CYCLE_PAY_AUTH"
CHARGE_PRODUCT_CODE = "GENERAL_WITHHOLDING"
SIGN_SCENE = "INDUSTRY|EDU"  # 教育 (knowledge payment); Alipay's list of scenes
_PERIODS = {"month": 1, "quarter": 3, "year": 12}
NOT_FOUND_CODES = frozenset({"USER_AGREEMENT_NOT_EXIST", "ACQ.AGREEMENT_NOT_EXIST"})

Call = Callable[..., Awaitable[JsonObject]]


def agreement_status(wire: str) -> AgreementStatus:
    match wire:
        case "TEMP":
            return AgreementStatus.PENDING
        case "NORMAL":
            return AgreementStatus.ACTIVE
        case "STOP" | "UNSIGN":
            return AgreementStatus.ENDED
        case _:
            raise UnknownWireStatus(f"unknown Alipay agreement status {wire!r}")


def sign_biz(request: AgreementSignRequest) -> dict[str, object]:
    transformers.require_cny(request.currency)
    months = _PERIODS.get(request.period)
    if months is None:
        raise ValidationFailed(
            f"Alipay periodic deduction has no period {request.period!r}", param="period"
        )
    first = request.first_charge_on
    execute = first if first.day <= 28 else date(first.year, first.month, 28)
    return {
        "personal_product_code": PERSONAL_PRODUCT_CODE,
        "product_code": SIGN_PRODUCT_CODE,
        "sign_scene": SIGN_SCENE,
        "external_agreement_no": request.agreement_id,
        "external_logon_id": request.customer_id[:100],
        "access_params": {"channel": "ALIPAYAPP"},
        "period_rule_params": {
            "period_type": "MONTH",
            "period": months,
            "execute_time": execute.isoformat(),
            "single_amount": transformers.yuan(request.single_amount),
        },
    }


def sign_url(
    gateway_url: str,
    signed_params: Callable[..., dict[str, str]],
    request: AgreementSignRequest,
) -> str:
    params = signed_params(
        SIGN_METHOD,
        sign_biz(request),
        notify_url=request.notify_url,
        return_url=request.return_url,
    )
    return f"{gateway_url}?{urlencode(params)}"


def query_biz(agreement_id: str) -> dict[str, object]:
    return {
        "personal_product_code": PERSONAL_PRODUCT_CODE,
        "sign_scene": SIGN_SCENE,
        "external_agreement_no": agreement_id,
    }


def queried_state(node: JsonObject, agreement_id: str) -> AgreementState:
    status = transformers.text_field(node, "status")
    external = node.get("external_agreement_no")
    if external not in (None, "", agreement_id):
        raise ValueError("the agreement query answered about another agreement")
    return AgreementState(
        agreement_id=agreement_id,
        status=agreement_status(status),
        agreement_no=_text(node, "agreement_no"),
        signed_at=_time(node, "sign_time"),
        ended_at=_time(node, "invalid_time") if status == "STOP" else None,
        raw_status=status,
    )


def charge_biz(charge: AgreementCharge) -> dict[str, object]:
    transformers.require_cny(charge.currency)
    return {
        "out_trade_no": charge.payment_id,
        "total_amount": transformers.yuan(charge.amount),
        "subject": charge.subject,
        "product_code": CHARGE_PRODUCT_CODE,
        "agreement_params": {"agreement_no": charge.agreement_no},
    }


def charged_state(node: JsonObject, charge: AgreementCharge) -> PaymentState:
    """A ``10000`` answer to ``alipay.trade.pay``: the buyer was debited."""
    if transformers.text_field(node, "out_trade_no") != charge.payment_id:
        raise ValueError("alipay.trade.pay answered about another trade")
    return PaymentState(
        payment_id=charge.payment_id,
        status=PaymentStatus.SUCCEEDED,
        amount=transformers.fen(node.get("total_amount"), param="total_amount"),
        currency=transformers.CURRENCY,
        channel_trade_no=_text(node, "trade_no"),
        paid_at=_time(node, "gmt_payment"),
        raw_status="TRADE_SUCCESS",
    )


def verify_notification(
    body: bytes, alipay_public_key: rsa.RSAPublicKey
) -> VerifiedAgreementNotification:
    """A ``dut_user_sign`` / ``dut_user_unsign`` notification, after its signature verified."""
    params = parse_form(body)
    signature = params.get("sign")
    if not signature:
        raise NotificationRejected("missing sign")
    if params.get("sign_type") != "RSA2":
        raise NotificationRejected(f"sign_type {params.get('sign_type')!r} is not RSA2")
    if not rsa_verify(alipay_public_key, signed_content(params).encode("utf-8"), signature):
        raise NotificationRejected("signature does not verify with the Alipay public key")
    try:
        return _notification(params)
    except ValueError as exc:
        raise NotificationRejected(f"malformed agreement notification: {exc}") from None


def _notification(params: Mapping[str, str]) -> VerifiedAgreementNotification:
    kind = transformers.text_field(params, "notify_type")
    status = transformers.text_field(params, "status")
    match kind, status:
        case "dut_user_sign", "NORMAL":
            at = _time(params, "sign_time")
        case "dut_user_unsign", "UNSIGN":
            at = _time(params, "unsign_time")
        case _:
            raise ValueError(f"not an agreement notification: {kind} {status}")
    mapped = agreement_status(status)
    state = AgreementState(
        agreement_id=transformers.text_field(params, "external_agreement_no"),
        status=mapped,
        agreement_no=transformers.text_field(params, "agreement_no"),
        signed_at=at if mapped is AgreementStatus.ACTIVE else None,
        ended_at=at if mapped is AgreementStatus.ENDED else None,
        raw_status=status,
    )
    return VerifiedAgreementNotification(
        app_id=transformers.text_field(params, "app_id"), event=kind, agreement=state
    )


def _text(node: Mapping[str, object], key: str) -> str | None:
    value = node.get(key)
    return value if isinstance(value, str) and value else None


def _time(node: Mapping[str, object], key: str) -> datetime | None:
    value = _text(node, key)
    return None if value is None else transformers.parse_wire_time(value)
