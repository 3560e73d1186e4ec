"""The simulator paying payees: Alipay's ``alipay.fund.trans.uni.transfer`` and
``alipay.fund.trans.common.query``.

A transfer is one per ``(app, out_biz_no)``: a repeat answers the first transfer as it
is now. By default a transfer succeeds at once. Tests plan the next transfers'
outcomes: :meth:`TransferDesk.refuse_next` (refused with a code and reason, nothing
paid, no transfer recorded), :meth:`TransferDesk.process_next` (``DEALING`` until
:meth:`TransferDesk.settle` ends it in success or failure with a reason). A lost answer
is a ``timeout`` fault with ``applied=True`` on the ``transfer`` operation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuition.channels.alipay.transformers import wire_time
from tuition.simulator import alipay_wire as wire
from tuition.simulator.faults import Operation

if TYPE_CHECKING:
    from tuition.clock import Clock
    from tuition.simulator.alipay import AlipayGateway


@dataclass(slots=True)
class SimTransfer:
    app_id: str
    out_biz_no: str
    amount: int
    account: str
    name: str
    status: str  # SUCCESS, DEALING, FAIL
    order_id: str
    fail_reason: str = ""
    error_code: str = ""


@dataclass(frozen=True, slots=True)
class _Plan:
    outcome: str  # "refuse" or "process"
    code: str = ""
    reason: str = ""


class TransferDesk:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.transfers: dict[tuple[str, str], SimTransfer] = {}
        self._plans: deque[_Plan] = deque()
        self._seq = 0

    def install(self, alipay: AlipayGateway) -> None:
        alipay._api["alipay.fund.trans.uni.transfer"] = (Operation.TRANSFER, self.alipay_transfer)
        alipay._api["alipay.fund.trans.common.query"] = (
            Operation.TRANSFER_QUERY,
            self.alipay_query,
        )

    # -- what tests plan ----------------------------------------------------------------

    def refuse_next(self, code: str, reason: str, count: int = 1) -> None:
        self._plans.extend(_Plan("refuse", code, reason) for _ in range(count))

    def process_next(self, count: int = 1) -> None:
        self._plans.extend(_Plan("process") for _ in range(count))

    def settle(
        self, out_biz_no: str, *, succeed: bool = True, code: str = "", reason: str = ""
    ) -> None:
        [transfer] = [t for t in self.transfers.values() if t.out_biz_no == out_biz_no]
        if transfer.status != "DEALING":
            raise ValueError(f"transfer {out_biz_no} is {transfer.status}, not DEALING")
        transfer.status = "SUCCESS" if succeed else "FAIL"
        transfer.error_code, transfer.fail_reason = ("", "") if succeed else (code, reason)

    # -- the protocol -------------------------------------------------------------------

    def alipay_transfer(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        out_biz_no = wire.text(biz, "out_biz_no")
        existing = self.transfers.get((app_id, out_biz_no))
        if existing is None:
            if wire.text(biz, "product_code") != "TRANS_ACCOUNT_NO_PWD":
                return wire.business_error("INVALID_PARAMETER", "product_code")
            payee = biz.get("payee_info")
            if not isinstance(payee, Mapping) or not payee.get("identity"):
                return wire.business_error("INVALID_PARAMETER", "payee_info.identity is required")
            plan = self._plans.popleft() if self._plans else _Plan("succeed")
            if plan.outcome == "refuse":
                return wire.business_error(plan.code, plan.reason)
            self._seq += 1
            existing = SimTransfer(
                app_id=app_id,
                out_biz_no=out_biz_no,
                amount=wire.amount(biz, "trans_amount"),
                account=str(payee["identity"]),
                name=str(payee.get("name", "")),
                status="DEALING" if plan.outcome == "process" else "SUCCESS",
                order_id=f"2026{self._seq:016d}",
            )
            self.transfers[(app_id, out_biz_no)] = existing
        return self._node(existing)

    def alipay_query(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        transfer = self.transfers.get((app_id, wire.text(biz, "out_biz_no")))
        if transfer is None:
            return wire.business_error("ORDER_NOT_EXIST", "no such transfer")
        node = self._node(transfer)
        node["trans_amount"] = f"{transfer.amount // 100}.{transfer.amount % 100:02d}"
        if transfer.status == "FAIL":
            node["fail_reason"] = transfer.fail_reason
            node["error_code"] = transfer.error_code
        return node

    def _node(self, transfer: SimTransfer) -> wire.JsonNode:
        return {
            "code": "10000",
            "msg": "Success",
            "out_biz_no": transfer.out_biz_no,
            "order_id": transfer.order_id,
            "pay_fund_order_id": f"{transfer.order_id}1",
            "status": transfer.status,
            "trans_date": wire_time(self._clock.now()),
        }
