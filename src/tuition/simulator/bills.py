"""The simulator's bill files, written from its own books in the real gateways' formats.

=============================================================  ===========================
Alipay ``alipay.data.dataservice.bill.downloadurl.query``      ``bill_download_url`` of a
                                                                zip of GBK CSVs (明细, 汇总)
``GET /alipay/bills/{token}``                                  that zip
``GET /wechatpay/v3/bill/tradebill`` / ``fundflowbill``        ``{hash_type, hash_value,
                                                                download_url}`` (signed)
``GET /wechatpay/v3/billdownload/file?token=``                 the text (gzip if asked)
``POST /_control/bills``                                       change the next bills
=============================================================  ===========================

A bill holds the trades paid and the refunds settled within one Beijing day; a day
that has not ended yet has no bill (``isp.bill_not_exist`` / ``NO_STATEMENT_EXIST``).
Fees are ``amount x fee_rate`` (half up), as the channels book them, and a refund gives
back its part of the fee (``refund x fee_rate``). For tests and the demo a
:class:`BillPlan` drops, alters or adds rows: ``drop`` a trade or refund, ``alter`` its
amount, fee, state or time (moving it to another day's bill), or ``add`` a trade the
merchant never heard of.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tuition.domain.payments import channel_fee
from tuition.domain.reconciliation import BEIJING
from tuition.simulator import alipay_wire, bill_files
from tuition.simulator.bill_files import Row
from tuition.simulator.faults import Operation
from tuition.simulator.records import GatewayError, PaymentWireStatus, RefundWireStatus

if TYPE_CHECKING:
    from tuition.simulator import wechatpay_wire
    from tuition.simulator.app import Simulator

DEFAULT_FEE_RATE = Decimal("0.006")


@dataclass(slots=True)
class BillPlan:
    """What the next bills change: by reference (out_trade_no, or out_refund_no)."""

    dropped: set[str] = field(default_factory=set)
    altered: dict[str, dict[str, object]] = field(default_factory=dict)
    added: list[Row] = field(default_factory=list)

    def clear(self) -> None:
        self.dropped.clear()
        self.altered.clear()
        self.added.clear()


class BillBook:
    def __init__(self, sim: Simulator, fee_rate: Decimal = DEFAULT_FEE_RATE) -> None:
        self._sim = sim
        self.fee_rate = fee_rate
        self.plan = BillPlan()
        self._files: dict[str, tuple[bytes, str]] = {}

    # -- the books, as rows -----------------------------------------------------------

    def rows(self, app_id: str, day: date) -> list[Row]:
        rows = [*self._payment_rows(app_id), *self._refund_rows(app_id)]
        rows += [row for row in self.plan.added if row.app_id == app_id]
        out = []
        for row in rows:
            if row.reference in self.plan.dropped:
                continue
            changes = self.plan.altered.get(row.reference)
            if changes:
                row = replace(row, **changes)  # type: ignore[arg-type]
                if row.kind == "payment":
                    row.payment_amount = row.amount
            if row.at.astimezone(BEIJING).date() == day:
                out.append(row)
        return sorted(out, key=lambda r: (r.at, r.reference))

    def _payment_rows(self, app_id: str) -> list[Row]:
        return [
            Row(
                kind="payment",
                app_id=app_id,
                out_trade_no=p.out_trade_no,
                trade_no=p.trade_no,
                amount=p.amount,
                fee=channel_fee(p.amount, self.fee_rate),
                at=p.paid_at,
                subject=p.subject,
                method=p.method,
                payment_amount=p.amount,
                created_at=p.created_at,
                details=p.details,
            )
            for (app, _), p in self._sim.state.payments.items()
            if app == app_id and p.status is PaymentWireStatus.PAID and p.paid_at is not None
        ]

    def _refund_rows(self, app_id: str) -> list[Row]:
        rows = []
        for (app, _), r in self._sim.state.refunds.items():
            if app != app_id or r.status is not RefundWireStatus.REFUND_SUCCESS:
                continue
            payment = self._sim.state.payments[(app, r.out_trade_no)]
            assert r.refunded_at is not None
            rows.append(
                Row(
                    kind="refund",
                    app_id=app_id,
                    out_trade_no=r.out_trade_no,
                    trade_no=r.trade_no,
                    amount=r.amount,
                    fee=channel_fee(r.amount, self.fee_rate),
                    at=r.refunded_at,
                    subject=payment.subject,
                    method=payment.method,
                    payment_amount=payment.amount,
                    out_refund_no=r.out_refund_no,
                    refund_no=r.refund_no,
                    created_at=r.created_at,
                    details=payment.details,
                )
            )
        return rows

    def _require_ended(self, day: date) -> None:
        today = self._sim.config.clock.now().astimezone(BEIJING).date()
        if day >= today:
            raise GatewayError("NO_STATEMENT_EXIST", f"no bill for {day.isoformat()} yet", 400)

    # -- Alipay -----------------------------------------------------------------------

    def alipay_bill(self, app_id: str, day: date) -> bytes:
        rows = self.rows(app_id, day)
        stamp = f"{day:%Y%m%d}"
        detail = bill_files.alipay_detail(app_id, day, rows, self._sim.config.clock.now())
        summary = bill_files.alipay_summary(app_id, day, rows, self._sim.config.clock.now())
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{app_id}_{stamp}_业务明细.csv", detail.encode("gbk"))
            archive.writestr(f"{app_id}_{stamp}_业务明细(汇总).csv", summary.encode("gbk"))
        return out.getvalue()

    def alipay_downloadurl(
        self, app_id: str, _params: Mapping[str, str], biz: Mapping[str, object]
    ) -> alipay_wire.JsonNode:
        if biz.get("bill_type") != "trade":
            return alipay_wire.business_error("isp.bill_type_not_support", "账单类型不支持")
        try:
            day = date.fromisoformat(str(biz.get("bill_date", "")))
            self._require_ended(day)
        except (ValueError, GatewayError):
            return alipay_wire.business_error("isp.bill_not_exist", "账单不存在")
        token = self._keep(self.alipay_bill(app_id, day), "zip")
        url = f"{self._sim.config.public_base_url}/alipay/bills/{token}"
        return {"code": "10000", "msg": "Success", "bill_download_url": url}

    async def _alipay_file(self, request: Request) -> Response:
        found = self._files.get(str(request.path_params["token"]))
        if found is None:
            return Response(b"", status_code=404)
        return Response(found[0], media_type="application/zip")

    # -- WeChat Pay -------------------------------------------------------------------

    def wechat_trade_bill(self, mchid: str, day: date) -> bytes:
        return bill_files.wechat_trade(mchid, self.rows(mchid, day)).encode("utf-8")

    def wechat_fundflow_bill(self, mchid: str, day: date) -> bytes:
        return bill_files.wechat_fundflow(self.rows(mchid, day)).encode("utf-8")

    async def _wechat_bill(self, request: Request) -> Response:
        kind = str(request.path_params["kind"])

        def action(merchant: wechatpay_wire.WechatMerchant, _body: bytes) -> tuple[int, object]:
            try:
                day = date.fromisoformat(request.query_params.get("bill_date", ""))
            except ValueError:
                raise GatewayError("PARAM_ERROR", "bill_date must be YYYY-MM-DD") from None
            self._require_ended(day)
            if kind == "tradebill":
                text = self.wechat_trade_bill(merchant.mchid, day)
            else:
                text = self.wechat_fundflow_bill(merchant.mchid, day)
            gzipped = request.query_params.get("tar_type") == "GZIP"
            token = self._keep(gzip.compress(text, mtime=0) if gzipped else text, "file")
            base = self._sim.config.public_base_url
            return 200, {
                "hash_type": "SHA1",
                "hash_value": hashlib.sha1(text, usedforsecurity=False).hexdigest(),
                "download_url": f"{base}/wechatpay/v3/billdownload/file?token={token}",
            }

        gateway = self._sim.wechatpay
        return await gateway._handle(request, Operation.QUERY, action)  # type: ignore[arg-type]

    async def _wechat_file(self, request: Request) -> Response:
        try:
            self._sim.wechatpay._authenticate(request, b"")
        except GatewayError as exc:
            return JSONResponse({"code": exc.code, "message": exc.message}, exc.status)
        found = self._files.get(request.query_params.get("token", ""))
        if found is None:
            return JSONResponse({"code": "RESOURCE_NOT_EXISTS", "message": "no such bill"}, 404)
        return Response(found[0], media_type="application/octet-stream")

    def _keep(self, content: bytes, kind: str) -> str:
        token = secrets.token_urlsafe(24)
        self._files[token] = (content, kind)
        return token

    # -- wiring -----------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/alipay/bills/{token}", self._alipay_file, methods=["GET"]),
            Route("/wechatpay/v3/bill/{kind:str}", self._wechat_bill, methods=["GET"]),
            Route("/wechatpay/v3/billdownload/file", self._wechat_file, methods=["GET"]),
        ]

    def control_routes(self) -> list[Route]:
        return [Route("/_control/bills", self._control, methods=["POST", "DELETE"])]

    async def _control(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.plan.clear()
            return JSONResponse({"ok": True})
        try:
            change = _BillChangeIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"code": "INVALID_REQUEST", "message": str(exc)}, 400)
        for ref in change.drop:
            self.drop(ref)
        for ref, fields in change.alter.items():
            self.alter(ref, **fields.model_dump(exclude_none=True))
        for row in change.add:
            self.add(row.app_id, row.out_trade_no, row.amount, at=row.at, fee=row.fee)
        return JSONResponse({"ok": True})

    # -- the control, for tests -------------------------------------------------------

    def drop(self, reference: str) -> None:
        self.plan.dropped.add(reference)

    def alter(self, reference: str, **changes: object) -> None:
        unknown = set(changes) - {"amount", "fee", "status", "at"}
        if unknown:
            raise ValueError(f"cannot alter {sorted(unknown)}")
        self.plan.altered.setdefault(reference, {}).update(changes)

    def add(
        self, app_id: str, out_trade_no: str, amount: int, *, at: datetime, fee: int | None = None
    ) -> None:
        self.plan.added.append(
            Row(
                kind="payment",
                app_id=app_id,
                out_trade_no=out_trade_no,
                trade_no=f"ADD{at:%Y%m%d}{secrets.token_hex(8).upper()}",
                amount=amount,
                fee=channel_fee(amount, self.fee_rate) if fee is None else fee,
                at=at,
                subject="added by the bill plan",
                payment_amount=amount,
                created_at=at,
            )
        )


class _AlterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Annotated[int, Field(gt=0)] | None = None
    fee: Annotated[int, Field(ge=0)] | None = None
    status: str | None = None
    at: datetime | None = None


class _AddIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app_id: str
    out_trade_no: str
    amount: Annotated[int, Field(gt=0)]
    at: datetime
    fee: Annotated[int, Field(ge=0)] | None = None


class _BillChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    drop: list[str] = Field(default_factory=list)
    alter: dict[str, _AlterIn] = Field(default_factory=dict)
    add: list[_AddIn] = Field(default_factory=list)
