"""Alipay single transfers to a payee: ``alipay.fund.trans.uni.transfer`` and its query
``alipay.fund.trans.common.query`` (product ``TRANS_ACCOUNT_NO_PWD``, scene
``DIRECT_TRANSFER``), mapped to :class:`~tuition.channels.base.TransferState`.

Our payout id is ``out_biz_no``: Alipay pays one transfer per ``out_biz_no`` and answers a
repeat with the first transfer's result, which is how a payout whose answer was lost is
sent again. A ``SYSTEM_ERROR`` (or the gateway's unknown-outcome code) leaves the outcome
unknown: the query decides. A refusal of the transfer itself (``PAYEE_NOT_EXIST``,
``PAYEE_USER_INFO_ERROR``, ``BALANCE_IS_NOT_ENOUGH``, ...) paid nothing: the payout fails
with Alipay's code and message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tuition.channels.alipay.transformers import JsonObject, UnknownWireStatus, require_cny, yuan
from tuition.channels.base import ChannelTimeout, TransferRequest, TransferState, TransferStatus
from tuition.domain.errors import ChannelError

TRANSFER = "alipay.fund.trans.uni.transfer"
QUERY = "alipay.fund.trans.common.query"
PRODUCT_CODE = "TRANS_ACCOUNT_NO_PWD"
BIZ_SCENE = "DIRECT_TRANSFER"
# The transfer's outcome is unknown after these: query, never fail.
_UNKNOWN_SUB_CODES = frozenset({"SYSTEM_ERROR", "isp.unknow-error", "isp.unknown-error"})
_NOT_FOUND_SUB_CODES = frozenset({"ORDER_NOT_EXIST"})

Call = Callable[[str, JsonObject], Awaitable[JsonObject]]


def identity_type(account: str) -> str:
    """A 16-digit id starting 2088 is an Alipay user id; anything else a login (phone or
    e-mail)."""
    return (
        "ALIPAY_USER_ID"
        if len(account) == 16 and account.startswith("2088")
        else ("ALIPAY_LOGON_ID")
    )


def transfer_biz(request: TransferRequest) -> JsonObject:
    require_cny(request.currency)
    return {
        "out_biz_no": request.payout_id,
        "trans_amount": yuan(request.amount),
        "product_code": PRODUCT_CODE,
        "biz_scene": BIZ_SCENE,
        "order_title": request.title[:64],
        "payee_info": {
            "identity": request.account,
            "identity_type": identity_type(request.account),
            "name": request.name,
        },
    }


def query_biz(payout_id: str) -> JsonObject:
    return {"out_biz_no": payout_id, "product_code": PRODUCT_CODE, "biz_scene": BIZ_SCENE}


def transfer_status(wire: str) -> TransferStatus:
    """Alipay's transfer statuses, in one exhaustive match; an unknown one raises."""
    match wire:
        case "SUCCESS":
            return TransferStatus.SUCCEEDED
        case "DEALING" | "WAIT_PAY" | "INIT":
            return TransferStatus.PROCESSING
        case "FAIL" | "CLOSED":
            return TransferStatus.FAILED
        case "REFUND":
            return TransferStatus.RETURNED
        case _:
            raise UnknownWireStatus(f"unknown Alipay transfer status {wire!r}")


def transfer_state(node: JsonObject, payout_id: str) -> TransferState:
    answered = str(node.get("out_biz_no") or payout_id)
    if answered != payout_id:
        raise ValueError(f"Alipay answered for transfer {answered}, not {payout_id}")
    status = transfer_status(str(node.get("status", "")))
    failed = status in (TransferStatus.FAILED, TransferStatus.RETURNED)
    return TransferState(
        payout_id=payout_id,
        status=status,
        channel_transfer_no=str(node["order_id"]) if node.get("order_id") else None,
        failure_code=str(node.get("error_code") or "TRANSFER_FAILED") if failed else None,
        failure_message=str(node.get("fail_reason") or "") or None if failed else None,
    )


async def transfer(call: Call, request: TransferRequest) -> TransferState:
    try:
        node = await call(TRANSFER, transfer_biz(request))
    except ChannelTimeout:
        raise
    except ChannelError as exc:
        if exc.code in _UNKNOWN_SUB_CODES:
            raise ChannelTimeout(f"Alipay could not complete the transfer: {exc}") from exc
        return TransferState(
            request.payout_id,
            TransferStatus.FAILED,
            failure_code=exc.code,
            failure_message=exc.message,
        )
    return _parsed(node, request.payout_id)


async def query_transfer(call: Call, payout_id: str) -> TransferState | None:
    """The transfer as Alipay has it; ``None`` when Alipay has no transfer of that id."""
    try:
        node = await call(QUERY, query_biz(payout_id))
    except ChannelTimeout:
        raise
    except ChannelError as exc:
        if exc.code in _NOT_FOUND_SUB_CODES:
            return None
        raise ChannelTimeout(f"Alipay could not answer the transfer query: {exc}") from exc
    return _parsed(node, payout_id)


def _parsed(node: JsonObject, payout_id: str) -> TransferState:
    try:
        return transfer_state(node, payout_id)
    except UnknownWireStatus:
        raise
    except (ValueError, KeyError) as exc:
        raise ChannelTimeout(
            f"unreadable Alipay transfer answer: {exc}", code="channel_bad_response"
        ) from exc
