"""WeChat Pay contract deduction (委托代扣 / papay), API v3 for directly connected merchants.

Endpoints (base ``https://api.mch.weixin.qq.com``), each signed and verified like every
v3 call:

- **Sign**: ``POST /v3/papay/sign/contracts/pre-entrust-sign`` with ``sign_scene``
  (``SIGN_SCENE_QRCODE`` for a web buyer), ``appid``, ``plan_id`` (the 委托代扣模板 the
  merchant set up, ``TUITION_WECHATPAY_PAPAY_PLAN_ID``), our agreement id as
  ``out_contract_code``, ``contract_display_account``, ``contract_notify_url``,
  ``out_user_code``, ``return_url``; the answer's ``redirect_url`` shows the buyer the
  sign QR code (``pre_entrustweb_id`` names the session).
- **Sign / termination notifications**: ``event_type`` ``PAPAY.SIGN`` /
  ``PAPAY.TERMINATE``, an AEAD_AES_256_GCM resource (decrypted with the APIv3 key) with
  ``mchid``, ``appid``, ``plan_id``, ``out_contract_code``, ``contract_id``,
  ``contract_state`` (``SIGNED`` / ``TERMINATED``), ``contract_signed_time`` and
  ``contract_terminate_info.contract_terminated_time``; the buyer may terminate it in
  WeChat (``contract_termination_mode`` ``USER_TERMINATE``).
- **Query**: ``GET /v3/papay/sign/contracts/plan-id/{plan_id}/out-contract-code/{code}``.
- **Terminate**: ``POST …/out-contract-code/{code}/terminate``
  (``contract_termination_remark``).
- **Charge**: ``POST /v3/papay/pay/schedules/contract-id/{contract_id}/schedule``
  (预约扣费: ``appid``, ``schedule_amount``) and then ``POST
  /v3/papay/pay/transactions/apply`` (``appid``, ``out_trade_no``, ``description``,
  ``transaction_notify_url``, ``contract_id``, ``amount``). The apply answer only says the
  deduction was accepted: the outcome comes as the ``TRANSACTION.SUCCESS`` notification or
  from the order query, so the charge is pending until then.

Sources: WeChat Pay merchant docs, 委托代扣 (pay.weixin.qq.com/docs/merchant/apis/
entrusted-payment/…: pre-entrust-sign 4012978414, normal-get-contract-by-code,
normal-schedule-deduction, normal-create-transaction, contract-alter-notify,
deduct-result-notify), as described in the v3 API descriptions of
TheNorthMemory/wechatpay-openapi.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from tuition.channels.base import (
    AgreementCharge,
    AgreementSignRequest,
    AgreementState,
    PaymentState,
    VerifiedAgreementNotification,
)
from tuition.channels.wechatpay import transformers
from tuition.channels.wechatpay.transformers import JsonObject, UnknownWireStatus
from tuition.domain.agreements import AgreementStatus
from tuition.domain.payments import PaymentStatus

PRE_SIGN = "/v3/papay/sign/contracts/pre-entrust-sign"
APPLY = "/v3/papay/pay/transactions/apply"
EVENTS = ("PAPAY.SIGN", "PAPAY.TERMINATE")


def contract_status(wire: str) -> AgreementStatus:
    match wire:
        case "SIGNED":
            return AgreementStatus.ACTIVE
        case "TERMINATED":
            return AgreementStatus.ENDED
        case _:
            raise UnknownWireStatus(f"unknown WeChat Pay contract_state {wire!r}")


def contract_path(plan_id: int, agreement_id: str) -> str:
    return f"/v3/papay/sign/contracts/plan-id/{plan_id}/out-contract-code/{agreement_id}"


def sign_body(request: AgreementSignRequest, *, appid: str, plan_id: int) -> dict[str, object]:
    transformers.require_cny(request.currency)
    body: dict[str, object] = {
        "sign_scene": "SIGN_SCENE_QRCODE",
        "appid": appid,
        "plan_id": plan_id,
        "out_contract_code": request.agreement_id,
        "contract_display_account": request.display_name[:32],
        "contract_notify_url": request.notify_url,
        "out_user_code": request.customer_id[:32],
    }
    if request.return_url:
        body["return_url"] = request.return_url
    return body


def schedule_body(charge: AgreementCharge, *, appid: str, plan_id: int) -> dict[str, object]:
    return {
        "appid": appid,
        "plan_id": plan_id,
        "schedule_amount": {"total": charge.amount, "currency": charge.currency},
    }


def apply_body(charge: AgreementCharge, *, appid: str, notify_url: str) -> dict[str, object]:
    transformers.require_cny(charge.currency)
    return {
        "appid": appid,
        "out_trade_no": charge.payment_id,
        "description": charge.subject[:127],
        "transaction_notify_url": notify_url,
        "contract_id": charge.agreement_no,
        "amount": {"total": charge.amount, "currency": charge.currency},
    }


def accepted_state(node: JsonObject, charge: AgreementCharge) -> PaymentState:
    """The apply answer: accepted, not yet deducted."""
    if transformers.text_field(node, "out_trade_no") != charge.payment_id:
        raise ValueError("the deduction was accepted for another out_trade_no")
    return PaymentState(
        payment_id=charge.payment_id,
        status=PaymentStatus.PENDING,
        amount=charge.amount,
        currency=charge.currency,
        raw_status="ACCEPTED",
    )


def contract_state(node: JsonObject, agreement_id: str) -> AgreementState:
    if transformers.text_field(node, "out_contract_code") != agreement_id:
        raise ValueError("the contract answer is about another out_contract_code")
    wire = transformers.text_field(node, "contract_state")
    status = contract_status(wire)
    info = node.get("contract_terminate_info")
    ended = None
    if isinstance(info, Mapping):
        ended = _time(info, "contract_terminated_time")
    return AgreementState(
        agreement_id=agreement_id,
        status=status,
        agreement_no=transformers.text_field(node, "contract_id"),
        signed_at=_time(node, "contract_signed_time"),
        ended_at=ended if status is AgreementStatus.ENDED else None,
        raw_status=wire,
    )


def notification(
    event_type: str, resource: JsonObject, *, mchid: str, appid: str
) -> VerifiedAgreementNotification:
    if event_type not in EVENTS:
        raise ValueError(f"not a contract notification: {event_type}")
    if resource.get("appid") != appid:
        raise ValueError("the contract belongs to another appid")
    state = contract_state(resource, transformers.text_field(resource, "out_contract_code"))
    expected = AgreementStatus.ACTIVE if event_type == "PAPAY.SIGN" else AgreementStatus.ENDED
    if state.status is not expected:
        raise ValueError(f"{event_type} with contract_state {state.raw_status}")
    return VerifiedAgreementNotification(
        app_id=transformers.text_field(resource, "mchid"), event=event_type, agreement=state
    )


def _time(node: Mapping[str, object], key: str) -> datetime | None:
    value = node.get(key)
    return transformers.parse_wire_time(value) if isinstance(value, str) and value else None
