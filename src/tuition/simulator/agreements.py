"""The simulator's debit agreements: Alipay periodic deduction and WeChat Pay papay.

One book of agreements for both protocols. The buyer signs on a simulated sign page
(``GET /agreements/{no}`` with Sign / Decline), the merchant charges a signed one (the
charge is an ordinary simulated trade, paid at once unless a failure is planned), and
the buyer can end it "in the app" (:meth:`AgreementDesk.cancel_by_buyer`), which sends
the unsign notification as the gateway would. Notifications are signed in each
protocol's own way and retried like the trade notifications.

Alipay methods added to its gateway: ``alipay.user.agreement.page.sign`` (a page call),
``alipay.user.agreement.query``, ``alipay.user.agreement.unsign`` and ``alipay.trade.pay``
with ``agreement_params``.
"""

from __future__ import annotations

import json
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from tuition.channels.alipay import gateway_side
from tuition.channels.alipay.transformers import wire_time, yuan
from tuition.channels.wechatpay import gateway_side as wechat_side
from tuition.channels.wechatpay.transformers import wire_time as wechat_time
from tuition.simulator import alipay_wire as wire
from tuition.simulator.faults import Operation
from tuition.simulator.records import GatewayError, PaymentWireStatus, SimPayment
from tuition.simulator.wechatpay_wire import WechatMerchant

if TYPE_CHECKING:
    from tuition.simulator.app import Simulator

_env = Environment(autoescape=True)
_SIGN_PAGE = _env.from_string(
    """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign</title></head>
<body><p>{{ gateway }} &middot; simulated agreement, no real money moves</p>
<h1>Authorise automatic payments</h1>
<p data-testid="merchant">Merchant {{ a.app_id }} may charge up to {{ a.single_amount }} fen
per period ({{ a.period }}).</p>
{% if a.status == "TEMP" %}
<form method="post" action="{{ root }}/agreements/{{ a.agreement_no }}/sign">
<button type="submit">Sign</button></form>
<form method="post" action="{{ root }}/agreements/{{ a.agreement_no }}/decline">
<button type="submit">Decline</button></form>
{% else %}<p data-testid="status">This agreement is {{ a.status }}.</p>{% endif %}
</body></html>"""
)
_CHARGE_TTL = timedelta(hours=2)
_GATEWAYS = {"alipay": "Alipay (simulated)", "wechatpay": "WeChat Pay (simulated)"}


@dataclass(slots=True)
class SimAgreement:
    protocol: str  # alipay | wechatpay
    app_id: str
    external_no: str  # the merchant's: external_agreement_no / out_contract_code
    agreement_no: str  # the gateway's: agreement_no / contract_id
    notify_url: str
    return_url: str | None
    single_amount: int
    period: str
    created_at: datetime
    status: str = "TEMP"  # TEMP, NORMAL, STOP (WeChat: signing, signed, terminated)
    signed_at: datetime | None = None
    ended_at: datetime | None = None
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgreementNotice:
    """One agreement notification as sent: for tests to look at."""

    agreement_no: str
    event: str
    url: str
    accepted: bool


