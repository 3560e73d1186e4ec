"""WeChat Pay merchant transfers to a payee's WeChat balance (商家转账, the transfer-bill
API of 2025): ``POST /v3/fund-app/mch-transfer/transfer-bills``, its query
``GET /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}`` and the
``MCHTRANSFER.BILL.FINISHED`` notification, mapped to
:class:`~tuition.channels.base.TransferState`.

Our payout id is ``out_bill_no``: WeChat Pay makes one bill per ``out_bill_no`` and
answers a repeat with that bill, which is how a payout whose answer was lost is sent
again. A bill's ``state``:

==================  ==============================================  ============
``ACCEPTED``        accepted, not yet processed                     processing
``PROCESSING``      being processed                                 processing
``WAIT_USER_CONFIRM`` waiting for the payee to confirm receipt in    processing
                    WeChat (``package_info`` opens that page)
``TRANSFERING``     confirmed, money moving                         processing
``SUCCESS``         in the payee's balance                          succeeded
``FAIL``            failed, with ``fail_reason`` (nothing paid)     failed
``CANCELING``       being cancelled                                 processing
``CANCELLED``       cancelled (or the payee never confirmed)        failed
==================  ==============================================  ============

The payee's real name (``user_name``) is encrypted with the WeChat Pay public key
(RSAES-OAEP, SHA-1) and sent with that key's id in ``Wechatpay-Serial``; WeChat Pay
requires it from 2,000 yuan and checks it against the openid's real-name record.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tuition.channels.base import (
    NotificationKind,
    TransferRequest,
    TransferState,
    TransferStatus,
    VerifiedNotification,
)
from tuition.channels.wechatpay.transformers import (
    JsonObject,
    UnknownWireStatus,
    require_cny,
    text_field,
)

BILLS_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
FINISHED_EVENT = "MCHTRANSFER.BILL.FINISHED"
STATES = (
    "ACCEPTED",
    "PROCESSING",
    "WAIT_USER_CONFIRM",
    "TRANSFERING",
    "SUCCESS",
    "FAIL",
    "CANCELING",
    "CANCELLED",
)
FINAL_STATES = frozenset({"SUCCESS", "FAIL", "CANCELLED"})
# The bill is unknown to WeChat Pay (a signed 404): the request never arrived.
NOT_FOUND_CODES = frozenset({"NOT_FOUND"})
MAX_REMARK = 32  # characters; the payee sees it
NAME_REQUIRED_FROM = 200_000  # fen: from 2,000 yuan the payee's name must be sent


@dataclass(frozen=True, slots=True)
class TransferScene:
    """What WeChat Pay requires to be declared of every transfer: the scene the merchant
    applied for (``1005`` 佣金报酬, a creator's or promoter's remuneration), what the
    payee sees it as, and the scene's report items."""

    scene_id: str = "1005"
    perception: str = "劳务报酬"
    report_infos: tuple[tuple[str, str], ...] = (
        ("岗位类型", "知识内容创作者"),
        ("报酬说明", "内容销售分成"),
    )


def _oaep() -> padding.OAEP:
    # SHA-1 is what WeChat Pay's sensitive-field encryption is defined with (OAEP's
    # mask and label hash, not a signature); it is the gateway's choice, not ours.
    sha1 = hashes.SHA1()  # noqa: S303
    return padding.OAEP(mgf=padding.MGF1(sha1), algorithm=sha1, label=None)


def encrypt_sensitive(public_key: rsa.RSAPublicKey, text: str) -> str:
    """A sensitive field as WeChat Pay takes it: RSAES-OAEP (SHA-1, MGF1-SHA-1), base64."""
    sealed = public_key.encrypt(text.encode("utf-8"), _oaep())
    return base64.b64encode(sealed).decode("ascii")


def decrypt_sensitive(private_key: rsa.RSAPrivateKey, text: str) -> str:
    """The other side of :func:`encrypt_sensitive` (the simulator's)."""
    return private_key.decrypt(base64.b64decode(text, validate=True), _oaep()).decode("utf-8")


