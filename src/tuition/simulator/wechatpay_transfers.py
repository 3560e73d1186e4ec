"""The simulator paying payees the WeChat Pay way: merchant transfer bills (商家转账).

========================================================================  ============
``POST /wechatpay/v3/fund-app/mch-transfer/transfer-bills``               create a bill
``GET  /wechatpay/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{no}``  query it
========================================================================  ============

A bill is one per ``(mchid, out_bill_no)``: a repeat answers the first bill as it is now.
By default a bill succeeds at once (a payee who authorised receiving without
confirmation). Tests plan the next bills' outcomes: :meth:`WechatTransferDesk.fail_next`
(the bill is made and ends ``FAIL`` with a reason, nothing paid),
:meth:`WechatTransferDesk.refuse_next` (the request is refused with a code, no bill),
:meth:`WechatTransferDesk.confirm_next` (``WAIT_USER_CONFIRM`` with a ``package_info``
until :meth:`WechatTransferDesk.settle` ends it: the payee confirmed, or it failed or
was cancelled). :meth:`WechatTransferDesk.notification` renders the signed, encrypted
``MCHTRANSFER.BILL.FINISHED`` of a finished bill. A lost answer is a ``timeout`` fault
with ``applied=True`` on the ``transfer`` operation.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tuition.channels.wechatpay import gateway_side
from tuition.channels.wechatpay.transfers import (
    BILLS_PATH,
    FINISHED_EVENT,
    NAME_REQUIRED_FROM,
    decrypt_sensitive,
)
from tuition.channels.wechatpay.transformers import wire_time
from tuition.domain.money import MAX_AMOUNT
from tuition.simulator import wechatpay_wire as wire
from tuition.simulator.faults import Operation
from tuition.simulator.records import GatewayError

if TYPE_CHECKING:
    from tuition.simulator.wechatpay import WechatPayGateway

SCENES = frozenset({"1000", "1001", "1002", "1004", "1005", "1009", "1010", "1011", "1013"})


@dataclass(slots=True)
class SimBill:
    mchid: str
    out_bill_no: str
    transfer_bill_no: str
    appid: str
    openid: str
    user_name: str | None  # as decrypted by the simulator
    amount: int
    remark: str
    notify_url: str | None
    state: str  # ACCEPTED, WAIT_USER_CONFIRM, SUCCESS, FAIL, CANCELLED
    create_time: str
    update_time: str
    fail_reason: str = ""
    package_info: str = ""


@dataclass(frozen=True, slots=True)
class _Plan:
    outcome: str  # "fail", "refuse" or "confirm"
    code: str = ""
    reason: str = ""


class _ReportInfo(wire._In):
    info_type: Annotated[str, Field(min_length=1, max_length=15)]
    info_content: Annotated[str, Field(min_length=1, max_length=32)]


class BillIn(wire._In):
    appid: Annotated[str, Field(pattern=r"^[0-9A-Za-z_]{1,32}$")]
    out_bill_no: Annotated[str, Field(pattern=r"^[0-9A-Za-z_]{5,32}$")]
    transfer_scene_id: Annotated[str, Field(min_length=1, max_length=36)]
    openid: Annotated[str, Field(min_length=1, max_length=64)]
    user_name: Annotated[str, Field(max_length=1024)] | None = None
    transfer_amount: Annotated[int, Field(gt=0, le=MAX_AMOUNT)]
    transfer_remark: Annotated[str, Field(min_length=1, max_length=32)]
    notify_url: Annotated[str, Field(max_length=256, pattern=r"^https?://")] | None = None
    user_recv_perception: Annotated[str, Field(max_length=64)] | None = None
    transfer_scene_report_infos: list[_ReportInfo] = []


class WechatTransferDesk:
    def __init__(self, gateway: WechatPayGateway) -> None:
        self._gateway = gateway
        self.bills: dict[tuple[str, str], SimBill] = {}
        self._plans: deque[_Plan] = deque()
        self._seq = 0

    def routes(self, prefix: str) -> list[Route]:
        path = prefix + BILLS_PATH.removeprefix("/v3")
        return [
            Route(path, self._create, methods=["POST"]),
            Route(f"{path}/out-bill-no/{{out_bill_no}}", self._query, methods=["GET"]),
        ]

    # -- what tests plan ----------------------------------------------------------------

    def fail_next(self, reason: str, count: int = 1) -> None:
        """The next bills are made and end ``FAIL`` with ``reason`` (e.g.
        ``PAYEE_ACCOUNT_ABNORMAL``, ``REAL_NAME_CHECK_FAIL``)."""
        self._plans.extend(_Plan("fail", reason=reason) for _ in range(count))

    def refuse_next(self, code: str, reason: str, count: int = 1) -> None:
        """The next requests are refused (HTTP 400 with ``code``); no bill is made."""
        self._plans.extend(_Plan("refuse", code, reason) for _ in range(count))

    def confirm_next(self, count: int = 1) -> None:
        """The next bills wait for the payee to confirm (``WAIT_USER_CONFIRM``)."""
        self._plans.extend(_Plan("confirm") for _ in range(count))

    def settle(self, out_bill_no: str, *, state: str = "SUCCESS", reason: str = "") -> SimBill:
        """End a waiting bill: ``SUCCESS`` (the payee confirmed), ``FAIL`` or ``CANCELLED``."""
        [bill] = [b for b in self.bills.values() if b.out_bill_no == out_bill_no]
        if bill.state != "WAIT_USER_CONFIRM":
            raise ValueError(f"bill {out_bill_no} is {bill.state}, not WAIT_USER_CONFIRM")
        if state not in ("SUCCESS", "FAIL", "CANCELLED"):
            raise ValueError(f"a bill ends SUCCESS, FAIL or CANCELLED, not {state}")
        bill.state, bill.fail_reason = state, reason
        bill.package_info = ""
        bill.update_time = self._now()
        return bill

    def notification(self, out_bill_no: str) -> tuple[dict[str, str], bytes]:
        """The signed ``MCHTRANSFER.BILL.FINISHED`` of a finished bill, as sent to its
        notify_url: headers and body."""
        [bill] = [b for b in self.bills.values() if b.out_bill_no == out_bill_no]
        if bill.state not in ("SUCCESS", "FAIL", "CANCELLED"):
            raise ValueError(f"bill {out_bill_no} is {bill.state}: not finished")
        merchant = self._gateway.merchants[bill.mchid]
        resource: wire.JsonNode = {
            "mchid": bill.mchid,
            "out_bill_no": bill.out_bill_no,
            "transfer_bill_no": bill.transfer_bill_no,
            "state": bill.state,
            "transfer_amount": bill.amount,
            "openid": bill.openid,
            "create_time": bill.create_time,
            "update_time": bill.update_time,
        }
        if bill.fail_reason:
            resource["fail_reason"] = bill.fail_reason
        key, serial = self._gateway.key.private_key, self._gateway.public_key_id
        now = self._gateway.clock.now()
        return gateway_side.sign_notification(
            FINISHED_EVENT,
            resource,
            apiv3_key=merchant.apiv3_key,
            private_key=key,
            serial=serial,
            timestamp=int(now.timestamp()),
            notification_id=f"EV-{secrets.token_hex(10)}",
            create_time=wire_time(now),
        )

    # -- the protocol -------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        def action(merchant: wire.WechatMerchant, body: bytes) -> tuple[int, wire.JsonNode]:
            data = wire.parse(BillIn, body)
            existing = self.bills.get((merchant.mchid, data.out_bill_no))
            if existing is None:
                existing = self._open(merchant, data)
            return 200, self._answer(existing)

        return await self._gateway.handle(request, Operation.TRANSFER, action)

    def _open(self, merchant: wire.WechatMerchant, data: BillIn) -> SimBill:
        if data.appid not in merchant.appids:
            raise GatewayError("APPID_MCHID_NOT_MATCH", "appid 和 mch_id 不匹配", 400)
        if data.transfer_scene_id not in SCENES:
            raise GatewayError("PARAM_ERROR", "transfer_scene_id is not a known scene", 400)
        if data.transfer_scene_id == "1005" and len(data.transfer_scene_report_infos) < 2:
            raise GatewayError("PARAM_ERROR", "scene 1005 needs its two report infos", 400)
        name = None
        if data.user_name is not None:
            try:
                name = decrypt_sensitive(self._gateway.key.private_key, data.user_name)
            except ValueError:
                raise GatewayError("PARAM_ERROR", "user_name does not decrypt", 400) from None
        if data.transfer_amount >= NAME_REQUIRED_FROM and name is None:
            raise GatewayError("PARAM_ERROR", "user_name is required from 2000 yuan", 400)
        plan = self._plans.popleft() if self._plans else _Plan("succeed")
        if plan.outcome == "refuse":
            raise GatewayError(plan.code, plan.reason, 400)
        self._seq += 1
        now = self._now()
        bill = SimBill(
            mchid=merchant.mchid,
            out_bill_no=data.out_bill_no,
            transfer_bill_no=f"1330000071100{self._seq:027d}",
            appid=data.appid,
            openid=data.openid,
            user_name=name,
            amount=data.transfer_amount,
            remark=data.transfer_remark,
            notify_url=data.notify_url,
            state={"fail": "FAIL", "confirm": "WAIT_USER_CONFIRM"}.get(plan.outcome, "SUCCESS"),
            create_time=now,
            update_time=now,
            fail_reason=plan.reason if plan.outcome == "fail" else "",
            package_info=f"affffddafdfafddffda=={secrets.token_hex(8)}"
            if plan.outcome == "confirm"
            else "",
        )
        self.bills[(merchant.mchid, data.out_bill_no)] = bill
        return bill

    async def _query(self, request: Request) -> Response:
        def action(merchant: wire.WechatMerchant, _body: bytes) -> tuple[int, wire.JsonNode]:
            bill = self.bills.get((merchant.mchid, str(request.path_params["out_bill_no"])))
            if bill is None:
                raise GatewayError("NOT_FOUND", "记录不存在", 404)
            node: wire.JsonNode = {
                "mch_id": bill.mchid,
                "out_bill_no": bill.out_bill_no,
                "transfer_bill_no": bill.transfer_bill_no,
                "appid": bill.appid,
                "state": bill.state,
                "transfer_amount": bill.amount,
                "transfer_remark": bill.remark,
                "openid": bill.openid,
                "create_time": bill.create_time,
                "update_time": bill.update_time,
            }
            if bill.fail_reason:
                node["fail_reason"] = bill.fail_reason
            if bill.package_info:
                node["package_info"] = bill.package_info
            return 200, node

        return await self._gateway.handle(request, Operation.TRANSFER_QUERY, action)

    def _answer(self, bill: SimBill) -> wire.JsonNode:
        node: wire.JsonNode = {
            "out_bill_no": bill.out_bill_no,
            "transfer_bill_no": bill.transfer_bill_no,
            "create_time": bill.create_time,
            "state": bill.state,
        }
        if bill.fail_reason:
            node["fail_reason"] = bill.fail_reason
        if bill.package_info:
            node["package_info"] = bill.package_info
        return node

    def _now(self) -> str:
        return wire_time(self._gateway.clock.now())