class AgreementDesk:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self.agreements: dict[tuple[str, str], SimAgreement] = {}
        self._by_no: dict[str, SimAgreement] = {}
        self._charge_failures: deque[tuple[str, str]] = deque()
        self.notices: list[AgreementNotice] = []
        # protocol -> (agreement, event) -> (body, headers); set by each protocol.
        self.formats: dict[str, Callable[[SimAgreement, str], tuple[bytes, dict[str, str]]]] = {
            "alipay": self._alipay_notice,
            "wechatpay": self._wechat_notice,
        }

    # -- what tests drive -------------------------------------------------------------

    def find(self, external_no: str) -> SimAgreement:
        [found] = [a for (_, no), a in self.agreements.items() if no == external_no]
        return found

    def sign(self, agreement_no: str) -> SimAgreement:
        """The buyer presses Sign on the sign page."""
        agreement = self._by_no[agreement_no]
        if agreement.status != "TEMP":
            raise GatewayError("AGREEMENT_STATUS_ERROR", f"the agreement is {agreement.status}")
        agreement.status = "NORMAL"
        agreement.signed_at = self._sim.config.clock.now()
        self._notify(agreement, "sign")
        return agreement

    def cancel_by_buyer(self, external_no: str) -> SimAgreement:
        """The buyer ends the agreement in the Alipay / WeChat app."""
        agreement = self.find(external_no)
        self._end(agreement)
        return agreement

    def fail_next_charges(
        self, count: int = 1, code: str = "ACQ.BUYER_BALANCE_NOT_ENOUGH", message: str = ""
    ) -> None:
        """The next charges are refused (Alipay's sub_code; WeChat answers it as failed)."""
        self._charge_failures.extend(
            (code, message or "the buyer cannot pay") for _ in range(count)
        )

    # -- the protocol side ------------------------------------------------------------

    def open(
        self,
        protocol: str,
        app_id: str,
        external_no: str,
        *,
        notify_url: str,
        return_url: str | None,
        single_amount: int,
        period: str,
        details: Mapping[str, str] | None = None,
    ) -> SimAgreement:
        """A sign session, or the agreement already under this external number."""
        existing = self.agreements.get((app_id, external_no))
        if existing is not None:
            return existing
        now = self._sim.config.clock.now()
        agreement = SimAgreement(
            protocol=protocol,
            app_id=app_id,
            external_no=external_no,
            agreement_no=f"{now:%Y%m%d}{secrets.randbelow(10**12):012d}",
            notify_url=notify_url,
            return_url=return_url,
            single_amount=single_amount,
            period=period,
            created_at=now,
            details=dict(details or {}),
        )
        self.agreements[(app_id, external_no)] = agreement
        self._by_no[agreement.agreement_no] = agreement
        return agreement

    def sign_page_url(self, agreement: SimAgreement) -> str:
        return f"{self._sim.config.public_base_url.rstrip('/')}/agreements/{agreement.agreement_no}"

    def by_no(self, app_id: str, agreement_no: str) -> SimAgreement | None:
        agreement = self._by_no.get(agreement_no)
        return agreement if agreement is not None and agreement.app_id == app_id else None

    def unsign(self, agreement: SimAgreement) -> None:
        """The merchant ends it."""
        self._end(agreement)

    def charge(
        self,
        agreement: SimAgreement,
        *,
        out_trade_no: str,
        amount: int,
        subject: str,
        notify_url: str,
        details: Mapping[str, str] | None = None,
    ) -> SimPayment:
        """A debit: a trade paid at once, or failed as planned (Alipay refuses it at once;
        WeChat Pay accepted it and the trade ends ``PAYERROR``). A repeated out_trade_no
        is the same trade (never a second debit)."""
        if agreement.status != "NORMAL":
            raise GatewayError("ACQ.AGREEMENT_STATUS_NOT_NORMAL", "the agreement is not signed")
        if amount > agreement.single_amount:
            raise GatewayError("ACQ.EXCEED_SINGLE_AMOUNT", "over the agreed single amount")
        state = self._sim.state
        now = self._sim.config.clock.now()
        known = (agreement.app_id, out_trade_no) in state.payments
        payment = state.create_payment(
            agreement.app_id,
            out_trade_no=out_trade_no,
            amount=amount,
            currency="CNY",
            subject=subject,
            method="agreement",
            notify_url=notify_url,
            return_url=None,
            expires_at=now + _CHARGE_TTL,
            protocol=agreement.protocol,
            details={"agreement_no": agreement.agreement_no, **(details or {})},
        )
        if known:
            return payment
        if self._charge_failures:
            code, message = self._charge_failures.popleft()
            payment.status = PaymentWireStatus.FAILED
            payment.details["failure"] = code
            if agreement.protocol == "alipay":
                raise GatewayError(code, message)
            return payment
        return state.pay(payment)

    # -- notifications ----------------------------------------------------------------

    def _end(self, agreement: SimAgreement) -> None:
        if agreement.status == "STOP":
            return
        agreement.status = "STOP"
        agreement.ended_at = self._sim.config.clock.now()
        self._notify(agreement, "unsign")

    def _notify(self, agreement: SimAgreement, event: str) -> None:
        if not agreement.notify_url:
            return
        body, headers = self.formats[agreement.protocol](agreement, event)
        self._sim.notifier.spawn(self._deliver(agreement, event, body, headers))

    async def _deliver(
        self, agreement: SimAgreement, event: str, body: bytes, headers: dict[str, str]
    ) -> None:
        config = self._sim.config
        async with httpx.AsyncClient(
            transport=config.notify_transport, timeout=config.notify_timeout_seconds
        ) as http:
            for attempt in range(1, config.notify_max_attempts + 1):
                if attempt > 1:
                    await config.sleep(config.backoff(attempt))
                try:
                    response = await http.post(agreement.notify_url, content=body, headers=headers)
                    accepted = _accepted(agreement.protocol, response)
                except httpx.HTTPError:
                    accepted = False
                self.notices.append(
                    AgreementNotice(agreement.agreement_no, event, agreement.notify_url, accepted)
                )
                if accepted:
                    return

    def _alipay_notice(self, agreement: SimAgreement, event: str) -> tuple[bytes, dict[str, str]]:
        now = self._sim.config.clock.now()
        params = {
            "notify_time": wire_time(now),
            "notify_type": f"dut_user_{event}",
            "notify_id": secrets.token_hex(16),
            "app_id": agreement.app_id,
            "auth_app_id": agreement.app_id,
            "charset": "utf-8",
            "version": "1.0",
            "agreement_no": agreement.agreement_no,
            "external_agreement_no": agreement.external_no,
            "personal_product_code": "CYCLE_PAY_AUTH_P",
            "sign_scene": agreement.details.get("sign_scene", ""),
            "alipay_user_id": wire.BUYER_ID,
            "status": "NORMAL" if event == "sign" else "UNSIGN",
        }
        if event == "sign":
            assert agreement.signed_at is not None
            params["sign_time"] = wire_time(agreement.signed_at)
        else:
            assert agreement.ended_at is not None
            params["unsign_time"] = wire_time(agreement.ended_at)
        body = gateway_side.sign_notification(params, self._sim.alipay.key.private_key)
        return body, {"Content-Type": wire.FORM}

    # -- Alipay's methods ---------------------------------------------------------------

    def install(self) -> None:
        alipay = self._sim.alipay
        alipay._api["alipay.user.agreement.query"] = (Operation.QUERY, self._alipay_query)
        alipay._api["alipay.user.agreement.unsign"] = (Operation.CLOSE, self._alipay_unsign)
        alipay._api["alipay.trade.pay"] = (Operation.CREATE, self._alipay_pay)
        alipay.page_methods["alipay.user.agreement.page.sign"] = self._alipay_page_sign

    def _alipay_page_sign(
        self, app_id: str, params: Mapping[str, str], biz: Mapping[str, object]
    ) -> Response:
        rules = biz.get("period_rule_params")
        if biz.get("personal_product_code") != "CYCLE_PAY_AUTH_P" or not isinstance(rules, dict):
            raise GatewayError("INVALID_PARAMETER", "periodic deduction needs CYCLE_PAY_AUTH_P")
        months = rules.get("period")
        agreement = self.open(
            "alipay",
            app_id,
            wire.text(biz, "external_agreement_no"),
            notify_url=params.get("notify_url") or "",
            return_url=params.get("return_url") or None,
            single_amount=wire.amount(rules, "single_amount"),
            period=f"{months} {rules.get('period_type')}",
            details={"sign_scene": wire.text(biz, "sign_scene", required=False)},
        )
        return RedirectResponse(self.sign_page_url(agreement), status_code=303)

    def _alipay_query(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        external = wire.text(biz, "external_agreement_no", required=False)
        number = wire.text(biz, "agreement_no", required=False)
        agreement = (
            self.agreements.get((app_id, external)) if external else self.by_no(app_id, number)
        )
        if agreement is None:
            raise GatewayError("USER_AGREEMENT_NOT_EXIST", "no such agreement")
        node: dict[str, object] = {
            **wire.SUCCESS,
            "agreement_no": agreement.agreement_no,
            "external_agreement_no": agreement.external_no,
            "personal_product_code": "CYCLE_PAY_AUTH_P",
            "status": agreement.status,
        }
        if agreement.signed_at is not None:
            node["sign_time"] = wire_time(agreement.signed_at)
        if agreement.ended_at is not None:
            node["invalid_time"] = wire_time(agreement.ended_at)
        return node

    def _alipay_unsign(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        agreement = self.by_no(app_id, wire.text(biz, "agreement_no"))
        if agreement is None:
            raise GatewayError("USER_AGREEMENT_NOT_EXIST", "no such agreement")
        self.unsign(agreement)
        return dict(wire.SUCCESS)

    def _alipay_pay(
        self, app_id: str, params: Mapping[str, str], biz: Mapping[str, object]
    ) -> wire.JsonNode:
        agreement_params = biz.get("agreement_params")
        if not isinstance(agreement_params, dict):
            raise GatewayError("ACQ.INVALID_PARAMETER", "agreement_params is required")
        agreement = self.by_no(app_id, wire.text(agreement_params, "agreement_no"))
        if agreement is None:
            raise GatewayError("ACQ.AGREEMENT_NOT_EXIST", "no such agreement")
        out_trade_no = wire.text(biz, "out_trade_no")
        existing = self._sim.state.payments.get((app_id, out_trade_no))
        if existing is not None and existing.status is PaymentWireStatus.PAID:
            raise GatewayError("ACQ.TRADE_HAS_SUCCESS", "the trade is already paid")
        payment = self.charge(
            agreement,
            out_trade_no=out_trade_no,
            amount=wire.amount(biz, "total_amount"),
            subject=wire.text(biz, "subject")[:256],
            notify_url=params.get("notify_url") or "",
        )
        return {
            **wire.SUCCESS,
            "trade_no": payment.trade_no,
            "out_trade_no": payment.out_trade_no,
            "buyer_user_id": wire.BUYER_ID,
            "total_amount": yuan(payment.amount),
            "gmt_payment": wire_time(payment.paid_at or self._sim.config.clock.now()),
        }

    # -- WeChat Pay's papay endpoints (v3) ------------------------------------------------

    def contract_node(self, agreement: SimAgreement) -> dict[str, object]:
        status = {"NORMAL": "SIGNED", "STOP": "TERMINATED"}.get(agreement.status, "SIGNING")
        node: dict[str, object] = {
            "mchid": agreement.app_id,
            "appid": agreement.details.get("appid", ""),
            "plan_id": int(agreement.details.get("plan_id", "0")),
            "out_contract_code": agreement.external_no,
            "contract_id": agreement.agreement_no,
            "contract_display_account": agreement.details.get("display", ""),
            "contract_state": status,
            "openid": "o_simulated_buyer",
        }
        if agreement.signed_at is not None:
            node["contract_signed_time"] = wechat_time(agreement.signed_at)
        if agreement.ended_at is not None:
            node["contract_terminate_info"] = {
                "contract_termination_mode": agreement.details.get("ended_by", "USER_TERMINATE"),
                "contract_terminated_time": wechat_time(agreement.ended_at),
            }
        return node

    def _wechat_notice(self, agreement: SimAgreement, event: str) -> tuple[bytes, dict[str, str]]:
        gateway = self._sim.wechatpay
        merchant = gateway.merchants[agreement.app_id]
        now = self._sim.config.clock.now()
        key, serial = gateway.key.private_key, gateway.public_key_id
        _headers, body = wechat_side.sign_notification(
            "PAPAY.SIGN" if event == "sign" else "PAPAY.TERMINATE",
            self.contract_node(agreement),
            apiv3_key=merchant.apiv3_key,
            private_key=key,
            serial=serial,
            timestamp=int(now.timestamp()),
            notification_id=secrets.token_hex(16),
            create_time=wechat_time(now),
        )
        return body, gateway.notifications.headers(body, int(now.timestamp()))

    def wechat_routes(self) -> list[Route]:
        gateway = self._sim.wechatpay
        base = "/wechatpay/v3/papay"
        by_code = f"{base}/sign/contracts/plan-id/{{plan_id}}/out-contract-code/{{code}}"

        async def pre_sign(request: Request) -> Response:
            def action(merchant: WechatMerchant, body: bytes) -> tuple[int, dict[str, object]]:
                data = _json(body)
                appid = str(data.get("appid", ""))
                if appid not in merchant.appids:
                    raise GatewayError("APPID_MCHID_NOT_MATCH", "appid 和 mch_id 不匹配", 400)
                agreement = self.open(
                    "wechatpay",
                    merchant.mchid,
                    str(data.get("out_contract_code", "")) or _missing("out_contract_code"),
                    notify_url=str(data.get("contract_notify_url", "")),
                    return_url=str(data.get("return_url", "")) or None,
                    single_amount=10**9,
                    period="plan " + str(data.get("plan_id", "")),
                    details={
                        "appid": appid,
                        "plan_id": str(data.get("plan_id", "")),
                        "display": str(data.get("contract_display_account", "")),
                    },
                )
                return 200, {
                    "pre_entrustweb_id": f"5778aadY9nltAsZzRixxx{agreement.agreement_no}",
                    "redirect_url": self.sign_page_url(agreement),
                }

            return await gateway._handle(request, Operation.CREATE, action)

        async def query(request: Request) -> Response:
            code = str(request.path_params["code"])

            def action(merchant: WechatMerchant, _body: bytes) -> tuple[int, dict[str, object]]:
                agreement = self.agreements.get((merchant.mchid, code))
                if agreement is None:
                    raise GatewayError("RESOURCE_NOT_EXISTS", "签约协议不存在", 404)
                return 200, self.contract_node(agreement)

            return await gateway._handle(request, Operation.QUERY, action)

        async def terminate(request: Request) -> Response:
            code = str(request.path_params["code"])

            def action(merchant: WechatMerchant, _body: bytes) -> tuple[int, None]:
                agreement = self.agreements.get((merchant.mchid, code))
                if agreement is None:
                    raise GatewayError("RESOURCE_NOT_EXISTS", "签约协议不存在", 404)
                agreement.details["ended_by"] = "MCHID_TERMINATE"
                self.unsign(agreement)
                return 204, None

            return await gateway._handle(request, Operation.CLOSE, action)

        async def schedule(request: Request) -> Response:
            contract_id = str(request.path_params["contract_id"])

            def action(merchant: WechatMerchant, body: bytes) -> tuple[int, dict[str, object]]:
                agreement = self.by_no(merchant.mchid, contract_id)
                if agreement is None or agreement.status != "NORMAL":
                    raise GatewayError("CONTRACT_NOT_EXIST", "签约协议不存在或已解约", 400)
                today = self._sim.config.clock.now().date().isoformat()
                return 200, {"schedule_state": "SCHEDULED", "deduct_start_date": today}

            return await gateway._handle(request, Operation.QUERY, action)

        async def apply(request: Request) -> Response:
            def action(merchant: WechatMerchant, body: bytes) -> tuple[int, dict[str, object]]:
                data = _json(body)
                agreement = self.by_no(merchant.mchid, str(data.get("contract_id", "")))
                if agreement is None:
                    raise GatewayError("CONTRACT_NOT_EXIST", "签约协议不存在", 400)
                amount = data.get("amount")
                if not isinstance(amount, dict) or not isinstance(amount.get("total"), int):
                    raise GatewayError("PARAM_ERROR", "amount.total is required", 400)
                try:
                    payment = self.charge(
                        agreement,
                        out_trade_no=str(data.get("out_trade_no", "")) or _missing("out_trade_no"),
                        amount=amount["total"],
                        subject=str(data.get("description", ""))[:127],
                        notify_url=str(data.get("transaction_notify_url", "")),
                        details={"appid": str(data.get("appid", ""))},
                    )
                except GatewayError as exc:
                    raise GatewayError("CONTRACT_ERROR", exc.message, 400) from None
                return 200, {
                    "out_trade_no": payment.out_trade_no,
                    "amount": {"total": payment.amount, "currency": "CNY"},
                }

            return await gateway._handle(request, Operation.CREATE, action)

        return [
            Route(f"{base}/sign/contracts/pre-entrust-sign", pre_sign, methods=["POST"]),
            Route(by_code, query, methods=["GET"]),
            Route(f"{by_code}/terminate", terminate, methods=["POST"]),
            Route(
                f"{base}/pay/schedules/contract-id/{{contract_id}}/schedule",
                schedule,
                methods=["POST"],
            ),
            Route(f"{base}/pay/transactions/apply", apply, methods=["POST"]),
        ]

    # -- the buyer's sign page ------------------------------------------------------------

    def routes(self) -> list[Route]:
        async def show(request: Request) -> Response:
            agreement = self._by_no.get(str(request.path_params["no"]))
            if agreement is None:
                return HTMLResponse("no such agreement", status_code=404)
            html = _SIGN_PAGE.render(
                a=agreement,
                root=request.scope.get("root_path", ""),
                gateway=_GATEWAYS.get(agreement.protocol, "Gateway"),
            )
            return HTMLResponse(html)

        async def decide(request: Request) -> Response:
            agreement = self._by_no.get(str(request.path_params["no"]))
            if agreement is None:
                return HTMLResponse("no such agreement", status_code=404)
            if request.path_params["decision"] == "sign":
                try:
                    self.sign(agreement.agreement_no)
                except GatewayError as exc:
                    return HTMLResponse(exc.message, status_code=409)
            if agreement.return_url:
                return RedirectResponse(agreement.return_url, status_code=303)
            return HTMLResponse(f"The agreement is {agreement.status}.")

        return [
            *self.wechat_routes(),
            Route("/agreements/{no}", show, methods=["GET"]),
            Route("/agreements/{no}/{decision:str}", decide, methods=["POST"]),
        ]


def _json(body: bytes) -> dict[str, object]:
    try:
        data = json.loads(body)
    except ValueError:
        raise GatewayError("PARAM_ERROR", "the body is not JSON", 400) from None
    if not isinstance(data, dict):
        raise GatewayError("PARAM_ERROR", "the body is not a JSON object", 400)
    return data


def _missing(name: str) -> str:
    raise GatewayError("PARAM_ERROR", f"{name} is required", 400)


def _accepted(protocol: str, response: httpx.Response) -> bool:
    if protocol == "alipay":
        return response.status_code == 200 and response.content.strip() == b"success"
    return response.status_code in (200, 204)