def bill_body(
    request: TransferRequest,
    *,
    appid: str,
    scene: TransferScene,
    encrypted_name: str | None,
) -> dict[str, object]:
    require_cny(request.currency)
    if request.amount >= NAME_REQUIRED_FROM and encrypted_name is None:
        raise ValueError("a transfer from 2,000 yuan needs the payee's name, encrypted")
    body: dict[str, object] = {
        "appid": appid,
        "out_bill_no": request.payout_id,
        "transfer_scene_id": scene.scene_id,
        "openid": request.account,
        "transfer_amount": request.amount,
        "transfer_remark": request.title[:MAX_REMARK],
        "user_recv_perception": scene.perception,
        "transfer_scene_report_infos": [
            {"info_type": kind, "info_content": content} for kind, content in scene.report_infos
        ],
    }
    if encrypted_name is not None:
        body["user_name"] = encrypted_name
    if request.notify_url:
        body["notify_url"] = request.notify_url
    return body


def query_path(payout_id: str) -> str:
    return f"{BILLS_PATH}/out-bill-no/{payout_id}"


def transfer_status(state: str) -> TransferStatus:
    """WeChat Pay's bill states, in one exhaustive match; an unknown one raises."""
    match state:
        case "SUCCESS":
            return TransferStatus.SUCCEEDED
        case "ACCEPTED" | "PROCESSING" | "WAIT_USER_CONFIRM" | "TRANSFERING" | "CANCELING":
            return TransferStatus.PROCESSING
        case "FAIL" | "CANCELLED":
            return TransferStatus.FAILED
        case _:
            raise UnknownWireStatus(f"unknown WeChat Pay transfer bill state {state!r}")


def bill_state(node: JsonObject, payout_id: str) -> TransferState:
    """A bill (the create answer, the query answer or a notification resource)."""
    answered = text_field(node, "out_bill_no")
    if answered != payout_id:
        raise ValueError(f"WeChat Pay answered for bill {answered}, not {payout_id}")
    state = text_field(node, "state")
    status = transfer_status(state)
    failed = status is TransferStatus.FAILED
    reason = node.get("fail_reason")
    package = node.get("package_info")
    bill_no = node.get("transfer_bill_no")
    return TransferState(
        payout_id=payout_id,
        status=status,
        channel_transfer_no=str(bill_no) if isinstance(bill_no, str) and bill_no else None,
        failure_code=(str(reason) if isinstance(reason, str) and reason else state)
        if failed
        else None,
        failure_message=_failure_message(state, reason) if failed else None,
        confirm_package=package
        if state == "WAIT_USER_CONFIRM" and isinstance(package, str) and package
        else None,
        raw_status=state,
    )


def bill_amount(node: JsonObject) -> int:
    value = node.get("transfer_amount")
    if type(value) is not int or value <= 0:
        raise ValueError("transfer_amount must be a positive integer of fen")
    return value


def _failure_message(state: str, reason: object) -> str:
    if state == "CANCELLED":
        return "WeChat Pay cancelled the transfer (not confirmed by the payee in time)"
    if isinstance(reason, str) and reason:
        return f"WeChat Pay could not transfer: {reason}"
    return "WeChat Pay could not transfer"


def notification(resource: JsonObject) -> VerifiedNotification:
    """A decrypted ``MCHTRANSFER.BILL.FINISHED`` resource: a bill at its end state
    (``SUCCESS``, ``FAIL`` or ``CANCELLED``); de-duplicated by its bill number."""
    mchid = text_field(resource, "mchid")
    payout_id = text_field(resource, "out_bill_no")
    state = bill_state(resource, payout_id)
    if state.raw_status not in FINAL_STATES:
        raise ValueError(f"{FINISHED_EVENT} carries the unfinished state {state.raw_status!r}")
    if state.channel_transfer_no is None:
        raise ValueError("a transfer notification needs transfer_bill_no")
    return VerifiedNotification(
        kind=NotificationKind.TRANSFER,
        app_id=mchid,
        event=f"{FINISHED_EVENT}:{state.raw_status}",
        trade_no=state.channel_transfer_no,
        transfer=state,
        transfer_amount=bill_amount(resource),
    )
